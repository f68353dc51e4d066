"""IMDB sentiment: `imdb` trains one classifier, `imdb-compare` trains all five on the same data.

    scratchlab data fetch imdb                      # the official archive (84 MB), checked and extracted
    scratchlab run imdb --set model=lstm-attention  # or lstm | gru | mlp | bag; --set bidirectional=true
    scratchlab predict RUN_DIR "A moving, beautifully shot film."
    scratchlab run imdb --quick                     # seconds, on SYNTHETIC reviews (see below)

Data: `corpus=imdb` reads real files: `data_dir` when given (aclImdb tree, four-file layout or train/test CSV),
else $SCRATCHLAB_DATA/imdb or the cache. Without them `reproduce` skips these experiments and says how to fetch.
`corpus=synthetic` (what `--quick` sets) generates reviews from word lists, writes them in the official aclImdb
layout and reads them back through the same loader: the whole pipeline runs, and every summary says the data
was synthetic. Validation is a seeded 25% of train; the checkpoint kept is the one with the lowest validation
loss, and the test split is scored once, with it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F

from scratchlab.data import imdb, synthreviews
from scratchlab.data.text import PAD, UNK, TextSettings, Vocabulary, tokenize
from scratchlab.experiments import Plan, experiment, hook, sweep_experiment
from scratchlab.experiments._imdb_figures import attention_figure, compare_figure
from scratchlab.rnn.classifiers import MODELS, build_classifier
from scratchlab.run import config as C
from scratchlab.run import plots
from scratchlab.run.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ProperFraction,
    Range,
    Rate,
)
from scratchlab.run.rundir import RunDir
from scratchlab.train import checkpoint
from scratchlab.train.loop import Context, fit

SYNTHETIC_NOTE = "SYNTHETIC reviews generated from word lists, not IMDB: these numbers say nothing about IMDB"
NO_KNOWN_WORDS = "none (no word of the text is in the vocabulary)"


@dataclass
class TextRunConfig:
    corpus: Literal["imdb", "synthetic"] = "imdb"  # synthetic: reviews generated from word lists, offline (not IMDB)
    data_dir: str = ""           # a folder with a corpus in one of the three layouts; "" = search
    synthetic_train: PositiveInt = 2000  # corpus=synthetic: reviews generated for train (25% become validation)
    synthetic_test: PositiveInt = 1000  # corpus=synthetic: reviews generated for test
    length: PositiveInt = 400    # ids per review, padding before the review
    max_vocab: Annotated[int, Range(ge=3)] = 20000  # ids in all, <pad> and <unk> included: at least one word
    min_freq: PositiveInt = 2  # a word needs this many training occurrences to get an id
    stop_words: bool = False     # the stop-word list holds "not", "no", "nor": off by default for sentiment
    stem: bool = False  # strip common suffixes, so "loved" and "loving" share an id
    embed_dim: PositiveInt = 128  # word-vector size
    hidden_size: PositiveInt = 128  # recurrent hidden units (per direction)
    num_layers: PositiveInt = 1  # stacked recurrent layers
    bidirectional: bool = False  # also read each review backwards
    packed: bool = False  # recurrent models read each review's real length (a PackedSequence), not its left padding
    dropout: Rate = 0.5  # on the features before the classifier head (and between layers)
    epochs: PositiveInt = 5  # passes over the training reviews
    batch_size: PositiveInt = 64  # reviews per step
    lr: PositiveFloat = 1e-3  # Adam's learning rate
    weight_decay: NonNegativeFloat = 0.0  # Adam's L2 penalty
    clip: PositiveFloat = 5.0    # gradient-norm clip: LSTMs over 400 steps have occasional spikes
    val_fraction: ProperFraction = 0.25  # of the training reviews, held out for validation
    eval_every: NonNegativeInt = 0  # steps between validations; 0 = once per epoch
    figure_reviews: NonNegativeInt = 4  # test reviews in the attention figure


@dataclass
class ImdbConfig(TextRunConfig):
    model: Literal["lstm", "lstm-attention", "gru", "mlp", "bag"] = "lstm-attention"  # see rnn/classifiers.py


@dataclass
class CompareConfig(TextRunConfig):
    models: tuple[str, ...] = MODELS  # the classifiers compared (a subset of the `model` choices)
    seeds: PositiveInt = 5  # each model over seeds seed, seed + 1, ...


# --quick: synthetic reviews (about 25 words each, so length 48 loses nothing), small model, 60 steps.
QUICK = {"corpus": "synthetic", "synthetic_train": 800, "synthetic_test": 400, "length": 48, "max_vocab": 2000,
         "min_freq": 1, "embed_dim": 32, "hidden_size": 32, "dropout": 0.1, "epochs": 6, "batch_size": 64,
         "lr": 1e-2, "figure_reviews": 3}


def missing_data(cfg: TextRunConfig) -> str | None:
    """None when the run can get its data; else why not and how to fetch it."""
    if cfg.corpus == "synthetic" or imdb.find(cfg.data_dir or None) is not None:
        return None
    looked = ", ".join(str(f) for f in imdb.search_folders(cfg.data_dir or None))
    return (f"real IMDB not found (looked in {looked}); fetch it with `scratchlab data fetch imdb` or point to a "
            "corpus with --set data_dir=DIR (--quick runs on synthetic reviews instead)")


def load_data(cfg: TextRunConfig, seed: int) -> tuple[imdb.TextSet, imdb.TextSet, imdb.TextSet]:
    """(train, validation, test) from the configured corpus."""
    if cfg.corpus == "synthetic":
        with tempfile.TemporaryDirectory() as tmp:  # through the official layout and its reader, as real data
            imdb.write_aclimdb(tmp, synthreviews.corpus(cfg.synthetic_train, cfg.synthetic_test, seed), seed)
            train, test = (imdb.read_corpus(tmp, s) for s in imdb.SPLITS)
        for d in (train, test):
            d.source = f"synthetic reviews generated from word lists (seed {seed}; not IMDB), via the aclImdb layout"
    else:
        if (reason := missing_data(cfg)) is not None:
            raise FileNotFoundError(reason)
        folder = imdb.find(cfg.data_dir or None)
        train, test = (imdb.read_corpus(folder, s) for s in imdb.SPLITS)
    train, val = imdb.split_validation(train, cfg.val_fraction, seed)
    return train, val, test


def text_settings(cfg: TextRunConfig) -> TextSettings:
    return TextSettings(stop_words=cfg.stop_words, stem=cfg.stem, min_freq=cfg.min_freq, max_size=cfg.max_vocab,
                        length=cfg.length)


def build_model(cfg: ImdbConfig, vocab_size: int) -> torch.nn.Module:
    return build_classifier(cfg.model, vocab_size, cfg.length, embed_dim=cfg.embed_dim, hidden_size=cfg.hidden_size,
                            num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                            packed=cfg.packed)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> dict[str, float]:
    """Mean binary cross-entropy and accuracy over (x, y), in eval mode (no dropout)."""
    was_training = model.training
    model.eval()
    loss = correct = 0.0
    for i in range(0, len(x), batch):
        logits, _ = model(x[i:i + batch])
        loss += F.binary_cross_entropy_with_logits(logits, y[i:i + batch], reduction="sum").item()
        correct += ((logits > 0).float() == y[i:i + batch]).sum().item()
    model.train(was_training)
    return {"loss": loss / len(x), "accuracy": correct / len(x)}


def train_model(cfg: ImdbConfig, ctx: Context, data: tuple[imdb.TextSet, ...]) -> dict:
    """Train `cfg.model` on (train, val, test) into ctx.run; returns the summary."""
    train, val, test = data
    vocab = Vocabulary.fit(train.texts, text_settings(cfg))
    vocab.save(ctx.run / "vocab.json")  # the model's input spec travels with checkpoint.pt

    def tensors(d: imdb.TextSet) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(vocab.encode(d.texts)).to(ctx.device),
                torch.from_numpy(d.labels).float().to(ctx.device))

    (xtr, ytr), (xva, yva), (xte, yte) = tensors(train), tensors(val), tensors(test)
    model = build_model(cfg, len(vocab)).to(ctx.device)
    trained = ctx.world.wrap(model)  # DDP under torchrun; `model` is what is evaluated and checkpointed
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = -(-len(xtr) // cfg.batch_size)
    ctx.world.shard(len(xtr) - (per_epoch - 1) * cfg.batch_size)  # an epoch's last batch too small to split: now

    def step(i: int) -> dict[str, float]:
        epoch, b = divmod(i, per_epoch)
        # The order depends only on (seed, epoch), so a resumed run sees the same batches.
        order = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(ctx.seed * 100_003 + epoch))
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        part = ctx.world.shard(len(idx))  # this process's reviews; weight 1 unless the last batch splits unevenly
        idx = idx[part.rows].to(ctx.device)
        logits, _ = trained(xtr[idx])
        loss = F.binary_cross_entropy_with_logits(logits, ytr[idx]) * part.weight
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        accuracy = ((logits > 0).float() == ytr[idx]).float().mean().item() * part.weight
        return {"loss": loss.item(), "accuracy": accuracy}

    result = fit(step, cfg.epochs * per_epoch, ctx, state={"model": model, "optimizer": opt},
                 eval_fn=lambda i: evaluate(model, xva, yva), eval_every=cfg.eval_every or per_epoch,
                 monitor="loss", mode="min", desc=f"imdb {cfg.model}", config=C.to_dict(cfg))
    checkpoint.restore(checkpoint.load(ctx.run / "checkpoint.pt", ctx.device), restore_rng=False, model=model)
    test_metrics = evaluate(model, xte, yte)
    plots.train_eval_curves(ctx.run, ctx.run / "curves.png", title=cfg.model,
                            caption=f"Loss and accuracy of the {cfg.model} model on training batches (train) and "
                            "on the validation reviews (eval); the test score is from the step of lowest "
                            "validation loss, so a later rise of the eval loss (overfitting) costs nothing.")
    if cfg.model == "lstm-attention" and cfg.figure_reviews > 0:
        attention_figure(model, vocab, test, ctx.run / "attention.png", cfg.figure_reviews, data_label(cfg))
    return {"data": train.source if cfg.corpus == "imdb" else SYNTHETIC_NOTE, "model": cfg.model,
            "train_reviews": len(train), "val_reviews": len(val), "test_reviews": len(test),
            "vocab_size": len(vocab), "params": sum(p.numel() for p in model.parameters()),
            "steps": result["steps"], "best_val_loss": result["best"], "test_loss": test_metrics["loss"],
            "test_accuracy": test_metrics["accuracy"]}


def data_label(cfg: TextRunConfig) -> str:
    """What the figures say they show."""
    return "synthetic reviews (not IMDB)" if cfg.corpus == "synthetic" else "test reviews"


@experiment("imdb", ImdbConfig, help="IMDB sentiment with one model (--set model=lstm|lstm-attention|gru|mlp|bag)",
            quick=QUICK, available=missing_data, parallel=True, batch="batch_size")
def run_imdb(cfg: ImdbConfig, ctx: Context) -> dict:
    return train_model(cfg, ctx, load_data(cfg, ctx.seed))


@sweep_experiment("imdb-compare", CompareConfig, help="IMDB sentiment: LSTM, LSTM+attention, GRU, MLP and bag of "
                  "embeddings on the same data over seeds, one table", quick={**QUICK, "seeds": 2},
                  available=missing_data)
def compare_plan(cfg: CompareConfig) -> Plan:
    """Each model is a variant of `imdb` with the shared settings; every run directory is a complete `imdb` run
    (`scratchlab predict RUN/lstm-attention/seed0 ...`)."""
    unknown = [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise ValueError(f"models: {unknown} unknown; expected a subset of {list(MODELS)}")
    default = C.to_dict(ImdbConfig())
    shared = {k: v for k, v in C.to_dict(cfg).items() if k not in ("models", "seeds") and v != default[k]}
    return Plan("imdb", {m: {"model": m} for m in cfg.models}, seeds=cfg.seeds, base=shared,
                metrics=("test_accuracy", "test_loss", "best_val_loss", "params"))


@hook("imdb-compare", "finish")
def compare_finish(cfg: CompareConfig, summary: dict, run: RunDir) -> dict:
    """The test-accuracy figure with intervals over seeds; the model of lowest mean validation loss; attention
    figures of each attention model's first seed."""
    ok = [v for v in summary["variants"] if v["n"]]
    compare_figure(ok, run / "test_accuracy.png", data_label(cfg))
    first = run.read_json("config.json")["seed"]
    for v in ok:
        fig = run / v["name"] / f"seed{first}" / "attention.png"
        if fig.exists():  # the report shows the top folder's figures
            plots.copy(fig, run / f"attention_{v['name']}.png")
    data = RunDir(run / ok[0]["name"] / f"seed{first}").read_json("summary.json")["data"] if ok else ""
    best = min(ok, key=lambda v: v["metrics"]["best_val_loss"]["mean"])["name"] if ok else None
    return {"data": data, "best_model": best}


