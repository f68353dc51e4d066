"""The sequence experiments end to end. References: the palindrome's known answer (the first digit), Python's `+`
over every 8-bit pair for the hand-set adder, and torch.nn.LSTM for the memorise curves."""

import json
from pathlib import Path

import pytest
import torch

from scratchlab import rnn
from scratchlab.cli import main
from scratchlab.experiments._recurrent import RecurrentNet, set_gate_bias
from scratchlab.run import plots
from scratchlab.runner import run_experiment


def run_quick(name: str, *sets: str, files=("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt")):
    args = ["run", name, "--quick", "--out", name, "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    run = Path(name)
    for f in files:
        assert (run / f).exists(), f"{name}: {f} missing"
    assert list(run.glob("*.png")), f"{name}: no figure"
    uncaptioned = {f.name for f in run.glob("*.png")} - set(plots.captions(run))
    assert not uncaptioned, f"{name}: figures without a caption in figures.json: {sorted(uncaptioned)}"
    return run, json.loads((run / "summary.json").read_text())


@pytest.mark.slow
def test_lstm_solves_palindrome_T10():
    """The issue's learning test: an LSTM reaches >= 99% on 10,000 test palindromes of length 10."""
    _, s = run_experiment("palindrome", {"model": "lstm", "length": 10, "hidden": 32, "batch": 64,
                                         "optimizer": "adam", "lr": 1e-2, "gate_bias": 1.0, "min_length": 2,
                                         "steps": 600, "eval_every": 50, "eval_size": 1000, "test_size": 10000},
                          seed=0, out="lstm-T10", progress=False)
    assert s["test_size"] == 10000 and s["test_accuracy"] >= 0.99, s


def test_palindrome_quick_run_directory():
    run, s = run_quick("palindrome", "model=gru", "encoding=value")
    assert s["model"] == "gru" and 0.0 <= s["test_accuracy"] <= 1.0 and s["steps"] == 60
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert [e["step"] for e in evals] == [19, 39, 59] and all("accuracy" in e for e in evals)


def test_palindrome_bad_min_length_is_named(capsys):
    assert main(["run", "palindrome", "--quick", "--set", "min_length=1", "--out", "bad"]) == 1
    assert "min_length must be 0 (off) or in 2..length=10, got 1" in capsys.readouterr().err


def test_palindrome_sweep_quick_runs_each_setting_in_its_own_directory():
    run, s = run_quick("palindrome-sweep", "models=(rnn,gru)", "seeds=2",
                       files=("config.json", "metrics.jsonl", "summary.json"))
    assert s["runs"] == 8 and s["failed"] == 0 and s["seeds"] == 2
    assert [v["name"] for v in s["variants"]] == ["rnn-T5", "gru-T5", "rnn-T8", "gru-T8"]  # the table by length
    for v in s["variants"]:
        m, t = v["name"].split("-T")
        values = []
        for seed in (0, 1):
            sub = json.loads((run / v["name"] / f"seed{seed}" / "summary.json").read_text())
            assert sub["model"] == m and sub["length"] == int(t)
            values.append(sub["test_accuracy"])
            cfg = json.loads((run / v["name"] / f"seed{seed}" / "config.json").read_text())
            assert cfg["seed"] == seed and cfg["config"]["optimizer"] == "adam"  # the recipe reached every run
            assert cfg["config"]["min_length"] == 2
            assert cfg["config"]["gate_bias"] == (1.0 if m == "gru" else None)  # a plain RNN has no gate to open
            assert (run / v["name"] / f"seed{seed}" / "checkpoint.pt").exists()
        acc = v["metrics"]["test_accuracy"]
        assert v["n"] == 2 and acc["values"] == values and acc["mean"] == pytest.approx(sum(values) / 2)
    assert (run / "table.md").read_text().count("|") > 10
    assert (run / "accuracy_vs_length.png").exists() and (run / "errorbars.png").exists()


def test_binary_addition_hand_set_adder_is_exact_on_every_8_bit_pair():
    _, s = run_quick("binary-addition")
    assert s["adder_pairs"] == 65536 and s["adder_exact_accuracy"] == 1.0  # checked against Python's +
    for m in ("rnn", "lstm"):
        assert 0.0 <= s[f"{m}_exact_accuracy_32bit"] <= s[f"{m}_bit_accuracy_32bit"] <= 1.0


def test_memorise_our_lstm_follows_torch_lstm():
    run, s = run_quick("memorise")
    # Same weights, same data, same optimiser: the curves may only differ by float32 rounding.
    assert s["max_loss_difference_first_20_steps"] < 1e-5, s  # measured: 5e-7
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["loss_ours"] == pytest.approx(records[0]["loss_torch"], abs=1e-5)
    assert records[-1]["loss_ours"] < records[0]["loss_ours"] / 2  # it learned something
    assert len(s["reconstruction_ours"]) == len(s["reconstruction_torch"]) == s["length"]


def test_gate_bias_opens_the_memory_gate_only():
    lstm = rnn.LSTM(3, 4, num_layers=2)
    before = {k: v.clone() for k, v in lstm.state_dict().items()}
    set_gate_bias(lstm, "lstm", 2.0)
    for layer in (0, 1):
        b_ih, b_hh = lstm.state_dict()[f"bias_ih_l{layer}"], lstm.state_dict()[f"bias_hh_l{layer}"]
        assert torch.equal(b_ih[4:8] + b_hh[4:8], torch.full((4,), 2.0))  # forget gate: block 2 of i|f|g|o
        for k in (f"bias_ih_l{layer}", f"bias_hh_l{layer}"):
            keep = torch.cat([before[k][:4], before[k][8:]])
            assert torch.equal(torch.cat([lstm.state_dict()[k][:4], lstm.state_dict()[k][8:]]), keep)
    with pytest.raises(ValueError, match="gated model"):
        RecurrentNet("rnn", 3, 4, 2, gate_bias=1.0)


def test_palindrome_sweep_starts_the_longest_runs_first(tmp_path):
    from scratchlab.experiments import EXPERIMENTS, load_all
    from scratchlab.experiments.palindrome_sweep import SweepConfig, plan
    from scratchlab.sweep.engine import expand
    load_all()
    assert "palindrome-sweep" in EXPERIMENTS
    jobs = expand(plan(SweepConfig(lengths=(5, 12, 8), models=("rnn", "gru"), seeds=2)), tmp_path, seed=0,
                  quick=True, device="cpu")
    assert [(j.variant, j.seed) for j in jobs][::2] == [("rnn-T12", 0), ("gru-T12", 0), ("rnn-T8", 0),
                                                         ("gru-T8", 0), ("rnn-T5", 0), ("gru-T5", 0)]
