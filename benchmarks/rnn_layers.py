"""scratchlab.rnn.{LSTM,GRU,RNN} vs torch.nn.{LSTM,GRU,RNN}: time ratio (ours / torch: below 1 is faster).

Both sides get the same weights and input (length 20, batch 128, input 10, hidden 128, float32 by default); the two
sides are timed in alternation and the ratio is the median of per-pair ratios (common.compare). Rows: fwd+bwd
(forward, sum of the output, backward) and forward only under no_grad. torch's float32 CPU LSTM runs oneDNN's fused
RNN kernel; the LSTM* rows compare against torch.nn.LSTM with oneDNN disabled, i.e. torch's plain ATen path, which
does what ours does (per-step ops recorded by autograd). Writes the section for the current malloc setting.

    python benchmarks/rnn_layers.py [--repeats 15] [--calls 3] [--threads N] [--no-write]
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 python benchmarks/rnn_layers.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import torch

from common import compare, markdown_table, write_section
from scratchlab import rnn


def fwd_bwd(module: torch.nn.Module, x: torch.Tensor) -> None:
    for p in module.parameters():
        p.grad = None
    out, _ = module(x)
    out.sum().backward()


def fwd(module: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        module(x)


def repeated(fn, module, x, calls: int, flags=contextlib.nullcontext):
    """One timed sample = `calls` calls (a single call at this shape is a few ms, too short to time alone)."""
    def sample() -> None:
        with flags():
            for _ in range(calls):
                fn(module, x)
    return sample


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--length", type=int, default=20)
    p.add_argument("--input", type=int, default=10)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--repeats", type=int, default=15, help="interleaved pairs per row")
    p.add_argument("--calls", type=int, default=3, help="calls per timed sample")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.randn(args.length, args.batch, args.input)
    no_onednn = lambda: torch.backends.mkldnn.flags(enabled=False)  # noqa: E731
    rows = []
    for label, flags in (("LSTM", contextlib.nullcontext), ("LSTM*", no_onednn), ("GRU", contextlib.nullcontext),
                         ("RNN", contextlib.nullcontext)):
        name = label.rstrip("*")
        torch.manual_seed(0)
        theirs = getattr(torch.nn, name)(args.input, args.hidden)
        # the readable path (impl="reference"); benchmarks/rnn_speed.py times the default fast one
        ours = getattr(rnn, name)(args.input, args.hidden, impl="reference")
        ours.load_state_dict(theirs.state_dict())
        for pass_name, fn in (("fwd+bwd", fwd_bwd), ("fwd (no_grad)", fwd)):
            r = compare(repeated(fn, ours, x, args.calls), repeated(fn, theirs, x, args.calls, flags),
                        repeats=args.repeats)
            rows.append([label, pass_name, f"{r['ours_s'] / args.calls * 1e3:.2f}",
                         f"{r['ref_s'] / args.calls * 1e3:.2f}", f"**{r['ratio']:.2f}**",
                         f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"])
            print(" | ".join(rows[-1]), flush=True)
    tuned = os.environ.get("MALLOC_MMAP_MAX_") == "0"
    load = os.getloadavg()[0]
    body = (f"## Recurrent layers vs torch.nn ({'tuned malloc' if tuned else 'default malloc'})\n\n"
            f"Length {args.length}, batch {args.batch}, input {args.input}, hidden {args.hidden}, one layer, "
            f"float32; interleaved, median of {args.repeats} pairs of {args.calls} calls each. Ratio = ours / torch. "
            f"LSTM* = against torch.nn.LSTM with oneDNN disabled (`torch.backends.mkldnn.flags(enabled=False)`): "
            f"torch's float32 CPU LSTM otherwise runs oneDNN's fused RNN kernel, while GRU and RNN run torch's "
            f"ATen per-step path, as ours does.\n\n"
            + markdown_table(["layer", "pass", "ours ms", "torch ms", "ratio (median)", "ratio range"], rows)
            + f"\n\nLoad average when it finished: {load:.1f} on {os.cpu_count()} cores (other jobs share the "
              f"machine: the absolute times are inflated by that; the ratios are the comparable numbers).")
    print(body)
    if not args.no_write:
        env = "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 " if tuned else ""
        write_section("rnn_layers_tuned_malloc" if tuned else "rnn_layers_default_malloc", body,
                      command=env + "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