@torch.no_grad()
def leave_one_out(model: torch.nn.Module, row: np.ndarray, batch: int = 128) -> np.ndarray:
    """(L,) p(positive) with the whole row minus p(positive) with word t removed (0 on padding).

    Removing a word re-pads the row on the left, as the encoder would have seen the shorter review. Removing a
    review's only word leaves no words, which the text pipeline encodes as one <unk> (`Vocabulary.ids`), so that row
    is [<pad> ... <pad>, <unk>] too: never all padding, which attention cannot weigh. Positive: the word pushed
    towards "positive". Works for every model, with or without attention.
    """
    real = np.flatnonzero(row != PAD)
    if not len(real):
        return np.zeros(len(row))
    variants = np.stack([np.concatenate([[PAD], row[:t], row[t + 1:]]) for t in real])  # (n, L)
    variants[(variants == PAD).all(axis=1), -1] = UNK
    p = torch.sigmoid(model(torch.from_numpy(row[None]))[0]).item()
    without = torch.cat([torch.sigmoid(model(torch.from_numpy(variants[i:i + batch]))[0])
                         for i in range(0, len(variants), batch)]).numpy()
    delta = np.zeros(len(row))
    delta[real] = p - without
    return delta


def predict_text(run_dir: Path, text: str, top: int = 5) -> str:
    """Label, its probability, the most-attended words (attention models) and the words whose removal changes
    p(positive) most (every model), from a trained `imdb` run.

    A one-word text is classified like any other. A text with no words left after cleaning ("", "!!!", "10/10",
    or only stop words when the run drops them) is a ValueError saying so: there is nothing to classify, and the
    model's answer for it (one <unk>, as training encodes an empty review) would say nothing about the text.
    """
    run = RunDir(run_dir)
    saved = run.read_json("config.json")
    cfg = C.from_dict(ImdbConfig, saved["config"])
    vocab = Vocabulary.load(run / "vocab.json")
    if not tokenize(text, vocab.settings):
        kept = "letters only" + (", stop words removed" if vocab.settings.stop_words else "")
        raise ValueError(f"no words to classify in {text[:40]!r} after cleaning ({kept})")
    model = build_model(cfg, len(vocab))
    checkpoint.restore(checkpoint.load(run / "checkpoint.pt"), restore_rng=False, model=model)
    model.eval()
    ids = vocab.encode([text])
    with torch.no_grad():
        logits, weights = model(torch.from_numpy(ids))
    p = torch.sigmoid(logits[0]).item()
    label, prob = ("positive", p) if p >= 0.5 else ("negative", 1 - p)
    lines = [f"{label} (probability {prob:.3f}; model {cfg.model})"]
    if weights is None:
        lines.append(f"most-attended words: none; model {cfg.model!r} has no attention "
                     "(train with --set model=lstm-attention)")
    else:
        w = weights[0].numpy()
        order = [i for i in np.argsort(-w, kind="stable") if ids[0, i] > 1][:top]  # words: no <pad>, no <unk>
        lines.append("most-attended words: " + (", ".join(f"{vocab.words[ids[0, i]]} ({w[i]:.2f})" for i in order)
                                                or NO_KNOWN_WORDS))
    delta = leave_one_out(model, ids[0])
    order = [i for i in np.argsort(-np.abs(delta), kind="stable") if ids[0, i] > 1][:top]
    lines.append("words that moved p(positive) most (removing each in turn): "
                 + (", ".join(f"{vocab.words[ids[0, i]]} ({delta[i]:+.2f})" for i in order) or NO_KNOWN_WORDS))
    unknown = int((ids[0] == 1).sum())
    if unknown:
        lines.append(f"{unknown} word(s) not in the vocabulary were read as <unk>")
    if cfg.corpus == "synthetic":
        lines.append("note: this model was trained on synthetic reviews, not IMDB")
    return "\n".join(lines)


@hook("imdb", "predict")
def predict(run_dir: Path, text: str) -> str:
    return predict_text(run_dir, text)


@hook("imdb-compare", "predict")
def predict_compare(run_dir: Path, text: str) -> str:
    """An `imdb-compare` run answers with its model of lowest validation loss."""
    run = RunDir(run_dir)
    best, first = run.read_json("summary.json")["best_model"], run.read_json("config.json")["seed"]
    return (f"[{best}, lowest mean validation loss of the compared models; its seed {first}]\n"
            + predict_text(run.path / best / f"seed{first}", text))
