"""bfloat16 inference: scratchlab.rnn.LSTM under `torch.autocast("cpu", dtype=torch.bfloat16)` (its bf16 kernel,
csrc/lstm.cpp, where the CPU has AVX512-BF16) against torch.nn.LSTM under the same autocast, and both against their
float32 selves, forward only under torch.no_grad(), on rnn_speed's shapes a, b and c (issue 18).

Columns: each side's times; ours bf16 / torch bf16 (the comparison that matters), what bf16 buys each side (bf16 /
its own float32), each side's GFLOP/s of the layer's products beside two peaks (torch.mm at 2048^3 in bf16 and the
float32 FMA peak of our kernels, `fma_peak`, the best of 3 each), and how far each bf16 output lies from float32's
(max |difference|: the price in accuracy). Process CPU time with 1 thread, wall clock with more; ratios are medians
of interleaved pairs (common.compare).

    python benchmarks/rnn_bf16.py [--repeats 7] [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import time

import torch

import common
import scratchlab.rnn as srnn
from scratchlab.rnn import _cext

SHAPES = {"a": (128, 20, 10, 128), "b": (64, 400, 128, 128), "c": (64, 100, 256, 512)}  # (B, T, I, H)


def gflops(fn, flops: float, clock) -> float:
    """GFLOP/s of fn (which does `flops`), the best of 3 after a warm-up."""
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return flops / best / 1e9


def peaks(clock) -> dict[str, float]:
    n = 2048
    a, b = torch.randn(n, n).bfloat16(), torch.randn(n, n).bfloat16()
    out = {"torch.mm bf16": gflops(lambda: torch.mm(a, b), 2 * n ** 3, clock)}
    ops = _cext.ops()
    if ops is not None and ops.packed_available():
        rounds = 20_000_000
        out["float32 FMA peak"] = gflops(lambda: ops.fma_peak(rounds), ops.fma_peak(rounds), clock)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    flags = common._cpuinfo()[1]
    bf16_hw = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    ops = _cext.ops()
    kernel = ops is not None and ops.bf16_available()
    peak = peaks(clock)
    rows = []
    for name, (B, T, I, H) in SHAPES.items():
        torch.manual_seed(0)
        ref = torch.nn.LSTM(I, H).eval()
        ours = srnn.LSTM(I, H).eval()
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(T, B, I)

        def fp32(m, x=x):
            with torch.no_grad():
                return m(x)[0]

        def bf16(m, x=x):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                return m(x)[0]

        exact = fp32(ref)
        err = [(bf16(m).float() - exact).abs().max().item() for m in (ours, ref)]
        vs = common.compare(lambda o=ours, r=ref: bf16(o), lambda r=ref: bf16(r), repeats=args.repeats, clock=clock)
        theirs = common.compare(lambda r=ref: bf16(r), lambda r=ref: fp32(r), repeats=args.repeats, clock=clock)
        mine = common.compare(lambda o=ours: bf16(o), lambda o=ours: fp32(o), repeats=args.repeats, clock=clock)
        flops = 2.0 * T * B * 4 * H * (I + H)
        rows.append([name, f"{1e3 * vs['ours_s']:.1f}", f"{1e3 * vs['ref_s']:.1f}", f"{1e3 * mine['ref_s']:.1f}",
                     f"{1e3 * theirs['ref_s']:.1f}", f"**{vs['ratio']:.2f}**", f"{vs['ratio_min']:.2f}-"
                     f"{vs['ratio_max']:.2f}", f"{mine['ratio']:.2f}", f"{theirs['ratio']:.2f}",
                     f"{flops / vs['ours_s'] / 1e9:.0f}", f"{flops / vs['ref_s'] / 1e9:.0f}",
                     f"{err[0]:.1e}", f"{err[1]:.1e}"])
        print(rows[-1], flush=True)
    how = "process CPU time" if args.threads == 1 else "wall clock"
    body = (f"## LSTM inference in bfloat16: ours against torch.nn under autocast ({args.threads} thread"
            f"{'s' if args.threads > 1 else ''})\n\n"
            "Shapes (batch, length, input, hidden): " + ", ".join(f"{k} {v}" for k, v in SHAPES.items())
            + f"; forward under no_grad and `torch.autocast(\"cpu\", dtype=torch.bfloat16)`; {how}, median of "
            f"{args.repeats} interleaved pairs. ours bf16: scratchlab.rnn.LSTM "
            + ("with its bf16 kernel (csrc/lstm.cpp)" if kernel else "(no bf16 kernel in this build: float32 inside)")
            + "; bf16 / fp32 = each side against its own float32 forward; GFLOP/s = the layer's products over each "
            "side's bf16 time, against the peaks " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items())
            + " GFLOP/s; max |diff| = each side's bf16 output against torch's float32 one. "
            f"The CPU's bf16 units: {', '.join(bf16_hw) or 'none (oneDNN emulates bf16)'}.\n\n"
            + common.markdown_table(["shape", "ours bf16 ms", "torch bf16 ms", "ours fp32 ms", "torch fp32 ms",
                                     "ours / torch (bf16)", "range", "ours bf16 / fp32", "torch bf16 / fp32",
                                     "ours GFLOP/s", "torch GFLOP/s", "ours max |diff|", "torch max |diff|"], rows))
    print(body)
    if not args.no_write:
        suffix = "" if args.threads == 1 else f"_{args.threads}threads"
        common.write_section("rnn_bf16" + suffix + common.section_suffix(), body)


if __name__ == "__main__":
    main()
