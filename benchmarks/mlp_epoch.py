"""One training epoch of an MLP in scratchlab.autograd against the same MLP in PyTorch, same process.

    python benchmarks/mlp_epoch.py [--reps 5] [--steps 600] [--threads 1] [--no-write]

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
import sys
import time


def _threads_from_argv() -> str:
    """BLAS thread counts must be set before numpy/torch load their BLAS, i.e. before argparse runs."""
    argv = sys.argv[1:]
    return argv[argv.index("--threads") + 1] if "--threads" in argv else "1"


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import compare, markdown_table, write_section  # noqa: E402
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
    ours_epoch(ours, x, y, 20, batch, lr)  # warm-up: caches, allocator, BLAS buffers
    torch_epoch(twin, tx, ty, 20, batch, lr)
    result = compare(lambda: ours_epoch(ours, x, y, steps, batch, lr),
                     lambda: torch_epoch(twin, tx, ty, steps, batch, lr), repeats=reps, warmup=0)
    print(f"  {name}: {result}", file=sys.stderr)
    return {"model": name, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=600, help="steps per epoch (600 = 60,000 images)")
    parser.add_argument("--models", nargs="*", default=list(SIZES))
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both sides")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y, source = load_data(args.steps * 100)
    results = [bench(name, x, y, args.reps, args.steps) for name in args.models]
    table = markdown_table(["MLP", "autograd epoch (s)", "torch epoch (s)", "ratio (median)", "ratio range"],
                           [[r["model"], r["ours_s"], r["ref_s"], f"**{r['ratio']:.2f}x**",
                             f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"] for r in results])
    body = f"""## mlp-numpy: one training epoch, scratchlab.autograd vs PyTorch

One epoch = {args.steps} steps of batch 100 ({source}): forward, cross-entropy, backward, SGD (lr 0.1), float32,
both engines from the same initial weights in one process, {args.reps} interleaved repetitions; ratio = autograd /
torch per repetition, median (below 1: scratchlab.autograd is faster). BLAS threads: {args.threads} on both sides
(numpy's OpenBLAS and torch).

{table}"""
    print(body)
    if not args.no_write:
        write_section("mlp_epoch", body)


if __name__ == "__main__":
    main()
