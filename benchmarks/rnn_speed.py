"""scratchlab.rnn.{LSTM,GRU,RNN} (fast path) vs torch.nn on issue 7's shapes: ratio ours / torch (below 1 is faster).

Shapes (batch, length, input, hidden): a (128, 20, 10, 128), b (64, 400, 128, 128), c (64, 100, 256, 512), and at b
also 2 layers and bidirectional; float32. Passes: fwd+bwd (forward, sum of the output, backward; the input needs
no gradient, as when it comes from data) and forward only under torch.no_grad(). Both sides get the same weights
(load_state_dict) and input and are timed in alternation after a warm-up; the ratio is the median of per-pair
ratios (common.compare).

Also printed: the fraction of the machine's peak each side reaches (FLOPs of the layer's matrix products / time /
peak; the peak is the best of the FMA peak, kernel.h's `fma_peak_loop`: a register tile's accumulators updated
with register operands only, on every thread, and the products timed here through torch.mm and through oneDNN,
which are very different on AMD processors, see docs/design.md), and the bytes each side saves for backward
(saved_tensors_hooks).

Default clock: this process's CPU time with 1 thread, because the machine is shared (load averages near 12 on 2
cores make wall-clock ratios swing 0.3-5x); `--clock wall --threads 2` on a quiet machine measures what a user with
torch's default threads sees (its own section in docs/benchmarks.md; `make bench` runs both). `--device cuda` compares
against cuDNN (wall clock with synchronisation).

`--isa avx2` measures the AVX2 variant on a machine with AVX-512 against torch limited the same way: the script
runs itself again with SCRATCHLAB_ISA=avx2 and torch's, oneDNN's and MKL's ISA capped at AVX2 (`FORCED_AVX2`; torch
reads them when it loads) and writes its own section of docs/benchmarks.md.

    python benchmarks/rnn_speed.py [--repeats 5] [--quick] [--no-write] [--device cuda] [--layers LSTM ...]
                                   [--isa avx2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

FORCED_AVX2 = {"SCRATCHLAB_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
               "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def _run_forced_avx2() -> None:
    """--isa avx2: run again with FORCED_AVX2 in the environment, before torch is imported."""
    argv = sys.argv[1:]
    if "--isa" in argv and argv[argv.index("--isa") + 1:][:1] == ["avx2"] and \
            any(os.environ.get(k) != v for k, v in FORCED_AVX2.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **FORCED_AVX2})


_run_forced_avx2()

import torch  # noqa: E402

from common import _cpuinfo, compare, markdown_table, section_suffix, widest_isa, write_section  # noqa: E402
from scratchlab import rnn  # noqa: E402
from scratchlab.rnn import _cext, fast  # noqa: E402

SHAPES = {"a": (128, 20, 10, 128), "b": (64, 400, 128, 128), "c": (64, 100, 256, 512)}
CASES = [("a", {}), ("b", {}), ("c", {}), ("b", {"num_layers": 2}), ("b", {"bidirectional": True})]
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def layer_flops(name: str, shape, kw, backward: bool) -> float:
    """FLOPs of the matrix products: forward 2 T B G H (I_k + H) per layer-direction; backward adds dW_ih, dW_hh,
    the per-step dh (each as large as a forward product) and dX for layers above the first."""
    B, T, I, H = shape
    D, total = (2 if kw.get("bidirectional") else 1), 0.0
    for k in range(kw.get("num_layers", 1)):
        i_k = I if k == 0 else D * H
        unit = 2.0 * T * B * GATES[name] * H
        total += D * unit * ((i_k + H) + (backward and (i_k + 2 * H + (i_k if k > 0 else 0))))
    return total


def matmul_peak(clock, device: str) -> dict[str, float]:
    """GFLOP/s of float32 products: torch.mm (MKL on CPU) at 2048^3, and oneDNN's matmul (CPU only), the best of a
    few shapes with the weight in oneDNN's packed layout (1024^3, 4096x512x512, 1024x256x1024: 235-245 GFLOP/s on
    one Zen 5 core, against 222-230 for a plain 2048^3), so that the "% peak" columns are against the best this
    core was seen to do rather than one product that falls short of it; and, where the compiled kernels have a
    vector variant, the FMA peak (`fma_peak`, CPU only: on an AVX2 Zen 3 core the packed tile ran 84-87 GFLOP/s
    against 68-75 for the best library product, so the library products alone are not the peak)."""
    n = 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    kernels = {"torch.mm": [(lambda: torch.mm(a, b), 2 * n ** 3)]}
    if device == "cpu" and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        onednn = []
        for m, k, o in [(1024, 1024, 1024), (4096, 512, 512), (1024, 256, 1024)]:
            x, w = torch.randn(m, k), torch.randn(o, k)
            w = torch.ops.mkldnn._reorder_linear_weight(w, m)
            onednn.append((lambda x=x, w=w: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""),
                           2 * m * k * o))
        kernels["oneDNN"] = onednn
    ops = _cext.ops() if device == "cpu" else None
    if ops is not None and ops.packed_available():
        rounds = 20_000_000
        kernels["FMA peak"] = [(lambda: ops.fma_peak(rounds), ops.fma_peak(rounds))]
    peak = {}
    for label, runs in kernels.items():
        for fn, flops in runs:
            fn()
            best = float("inf")
            for _ in range(3):
                t0 = clock()
                fn()
                sync(device)
                best = min(best, clock() - t0)
            peak[label] = max(peak.get(label, 0.0), flops / best / 1e9)
    return peak


def cpu_model() -> str:
    """The CPU's model name with its family and model (common._cpuinfo owns how it is read)."""
    return _cpuinfo()[0] or "unknown CPU"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def runner(module, x, train: bool, device: str):
    def fwd_bwd():
        for p in module.parameters():
            p.grad = None
        module(x)[0].sum().backward()
        sync(device)

    def fwd():
        with torch.no_grad():
            module(x)
        sync(device)
    return fwd_bwd if train else fwd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="interleaved pairs per row")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="shape a only, 3 pairs: a smoke run")
    p.add_argument("--layers", nargs="+", choices=list(GATES), default=list(GATES), help="which layers to time")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    p.add_argument("--isa", choices=["native", "avx2"], default="native",
                   help="avx2: scratchlab's AVX2 variant against torch capped at AVX2 (see the module docstring)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here")
    if args.isa == "avx2" and "avx2" not in _cext.supported_isas():
        sys.exit("--isa avx2: this CPU cannot run the avx2 variant (no AVX2 and FMA)")
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" and args.device == "cpu" else time.perf_counter
    cases = CASES[:1] if args.quick else CASES
    repeats = 3 if args.quick else args.repeats
    peak = matmul_peak(clock, args.device)
    print("peak GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()), flush=True)
    top = max(peak.values())
    rows = []
    for name in args.layers:
        for shape_name, kw in cases:
            B, T, I, H = SHAPES[shape_name]
            torch.manual_seed(0)
            theirs = getattr(torch.nn, name)(I, H, **kw).to(args.device)
            ours = getattr(rnn, name)(I, H, **kw).to(args.device)
            ours.load_state_dict(theirs.state_dict())
            x = torch.randn(T, B, I, device=args.device)
            mem = fast.saved_bytes(ours, x) / fast.saved_bytes(theirs, x)
            label = shape_name + "".join(f", {k}={v}" for k, v in kw.items())
            for train in (True, False):
                r = compare(runner(ours, x, train, args.device), runner(theirs, x, train, args.device),
                            repeats=repeats, warmup=1, clock=clock)
                gf = layer_flops(name, SHAPES[shape_name], kw, train) / 1e9
                rows.append([name, label, "fwd+bwd" if train else "fwd (no_grad)", f"{r['ours_s'] * 1e3:.1f}",
                             f"{r['ref_s'] * 1e3:.1f}", f"**{r['ratio']:.2f}**",
                             f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}",
                             f"{gf / r['ours_s'] / top:.0%}", f"{gf / r['ref_s'] / top:.0%}",
                             f"{mem:.2f}" if train else ""])
                print(" | ".join(rows[-1]), flush=True)
    ref = "cuDNN" if args.device == "cuda" else "torch.nn"
    mode = "" if (args.clock, args.threads) == ("cpu", 1) else f", {args.threads} threads, {args.clock} clock"
    variant = _cext.describe()["isa"] if _cext.ops() else None
    native = args.isa == "native" and args.device == "cpu" and section_suffix()  # not an AVX-512 CPU: own sections
    mode += ", forced AVX2" if args.isa == "avx2" else f", an {widest_isa() or 'other'} CPU" if native else ""
    body = (f"## Recurrent layers, fast path vs {ref} ({args.device}{mode})\n\n"
            "Shapes (batch, length, input, hidden): a (128, 20, 10, 128), b (64, 400, 128, 128), "
            "c (64, 100, 256, 512); float32, input without gradient. Ratio = ours / torch, median of "
            f"{repeats} interleaved pairs after a warm-up; clock: {args.clock} "
            f"({'process CPU time' if clock is time.process_time else 'wall'}), {args.threads} thread(s). "
            f"% peak = FLOPs of the layer's matrix products / time / the best peak measured here "
            f"({', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in peak.items())}). Saved = bytes saved for backward, "
            "ours / torch.\n\n"
            + markdown_table(["layer", "shape", "pass", "ours ms", f"{ref} ms", "ratio (median)", "ratio range",
                              "ours % peak", f"{ref} % peak", "saved mem ratio"], rows)
            + f"\n\nStep loops: {f'compiled (rnn/csrc/, the {variant} variant)' if variant else 'Python'}; "
              f"torch's CPU capability: {torch.backends.cpu.get_cpu_capability()}"
              + (f" ({', '.join(f'{k}={v}' for k, v in FORCED_AVX2.items())})" if args.isa == "avx2" else "")
              + ". "
              f"CPU: {cpu_model()}. Load average when it finished: {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores (shared machine: absolute times are inflated, the ratios are the numbers).")
    print(body)
    if not args.no_write and not args.quick and args.layers == list(GATES):
        tuned = "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 " \
            if os.environ.get("MALLOC_MMAP_MAX_") == "0" else ""
        key = f"rnn_speed_{args.device}" + ("" if (args.clock, args.threads) == ("cpu", 1)
                                            else f"_{args.clock}_{args.threads}threads")
        key += "_avx2" if args.isa == "avx2" else section_suffix() if native else ""
        write_section(key, body, command=tuned + "python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()
