"""TensorBoard event files (run/events.py): written as a run logs, rewritten on resume, and by `scratchlab export`.
Reference: metrics.jsonl, read back from the events with tensorboard's own readers (EventAccumulator, as
`tensorboard --logdir` does, and the raw EventFileLoader)."""

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from scratchlab import experiments
from scratchlab.cli import main
from scratchlab.run import events
from scratchlab.train.loop import fit

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="tensorboard is not installed (pip install 'scratchlab[tensorboard]'); its event files are not tested")


@dataclass
class TBConfig:
    steps: int = 20
    lr: float = 0.1
    interrupt_at: int = -1  # Ctrl-C at this step


def tbtoy(cfg: TBConfig, ctx):
    """Fit y = 2x with SGD, evaluating every 5 steps: two splits, two metrics each."""
    x = torch.linspace(-1, 1, 32).unsqueeze(1)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)

    def step(i):
        if i == cfg.interrupt_at:
            raise KeyboardInterrupt
        loss = torch.nn.functional.mse_loss(model(x), 2 * x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "weight": model.weight.item()}

    def evaluate(i):
        with torch.no_grad():
            return {"loss": torch.nn.functional.mse_loss(model(x), 2 * x).item(), "bias": model.bias.item()}

    fit(step, cfg.steps, ctx, state={"model": model, "optimizer": opt}, eval_fn=evaluate, eval_every=5)
    return {"weight": model.weight.item()}


@pytest.fixture
def tb_registered():
    experiments.load_all()
    experiments.experiment("tbtoy", TBConfig, help="tensorboard toy", quick={"steps": 10})(tbtoy)
    yield
    del experiments.EXPERIMENTS["tbtoy"]


@pytest.fixture
def no_tensorboard(monkeypatch):
    """As if tensorboard were not installed (events.py looks it up once and keeps the answer)."""
    monkeypatch.setattr(events, "_TRIED", True)
    monkeypatch.setattr(events, "_MODULES", None)


def expected(run: Path) -> dict[str, list[tuple[int, float, float]]]:
    """metrics.jsonl as (step, value as float32, wall time) per tag "<split>/<metric>"."""
    out: dict[str, list] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        for k, v in r.items():
            if k not in ("step", "split", "time"):
                out.setdefault(f"{r['split']}/{k}", []).append((r["step"], float(np.float32(v)), r["time"]))
    return out


def accumulated(run: Path) -> dict[str, list[tuple[int, float, float]]]:
    """What TensorBoard shows for `run`: every scalar of every event file in it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return {tag: [(e.step, e.value, e.wall_time) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def raw(run: Path) -> list[tuple[int, str, float]]:
    """Every scalar in the run's event files, duplicates included: the records as stored, no reader's clean-up."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    out = []
    for path in sorted(run.glob("events.out.tfevents.*")):
        for data in RawEventFileLoader(str(path)).Load():
            event = Event.FromString(data)
            out += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
    return out


def event_files(run: str | Path) -> list[str]:
    return sorted(p.name for p in Path(run).glob("events.out.tfevents.*"))


@needs_tensorboard
def test_a_run_writes_events_as_it_logs_and_they_equal_metrics_jsonl(tb_registered):
    assert main(["run", "tbtoy", "--out", "r"]) == 0
    assert len(event_files("r")) == 1
    shown = accumulated(Path("r"))
    assert sorted(shown) == ["eval/bias", "eval/loss", "train/loss", "train/weight"]
    assert shown == expected(Path("r"))  # steps, values (float32, as TensorBoard keeps them), wall times
    assert [s for s, _, _ in shown["eval/loss"]] == [4, 9, 14, 19]


