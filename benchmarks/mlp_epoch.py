"""One training epoch of an MLP in scratchlab.autograd against the same MLP in PyTorch, same process.

    python benchmarks/mlp_epoch.py [--reps 5] [--steps 600] [--threads 1] [--write docs/benchmarks.md]

60,000 Fashion-MNIST images (Debian's files when present, else random pixels: the work is the same), batch 100,
plain SGD (lr 0.1), float32, for 784-256-10 and 784-512-256-10. Per repetition both engines run one epoch
from the same weights, in alternating order (the machine drifts, so sides are interleaved); the figure is the
median of the per-repetition ratios autograd / torch (< 1 means scratchlab.autograd is faster).
Both sides get the same number of BLAS threads (`--threads`, default 1): on a shared 2-core machine two
threads per side mostly measure the neighbours.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def _threads_from_argv() -> str:
    """BLAS thread counts must be set before numpy/torch load their BLAS, i.e. before argparse runs."""
    argv = sys.argv[1:]
    return argv[argv.index("--threads") + 1] if "--threads" in argv else "1"


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scratchlab.autograd import Tensor, nn, optim  # noqa: E402
from scratchlab.autograd import functional as F  # noqa: E402

SIZES = {"784-256-10": [784, 256, 10], "784-512-256-10": [784, 512, 256, 10]}


def load_data(n: int = 60000) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from scratchlab.data.registry import load

        ds = load("fashion-mnist", "train", allow_download=False)
        x = (ds.images.reshape(len(ds), -1) / np.float32(255)).astype(np.float32)
        return x[:n], ds.labels[:n], ds.source
    except FileNotFoundError:
        rng = np.random.default_rng(0)
        return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n), "random pixels"


def ours_epoch(model, x, y, steps: int, batch: int, lr: float) -> float:
    opt = optim.SGD(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    for i in range(steps):
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        loss = F.cross_entropy(model(Tensor(xb)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def torch_epoch(model, x, y, steps: int, batch: int, lr: float) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    for i in range(steps):
        xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def torch_twin(ours: nn.Sequential) -> torch.nn.Sequential:
    layers = [torch.nn.Linear(m.in_features, m.out_features) if isinstance(m, nn.Linear) else torch.nn.ReLU()
              for m in ours.layers]
    twin = torch.nn.Sequential(*layers)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return twin


def bench(name: str, x, y, reps: int, steps: int, batch: int = 100, lr: float = 0.1) -> dict:
    np.random.seed(0)
    ours = nn.mlp(SIZES[name])
    twin = torch_twin(ours)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    ours_epoch(ours, x, y, 20, batch, lr)  # warm-up: caches, allocator, BLAS threads
    torch_epoch(twin, tx, ty, 20, batch, lr)
    times_ours, times_torch, ratios = [], [], []
    for r in range(reps):
        if r % 2 == 0:
            a = ours_epoch(ours, x, y, steps, batch, lr)
            b = torch_epoch(twin, tx, ty, steps, batch, lr)
        else:
            b = torch_epoch(twin, tx, ty, steps, batch, lr)
            a = ours_epoch(ours, x, y, steps, batch, lr)
        times_ours.append(a)
        times_torch.append(b)
        ratios.append(a / b)
        print(f"  {name} rep {r}: autograd {a:.3f}s  torch {b:.3f}s  ratio {a / b:.3f}", file=sys.stderr)
    return {"model": name, "ours_s": statistics.median(times_ours), "torch_s": statistics.median(times_torch),
            "ratio": statistics.median(ratios), "ratios": ratios}


def markdown(results: list[dict], source: str, args) -> str:
    rows = "\n".join(f"| {r['model']} | {r['ours_s']:.3f} | {r['torch_s']:.3f} | **{r['ratio']:.2f}x** | "
                     f"{', '.join(f'{q:.2f}' for q in r['ratios'])} |" for r in results)
    env = " ".join(f"{k}={os.environ[k]}" for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_") if k in os.environ)
    return f"""## mlp-numpy: one epoch, scratchlab.autograd vs PyTorch

Command: `{env + ' ' if env else ''}PYTHONPATH=src python benchmarks/mlp_epoch.py --reps {args.reps} \
--steps {args.steps} --threads {args.threads}`

One epoch = {args.steps} steps of batch 100 ({source}), forward + cross-entropy + backward + SGD (lr 0.1),
float32, both engines from the same initial weights in the same process, interleaved; ratio = autograd / torch
per repetition, median (< 1: scratchlab.autograd is faster).

| MLP | autograd epoch (s) | torch epoch (s) | ratio (median) | ratios per repetition |
|---|---|---|---|---|
{rows}

Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}
({torch.get_num_threads()} threads), numpy {np.__version__} (OpenBLAS, {args.threads} threads);
Python {platform.python_version()}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=600, help="steps per epoch (600 = 60,000 images)")
    parser.add_argument("--models", nargs="*", default=list(SIZES))
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both sides")
    parser.add_argument("--write", type=Path, help="replace this benchmark's section in a markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y, source = load_data(args.steps * 100)
    results = [bench(name, x, y, args.reps, args.steps) for name in args.models]
    text = markdown(results, source, args)
    print(text)
    if args.write:
        write_section(args.write, text)


def write_section(path: Path, text: str) -> None:
    """Replace (or append) the section that starts with this benchmark's heading, keeping the others."""
    head = text.split("\n", 1)[0]
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if head in old:
        before, rest = old.split(head, 1)
        after = rest.split("\n## ", 1)[1] if "\n## " in rest else ""
        old = before + text.rstrip("\n") + ("\n\n## " + after if after else "\n")
    else:
        old = old.rstrip("\n") + "\n\n" + text
    path.write_text(old)


if __name__ == "__main__":
    main()
