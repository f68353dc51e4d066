"""Sequence classifiers: shapes, masking of padding, which states feed the head, and a seeded learning test.

References: the encoder run on the unpadded sequence, hand-computed means, and held-out synthetic reviews a model
that ignores or mis-reads the words cannot classify (chance is 50%; the bar is 90%).
"""

import pytest
import torch
import torch.nn.functional as F

from scratchlab.data import synthreviews
from scratchlab.data.text import TextSettings, Vocabulary
from scratchlab.rnn.classifiers import MODELS, BagClassifier, RecurrentClassifier, build_classifier

V, L = 50, 12


def _ids(n=5, seed=0):
    """Left-padded ids with 1..L real tokens per row (never all padding)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (n, L), generator=g)
    lengths = torch.randint(1, L + 1, (n,), generator=g)
    lengths[0] = L  # one unpadded row
    for i, n_real in enumerate(lengths):
        ids[i, : L - n_real] = 0
    return ids


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_output_shapes(name, bidirectional):
    torch.manual_seed(0)
    model = build_classifier(name, V, L, embed_dim=8, hidden_size=6, bidirectional=bidirectional)
    logits, weights = model(_ids())
    assert logits.shape == (5,) and logits.dtype == torch.float32
    assert (weights is None) == (name != "lstm-attention")
    if weights is not None:
        assert weights.shape == (5, L)
    F.binary_cross_entropy_with_logits(logits, torch.ones(5)).backward()  # every parameter gets a gradient
    assert all(p.grad is not None for n, p in model.named_parameters()), [n for n, p in model.named_parameters()
                                                                           if p.grad is None]


@pytest.mark.parametrize("bidirectional", [False, True])
def test_attention_gives_padding_zero_weight(bidirectional):
    torch.manual_seed(0)
    model = build_classifier("lstm-attention", V, L, embed_dim=8, hidden_size=6, bidirectional=bidirectional)
    ids = _ids(8, seed=1)
    _, weights = model.eval()(ids)
    pad = ids == 0
    assert pad.any() and (weights[pad] == 0).all()
    assert (weights[~pad] > 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(8))


def test_last_state_is_the_encoder_state_of_the_unpadded_review():
    """Forward direction: the last step; backward direction: the first real word, where it has read no padding."""
    torch.manual_seed(0)
    model = RecurrentClassifier(V, 8, 6, cell="lstm", bidirectional=True).eval()
    ids = _ids(4, seed=2)
    outputs, _ = model.rnn(model.embedding(ids))
    last = model.last_state(outputs, ids)
    for i in range(4):
        real = ids[i][ids[i] != 0][None]  # (1, n) without padding
        _, (h, _) = model.rnn(model.embedding(real))  # h: (2, 1, 6) = forward, backward final states
        torch.testing.assert_close(last[i, 6:], h[1, 0])
        torch.testing.assert_close(last[i, :6], outputs[i, -1, :6])  # forward: after the whole padded row
    uni = RecurrentClassifier(V, 8, 6, cell="gru").eval()
    out, h = uni.rnn(uni.embedding(ids))
    torch.testing.assert_close(uni.last_state(out, ids), h[0])


def test_bag_mean_ignores_padding():
    torch.manual_seed(0)
    model = BagClassifier(V, 4, dropout=0.0).eval()
    short = torch.tensor([[0, 0, 0, 7, 9]])
    logits, _ = model(short)
    expected = model.out((model.embedding.weight[7] + model.embedding.weight[9]) / 2)
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(model(torch.tensor([[0, 7, 9]]))[0], logits)  # more padding, same answer


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match=r"model: expected one of .*'bag'.*got 'cnn'"):
        build_classifier("cnn", V, L)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "lstm-attention", "gru"])
def test_recurrent_models_learn_synthetic_sentiment(name):
    """Seeded; held-out reviews. A model must count sentiment words of both kinds to pass 90%."""
    torch.manual_seed(0)
    train, test = synthreviews.reviews(1200, seed=10), synthreviews.reviews(400, seed=11)
    vocab = Vocabulary.fit(train.texts, TextSettings(min_freq=1, length=40))
    xtr, ytr = torch.from_numpy(vocab.encode(train.texts)), torch.from_numpy(train.labels).float()
    xte, yte = torch.from_numpy(vocab.encode(test.texts)), torch.from_numpy(test.labels).float()
    model = build_classifier(name, len(vocab), 40, embed_dim=24, hidden_size=24, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(10):
        for idx in torch.randperm(len(xtr)).split(32):
            loss = F.binary_cross_entropy_with_logits(model(xtr[idx])[0], ytr[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = ((model(xte)[0] > 0).float() == yte).float().mean().item()
    assert accuracy >= 0.90, f"{name}: {accuracy:.3f} on held-out synthetic reviews"
