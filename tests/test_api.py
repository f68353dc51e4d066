"""The Python API (scratchlab.api): run, sweep, load_run and the Run's tables. Reference: the files the run
wrote (config.json, metrics.jsonl, summary.json), read directly."""

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import scratchlab
from scratchlab import experiments
from scratchlab.run.config import ConfigError
from scratchlab.run.rundir import RunDirError


@dataclass
class Inner:
    steps: int = 4


@dataclass
class APIConfig:
    base: Inner = field(default_factory=Inner)  # a section, so a dotted key: base.steps
    lr: float = 0.1  # above 1 the run fails (a failed run of a sweep)


def apitoy(cfg: APIConfig, ctx):
    if cfg.lr > 1:
        raise ValueError(f"lr {cfg.lr} too large")
    for i in range(cfg.base.steps):
        ctx.run.log(i, "train", loss=cfg.lr / (i + 1))
    ctx.run.log(cfg.base.steps - 1, "eval", loss=cfg.lr)
    return {"value": cfg.lr * cfg.base.steps + ctx.seed}


@pytest.fixture(autouse=True)
def api_registered():
    experiments.load_all()
    experiments.experiment("apitoy", APIConfig, help="api toy", quick={"base.steps": 2})(apitoy)
    yield
    del experiments.EXPERIMENTS["apitoy"]


def test_run_takes_keywords_and_dotted_overrides_and_returns_its_files():
    r = scratchlab.run("apitoy", out="r", seed=3, lr=0.5, overrides={"base.steps": 3}, progress=False)
    assert r.path == Path("r") and (r.experiment, r.seed) == ("apitoy", 3)
    assert r.config == json.loads(Path("r/config.json").read_text())["config"] == {"base": {"steps": 3}, "lr": 0.5}
    assert r.summary == json.loads(Path("r/summary.json").read_text()) and r.summary["value"] == 4.5
    records = [json.loads(line) for line in Path("r/metrics.jsonl").read_text().splitlines()]
    m = r.metrics
    assert list(m.columns) == ["step", "split", "time", "elapsed", "loss"]
    assert m[["step", "split", "time", "loss"]].to_dict("records") == records  # a row per record, as logged
    assert m["elapsed"].iloc[0] == 0 and m["elapsed"].is_monotonic_increasing
    argv = json.loads(Path("r/meta.json").read_text())["argv"]
    assert argv == ["scratchlab.run('apitoy', quick=False, seed=3, overrides={'base.steps': 3, 'lr': 0.5})"]
    assert r.runs == [] and r.figures == [] and not r.is_sweep
    with pytest.raises(ValueError, match="r: a single run, not a sweep"):
        _ = r.variants


def test_overrides_are_checked_as_on_the_command_line():
    with pytest.raises(ValueError, match="lr: given both as a keyword and in overrides"):
        scratchlab.run("apitoy", lr=0.2, overrides={"lr": 0.3})
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        scratchlab.run("apitoy", nope=1)
    assert not Path("runs").exists()  # refused before a directory was made


def test_sweep_returns_its_variants_table_runs_and_every_runs_metrics():
    s = scratchlab.sweep("apitoy", grid={"lr": [0.1, 0.2]}, seeds=2, quick=True, out="sw", executor="serial")
    assert s.is_sweep and s.config == json.loads(Path("sw/sweep.json").read_text())
    assert [str(r.path) for r in s.runs] == ["sw/lr=0.1/seed0", "sw/lr=0.1/seed1", "sw/lr=0.2/seed0",
                                             "sw/lr=0.2/seed1"]
    v = s.variants
    assert list(v.index) == ["lr=0.1", "lr=0.2"] and list(v["lr"]) == [0.1, 0.2] and list(v["n"]) == [2, 2]
    summary = json.loads(Path("sw/summary.json").read_text())
    stats = summary["variants"][1]["metrics"]["value"]
    assert v.loc["lr=0.2", ["value_mean", "value_std", "value_ci95_low", "value_ci95_high"]].tolist() == \
        [stats["mean"], stats["std"], stats["ci95_low"], stats["ci95_high"]]
    m = s.metrics
    assert list(m.columns[:2]) == ["variant", "seed"] and len(m) == 4 * 3  # 2 train + 1 eval record per run
    assert m.groupby(["variant", "seed"]).size().to_dict() == {(f"lr={lr}", k): 3 for lr in (0.1, 0.2) for k in (0, 1)}
    assert scratchlab.load_run("sw").variants.equals(v)


def test_a_sweep_with_failed_runs_warns_and_still_returns_the_rest():
    with pytest.warns(UserWarning, match=r"sw: 1 of 2 runs failed; their errors are in summary.json"):
        s = scratchlab.sweep("apitoy", grid={"lr": [0.1, 5]}, out="sw", executor="serial")
    assert s.variants[["n", "failed"]].to_dict("list") == {"n": [1, 0], "failed": [0, 1]}


def test_load_run_reads_runs_from_before_records_had_a_time_and_refuses_other_folders():
    scratchlab.run("apitoy", out="old", progress=False)
    lines = [json.loads(line) for line in Path("old/metrics.jsonl").read_text().splitlines()]
    Path("old/metrics.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "time"}) + "\n"
                                                 for r in lines))
    m = scratchlab.load_run("old").metrics
    assert list(m.columns) == ["step", "split", "time", "elapsed", "loss"] and m["time"].isna().all()
    Path("plain").mkdir()
    with pytest.raises(RunDirError, match="plain: not a scratchlab run directory"):
        scratchlab.load_run("plain")
    with pytest.raises(FileNotFoundError, match="missing: no such run directory"):
        scratchlab.load_run("missing")


def test_import_scratchlab_loads_nothing_heavy_and_run_stays_a_package():
    code = ("import sys, inspect, scratchlab; heavy = [m for m in ('torch', 'numpy', 'pandas', 'scratchlab.api') "
            "if m in sys.modules]; import scratchlab.run.rundir as rd; "
            "print(heavy, scratchlab.run.rundir is rd, 'quick' in inspect.signature(scratchlab.sweep).parameters)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True", "True"]