@needs_tensorboard
def test_resume_rewrites_the_events_so_no_step_appears_twice(tb_registered):
    assert main(["run", "tbtoy", "--out", "cut", "--set", "interrupt_at=12"]) == 130  # last.pt at step 9
    cfg = json.loads(Path("cut/config.json").read_text())
    cfg["config"]["interrupt_at"] = -1
    Path("cut/config.json").write_text(json.dumps(cfg))
    assert main(["run", "tbtoy", "--out", "cut", "--resume"]) == 0
    want = [(s, tag, v) for tag, points in expected(Path("cut")).items() for s, v, _ in points]
    assert sorted(raw(Path("cut"))) == sorted(want)  # steps 10, 11 logged before the Ctrl-C: once, not twice
    assert accumulated(Path("cut")) == expected(Path("cut"))


@needs_tensorboard
def test_export_writes_the_events_of_a_run_made_without_tensorboard(tb_registered, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(events, "_TRIED", True)
        m.setattr(events, "_MODULES", None)
        assert main(["run", "tbtoy", "--out", "r"]) == 0
    assert event_files("r") == []
    assert main(["export", "r", "--tensorboard"]) == 0
    assert accumulated(Path("r")) == expected(Path("r"))
    assert main(["export", "r", "--tensorboard"]) == 0  # again: the file is replaced, not added to
    assert len(event_files("r")) == 1 and accumulated(Path("r")) == expected(Path("r"))


@needs_tensorboard
def test_export_of_a_sweep_writes_every_run_and_not_the_sweeps_own_records(tb_registered, monkeypatch, capsys):
    with monkeypatch.context() as m:
        m.setattr(events, "_TRIED", True)
        m.setattr(events, "_MODULES", None)
        assert main(["sweep", "tbtoy", "--grid", "lr=0.1,0.2", "--seeds", "2", "--executor", "serial",
                     "--out", "sw", "--quick"]) == 0
    capsys.readouterr()
    assert main(["export", "sw", "--tensorboard"]) == 0
    assert "wrote TensorBoard event files for 4 runs" in capsys.readouterr().out
    runs = sorted(p.parent for p in Path("sw").glob("*/seed*/config.json"))
    assert len(runs) == 4
    for run in runs:
        assert len(event_files(run)) == 1 and accumulated(run) == expected(run)
    assert event_files("sw") == []  # its metrics.jsonl lists the runs (split "run"), not a training curve


@needs_tensorboard
def test_export_of_a_run_from_before_records_had_a_time(tb_registered):
    assert main(["run", "tbtoy", "--out", "old", "--quick"]) == 0
    lines = [json.loads(line) for line in Path("old/metrics.jsonl").read_text().splitlines()]
    Path("old/metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "time"}) + "\n"
                                                 for r in lines))
    assert main(["export", "old", "--tensorboard"]) == 0
    mtime = Path("old/metrics.jsonl").stat().st_mtime
    shown = accumulated(Path("old"))
    assert [s for s, _, _ in shown["train/loss"]] == list(range(10))
    times = [t for points in shown.values() for _, _, t in points]
    assert times == pytest.approx([mtime] * len(times))


def test_without_tensorboard_a_run_is_as_before_and_export_says_what_to_install(tb_registered, no_tensorboard,
                                                                                   capsys):
    assert main(["run", "tbtoy", "--out", "r"]) == 0
    assert event_files("r") == []
    record = json.loads(Path("r/metrics.jsonl").read_text().splitlines()[0])
    assert list(record) == ["step", "split", "time", "loss", "weight"]
    capsys.readouterr()
    assert main(["export", "r", "--tensorboard"]) == 1
    assert "the tensorboard package is not installed: pip install 'scratchlab[tensorboard]'" in \
        capsys.readouterr().err


def test_export_needs_a_format_and_a_run_directory(capsys):
    Path("plain").mkdir()
    assert main(["export", "plain"]) == 1
    assert "export: say which format to write: --tensorboard" in capsys.readouterr().err
    if events.available():
        assert main(["export", "plain", "--tensorboard"]) == 1
        assert "plain: not a scratchlab run or sweep directory (no config.json or sweep.json)" in \
            capsys.readouterr().err
