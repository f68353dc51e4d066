"""A character-level language model: a two-layer LSTM reads a book and learns to write like it.

The course's setting (UvA practicals, assignment 2): sequence length 30, hidden 128, 2 layers, batch 64, RMSprop
at lr 2e-3. Characters go in one-hot; a linear head on each step's hidden state gives next-character logits; the
loss is cross-entropy in nats per character (bits per character = nats / ln 2).

Truncated backpropagation through time, with the state carried across batches: the training block is cut into
`batch` contiguous rows (row b is characters [b*M, (b+1)*M) of the block), and step i reads window w = i mod W of
every row, characters [w*L, (w+1)*L), predicting each next character. The state at the end of window w starts
window w+1 (detached, so gradients stop at the window's edge, the "truncation"); it is reset to zeros when the
windows wrap round to the start of the rows. Evaluation reads the validation (or test) block the same way, with no
gradient, and counts every predicted character once.

`engine=both` trains torch.nn's layer from the same initial weights on the same batches beside scratchlab.rnn's
(one plot, both curves); `minutes` stops training at the first evaluation after that much wall time. The summary
holds samples: greedy, and at temperatures 0.5, 1.0 and 2.0; `scratchlab generate RUN_DIR` writes more.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scratchlab.data.corpus import Name, describe_split, load_corpus, split_blocks
from scratchlab.data.synthetic import CharVocab
from scratchlab.experiments import experiment, hook
from scratchlab.experiments._recurrent import RECURRENT, Kind, Optimizer, clipped_step, make_optimizer
from scratchlab.run import config as C
from scratchlab.run import plots
from scratchlab.run.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Rate
from scratchlab.run.rundir import RunDir
from scratchlab.train import checkpoint
from scratchlab.train.loop import Values, fit

Engine = Literal["ours", "torch", "both"]
TORCH: dict[str, type[nn.Module]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
TEMPERATURES = (0.5, 1.0, 2.0)  # the course's, beside greedy


@dataclass
class CharLMConfig:
    corpus: Name = "austen"  # austen (offline, Debian's r-cran-janeaustenr) or tinyshakespeare (checked download)
    text_file: str = ""  # any UTF-8 text file instead of `corpus`
    model: Kind = "lstm"  # the recurrent cell
    engine: Engine = "ours"  # scratchlab.rnn's layer, torch.nn's, or both side by side from the same weights
    seq_length: PositiveInt = 30  # characters per window: backpropagation through time stops at its edges
    hidden: PositiveInt = 128  # hidden units per layer
    layers: PositiveInt = 2  # stacked recurrent layers
    dropout: Rate = 0.0  # between the recurrent layers (needs layers >= 2)
    batch: PositiveInt = 64  # contiguous rows of the training block read side by side
    optimizer: Optimizer = "rmsprop"  # the update rule
    lr: PositiveFloat = 2e-3  # learning rate
    clip: float = 5.0  # global gradient-norm clip; <= 0 turns it off
    steps: PositiveInt = 20000  # step budget (one window of every row per step)
    minutes: NonNegativeFloat = 0.0  # > 0: stop at the first evaluation after this much wall time of training
    eval_every: PositiveInt = 250  # steps between evaluations on the validation block
    eval_chars: NonNegativeInt = 50000  # characters of the validation block scored at each evaluation; 0: all
    test_chars: NonNegativeInt = 0  # characters of the validation and test blocks scored at the end; 0: all
    sample_length: PositiveInt = 300  # characters generated for each of the summary's samples
    prompt: str = ""  # the samples start from this text; "": the corpus's first character


class CharLM(nn.Module):
    """ids (N, L) -> one-hot -> recurrent layers (batch_first) -> linear head -> logits (N, L, V), and the state."""

    def __init__(self, kind: str, vocab: int, hidden: int, layers: int, dropout: float = 0.0, engine: str = "ours"):
        super().__init__()
        layer = (RECURRENT if engine == "ours" else TORCH)[kind]
        self.vocab = vocab
        self.rnn = layer(vocab, hidden, num_layers=layers, batch_first=True, dropout=dropout)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids: torch.Tensor, state=None):
        out, state = self.rnn(F.one_hot(ids, self.vocab).float(), state)  # (N, L, H)
        return self.head(out), state


def build(cfg: CharLMConfig, vocab: int, engine: str) -> CharLM:
    return CharLM(cfg.model, vocab, cfg.hidden, cfg.layers, cfg.dropout, engine)


def rows(ids: np.ndarray, n: int) -> torch.Tensor:
    """(n, M): `ids` cut into n contiguous rows of M = len(ids) // n (the tail that does not fill a row is dropped).

    >>> rows(np.arange(7), 2).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    m = len(ids) // n
    if m < 2:
        raise ValueError(f"{len(ids)} characters are too few for {n} rows of at least 2 (lower batch)")
    return torch.from_numpy(np.ascontiguousarray(ids[:m * n].reshape(n, m)))


