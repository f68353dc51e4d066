"""torch.compile vs eager on the IMDB attention classifier, and packed vs padded reviews: one training step each.

The model is `imdb`'s default, lstm-attention (embedding -> LSTM -> attention over every step, query W * last state,
padding masked -> linear, BCE), at batch 64, length 400, embedding 128, hidden 128, vocabulary 20000, with review
lengths drawn from 50-400 words and left padding, as the data pipeline writes them. One step = forward, BCE,
backward, gradient clip, Adam update. Each variant is timed in interleaved pairs against torch.nn.LSTM inside the
same model in eager mode (the reference; same weights), and its ratio is the median over the pairs (below 1 is
faster); a last row pairs the compiled model with our eager one directly:

    scratchlab.rnn.LSTM, eager | the same, torch.compile(model) (Inductor; the LSTM is a registered operator, so the
    model is one graph) | torch.nn.LSTM, torch.compile(model) (Dynamo runs the embedding and torch.nn.LSTM eagerly
    and compiles the head after them) | packed=True (each review's real length as a PackedSequence) with either
    LSTM, eager

The compile's own time (the first step, forward and backward, Inductor's caches off) is reported apart. One
thread and process CPU time by default, as the other benchmarks (a shared machine).

    python benchmarks/rnn_compile.py [--repeats 5] [--threads 1] [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import time

# Inductor keeps compiled graphs in an on-disk cache: off, so that the compile time reported is a compile's
os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")
import torch  # noqa: E402

from common import compare, markdown_table, write_section
from imdb_lstm import train_step as adam_step
from rnn_speed import cpu_model
from scratchlab.rnn.classifiers import RecurrentClassifier

SHAPE = {"batch": 64, "length": 400, "embed": 128, "hidden": 128, "vocab": 20000, "shortest": 50}
QUICK = {"batch": 32, "length": 60, "embed": 32, "hidden": 32, "vocab": 2000, "shortest": 10}


def batch(s: dict, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids (N, L) with lengths uniform in [shortest, L], and labels."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(s["shortest"], s["length"] + 1, (s["batch"],), generator=g)
    ids = torch.randint(2, s["vocab"], (s["batch"], s["length"]), generator=g)
    ids[torch.arange(s["length"]).unsqueeze(0) < (s["length"] - lengths).unsqueeze(1)] = 0
    return ids, torch.randint(0, 2, (s["batch"],), generator=g).float()


def train_step(model: torch.nn.Module, ids: torch.Tensor, y: torch.Tensor, compiled: bool = False):
    """imdb_lstm's training step (forward, BCE, backward, clip, Adam), with the forward compiled or not."""
    return adam_step(torch.compile(model) if compiled else model, torch.optim.Adam(model.parameters()), ids, y)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="interleaved pairs per variant")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="a small shape and 3 pairs: a smoke run")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    s, repeats = (QUICK, 3) if args.quick else (SHAPE, args.repeats)
    ids, y = batch(s)
    load = os.getloadavg()[0]

    def model(rnn_type=None, packed=False):
        torch.manual_seed(0)
        return RecurrentClassifier(s["vocab"], s["embed"], s["hidden"], cell="lstm", attention=True, dropout=0.5,
                                   rnn_type=rnn_type, packed=packed)
    reference = model(torch.nn.LSTM)
    state = reference.state_dict()
    variants = [("scratchlab.rnn.LSTM", "eager", model(), False),
                ("scratchlab.rnn.LSTM", "torch.compile", model(), True),
                ("torch.nn.LSTM", "torch.compile", model(torch.nn.LSTM), True),
                ("scratchlab.rnn.LSTM", "eager, packed", model(packed=True), False),
                ("torch.nn.LSTM", "eager, packed", model(torch.nn.LSTM, packed=True), False)]
    ref_step = train_step(reference, ids, y)
    rows, compile_s, steps = [], {}, {}

    def row(lstm, mode, step, against, label):
        r = compare(step, against, repeats=repeats, warmup=1, clock=time.process_time)
        rows.append([lstm, mode, label, f"{r['ours_s'] * 1e3:.0f}", f"{r['ref_s'] * 1e3:.0f}", f"**{r['ratio']:.2f}**",
                     f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"])
        print(" | ".join(rows[-1]), flush=True)
    for lstm, mode, m, compiled in variants:
        m.load_state_dict(state)
        steps[lstm, mode] = step = train_step(m, ids, y, compiled)
        t0 = time.perf_counter()
        step()                                               # the compile happens here (compiled variants)
        if compiled:
            compile_s[lstm] = time.perf_counter() - t0
        row(lstm, mode, step, ref_step, "torch.nn.LSTM, eager")
    # the question itself, as a pair of its own: does compiling beat eager, with our LSTM inside?
    row("scratchlab.rnn.LSTM", "torch.compile", steps["scratchlab.rnn.LSTM", "torch.compile"],
        steps["scratchlab.rnn.LSTM", "eager"], "scratchlab.rnn.LSTM, eager")
    lengths = (ids != 0).sum(1).float()
    body = (f"## IMDB attention classifier: torch.compile vs eager, packed vs padded\n\n"
            f"One Adam step of `imdb`'s lstm-attention model at batch {s['batch']}, length {s['length']}, embedding "
            f"{s['embed']}, hidden {s['hidden']}, vocabulary {s['vocab']}; review lengths uniform in "
            f"{s['shortest']}-{s['length']} (mean {lengths.mean():.0f}), left padded. Each row is timed in "
            f"{repeats} interleaved pairs against its reference (torch.nn.LSTM inside the same model, eager, padded, "
            f"same weights; the last row: our LSTM, eager); ratio = row / reference, median of the pairs (below 1 is "
            f"faster). Compiling = `torch.compile(model)` "
            f"(Inductor) of the model's forward; the optimiser step stays eager. Packed = `packed=True`: each "
            f"review's real length as a PackedSequence.\n\n"
            + markdown_table(["LSTM inside", "mode", "reference", "ms / step (median)", "reference ms",
                              "ratio (median)", "ratio range"], rows)
            + "\n\nFirst step with compiling (forward and backward graphs, Inductor's caches off): "
            + ", ".join(f"{k} {v:.0f} s" for k, v in compile_s.items())
            + f". {torch.get_num_threads()} torch thread(s), process CPU time. CPU: {cpu_model()}. Load average "
              f"{load:.1f} at the start and {os.getloadavg()[0]:.1f} at the end on {os.cpu_count()} cores (shared: "
              f"absolute times are inflated, the ratios are the numbers).")
    print(body)
    if not args.no_write and not args.quick:
        write_section("rnn_compile", body)


if __name__ == "__main__":
    main()
