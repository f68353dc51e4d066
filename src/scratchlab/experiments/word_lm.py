"""A word-level language model: an LSTM over word embeddings, against an interpolated Kneser-Ney trigram.

Words: the corpus lowercased, cut into runs of letters (with an inner apostrophe: "don't"), numbers, and single
punctuation marks; a line break is the token <eol> only where a blank line ends a paragraph. The vocabulary is the
`vocab_size` most frequent words of the training block, the others read as <unk> (in every block), as Penn
Treebank's 10,000 words do in Mikolov's and Zaremba et al.'s setting. Splits: contiguous blocks of the words.

The network (Zaremba et al. 2014, "small", with dropout as in their medium model): embedding -> dropout -> `layers`
recurrent layers (scratchlab.rnn, dropout between them) -> dropout -> linear head over the vocabulary, optionally
tied to the embedding (Press & Wolf 2017; Inan et al. 2017: the head's weight is the embedding matrix, which needs
emb == hidden). Trained like char-lm: truncated BPTT over `batch` contiguous rows, the state carried across
batches. Perplexity = exp(cross-entropy in nats per word), on validation and test, beside the Kneser-Ney trigram's
(experiments/_kneser_ney.py) counted on the same training block and scored on the same words.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scratchlab.data.corpus import Name, describe_split, load_corpus, split_blocks
from scratchlab.experiments import experiment
from scratchlab.experiments._kneser_ney import KneserNeyTrigram
from scratchlab.experiments._recurrent import RECURRENT, Kind, Optimizer, clipped_step, make_optimizer
from scratchlab.experiments.char_lm import detach, missing_corpus, nats_per_char, rows, window
from scratchlab.run import plots
from scratchlab.run.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Rate
from scratchlab.train import checkpoint
from scratchlab.train.loop import Values, cosine, fit

UNK, EOL = "<unk>", "<eol>"
_TOKEN = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|\d+|\n\s*\n|[^\w\s]")


def words(text: str) -> list[str]:
    """>>> words("Mr. Darcy's\\n\\nIt was 1811!")
    ['mr', '.', "darcy's", '<eol>', 'it', 'was', '1811', '!']"""
    return [EOL if t.isspace() else t for t in _TOKEN.findall(text.lower().replace("\u2019", "'"))]


@dataclass
class WordLMConfig:
    corpus: Name = "austen"  # austen (offline, Debian's r-cran-janeaustenr) or tinyshakespeare (checked download)
    text_file: str = ""  # any UTF-8 text file instead of `corpus`
    vocab_size: PositiveInt = 10000  # most frequent training words kept (<unk> included); the rest are <unk>
    model: Kind = "lstm"  # the recurrent cell
    emb: PositiveInt = 256  # embedding size
    hidden: PositiveInt = 256  # hidden units per layer
    layers: PositiveInt = 2  # stacked recurrent layers
    dropout: Rate = 0.3  # on the embeddings, between the layers and before the head (Zaremba et al.'s places)
    tie: bool = True  # the head's weight is the embedding matrix (needs emb == hidden)
    seq_length: PositiveInt = 35  # words per window: backpropagation through time stops at its edges
    batch: PositiveInt = 32  # contiguous rows of the training block read side by side
    optimizer: Optimizer = "adam"  # the update rule
    lr: PositiveFloat = 2e-3  # learning rate (the peak, with the cosine schedule)
    schedule: Literal["constant", "cosine"] = "cosine"  # cosine: lr -> 0 at `steps` (set steps to the budget)
    clip: float = 1.0  # global gradient-norm clip; <= 0 turns it off
    steps: PositiveInt = 8000  # step budget (about 11 epochs of Austen's training words at batch 32 x 35)
    minutes: NonNegativeFloat = 0.0  # > 0: stop at the first evaluation after this much wall time of training
    eval_every: PositiveInt = 500  # steps between evaluations on the validation block
    eval_words: NonNegativeInt = 20000  # words of the validation block scored at each evaluation; 0: all
    test_words: NonNegativeInt = 0  # words of the validation and test blocks scored at the end; 0: all


class WordLM(nn.Module):
    """ids (N, L) -> embedding -> recurrent layers -> linear head (tied or not) -> logits (N, L, V), and the state."""

    def __init__(self, cfg: WordLMConfig, vocab: int):
        super().__init__()
        if cfg.tie and cfg.emb != cfg.hidden:
            raise ValueError(f"tie=true shares the embedding with the head: it needs emb == hidden, got emb={cfg.emb}, "
                             f"hidden={cfg.hidden}")
        self.embed = nn.Embedding(vocab, cfg.emb)
        self.drop = nn.Dropout(cfg.dropout)
        self.rnn = RECURRENT[cfg.model](cfg.emb, cfg.hidden, num_layers=cfg.layers, batch_first=True,
                                        dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.head = nn.Linear(cfg.hidden, vocab)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)  # Zaremba et al.'s range; N(0, 1) rows would swamp the head
        if cfg.tie:
            self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor, state=None):
        out, state = self.rnn(self.drop(self.embed(ids)), state)  # (N, L, H)
        return self.head(self.drop(out)), state


def encode(tokens: list[str], vocab: list[str]) -> np.ndarray:
    index = {w: i for i, w in enumerate(vocab)}
    unk = index[UNK]
    return np.array([index.get(t, unk) for t in tokens], dtype=np.int64)


def word_lm(cfg: WordLMConfig, ctx) -> dict:
    text = load_corpus(cfg.corpus, cfg.text_file)
    tokens = words(text.text)
    (a, b), (c, d), (e, f) = split_blocks(len(tokens))
    counts = Counter(tokens[a:b])
    vocab = [UNK] + [w for w, _ in counts.most_common(cfg.vocab_size - 1) if w != UNK]
    ids = encode(tokens, vocab)
    train, val, test = ids[a:b], ids[c:d], ids[e:f]
    ctx.run.write_json("vocab.json", {"words": vocab})
    dev = ctx.device
    model = WordLM(cfg, len(vocab)).to(dev)
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    data = rows(train, cfg.batch).to(dev)
    n_windows = (data.shape[1] - 1) // cfg.seq_length
    if n_windows < 1:
        raise ValueError(f"the training block's rows have {data.shape[1]} words, fewer than seq_length + 1; lower "
                         "batch or seq_length")
    carry = Values(state=None, seconds=0.0)
    clock = {"last": time.perf_counter()}

    def step(i: int) -> dict[str, float]:
        w = i % n_windows
        x, y = window(data, w, cfg.seq_length)
        lr = cfg.lr * (cosine(i, cfg.steps) if cfg.schedule == "cosine" else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        logits, state = model(x, None if w == 0 else carry.state)
        loss = F.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1))
        norm = clipped_step(loss, model, opt, cfg.clip)
        carry.state = detach(state)
        now = time.perf_counter()
        carry.seconds += now - clock["last"]
        clock["last"] = now
        return {"loss": loss.item(), "grad_norm": norm, "lr": lr}

    def evaluate(i: int) -> dict[str, float]:
        loss = nats_per_char(model, val[:cfg.eval_words] if cfg.eval_words else val, min_row=500)
        return {"loss": loss, "perplexity": math.exp(loss), "minutes": carry.seconds / 60}

    result = fit(step, cfg.steps, ctx, state={"model": model, "optimizer": opt, "carry": carry},
                 eval_fn=evaluate, eval_every=cfg.eval_every, monitor="loss", mode="min",
                 stop_fn=lambda i, ev: cfg.minutes > 0 and carry.seconds >= cfg.minutes * 60,
                 desc=f"word-lm {cfg.model}", config=vars(cfg))
    best = checkpoint.load(ctx.run / "checkpoint.pt", map_location=dev)
    checkpoint.restore(best, restore_rng=False, model=model)
    val_part, test_part = (val[:cfg.test_words], test[:cfg.test_words]) if cfg.test_words else (val, test)
    val_loss, test_loss = (nats_per_char(model, part, min_row=500) for part in (val_part, test_part))
    t0 = time.perf_counter()
    kn = KneserNeyTrigram(train, len(vocab))
    kn_val, kn_test = kn.perplexity(val_part, ids[c - 2:c]), kn.perplexity(test_part, ids[e - 2:e])
    kn_seconds = time.perf_counter() - t0
    _figure(ctx.run, cfg, kn_val)
    return {"val_perplexity": math.exp(val_loss), "test_perplexity": math.exp(test_loss),
            "ngram_val_perplexity": kn_val, "ngram_test_perplexity": kn_test,
            "test_improvement_over_ngram": 1 - math.exp(test_loss) / kn_test,
            "val_loss": val_loss, "test_loss": test_loss, "steps": result["steps"],
            "best_step": best.value("step", int), "train_minutes": carry.seconds / 60,
            "stopped_on_time": result["stopped_early"], "ngram_seconds": kn_seconds,
            "ngram_discounts": [round(d, 4) for d in kn.D],
            "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(vocab),
            "unk_rate_test": float((test_part == 0).mean()), "words": len(tokens), "corpus": text.source,
            "split": describe_split(len(tokens), "words") + " (train, validation, test)"}


def _figure(run, cfg: WordLMConfig, kn_val: float) -> None:
    train, ev = run.metrics("train"), run.metrics("eval")
    fig, (left, right) = plots.subplots(1, 2, figsize=(11, 4))
    ys = [math.exp(r["loss"]) for r in train]
    span = max(1, len(ys) // 100)
    left.plot([r["step"] for r in train][span - 1:], np.convolve(ys, np.ones(span) / span, "valid"), alpha=0.7,
              label="train (dropout on)")
    left.plot([r["step"] for r in ev], [r["perplexity"] for r in ev], marker="o", markersize=3, label="validation")
    right.plot([r["minutes"] for r in ev], [r["perplexity"] for r in ev], marker="o", markersize=3,
               label=f"{cfg.model} validation")
    for ax in (left, right):
        ax.axhline(kn_val, color="grey", ls="--", label="Kneser-Ney trigram, validation")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    left.set(xlabel="step", ylabel="perplexity", title="word-lm: perplexity")
    right.set(xlabel="wall time of training (minutes)", ylabel="validation perplexity",
              title="validation perplexity against wall time")
    plots.save(fig, run / "perplexity.png", caption=f"Perplexity (exp of the cross-entropy per word) of the "
               f"{cfg.layers}-layer {cfg.model} (embedding {cfg.emb}, hidden {cfg.hidden}, dropout {cfg.dropout}, "
               f"{'tied' if cfg.tie else 'untied'} embeddings) on training batches (running mean) and on the "
               "validation block; dashed: the interpolated Kneser-Ney trigram counted on the same training words. "
               "Right: the validation perplexity against the wall time of training.")


QUICK = {"steps": 30, "emb": 32, "hidden": 32, "vocab_size": 2000, "eval_every": 15, "eval_words": 3000,
         "test_words": 5000, "batch": 16}
experiment("word-lm", WordLMConfig, quick=QUICK, available=missing_corpus, seeds=2,
           help="Word language model: 2-layer LSTM (embedding, dropout, tied head) against a Kneser-Ney trigram; "
                "perplexity")(word_lm)