def window(data: torch.Tensor, w: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs data[:, wL:(w+1)L] and their next characters, targets data[:, wL+1:(w+1)L+1]."""
    return data[:, w * length:(w + 1) * length], data[:, w * length + 1:(w + 1) * length + 1]


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def nats_per_char(model: CharLM, ids: np.ndarray, n_rows: int = 64, length: int = 250, min_row: int = 1000) -> float:
    """Mean cross-entropy (nats) of predicting every character of `ids` after the first of each of (at most)
    `n_rows` contiguous rows, the state carried along each row (as training reads the text, without gradients).
    Each row is at least `min_row` characters long (fewer rows for a short text): a row starts from a zero state, which
    the model sees only once per pass in training, so short rows would score the warm-up, not the model."""
    dev = next(model.parameters()).device
    data = rows(ids, max(1, min(n_rows, len(ids) // min_row))).to(dev)
    total, count, state = 0.0, 0, None
    model.eval()
    with torch.no_grad():
        for start in range(0, data.shape[1] - 1, length):
            x, y = data[:, start:start + length], data[:, start + 1:start + length + 1]
            x = x[:, :y.shape[1]]
            logits, state = model(x, state)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
            count += y.numel()
    model.train()
    return total / count


def generate(model: CharLM, vocab: CharVocab, prompt: str, length: int, temperature: float | None = None,
             seed: int = 0) -> str:
    """`prompt` and `length` characters after it: each the argmax (temperature None) or drawn from
    softmax(logits / temperature), fed back in with the state carried."""
    missing = sorted(set(prompt) - set(vocab.chars))
    if missing:
        raise ValueError(f"prompt: characters {missing} are not in this model's vocabulary of {len(vocab)} "
                         f"characters (those of its corpus)")
    if not prompt:
        raise ValueError("prompt: give at least one character to start from")
    if temperature is not None and temperature <= 0:
        raise ValueError(f"temperature: expected a number > 0 (or greedy), got {temperature}")
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    ids = torch.from_numpy(vocab.encode(prompt)).to(dev)[None]  # (1, P)
    out: list[int] = []
    model.eval()
    with torch.no_grad():
        logits, state = model(ids)
        for _ in range(length):
            last = logits[0, -1].float().cpu()
            nxt = int(last.argmax()) if temperature is None else \
                int(torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=gen))
            out.append(nxt)
            logits, state = model(torch.tensor([[nxt]], device=dev), state)
    model.train()
    return prompt + vocab.decode(out)


def char_lm(cfg: CharLMConfig, ctx) -> dict:
    """Train the character model; validation curve, test at the end, samples."""
    if cfg.dropout and cfg.layers < 2:
        raise ValueError(f"dropout acts between recurrent layers: it needs layers >= 2, got layers={cfg.layers}")
    text = load_corpus(cfg.corpus, cfg.text_file)
    vocab = CharVocab.of(text.text)  # every character of the corpus, so the validation and test blocks encode
    ids = vocab.encode(text.text)
    (a, b), (c, d), (e, f) = split_blocks(len(ids))
    train, val, test = ids[a:b], ids[c:d], ids[e:f]
    ctx.run.write_json("vocab.json", {"chars": vocab.chars, "start": text.text[0]})
    dev = ctx.device
    engines = ("ours", "torch") if cfg.engine == "both" else (cfg.engine,)
    nets = {engines[0]: build(cfg, len(vocab), engines[0]).to(dev)}
    if cfg.engine == "both":  # torch.nn's layer from the same weights (same parameter names and shapes)
        nets["torch"] = build(cfg, len(vocab), "torch").to(dev)
        nets["torch"].load_state_dict(nets["ours"].state_dict())
    main = nets[engines[0]]
    opts = {k: make_optimizer(cfg.optimizer, n.parameters(), cfg.lr) for k, n in nets.items()}
    data = rows(train, cfg.batch).to(dev)  # (batch, M)
    n_windows = (data.shape[1] - 1) // cfg.seq_length
    if n_windows < 1:
        raise ValueError(f"the training block's rows have {data.shape[1]} characters, fewer than seq_length + 1 = "
                         f"{cfg.seq_length + 1}; lower batch or seq_length")
    carry = Values(states=dict.fromkeys(nets), seconds=0.0)  # the carried states; wall time of training
    clock = {"last": time.perf_counter()}

    def step(i: int) -> dict[str, float]:
        w = i % n_windows
        x, y = window(data, w, cfg.seq_length)
        out = {}
        for k, net in nets.items():
            state = None if w == 0 else carry.states[k]  # a new pass over the rows starts from zeros
            logits, state = net(x, state)
            loss = F.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1))
            out[f"grad_norm_{k}"] = clipped_step(loss, net, opts[k], cfg.clip)
            carry.states[k] = detach(state)
            out[f"loss_{k}"] = loss.item()
        now = time.perf_counter()
        carry.seconds += now - clock["last"]  # evaluations between steps count: it is the run's wall time
        clock["last"] = now
        return {"loss": out[f"loss_{engines[0]}"], **out}

    def evaluate(i: int) -> dict[str, float]:
        part = val[:cfg.eval_chars] if cfg.eval_chars else val
        ev = {f"loss_{k}": nats_per_char(net, part) for k, net in nets.items()}
        return {"loss": ev[f"loss_{engines[0]}"], "bpc": ev[f"loss_{engines[0]}"] / math.log(2), **ev,
                "minutes": carry.seconds / 60}

    def out_of_time(i: int, ev: dict[str, float]) -> bool:
        return cfg.minutes > 0 and carry.seconds >= cfg.minutes * 60

    state = {"model": main, "optimizer": opts[engines[0]], "carry": carry}
    if cfg.engine == "both":
        state |= {"twin": nets["torch"], "optimizer_twin": opts["torch"]}
    result = fit(step, cfg.steps, ctx, state=state, eval_fn=evaluate, eval_every=cfg.eval_every, monitor="loss",
                 mode="min", stop_fn=out_of_time, desc=f"char-lm {cfg.model}", config=vars(cfg))
    # The numbers and samples are the best checkpoint's (lowest validation loss), the model `generate` loads.
    best = checkpoint.load(ctx.run / "checkpoint.pt", map_location=dev)
    checkpoint.restore(best, restore_rng=False, model=main, **({"twin": nets["torch"]} if "twin" in state else {}))
    end = {k: (nats_per_char(n, val[:cfg.test_chars] if cfg.test_chars else val),
               nats_per_char(n, test[:cfg.test_chars] if cfg.test_chars else test)) for k, n in nets.items()}
    _figures(ctx.run, cfg, engines)
    prompt = cfg.prompt or text.text[0]
    samples = {"sample_greedy": generate(main, vocab, prompt, cfg.sample_length, None, ctx.seed)}
    samples |= {f"sample_temperature_{t}": generate(main, vocab, prompt, cfg.sample_length, t, ctx.seed)
                for t in TEMPERATURES}
    val_loss, test_loss = end[engines[0]]
    out = {"val_bpc": val_loss / math.log(2), "test_bpc": test_loss / math.log(2), "val_loss": val_loss,
           "test_loss": test_loss, "steps": result["steps"], "best_step": best.value("step", int),
           "train_minutes": carry.seconds / 60, "stopped_on_time": result["stopped_early"],
           "parameters": sum(p.numel() for p in main.parameters()), "vocab_size": len(vocab),
           "model": cfg.model, "engine": cfg.engine, "corpus": text.source,
           "split": describe_split(len(ids)) + " (train, validation, test)",
           "evaluated": f"{'all' if not cfg.test_chars else cfg.test_chars} characters of the validation and test "
                        "blocks, in up to 64 contiguous rows (each >= 1000 characters), state carried along each row"}
    if cfg.engine == "both":
        records = ctx.run.metrics("train")
        out |= {"val_bpc_torch": end["torch"][0] / math.log(2), "test_bpc_torch": end["torch"][1] / math.log(2),
                "max_train_loss_difference": max(abs(r["loss_ours"] - r["loss_torch"]) for r in records)}
    return out | samples


def _figures(run: RunDir, cfg: CharLMConfig, engines: tuple[str, ...]) -> None:
    train, ev = run.metrics("train"), run.metrics("eval")
    names = {"ours": f"scratchlab.rnn.{cfg.model.upper()}", "torch": f"torch.nn.{cfg.model.upper()}"}
    fig, (left, right) = plots.subplots(1, 2, figsize=(11, 4))
    styles = {"ours": {"lw": 2.0}, "torch": {"ls": "--", "lw": 1.2}}
    for k in engines:
        xs, ys = [r["step"] for r in train], [r[f"loss_{k}"] for r in train]
        span = max(1, len(ys) // 100)  # a running mean over 1% of the steps: the batches are noisy
        smooth = np.convolve(ys, np.ones(span) / span, mode="valid")
        left.plot(xs[span - 1:], smooth, alpha=0.7, label=f"{names[k]} train", **styles[k])
        left.plot([r["step"] for r in ev], [r[f"loss_{k}"] for r in ev], marker="o", markersize=3,
                  label=f"{names[k]} validation", **styles[k])
        right.plot([r["minutes"] for r in ev], [r[f"loss_{k}"] for r in ev], marker="o", markersize=3,
                   label=names[k], **styles[k])
    left.set(xlabel="step", ylabel="cross-entropy (nats/char)", title="char-lm: loss")
    right.set(xlabel="wall time of training (minutes)", ylabel="validation loss (nats/char)",
              title="validation loss against wall time")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    both = " Dashed: torch.nn's layer, trained from the same weights on the same batches; it lies on ours." \
        if len(engines) == 2 else ""
    plots.save(fig, run / "loss.png", caption=f"Left: training loss (running mean over 1% of the steps) and "
               f"validation loss of the {cfg.layers}-layer {cfg.model} (hidden {cfg.hidden}), in nats per character "
               f"(divide by ln 2 = 0.693 for bits per character). Right: the validation loss against the wall time of "
               f"training, evaluations included (what a time budget buys on this machine).{both}")


def _load(run_dir: Path) -> tuple[CharLM, CharVocab, CharLMConfig, str]:
    run = RunDir(run_dir)
    cfg = C.from_dict(CharLMConfig, run.read_json("config.json")["config"])
    saved = run.read_json("vocab.json")
    vocab = CharVocab(saved["chars"])
    model = build(cfg, len(vocab), "torch" if cfg.engine == "torch" else "ours")
    checkpoint.restore(checkpoint.load(run / "checkpoint.pt"), restore_rng=False, model=model)
    return model, vocab, cfg, saved["start"]


def generate_text(run_dir: Path, prompt: str = "", length: int = 300, temperature: float | None = 1.0,
                  seed: int = 0) -> str:
    """Text from a trained char-lm run (its best checkpoint): `prompt` (default: the corpus's first character)
    and `length` characters after it; temperature None is greedy."""
    if length < 1:
        raise ValueError(f"--length: expected at least 1 character, got {length}")
    model, vocab, cfg, start = _load(run_dir)
    return generate(model, vocab, prompt or cfg.prompt or start, length, temperature, seed)


def missing_corpus(cfg: CharLMConfig) -> str | None:
    """`reproduce` skips the experiment when its default corpus is not on this machine (nothing is downloaded)."""
    if cfg.text_file:
        return None if Path(cfg.text_file).is_file() else f"text_file={cfg.text_file}: no such file"
    try:
        load_corpus(cfg.corpus, allow_download=False)
    except FileNotFoundError as e:
        return str(e)
    return None


QUICK = {"steps": 40, "hidden": 32, "eval_every": 20, "eval_chars": 3000, "test_chars": 5000, "sample_length": 60}
experiment("char-lm", CharLMConfig, quick=QUICK, available=missing_corpus, seeds=2,
           help="Character language model (course): 2-layer LSTM on Jane Austen or tiny-shakespeare; bits per char, "
                "samples")(char_lm)
hook("char-lm", "generate")(generate_text)
