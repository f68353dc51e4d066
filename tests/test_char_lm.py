"""char-lm: the evaluation's carried state against torch.nn.LSTM over whole rows, the batch windows, engine=both
against torch.nn.LSTM step for step, learning a periodic text exactly, the time budget and `scratchlab generate`."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scratchlab.cli import main
from scratchlab.data.synthetic import CharVocab
from scratchlab.experiments import char_lm
from scratchlab.run.rundir import RunDir
from scratchlab.runner import run_experiment

PERIOD = "abcdefghij"
TINY = {"hidden": 24, "layers": 2, "batch": 4, "seq_length": 10, "lr": 1e-2, "optimizer": "adam", "eval_every": 20,
        "sample_length": 30, "prompt": PERIOD}


@pytest.fixture
def periodic(tmp_path):
    path = tmp_path / "periodic.txt"
    path.write_text(PERIOD * 300)
    return str(path)


def test_nats_per_char_is_the_cross_entropy_of_whole_rows():
    """Scored window by window with the state carried = one pass of torch.nn.LSTM over each whole row."""
    torch.manual_seed(0)
    model = char_lm.CharLM("lstm", 7, 12, 2)
    ref = char_lm.CharLM("lstm", 7, 12, 2, engine="torch")
    ref.load_state_dict(model.state_dict())
    ids = np.random.default_rng(0).integers(0, 7, 100)
    got = char_lm.nats_per_char(model, ids, n_rows=3, length=7, min_row=10)
    data = torch.from_numpy(ids[:99].reshape(3, 33))
    with torch.no_grad():
        logits, _ = ref(data[:, :-1])
    want = F.cross_entropy(logits.reshape(-1, 7), data[:, 1:].reshape(-1)).item()
    assert got == pytest.approx(want, abs=1e-6)


def test_windows_are_contiguous():
    data = char_lm.rows(np.arange(50), 2)  # rows [0..24], [25..49]
    x0, y0 = char_lm.window(data, 0, 4)
    x1, _ = char_lm.window(data, 1, 4)
    assert x0.tolist() == [[0, 1, 2, 3], [25, 26, 27, 28]] and y0.tolist() == [[1, 2, 3, 4], [26, 27, 28, 29]]
    assert torch.equal(x1[:, 0], y0[:, -1])  # the next window starts where the targets of this one end


def test_both_engines_agree_and_learn_a_periodic_text(periodic, tmp_path, capsys):
    run, s = run_experiment("char-lm", {**TINY, "text_file": periodic, "engine": "both", "steps": 80},
                            out=tmp_path / "run", progress=False)
    assert s["max_train_loss_difference"] < 1e-4  # float32 rounding only; a bug would be of the loss's size
    assert s["val_bpc"] < 0.5 and abs(s["val_bpc"] - s["val_bpc_torch"]) < 1e-2
    assert s["sample_greedy"] == (PERIOD * 4)[:40]  # the prompt (one period) and 30 characters that continue it
    assert math.log2(len(PERIOD)) > 3 and "contiguous blocks" in s["split"]
    assert (run / "loss.png").exists() and set(s) >= {"sample_temperature_0.5", "sample_temperature_2.0"}
    # the CLI writes the greedy sample again from the best checkpoint
    capsys.readouterr()
    assert main(["generate", str(run.path), "--prompt", PERIOD, "--length", "30", "--greedy"]) == 0
    assert capsys.readouterr().out == s["sample_greedy"] + "\n"


def test_generate_command(periodic, tmp_path, capsys):
    run, s = run_experiment("char-lm", {**TINY, "text_file": periodic, "steps": 40}, out=tmp_path / "run",
                            progress=False)
    args = ["generate", str(run.path), "--prompt", "cab", "--length", "12", "--temperature", "1.5", "--seed", "3"]
    assert main(args) == 0 and main(args) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == second and first.startswith("cab") and len(first) == 15  # a seed gives the same text
    assert main(["generate", str(run.path), "--prompt", "xyz"]) == 1
    assert "prompt: characters ['x', 'y', 'z'] are not in this model's vocabulary" in capsys.readouterr().err


def test_time_budget_stops_at_the_first_evaluation(periodic, tmp_path):
    _, s = run_experiment("char-lm", {**TINY, "text_file": periodic, "steps": 1000, "minutes": 1e-6},
                          out=tmp_path / "run", progress=False)
    assert s["steps"] == TINY["eval_every"] and s["stopped_on_time"]


def test_generate_rejects_bad_arguments():
    model = char_lm.CharLM("gru", 3, 4, 1)
    vocab = CharVocab("abc")
    assert len(char_lm.generate(model, vocab, "ab", 5, None)) == 7
    with pytest.raises(ValueError, match="temperature: expected a number > 0"):
        char_lm.generate(model, vocab, "a", 5, 0.0)


def test_resume_carries_the_state_across_the_break(periodic, tmp_path):
    """Reference: one uninterrupted 20-step run. 10 steps, then resumed to 20 (the carried state comes back from
    last.pt mid-pass), must log the same losses."""
    cfg = {**TINY, "text_file": periodic, "hidden": 8, "eval_every": 5}
    _, whole = run_experiment("char-lm", {**cfg, "steps": 20}, out=tmp_path / "whole", progress=False)
    run_experiment("char-lm", {**cfg, "steps": 10}, out=tmp_path / "cut", progress=False)
    run, resumed = run_experiment("char-lm", {**cfg, "steps": 20}, out=tmp_path / "cut", resume=True,
                                  progress=False)
    want = [r["loss"] for r in RunDir(tmp_path / "whole").metrics("train")]
    assert [r["loss"] for r in run.metrics("train")] == pytest.approx(want, abs=1e-6)
    assert resumed["val_bpc"] == pytest.approx(whole["val_bpc"], abs=1e-6)
