"""What a bfloat16 forward path would buy: torch.nn.LSTM under `torch.autocast("cpu", dtype=torch.bfloat16)`
against torch.nn.LSTM in float32 and scratchlab.rnn.LSTM (float32; under autocast it computes in float32 and casts
its outputs, docs/design.md), forward only under torch.no_grad(), on rnn_speed's shapes a, b and c (issue 18).

Also: the matrix product of one forward step at each shape (B x (I + H) times (I + H) x 4H) in bfloat16 through
torch.mm against float32 (the most a bf16 step kernel could gain over ours, whose step is that product plus the
cell), how far the bf16 LSTM's output lies from float32's (max |difference|, the price in accuracy), and each
side's GFLOP/s of the layer's products beside two peaks: torch.mm at 2048^3 in bf16 and the float32 FMA peak of our
kernels (`fma_peak`, kernel.h), the best of 3 each: what a bf16 kernel of ours would have to reach to beat torch's.

Only meaningful on a CPU with AVX512-BF16 or AMX (`torch.backends.mkldnn.is_available()` and the CPU's flags say
which); elsewhere oneDNN emulates bf16 and the section says so. One thread, process CPU time; ratios are medians of
interleaved pairs (common.compare).

    python benchmarks/rnn_bf16.py [--repeats 7] [--no-write]
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
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    clock = time.process_time
    flags = common._cpuinfo()[1]
    bf16_hw = [f for f in ("amx_bf16", "avx512_bf16") if f in flags]
    peak = peaks(clock)
    rows = []
    for name, (B, T, I, H) in SHAPES.items():
        torch.manual_seed(0)
        ref = torch.nn.LSTM(I, H).eval()
        ours = srnn.LSTM(I, H).eval()
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(T, B, I)

        def fp32(m=ref, x=x):
            with torch.no_grad():
                return m(x)[0]

        def bf16(m=ref, x=x):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                return m(x)[0]

        def ours_fp32(m=ours, x=x):
            with torch.no_grad():
                return m(x)[0]

        err = (bf16().float() - fp32()).abs().max().item()
        gain = common.compare(bf16, fp32, repeats=args.repeats, clock=clock)  # bf16 torch / fp32 torch
        vs = common.compare(ours_fp32, bf16, repeats=args.repeats, clock=clock)  # ours fp32 / bf16 torch
        a32, b32 = torch.randn(B, I + H), torch.randn(I + H, 4 * H)
        a16, b16 = a32.bfloat16(), b32.bfloat16()
        mm = common.compare(lambda a=a16, b=b16: [a @ b for _ in range(50)],
                            lambda a=a32, b=b32: [a @ b for _ in range(50)], repeats=args.repeats, clock=clock)
        flops = 2.0 * T * B * 4 * H * (I + H)
        rows.append([name, f"{1e3 * gain['ref_s']:.1f}", f"{1e3 * gain['ours_s']:.1f}", f"{1e3 * vs['ours_s']:.1f}",
                     f"**{gain['ratio']:.2f}**", f"**{vs['ratio']:.2f}**", f"{mm['ratio']:.2f}",
                     f"{flops / gain['ours_s'] / 1e9:.0f}", f"{flops / vs['ours_s'] / 1e9:.0f}", f"{err:.1e}"])
        print(rows[-1], flush=True)
    body = ("## LSTM forward in bfloat16: torch.nn under autocast against float32 (1 thread)\n\n"
            "Shapes (batch, length, input, hidden): " + ", ".join(f"{k} {v}" for k, v in SHAPES.items())
            + "; forward under no_grad; process CPU time, median of " + f"{args.repeats} interleaved pairs. "
            "bf16 / fp32 = torch.nn.LSTM under autocast bf16 over torch.nn.LSTM in float32 (what bf16 buys torch); "
            "ours / bf16 = scratchlab.rnn.LSTM in float32 over torch's bf16; step product bf16 / fp32 = one "
            "step's B x (I + H) x 4H product through torch.mm; GFLOP/s = the layer's products over each side's time, "
            "against the peaks " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()) + " GFLOP/s; "
            "max |diff| = bf16 output against float32's. "
            f"The CPU's bf16 units: {', '.join(bf16_hw) or 'none (oneDNN emulates bf16)'}.\n\n"
            + common.markdown_table(["shape", "torch fp32 ms", "torch bf16 ms", "ours fp32 ms", "bf16 / fp32",
                                     "ours / bf16", "step product bf16 / fp32", "torch bf16 GFLOP/s",
                                     "ours fp32 GFLOP/s", "max |diff|"], rows))
    print(body)
    if not args.no_write:
        common.write_section("rnn_bf16" + common.section_suffix(), body)


if __name__ == "__main__":
    main()
