"""The sentiment classifiers with `packed=True` (rnn/classifiers.py): the encoder reads each review's real length.

References: the same review without padding (a packed model must give the same logit and attention weights whatever
the padding, which the padded model does not), the padded model on rows without padding (the two are then the same
computation: equal logits and gradients), and an `imdb --quick --set packed=true` run end to end with `predict`.
"""

import json

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from scratchlab.cli import main
from scratchlab.rnn.classifiers import build_classifier, packing

IDS = torch.tensor([[0, 0, 0, 4, 9, 2, 7, 3], [0, 0, 0, 0, 0, 0, 0, 5], [1, 2, 3, 4, 5, 6, 7, 8]])


def test_packing_is_pack_padded_sequence_of_the_words_moved_to_the_front():
    """packing's index against torch's own packing of the same words, right-padded: same rows, same batch sizes."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 9, (7, 6), generator=g)
    for b, n in enumerate([6, 1, 3, 6, 2, 5, 1]):
        ids[b, :6 - n] = 0
    flat, batch_sizes, sorted_indices, unsorted_indices = packing(ids)
    lengths = (ids != 0).sum(1)
    right = torch.stack([torch.cat([r[r != 0], r[r == 0]]) for r in ids])        # the words first
    want = pack_padded_sequence(right, lengths, batch_first=True, enforce_sorted=False)
    assert torch.equal(ids.reshape(-1)[flat], want.data)
    assert torch.equal(batch_sizes, want.batch_sizes)
    assert torch.equal(lengths[sorted_indices], lengths[want.sorted_indices])    # ties may be ordered apart
    assert torch.equal(sorted_indices[unsorted_indices], torch.arange(7))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("name", ["lstm", "lstm-attention", "gru"])
def test_packed_model_ignores_padding(name, bidirectional):
    torch.manual_seed(0)
    packed = build_classifier(name, 50, 8, embed_dim=6, hidden_size=5, bidirectional=bidirectional,
                              packed=True).eval()
    padded = build_classifier(name, 50, 8, embed_dim=6, hidden_size=5, bidirectional=bidirectional).eval()
    padded.load_state_dict(packed.state_dict())
    with torch.no_grad():
        z, w = packed(IDS)
        z_padded = padded(IDS)[0]
        for b, row in enumerate(IDS):
            words = row[row != 0].unsqueeze(0)
            z_alone, w_alone = packed(words)
            torch.testing.assert_close(z[b], z_alone[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(z[b], padded(words)[0][0], atol=1e-6, rtol=0)
            if w is not None:
                torch.testing.assert_close(w[b][row != 0], w_alone[0], atol=1e-6, rtol=0)
                assert (w[b][row == 0] == 0).all()
        # the padded model reads the padding, so its logits for padded rows differ (the full row does not)
        assert not torch.allclose(z_padded[:2], z[:2], atol=1e-4)
        torch.testing.assert_close(z_padded[2], z[2], atol=1e-6, rtol=0)


def test_without_padding_packed_and_padded_models_are_the_same_computation():
    torch.manual_seed(0)
    ids = torch.randint(1, 50, (5, 9))
    models = [build_classifier("lstm-attention", 50, 9, embed_dim=6, hidden_size=16, bidirectional=True,
                               packed=p, dropout=0.0) for p in (False, True)]
    models[1].load_state_dict(models[0].state_dict())
    results = []
    for m in models:
        z, _ = m(ids)
        z.square().sum().backward()
        results.append([z.detach(), *(p.grad for p in m.parameters())])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_imdb_quick_run_with_packed_reviews(capsys):
    args = ["run", "imdb", "--quick", "--out", "p", "--set", "packed=true", "--set", "synthetic_train=400",
            "--set", "synthetic_test=200", "--set", "epochs=2"]
    assert main(args) == 0
    assert json.load(open("p/config.json"))["config"]["packed"] is True
    summary = json.load(open("p/summary.json"))
    assert summary["data"].startswith("SYNTHETIC") and 0 <= summary["test_accuracy"] <= 1
    assert main(["predict", "p", "A wonderful and gripping film."]) == 0
    assert "most-attended words:" in capsys.readouterr().out
