"""`make bench`: run every benchmark in this folder, each in its own process, under the same malloc settings.

glibc returning large buffers to the OS and faulting them back costs a lot on these VMs; both sides of every
comparison run under the same settings (docs/design.md, speed plan).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"run_all.py", "common.py"}
# scripts run more than once, with these argument lists (each writes its own section of docs/benchmarks.md)
# (--isa avx2: the AVX2 variant against torch capped at AVX2, issue 18)
RUNS = {"rnn_speed.py": [[], ["--clock", "wall", "--threads", "2"], ["--isa", "avx2"]],
        "rnn_bf16.py": [[], ["--threads", "2"]]}


def main() -> int:
    env = {**os.environ, "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736"}
    failed = []
    for script in sorted(HERE.glob("*.py")):
        if script.name in SKIP or script.name.startswith("_"):
            continue
        for extra in RUNS.get(script.name, [[]]):
            print(f"== {' '.join([script.name, *extra])}", flush=True)
            if subprocess.call([sys.executable, str(script), *extra], env=env) != 0:
                failed.append(" ".join([script.name, *extra]))
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
