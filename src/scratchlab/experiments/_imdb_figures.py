"""Figures for the IMDB experiments: attention weights over words, and test accuracy per model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scratchlab.data.imdb import CLASSES, TextSet
from scratchlab.data.text import PAD, Vocabulary
from scratchlab.run import plots

MAX_WORDS = 32  # words shown per review: a row stays readable


def pick_reviews(data: TextSet, vocab: Vocabulary, n: int, pool: int = 1000) -> list[int]:
    """The shortest reviews among the first `pool`, alternating negative and positive (short rows read best)."""
    lengths = np.array([len(vocab.ids(t)) for t in data.texts[:pool]])
    by_label = [[i for i in np.argsort(lengths, kind="stable") if data.labels[i] == y] for y in (1, 0)]
    picked = [by_label[k % 2][k // 2] for k in range(n) if k // 2 < len(by_label[k % 2])]
    return [int(i) for i in picked]


def attention_figure(model: torch.nn.Module, vocab: Vocabulary, data: TextSet, path: Path, n: int,
                     what: str) -> Path:
    """One row per review: its last words, shaded by the attention weight each received."""
    picked = pick_reviews(data, vocab, n)
    ids = vocab.encode([data.texts[i] for i in picked])
    model.eval()
    with torch.no_grad():
        logits, weights = model(torch.from_numpy(ids).to(next(model.parameters()).device))
    probs, weights = torch.sigmoid(logits).cpu().numpy(), weights.cpu().numpy()
    fig, axes = plots.subplots(len(picked), 1, figsize=(12, 1.5 * len(picked) + 0.6), squeeze=False)
    for ax, row, w, p, i in zip(axes[:, 0], ids, weights, probs, picked, strict=True):
        keep = np.flatnonzero(row != PAD)[-MAX_WORDS:]
        ax.imshow(w[keep][None], cmap="Reds", aspect="auto", vmin=0)
        ax.set_xticks(range(len(keep)), [vocab.words[t] for t in row[keep]], rotation=60, ha="right", fontsize=8)
        ax.set_yticks([])
        cut = "" if (row != PAD).sum() <= MAX_WORDS else f", last {MAX_WORDS} words"
        ax.set_title(f"true {CLASSES[data.labels[i]]}, p(pos) = {p:.2f}, weight on shown words "
                     f"{w[keep].sum():.2f}{cut}", fontsize=9)
    fig.suptitle(f"attention weights over {what}", fontsize=10)
    return plots.save(fig, path, caption=f"Attention weights of the LSTM with attention over {what}, one row per "
                      "review (its last words; darker red = more weight). A model that reads sentiment puts its "
                      "weight on the words that carry it ('great', 'awful'), not evenly or on the last word alone.")


def compare_figure(variants: list[dict], path: Path, what: str) -> Path:
    """Test accuracy per model: the mean over seeds as a bar, its 95% interval as the error bar (variants are a
    sweep summary's)."""
    fig, ax = plots.subplots(figsize=(6, 3.5))
    names = [v["name"] for v in variants]
    acc = [v["metrics"]["test_accuracy"] for v in variants]
    err = [[0 if a["std"] is None else a["mean"] - a["ci95_low"] for a in acc],
           [0 if a["std"] is None else a["ci95_high"] - a["mean"] for a in acc]]
    ax.bar(names, [a["mean"] for a in acc], yerr=err, capsize=4, color="tab:blue")
    ax.axhline(0.5, color="gray", linestyle="--", label="chance")
    for k, a in enumerate(acc):
        ax.text(k, min(1.0, a["mean"] + err[1][k]) + 0.01, f"{a['mean']:.3f}", ha="center", fontsize=8)
    n = sorted({a["n"] for a in acc})
    ax.set(ylim=(0, 1.08), ylabel="test accuracy",
           title=f"test accuracy on {what} (mean, 95% interval; n = {', '.join(map(str, n))})")
    ax.legend(loc="lower right")
    return plots.save(fig, path, caption=f"Test accuracy on {what} of each model, the mean over seeds as a bar "
                      "and its 95% interval as the error bar; the dashed line is chance (0.5). Models whose bars "
                      "overlap are not told apart by these seeds.")
