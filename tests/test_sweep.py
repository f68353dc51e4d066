"""The sweep engine (issue 12). References: hand-computed statistics (the t quantile from a printed table), an
uninterrupted sweep for a resumed one, the local pool for the Ray executor, and a toy experiment whose summary
is a known function of its seed."""

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from scratchlab import experiments
from scratchlab.cli import main
from scratchlab.experiments import Plan
from scratchlab.runner import parse_grid
from scratchlab.sweep import stats
from scratchlab.sweep.executors import plan_workers


# ------------------------------------------------------------------------------------------------ statistics
def test_summarize_against_hand_computed_values():
    s = stats.summarize([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 3)  # 1.2910
    half = 3.182446 * std / 2  # t_{0.975, 3} = 3.182 (any t table), sqrt(4) = 2
    assert s["n"] == 4 and s["mean"] == 2.5 and s["std"] == pytest.approx(std, rel=1e-12)
    assert s["ci95_low"] == pytest.approx(2.5 - half, abs=1e-5)
    assert s["ci95_high"] == pytest.approx(2.5 + half, abs=1e-5)
    assert (s["min"], s["max"], s["values"]) == (1.0, 4.0, [1.0, 2.0, 3.0, 4.0])
    five = stats.summarize([0.90, 0.91, 0.89, 0.92, 0.88])  # t_{0.975, 4} = 2.776
    assert five["ci95_high"] - five["mean"] == pytest.approx(2.776445 * five["std"] / math.sqrt(5), rel=1e-6)


def test_one_value_has_no_spread_and_fields_must_be_numbers_in_every_run():
    assert stats.summarize([0.7]) | {"values": None} == {"n": 1, "mean": 0.7, "std": None, "ci95_low": None,
                                                         "ci95_high": None, "min": 0.7, "max": 0.7, "values": None}
    runs = [{"acc": 0.5, "ok": True, "name": "a", "nan": float("nan")}, {"acc": 1.0, "ok": False, "name": "b",
                                                                         "nan": 1.0}]
    agg = stats.aggregate(runs)
    assert list(agg) == ["acc", "ok"] and agg["ok"]["mean"] == 0.5 and agg["acc"]["values"] == [0.5, 1.0]


def test_grid_parsing_and_workers():
    assert parse_grid(["model=rnn,gru", "hidden=(64,32),(128,)"]) == {"model": ["rnn", "gru"],
                                                                      "hidden": ["(64,32)", "(128,)"]}
    with pytest.raises(ValueError, match="expected KEY=V1,V2"):
        parse_grid(["model"])
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        n, threads = plan_workers(10)
        assert n * threads <= min(2, len(os.sched_getaffinity(0))) and plan_workers(1)[0] == 1
        torch.set_num_threads(1)  # --threads 1: one worker, one thread
        assert plan_workers(10) == (1, 1) and plan_workers(10, workers=2) == (2, 1)
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ a toy sweep
@dataclass
class ToyConfig:
    scale: float = 1.0
    fail: bool = False


def toy(cfg: ToyConfig, ctx):
    if cfg.fail:
        raise RuntimeError("this variant always fails")
    return {"value": cfg.scale * ctx.seed, "even": ctx.seed % 2 == 0, "label": "text is not aggregated"}


@pytest.fixture
def toy_registered():
    experiments.load_all()
    experiments.experiment("toy-sweep", ToyConfig, help="toy")(toy)
    yield
    del experiments.EXPERIMENTS["toy-sweep"]


def test_sweep_aggregates_every_numeric_field_per_variant(toy_registered, capsys):
    assert main(["sweep", "toy-sweep", "--grid", "scale=1,10", "--seeds", "3", "--seed", "4",
                 "--executor", "serial", "--out", "sw"]) == 0
    s = json.load(open("sw/summary.json"))
    assert s["experiment"] == "toy-sweep" and s["seeds"] == 3 and s["failed"] == 0
    names = [v["name"] for v in s["variants"]]
    assert names == ["scale=1", "scale=10"]
    ten = s["variants"][1]
    assert ten["overrides"] == {"scale": "10"} and ten["n"] == 3 and ten["failed"] == 0
    assert ten["metrics"]["value"]["values"] == [40.0, 50.0, 60.0] and ten["metrics"]["value"]["mean"] == 50.0
    assert ten["metrics"]["value"]["std"] == pytest.approx(10.0)
    assert ten["metrics"]["even"]["values"] == [1.0, 0.0, 1.0]
    assert "label" not in ten["metrics"]
    assert sorted(p.name for p in Path("sw/scale=10").iterdir()) == ["seed4", "seed5", "seed6"]
    assert json.load(open("sw/scale=10/seed5/config.json"))["seed"] == 5  # each an ordinary run directory
    table = open("sw/table.md").read()
    assert "| scale=10 | 3 | 0 | 50 ± 10 [25.16, 74.84] |" in table  # 50 +- 4.303 * 10 / sqrt(3)
    assert Path("sw/errorbars.png").stat().st_size > 0
    assert "3/6" in capsys.readouterr().err  # one line per finished run


def test_a_failing_variant_loses_nothing_else(toy_registered, capsys):
    assert main(["sweep", "toy-sweep", "--grid", "fail=false,true", "--seeds", "2", "--executor", "serial",
                 "--out", "sw"]) == 1
    assert "2 of 4 runs failed" in capsys.readouterr().err
    s = json.load(open("sw/summary.json"))
    good, bad = s["variants"]
    assert good["n"] == 2 and good["failed"] == 0 and good["metrics"]["value"]["values"] == [0.0, 1.0]
    assert bad["n"] == 0 and bad["failed"] == 2 and bad["metrics"] == {}
    assert bad["errors"] == [{"seed": 0, "error": "RuntimeError: this variant always fails"},
                             {"seed": 1, "error": "RuntimeError: this variant always fails"}]
    assert "this variant always fails" in open("sw/fail=true/seed1/error.txt").read()


def test_resume_skips_complete_runs_and_may_add_seeds(toy_registered, capsys):
    args = ["sweep", "toy-sweep", "--grid", "scale=2", "--executor", "serial", "--out", "sw"]
    assert main([*args, "--seeds", "2"]) == 0
    first = os.stat("sw/scale=2/seed0/summary.json").st_mtime_ns
    assert main([*args, "--seeds", "3", "--resume"]) == 0
    assert "2/3 runs already complete; running 1" in capsys.readouterr().err
    assert os.stat("sw/scale=2/seed0/summary.json").st_mtime_ns == first
    assert json.load(open("sw/summary.json"))["variants"][0]["metrics"]["value"]["values"] == [0.0, 2.0, 4.0]
    assert main([*args, "--seeds", "3", "--resume", "--set", "fail=true"]) == 2  # another sweep: refused
    assert "a resume must ask for the same one" in capsys.readouterr().err
    assert main([*args, "--seeds", "3"]) == 1  # not a resume: the folder is in use
    assert "sw: holds a run" in capsys.readouterr().err


def test_registered_multi_run_experiment_is_a_plan(toy_registered):
    @dataclass
    class Multi:
        seeds: int = 2

    experiments.sweep_experiment("toy-multi", Multi, help="two scales")(
        lambda cfg: Plan("toy-sweep", {"small": {"scale": 1.0}, "big": {"scale": 3.0}}, seeds=cfg.seeds))
    try:
        assert main(["run", "toy-multi", "--set", "seeds=3", "--seed", "1", "--executor", "serial",
                     "--out", "m"]) == 0
        s = json.load(open("m/summary.json"))
        assert [(v["name"], v["n"], v["metrics"]["value"]["values"]) for v in s["variants"]] == \
            [("small", 3, [1.0, 2.0, 3.0]), ("big", 3, [3.0, 6.0, 9.0])]
        assert json.load(open("m/config.json"))["experiment"] == "toy-multi"
        assert main(["run", "toy-multi", "--resume", "--set", "seeds=4", "--executor", "serial", "--out", "m"]) == 0
        assert json.load(open("m/summary.json"))["variants"][1]["n"] == 4
    finally:
        del experiments.EXPERIMENTS["toy-multi"]


# ------------------------------------------------------------------------------------------------ real sweeps
QUICK_SWEEP = ["sweep", "palindrome", "--quick", "--grid", "model=rnn,gru", "--seeds", "2", "--threads", "1"]


def _variants(path: Path) -> list[dict]:
    """The aggregated numbers, without the wall times (which differ between any two runs)."""
    out = []
    for v in json.load(open(path / "summary.json"))["variants"]:
        v["metrics"].pop("wall_seconds")
        out.append(v)
    return out


def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scratchlab", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TQDM_DISABLE": "1"})


