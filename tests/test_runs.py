"""Run machinery: run directories, the loop's NaN guard and resume, the CLI. Reference: an uninterrupted run."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from scratchlab import experiments
from scratchlab.cli import main
from scratchlab.train.loop import NonFiniteLoss, fit


@dataclass
class ToyConfig:
    steps: int = 30
    lr: float = 0.1
    interrupt_at: int = -1  # raise KeyboardInterrupt at this step (simulates Ctrl-C)


def toy(cfg: ToyConfig, ctx):
    """Fit y = 3x - 1 with SGD; a full experiment in miniature."""
    g = torch.Generator().manual_seed(ctx.seed)
    x = torch.randn(64, 1, generator=g)
    y = 3 * x - 1
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)

    def step(i):
        if i == cfg.interrupt_at:
            raise KeyboardInterrupt
        noise = 0.01 * torch.randn(64, 1)  # uses the global RNG, so resume must restore it
        loss = torch.nn.functional.mse_loss(model(x + noise), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    def evaluate(i):
        with torch.no_grad():
            return {"loss": torch.nn.functional.mse_loss(model(x), y).item()}

    fit(step, cfg.steps, ctx, state={"model": model, "optimizer": opt}, eval_fn=evaluate, eval_every=5)
    return {"weight": model.weight.item(), "bias": model.bias.item(), "final_loss": evaluate(0)["loss"]}


@pytest.fixture
def toy_registered():
    experiments.load_all()
    experiments.experiment("toy", ToyConfig, help="toy regression", quick={"steps": 10})(toy)
    yield
    del experiments.EXPERIMENTS["toy"]


def test_run_writes_run_directory(toy_registered, tmp_path):
    assert main(["run", "toy", "--out", "r", "--seed", "3", "--set", "lr=0.2"]) == 0
    run = tmp_path / "r"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg == {"experiment": "toy", "seed": 3, "device": "cpu", "quick": False,
                   "config": {"steps": 30, "lr": 0.2, "interrupt_at": -1}}
    meta = json.loads((run / "meta.json").read_text())
    assert meta["versions"]["torch"] == torch.__version__ and "argv" in meta
    assert meta["torch_threads"] == torch.get_num_threads()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(30))
    assert [r["step"] for r in records if r["split"] == "eval"] == [4, 9, 14, 19, 24, 29]
    summary = json.loads((run / "summary.json").read_text())
    assert abs(summary["weight"] - 3) < 0.05 and abs(summary["bias"] + 1) < 0.05  # the known answer
    assert (run / "checkpoint.pt").exists() and (run / "last.pt").exists()


def test_same_seed_same_numbers(toy_registered):
    main(["run", "toy", "--out", "a", "--seed", "1"])
    main(["run", "toy", "--out", "b", "--seed", "1"])
    main(["run", "toy", "--out", "c", "--seed", "2"])
    a, b, c = (json.load(open(f"{d}/summary.json")) for d in "abc")
    assert a["weight"] == b["weight"] and a["final_loss"] == b["final_loss"]
    assert a["final_loss"] != c["final_loss"]


def test_resume_after_interrupt_equals_uninterrupted_run(toy_registered):
    main(["run", "toy", "--out", "full"])
    assert main(["run", "toy", "--out", "cut", "--set", "interrupt_at=17"]) == 130
    cfg = json.load(open("cut/config.json"))
    cfg["config"]["interrupt_at"] = -1  # the resumed run must not be interrupted again
    open("cut/config.json", "w").write(json.dumps(cfg))
    assert main(["run", "toy", "--out", "cut", "--resume"]) == 0
    full, cut = json.load(open("full/summary.json")), json.load(open("cut/summary.json"))
    # resumed from the eval at step 14: same model, optimiser and RNG state => same numbers
    assert cut["weight"] == pytest.approx(full["weight"], abs=1e-6)
    steps = [json.loads(line)["step"] for line in open("cut/metrics.jsonl") if '"train"' in line]
    assert steps == list(range(30)), "metrics after the checkpoint are replaced, not duplicated"


def test_nan_loss_stops_with_message(toy_registered, capsys):
    code = main(["run", "toy", "--out", "nan", "--set", "lr=1e30", "--set", "steps=40"])
    err = capsys.readouterr().err
    assert code == 1 and ("loss = nan" in err or "loss = inf" in err)
    assert "training stopped" in err


def test_fit_raises_non_finite(tmp_path):
    from scratchlab.run.rundir import RunDir
    from scratchlab.train.loop import Context

    ctx = Context(run=RunDir(tmp_path / "x", create=True), device=torch.device("cpu"), progress=False)
    m = torch.nn.Linear(1, 1)
    with pytest.raises(NonFiniteLoss, match=r"loss = nan at step 3"):
        fit(lambda i: {"loss": float("nan") if i == 3 else 1.0}, 10, ctx, state={"model": m})


def test_cli_errors_are_clear(toy_registered, capsys):
    assert main(["run", "toy", "--set", "lrr=1"]) == 2
    assert "unknown key 'lrr'" in capsys.readouterr().err
    assert main(["run", "nosuch"]) == 1
    assert "no experiment named 'nosuch'" in capsys.readouterr().err
    assert main(["run", "toy", "--device", "cuda"]) == 1 or torch.cuda.is_available()


def test_reproduce_writes_report(toy_registered, monkeypatch):
    assert main(["reproduce", "--quick", "--only", "toy", "--out", "rep", "--executor", "serial"]) == 0
    html = open("rep/report.html").read()
    assert "toy regression" in html and "weight" in html
    assert json.load(open("rep/toy/default/seed1/config.json"))["config"]["steps"] == 10  # --quick applied
    summary = json.load(open("rep/toy/summary.json"))
    assert summary["seeds"] == 2 and summary["variants"][0]["n"] == 2  # --quick: 2 seeds
    Path("rep/report.html").unlink()
    assert main(["reproduce", "--report-only", "--out", "rep"]) == 0  # the report again, nothing rerun
    assert "toy regression" in open("rep/report.html").read()
    assert json.load(open("rep/toy/summary.json")) == summary


def test_list_shows_registry(toy_registered, capsys):
    assert main(["list"]) == 0
    assert "toy regression" in capsys.readouterr().out


def test_threads_option_sets_torch_threads(toy_registered):
    before = torch.get_num_threads()
    try:
        assert main(["run", "toy", "--out", "t", "--threads", "2", "--set", "steps=2"]) == 0
        assert json.load(open("t/meta.json"))["torch_threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_resume_with_more_steps_extends_the_run(toy_registered):
    """Reference: one uninterrupted 30-step run; 15 steps, then resumed with steps=30, must match it."""
    main(["run", "toy", "--out", "full"])
    main(["run", "toy", "--out", "short", "--set", "steps=15"])
    assert main(["run", "toy", "--out", "short", "--resume", "--set", "steps=30"]) == 0
    full, short = json.load(open("full/summary.json")), json.load(open("short/summary.json"))
    assert short["weight"] == pytest.approx(full["weight"], abs=1e-6)
    assert json.load(open("short/config.json"))["config"]["steps"] == 30
