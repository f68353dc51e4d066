"""What a sweep's executor costs per run, against the run itself (issue 12).

A sweep of `--quick` palindrome runs (one setting, N seeds) goes through each executor with one worker, so runs
finish one after another. For each run: the run itself is its summary's `wall_seconds` (the experiment's
function); the time it costs the sweep is the gap between its completion and the previous one's (the first run's
gap starts at the sweep's start, so it carries the executor's start-up, reported apart). Overhead per run = gap -
the run itself: claiming the directory, writing config/meta/summary, seeding, and for the pool and Ray the
dispatch and result transfer. Medians over the runs after the first.

    python benchmarks/sweep_overhead.py [--runs 20] [--no-write]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, write_section  # noqa: E402
from scratchlab.experiments import Plan  # noqa: E402
from scratchlab.sweep.engine import expand  # noqa: E402
from scratchlab.sweep.executors import execute  # noqa: E402


def measure(kind: str, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        jobs = expand(Plan("palindrome", {"default": {}}, seeds=runs), Path(tmp), seed=0, quick=True, device="cpu")
        t0 = last = time.perf_counter()
        gaps, walls = [], []
        for _, outcome in execute(jobs, kind=kind, workers=1):
            now = time.perf_counter()
            assert outcome["status"] == "ok", outcome["error"]
            gaps.append(now - last)
            walls.append(outcome["summary"]["wall_seconds"])
            last = now
        total = last - t0
    over = [g - w for g, w in zip(gaps[1:], walls[1:], strict=True)]
    return {"run_s": statistics.median(walls[1:]), "overhead_s": statistics.median(over),
            "overhead_max_s": max(over), "startup_s": gaps[0] - walls[0], "total_s": total}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    kinds = ["serial", "local"] + (["ray"] if importlib.util.find_spec("ray") else [])
    rows = []
    for kind in kinds:
        m = measure(kind, args.runs)
        rows.append([kind, m["run_s"], m["overhead_s"], m["overhead_max_s"], m["overhead_s"] / m["run_s"],
                     m["startup_s"], m["total_s"]])
        print(kind, {k: round(v, 3) for k, v in m.items()}, flush=True)
    table = markdown_table(["executor", "run itself (s, median)", "overhead per run (s, median)", "overhead max (s)",
                            "overhead / run", "start-up (s, first run)", f"all {args.runs} runs (s)"], rows)
    body = (f"## Sweep executors: overhead per run\n\n`--quick` palindrome runs, {args.runs} seeds, one worker, "
            f"one after another; medians over runs 2..{args.runs}.\n\n{table}")
    if not args.no_write:
        write_section("sweep_overhead", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