def test_interrupted_sweep_resumed_gives_the_uninterrupted_table(tmp_path):
    """Ctrl-C in the middle of the second run: the first is kept, the second continues from its last.pt."""
    cut = _cli(*QUICK_SWEEP, "--executor", "serial", "--out", "cut", cwd=tmp_path)
    second = tmp_path / "cut/model=rnn/seed1/metrics.jsonl"
    deadline = time.monotonic() + 180
    while (not second.exists() or len(second.read_text().splitlines()) < 25) and time.monotonic() < deadline:
        assert cut.poll() is None, cut.stderr.read()
        time.sleep(0.02)
    cut.send_signal(signal.SIGINT)
    _, err = cut.communicate(timeout=120)
    assert cut.returncode == 130, err
    assert (tmp_path / "cut/model=rnn/seed0/summary.json").exists()
    assert not (tmp_path / "cut/model=rnn/seed1/summary.json").exists()
    assert main([*QUICK_SWEEP, "--executor", "serial", "--out", "cut", "--resume"]) == 0
    assert main([*QUICK_SWEEP, "--executor", "serial", "--out", "full"]) == 0
    assert _variants(tmp_path / "cut") == _variants(tmp_path / "full")


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that does not reap it counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the test reads processes from /proc")
def test_a_sweep_killed_alone_stops_its_workers_and_they_save(tmp_path):
    """SIGTERM to the sweep's process only (`kill PID`, a scheduler): its pool worker stops at a step boundary,
    saves and ends, instead of training on as an orphan through the runs queued for it (it did: minutes, writing
    into the folders --resume wants)."""
    args = ["sweep", "palindrome", "--seeds", "3", "--executor", "local", "--workers", "1", "--set", "model=rnn",
            "--set", "length=60", "--set", "steps=100000", "--set", "eval_every=50", "--no-progress", "--out", "s"]
    log = open(tmp_path / "stderr.txt", "w+")  # a file, not a pipe: a pipe stays open while any worker lives
    sweep = subprocess.Popen([sys.executable, "-m", "scratchlab", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=log, env={**os.environ, "TQDM_DISABLE": "1"})
    metrics = tmp_path / "s/default/seed0/metrics.jsonl"
    deadline = time.monotonic() + 180
    while (not metrics.exists() or len(metrics.read_text().splitlines()) < 3) and time.monotonic() < deadline:
        assert sweep.poll() is None, (tmp_path / "stderr.txt").read_text()
        time.sleep(0.05)
    workers = [c for c in _children(sweep.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
    assert workers, "the pool's worker is running"
    sweep.send_signal(signal.SIGTERM)
    sweep.wait(timeout=60)
    deadline = time.monotonic() + 60
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers)), "a worker outlived its sweep"
    assert (tmp_path / "s/default/seed0/last.pt").exists(), "the worker saved where it stopped"
    assert not (tmp_path / "s/default/seed1").exists(), "and took none of the runs queued for it"


def test_local_pool_gives_the_serial_numbers():
    assert main([*QUICK_SWEEP, "--executor", "local", "--workers", "2", "--out", "local"]) == 0
    assert main([*QUICK_SWEEP, "--executor", "serial", "--out", "serial"]) == 0
    assert _variants(Path("local")) == _variants(Path("serial"))


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install 'scratchlab[ray]'; CI installs it)")
def test_ray_executor_gives_the_local_pool_numbers(tmp_path):
    """Ray runs in a subprocess of its own (ray.init inside a pytest-xdist worker is fragile)."""
    ray = _cli(*QUICK_SWEEP, "--executor", "ray", "--workers", "2", "--out", "ray", cwd=tmp_path)
    _, err = ray.communicate(timeout=600)
    assert ray.returncode == 0, err
    assert main([*QUICK_SWEEP, "--executor", "local", "--workers", "2", "--out", "local"]) == 0
    assert _variants(tmp_path / "ray") == _variants(tmp_path / "local")
    assert not (tmp_path / "ray/.sweep-token").exists()
