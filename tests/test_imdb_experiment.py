"""The `imdb` experiments end to end through the CLI: quick runs on synthetic reviews, real-file runs on a fixture
corpus in a data folder, skipping without data, and `predict`. References: the run's own metrics (best checkpoint
= lowest validation loss), the words of the review given to `predict`, and the files written as fixtures."""

import json
import re

import numpy as np
import pytest
import torch

from scratchlab.cli import main
from scratchlab.data import imdb, synthreviews
from scratchlab.train import checkpoint

SMALL = ["--set", "synthetic_train=400", "--set", "synthetic_test=200", "--set", "epochs=3"]


def test_quick_run_is_labelled_synthetic_and_keeps_best_checkpoint(capsys):
    assert main(["run", "imdb", "--quick", "--out", "q", *SMALL]) == 0
    summary = json.load(open("q/summary.json"))
    assert summary["data"].startswith("SYNTHETIC") and "not IMDB" in summary["data"]
    assert summary["model"] == "lstm-attention" and 0 <= summary["test_accuracy"] <= 1
    assert (summary["train_reviews"], summary["val_reviews"], summary["test_reviews"]) == (300, 100, 200)
    evals = [json.loads(line) for line in open("q/metrics.jsonl") if '"eval"' in line]
    assert len(evals) == 3
    best = min(evals, key=lambda r: r["loss"])
    assert checkpoint.load("q/checkpoint.pt")["step"] == best["step"]
    assert summary["best_val_loss"] == best["loss"]
    for name in ("vocab.json", "attention.png", "curves.png"):
        assert open(f"q/{name}", "rb").read(1)

    text = "A wonderful and gripping film, the cast was superb. 10/10 <br /> zzzunknownword"
    assert main(["predict", "q", text]) == 0
    out = capsys.readouterr().out
    m = re.search(r"^(positive|negative) \(probability (0\.\d+|1\.000); model lstm-attention\)$", out, re.M)
    assert m and float(m.group(2)) >= 0.5
    words = re.search(r"most-attended words: (.*)", out).group(1)
    listed = re.findall(r"(\w+) \((0\.\d\d|1\.00)\)", words)
    assert len(listed) == 5 and all(w in text.lower() for w, _ in listed)
    assert [float(v) for _, v in listed] == sorted((float(v) for _, v in listed), reverse=True)
    assert "1 word(s) not in the vocabulary" in out and "synthetic reviews, not IMDB" in out


def test_predict_matches_the_model_and_says_when_there_is_no_attention(capsys):
    assert main(["run", "imdb", "--quick", "--out", "g", "--set", "model=gru", *SMALL]) == 0
    capsys.readouterr()
    assert main(["predict", "g", "dreadful, boring and dull"]) == 0
    out = capsys.readouterr().out
    assert "model gru" in out and "has no attention" in out
    moved = re.search(r"moved p\(positive\) most \(removing each in turn\): (.*)", out).group(1)
    assert re.findall(r"(\w+) \(([+-]\d\.\d\d)\)", moved)


def test_leave_one_out_against_hand_set_bag_model():
    """Reference: a bag model with hand-set weights, logit = 4 * mean over words of [word is "superb"]."""
    from scratchlab.experiments.imdb import leave_one_out
    from scratchlab.rnn.classifiers import BagClassifier

    model = BagClassifier(10, 1, dropout=0.0).eval()
    with torch.no_grad():
        model.embedding.weight.zero_()
        model.embedding.weight[7] = 1.0  # id 7 plays "superb"; ids 2-6 are neutral
        model.out.weight.fill_(4.0)
        model.out.bias.zero_()
    row = np.array([0, 0, 3, 4, 7, 5])  # 4 words
    delta = leave_one_out(model, row)
    p = 1 / (1 + np.exp(-4 * 1 / 4))
    assert delta[4] == pytest.approx(p - 0.5, abs=1e-6)  # without it, the mean is 0: p = 0.5
    for t in (2, 3, 5):  # without a neutral word the mean is 1/3
        assert delta[t] == pytest.approx(p - 1 / (1 + np.exp(-4 / 3)), abs=1e-6)
    assert (delta[:2] == 0).all()


def test_without_data_reproduce_skips_with_the_fetch_command(capsys):
    assert main(["reproduce", "--only", "imdb", "imdb-compare", "--out", "rep"]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped: real IMDB not found") == 2 and "scratchlab data fetch imdb" in err
    html = open("rep/report.html").read()
    assert "scratchlab data fetch imdb" in html and "--set data_dir=DIR" in html
    assert main(["run", "imdb", "--out", "x"]) == 1
    assert "scratchlab data fetch imdb" in capsys.readouterr().err


def test_real_file_corpus_from_data_dir(tmp_path):
    data = synthreviews.corpus(160, 40, seed=5)
    imdb.write_four_files(tmp_path / "corpus", data)
    args = ["run", "imdb", "--quick", "--out", "f", "--set", "corpus=imdb", "--set", f"data_dir={tmp_path / 'corpus'}",
            "--set", "model=bag"]
    assert main(args) == 0
    summary = json.load(open("f/summary.json"))
    assert "four-file train from" in summary["data"] and str(tmp_path / "corpus") in summary["data"]
    assert (summary["train_reviews"], summary["val_reviews"], summary["test_reviews"]) == (120, 40, 40)


def test_compare_table_and_predict_on_the_best_model(capsys):
    args = ["run", "imdb-compare", "--quick", "--out", "c", "--set", "models=bag,mlp,lstm-attention",
            "--set", "seeds=1", *SMALL]
    assert main(args) == 0
    summary = json.load(open("c/summary.json"))
    models = {v["name"]: v for v in summary["variants"]}
    assert list(models) == ["bag", "mlp", "lstm-attention"]
    assert summary["best_model"] == min(models, key=lambda m: models[m]["metrics"]["best_val_loss"]["mean"])
    for name, v in models.items():
        sub = json.load(open(f"c/{name}/seed0/summary.json"))
        assert v["metrics"]["test_accuracy"]["values"] == [sub["test_accuracy"]]
    acc = {m: v["metrics"]["test_accuracy"]["mean"] for m, v in models.items()}
    assert acc["bag"] > acc["mlp"] + 0.1  # words beat raw index values
    assert open("c/attention_lstm-attention.png", "rb").read(4) == b"\x89PNG"
    # each compared model trains exactly as a lone `imdb` run with the same seed and settings
    assert main(["run", "imdb", "--quick", "--out", "alone", "--set", "model=lstm-attention", *SMALL]) == 0
    alone = json.load(open("alone/summary.json"))
    assert alone["test_loss"] == json.load(open("c/lstm-attention/seed0/summary.json"))["test_loss"]
    capsys.readouterr()
    assert main(["predict", "c", "superb and moving"]) == 0
    assert f"[{summary['best_model']}, lowest mean validation loss" in capsys.readouterr().out
    assert main(["predict", "c/lstm-attention/seed0", "superb and moving"]) == 0
    assert torch.load("c/lstm-attention/seed0/checkpoint.pt", weights_only=True)["config"]["model"] == "lstm-attention"


def test_reproduce_quick_runs_on_synthetic_reviews_and_says_so():
    assert main(["reproduce", "--quick", "--only", "imdb", "--out", "rq"]) == 0
    html = open("rq/report.html").read()
    assert "SYNTHETIC reviews generated from word lists, not IMDB" in html and "attention.png" in html
    assert json.load(open("rq/imdb/default/seed0/config.json"))["config"]["corpus"] == "synthetic"
