"""One training epoch of an MLP in scratchlab.autograd against the same MLP in PyTorch, same process.

    python benchmarks/mlp_epoch.py [--epochs 5] [--block 50] [--threads 1] [--no-write]

60,000 Fashion-MNIST images (Debian's files when present, else random pixels: the work is the same), batch 100,
plain SGD (lr 0.1), float32, for 784-256-10 and 784-512-256-10, both engines from the same weights. The machine
drifts, so the sides are timed in alternating blocks of 50 steps and the figure is the median of per-pair ratios
autograd / torch (< 1 means scratchlab.autograd is faster).
Both sides get the same number of BLAS threads (`--threads`, default 1): on a shared 2-core machine two
threads per side mostly measure the neighbours.
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv() -> str:
    """BLAS thread counts must be set before numpy/torch load their BLAS, i.e. before argparse runs."""
    argv = sys.argv[1:]
    return argv[argv.index("--threads") + 1] if "--threads" in argv else "1"


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import compare, cpu, markdown_table, section_suffix, widest_isa, write_section  # noqa: E402
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


class Batches:
    """`run(n)`: apply `step(xb, yb)` to the next n batches of the epoch (wrapping around)."""

    def __init__(self, step, x, y, batch: int):
        self.step, self.x, self.y, self.batch, self.pos = step, x, y, batch, 0

    def run(self, n: int) -> None:
        for _ in range(n):
            i, b = self.pos, self.batch
            self.pos = (self.pos + 1) % (len(self.x) // b)
            self.step(self.x[i * b:(i + 1) * b], self.y[i * b:(i + 1) * b])


def ours_step(model: nn.Module, lr: float):
    opt = optim.SGD(model.parameters(), lr=lr)

    def step(xb, yb):
        loss = F.cross_entropy(model(Tensor(xb)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def torch_step(model: torch.nn.Module, lr: float):
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def step(xb, yb):
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def hand_step(model: nn.Sequential, lr: float):
    """For scale: the same MLP in plain NumPy with a hand-written backward (no graph, no engine)."""
    linears = [m for m in model.layers if isinstance(m, nn.Linear)]
    ws, bs = [m.weight.data.copy() for m in linears], [m.bias.data.copy() for m in linears]

    def step(xb, yb):
        hs = [xb]                                    # inputs of each layer
        for k, (w, b) in enumerate(zip(ws, bs, strict=True)):
            h = hs[-1] @ w.T + b
            hs.append(np.maximum(h, 0) if k < len(ws) - 1 else h)
        z = hs[-1] - hs[-1].max(1, keepdims=True)
        g = np.exp(z)
        g /= g.sum(1, keepdims=True)                 # softmax
        g[np.arange(len(yb)), yb] -= 1               # d loss / d logits = (softmax - onehot) / N
        g /= len(yb)
        for k in reversed(range(len(ws))):
            gw, gb = g.T @ hs[k], g.sum(0)
            if k:
                g = (g @ ws[k]) * (hs[k] > 0)
            ws[k] -= lr * gw
            bs[k] -= lr * gb

    return step


def torch_twin(ours: nn.Sequential) -> torch.nn.Sequential:
    layers = [torch.nn.Linear(m.in_features, m.out_features) if isinstance(m, nn.Linear) else torch.nn.ReLU()
              for m in ours.layers]
    twin = torch.nn.Sequential(*layers)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return twin


def bench(name: str, x, y, epochs: int, steps: int, block: int, batch: int = 100, lr: float = 0.1) -> dict:
    """`epochs` epochs per side, timed in interleaved blocks of `block` steps (finer interleaving: less drift
    between the two sides of a pair); epoch time = median block time * steps / block."""
    np.random.seed(0)
    ours = nn.mlp(SIZES[name])
    n = steps * batch
    a = Batches(ours_step(ours, lr), x[:n], y[:n], batch)
    b = Batches(torch_step(torch_twin(ours), lr), torch.from_numpy(x[:n]), torch.from_numpy(y[:n]), batch)
    a.run(20)  # warm-up: caches, allocator, BLAS buffers
    b.run(20)
    h = Batches(hand_step(ours, lr), x[:n], y[:n], batch)
    h.run(20)
    result = compare(lambda: a.run(block), lambda: b.run(block), repeats=epochs * steps // block, warmup=0)
    pairs = max(1, epochs // 2) * steps // block
    hand = compare(lambda: h.run(block), lambda: b.run(block), repeats=pairs, warmup=0)
    floor = compare(lambda: a.run(block), lambda: h.run(block), repeats=pairs, warmup=0)  # ours against the floor
    print(f"  {name}: {result}; hand-written numpy: {hand}; autograd / hand-written: {floor}", file=sys.stderr)
    scale = steps / block
    return {"model": name, **result, "ours_s": result["ours_s"] * scale, "ref_s": result["ref_s"] * scale,
            "hand_ratio": hand["ratio"], "floor_ratio": floor["ratio"], "floor_min": floor["ratio_min"],
            "floor_max": floor["ratio_max"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per side")
    parser.add_argument("--steps", type=int, default=600, help="steps per epoch (600 = 60,000 images)")
    parser.add_argument("--block", type=int, default=50, help="steps per timed block (pairs are interleaved)")
    parser.add_argument("--models", nargs="*", default=list(SIZES))
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both sides")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y, source = load_data(args.steps * 100)
    results = [bench(name, x, y, args.epochs, args.steps, args.block) for name in args.models]
    table = markdown_table(["MLP", "autograd epoch (s)", "torch epoch (s)", "autograd / torch (median)", "range",
                            "hand-written NumPy / torch", "autograd / hand-written (median)", "range"],
                           [[r["model"], r["ours_s"], r["ref_s"], f"**{r['ratio']:.2f}x**",
                             f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}", f"{r['hand_ratio']:.2f}x",
                             f"**{r['floor_ratio']:.2f}x**", f"{r['floor_min']:.2f}-{r['floor_max']:.2f}"]
                            for r in results])
    kind = f" ({widest_isa() or 'other'} CPU)" if section_suffix() else ""
    body = f"""## mlp-numpy: one training epoch, scratchlab.autograd vs PyTorch{kind}

One epoch = {args.steps} steps of batch 100 ({source}): forward, cross-entropy, backward, SGD (lr 0.1), float32,
both engines from the same initial weights in one process. {args.epochs} epochs per side, timed in interleaved
blocks of {args.block} steps (ours, torch, torch, ours, ...); ratio = autograd / torch per pair of blocks, median
(below 1: scratchlab.autograd is faster); epoch = median block x {args.steps // args.block}. BLAS threads:
{args.threads} on both sides (numpy's OpenBLAS and torch). For scale, the same MLP written directly in NumPy with
a hand-written backward: the floor for any NumPy engine, timed against torch and, in the last two columns, against
scratchlab.autograd directly ({max(1, args.epochs // 2)} epochs each, same interleaving; issue 18's target for
autograd / hand-written: <= 1.05x). CPU: {cpu()}.

{table}"""
    print(body)
    if not args.no_write:
        write_section("mlp_epoch" + section_suffix(), body)


if __name__ == "__main__":
    main()
