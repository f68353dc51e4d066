"""Shared benchmark machinery: interleaved timing, median of ratios, and docs/benchmarks.md sections.

The machines drift by 10-30% over minutes, so ours and the reference are timed in alternation
(A B A B ...) after a warm-up, each pair gives one ratio, and the median ratio is reported.
Each benchmark owns one section of docs/benchmarks.md between `<!-- BEGIN name -->` / `<!-- END name -->`
markers and rewrites only that section.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def time_once(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    t0 = clock()
    fn()
    return clock() - t0


def compare(ours: Callable[[], object], ref: Callable[[], object], *, repeats: int = 7,
            warmup: int = 2, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Time `ours` and `ref` interleaved; return medians of each and the median of per-pair ratios.

    clock: time.perf_counter (wall) by default; time.process_time (this process's CPU time) measures the work
    done rather than the share of the cores the scheduler gave us, which is the steadier number on a machine
    shared with other jobs (single-threaded runs only: with more threads it also counts threads spinning).
    """
    for _ in range(warmup):
        ours()
        ref()
    t_ours, t_ref, ratios = [], [], []
    for i in range(repeats):
        # alternate which goes first, so neither always runs on a warmer cache
        if i % 2:
            b, a = time_once(ref, clock), time_once(ours, clock)
        else:
            a, b = time_once(ours, clock), time_once(ref, clock)
        t_ours.append(a)
        t_ref.append(b)
        ratios.append(a / b)
    return {"ours_s": statistics.median(t_ours), "ref_s": statistics.median(t_ref),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's name and feature flags. The name gains x86's family and model where /proc/cpuinfo has them: AMD's
    model names ("AMD EPYC") say nothing of the generation, and Zen 3 (family 25 model 1) and Zen 5 (family 26)
    differ by 2x in peak."""
    name, flags, fields = "", set(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in fields:
                fields[key] = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    name = fields.get("model name", "")
    if name and "cpu family" in fields and "model" in fields:
        name = f"{name} family {fields['cpu family']} model {fields['model']}"
    return name, flags


def widest_isa() -> str:
    """'AVX-512', 'AVX2', 'NEON' or '' (the CPU's, whatever torch is limited to)."""
    flags = _cpuinfo()[1]
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "NEON" if "asimd" in flags else ""


def section_suffix() -> str:
    """A CPU-sensitive section's key suffix: '' on an AVX-512 CPU (the sections docs/benchmarks.md started with),
    else '_<isa>cpu', so that a machine of another kind adds its own sections beside them instead of replacing
    them."""
    isa = widest_isa()
    return "" if isa == "AVX-512" else f"_{(isa or 'other').lower().replace('-', '')}cpu"


def cpu() -> str:
    """The CPU's model name and widest vector ISA, e.g. 'AMD EPYC (x86_64, AVX-512)': numbers differ between CPUs."""
    name = _cpuinfo()[0]
    isa = widest_isa()
    forced = os.environ.get("ATEN_CPU_CAPABILITY")
    isa = f"{isa}, torch limited to {forced}" if forced else isa
    inner = ", ".join(x for x in (platform.machine(), isa) if x)
    return f"{name or platform.processor() or platform.machine()} ({inner})"


def machine() -> str:
    import numpy
    import torch

    malloc = "MALLOC_MMAP_MAX_=0" if os.environ.get("MALLOC_MMAP_MAX_") == "0" else "default malloc"
    return (f"{cpu()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), numpy {numpy.__version__}, Python {platform.python_version()}, "
            f"{malloc}")


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str, command: str | None = None) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (created if missing)."""
    if command is None:  # the script as the repository names it (benchmarks/x.py), not this machine's path
        script = Path(sys.argv[0]).resolve()
        here = Path(__file__).resolve().parent
        shown = f"benchmarks/{script.name}" if script.parent == here else sys.argv[0]
        command = " ".join(["python", shown, *sys.argv[1:]])
    stamp = time.strftime("%Y-%m-%d")
    section = (f"<!-- BEGIN {name} -->\n{body.rstrip()}\n\nCommand: `{command}`; measured {stamp} on {machine()}.\n"
               f"<!-- END {name} -->")
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(text)
