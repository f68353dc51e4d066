"""Training throughput of the IMDB LSTM classifier: scratchlab.rnn.LSTM inside vs torch.nn.LSTM inside.

One training step = forward, binary cross-entropy, backward, gradient clip, Adam update, at batch 64,
length 400, embedding 128, hidden 128, vocabulary 20000 (the `imdb` experiment's defaults). Both models are
the same `RecurrentClassifier` with the same weights; only the recurrent layer's class differs. Timed
interleaved in one process; the ratio is the median of per-pair ratios (ours / torch: below 1 is faster).

    python benchmarks/imdb_lstm.py [--repeats 7] [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F

from common import compare, markdown_table, write_section
from scratchlab.rnn.classifiers import RecurrentClassifier

BATCH, LENGTH, EMBED, HIDDEN, VOCAB = 64, 400, 128, 128, 20000


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, ids: torch.Tensor, y: torch.Tensor):
    def step() -> None:
        logits, _ = model(ids)
        loss = F.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    # One thread by default: on a shared 2-core machine two threads wait on each other and the timings scatter
    # over an order of magnitude; one thread gives stable ratios. Both sides always run with the same setting.
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default; default 1)")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = RecurrentClassifier(VOCAB, EMBED, HIDDEN, cell="lstm", dropout=0.5)
    ref = RecurrentClassifier(VOCAB, EMBED, HIDDEN, cell="lstm", dropout=0.5, rnn_type=torch.nn.LSTM)
    ref.load_state_dict(ours.state_dict())  # same parameter names and shapes: the same model
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (BATCH, LENGTH), generator=g)
    ids[: BATCH // 2, : LENGTH // 4] = 0  # half the reviews left padded, as real batches are
    y = torch.randint(0, 2, (BATCH,), generator=g).float()
    load = os.getloadavg()[0]
    r = compare(train_step(ours, torch.optim.Adam(ours.parameters()), ids, y),
                train_step(ref, torch.optim.Adam(ref.parameters()), ids, y), repeats=args.repeats)
    rows = [["scratchlab.rnn.LSTM", f"{r['ours_s'] * 1e3:.0f}", f"{BATCH / r['ours_s']:.1f}"],
            ["torch.nn.LSTM", f"{r['ref_s'] * 1e3:.0f}", f"{BATCH / r['ref_s']:.1f}"]]
    body = (f"## IMDB LSTM classifier: training throughput\n\n"
            f"One Adam step of the `imdb` LSTM model (embedding -> LSTM -> last state -> dropout -> linear, BCE) at "
            f"batch {BATCH}, length {LENGTH}, embedding {EMBED}, hidden {HIDDEN}, vocabulary {VOCAB}; the same "
            f"weights with each LSTM class inside; interleaved, median of {args.repeats} pairs.\n\n"
            + markdown_table(["LSTM inside", "ms / step (median)", "sequences / s"], rows)
            + f"\n\nTime ratio ours / torch: **{r['ratio']:.2f}** (median; range {r['ratio_min']:.2f}-"
              f"{r['ratio_max']:.2f}); throughput ratio ours / torch: **{1 / r['ratio']:.2f}**. "
              f"{torch.get_num_threads()} torch thread(s); the machine's load average was {load:.1f} at the start "
              f"(it is shared). With two threads on a loaded 2-core machine the pairs scatter by an order of "
              f"magnitude, which is why one thread is the default.")
    print(body)
    if not args.no_write:
        write_section("imdb_lstm", body)


if __name__ == "__main__":
    main()
