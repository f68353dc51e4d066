"""Inputs that made no sense or broke a command (issue 11): one-word and wordless texts given to `predict`, config
values out of their field's range, and the compiled extension's build folder shared between checkouts. References:
the model's own outputs on the rows the text pipeline produces, and the exact messages a user should read."""

import re

import numpy as np
import pytest
import torch

from scratchlab.cli import main
from scratchlab.data.text import UNK
from scratchlab.experiments.imdb import leave_one_out
from scratchlab.rnn.classifiers import build_classifier

# ---------------------------------------------------------------- predict on one word, or none (defect 4)


def p_positive(model: torch.nn.Module, row: list[int]) -> float:
    with torch.no_grad():
        return torch.sigmoid(model(torch.tensor([row]))[0]).item()


@pytest.mark.parametrize("name", ["lstm-attention", "lstm", "bag"])
def test_leave_one_out_of_the_only_word_compares_with_the_empty_review(name):
    """Removing a review's only word leaves the row the pipeline makes of a review with no words: [<pad>.., <unk>].
    Before, that row was all padding and attention refused it ("a row of the mask is all padding")."""
    torch.manual_seed(0)
    model = build_classifier(name, 12, 5, embed_dim=6, hidden_size=8, dropout=0.0).eval()
    delta = leave_one_out(model, np.array([0, 0, 0, 0, 7]))
    expected = p_positive(model, [0, 0, 0, 0, 7]) - p_positive(model, [0, 0, 0, 0, UNK])
    assert delta[4] == pytest.approx(expected, abs=1e-6) and (delta[:4] == 0).all()
    # with more than one word, each removal still re-pads on the left
    delta = leave_one_out(model, np.array([0, 0, 0, 9, 7]))
    assert delta[3] == pytest.approx(p_positive(model, [0, 0, 0, 9, 7]) - p_positive(model, [0, 0, 0, 0, 7]), abs=1e-6)
    assert (leave_one_out(model, np.zeros(5, dtype=np.int64)) == 0).all()  # no word: nothing moved anything


def test_predict_one_word_and_texts_without_words(capsys):
    assert main(["run", "imdb", "--quick", "--out", "r", "--no-progress", "--set", "synthetic_train=200",
                 "--set", "synthetic_test=40", "--set", "epochs=1"]) == 0
    capsys.readouterr()
    assert main(["predict", "r", "film"]) == 0  # "film" is in every synthetic review's vocabulary
    out = capsys.readouterr().out
    assert re.search(r"^(positive|negative) \(probability (0\.\d{3}|1\.000); model lstm-attention\)$", out, re.M)
    assert "most-attended words: film (1.00)\n" in out
    assert re.search(r"removing each in turn\): film \([+-]\d\.\d\d\)\n", out)
    assert main(["predict", "r", "zzzunknownword"]) == 0  # one word, not in the vocabulary
    out = capsys.readouterr().out
    assert "most-attended words: none (no word of the text is in the vocabulary)" in out
    assert "1 word(s) not in the vocabulary were read as <unk>" in out
    for text in ("", "!!!", "10/10"):
        assert main(["predict", "r", text]) == 1
        assert f"no words to classify in {text!r} after cleaning (letters only)" in capsys.readouterr().err
