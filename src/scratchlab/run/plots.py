"""Figures from metrics (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curves(records: Sequence[dict[str, Any]], keys: Sequence[str], path: str | Path, *, title: str = "",
           xlabel: str = "step", ylabel: str = "", logy: bool = False, labels: Sequence[str] | None = None,
           ax=None) -> Path:
    """Line plot of `keys` against `step` from metrics records (e.g. `run.metrics("train")`)."""
    fig, ax = plt.subplots(figsize=(6, 4)) if ax is None else (None, ax)
    for i, key in enumerate(keys):
        pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, label=labels[i] if labels else key)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path) if fig is not None else Path(path)


def train_eval_curves(run, path: str | Path, *, metrics: Sequence[str] = ("loss", "accuracy"),
                      title: str = "") -> Path:
    """One panel per metric, train and eval split on each (the usual loss/accuracy figure)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, key in zip(axes[0], metrics, strict=True):
        for split in ("train", "eval"):
            pts = [(r["step"], r[key]) for r in run.metrics(split) if isinstance(r.get(key), int | float)]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, label=split, alpha=0.6 if split == "train" else 1.0)
        ax.set(title=f"{title} {key}".strip(), xlabel="step", ylabel=key)
        ax.grid(alpha=0.3)
        ax.legend()
    return save(fig, path)


def image_grid(images, path: str | Path, *, nrow: int = 8, title: str = "", row_labels=None) -> Path:
    """Save a grid of images (N, H, W) or (N, C, H, W), values in [0, 1] or uint8."""
    import numpy as np

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.dtype != np.uint8:
        images = (np.clip(images, 0, 1) * 255).astype(np.uint8)
    n, c, h, w = images.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    canvas = np.full((nrows * (h + 2), ncol * (w + 2), c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, ncol)
        canvas[r * (h + 2) + 1:r * (h + 2) + 1 + h, col * (w + 2) + 1:col * (w + 2) + 1 + w] = img.transpose(1, 2, 0)
    fig, ax = plt.subplots(figsize=(max(3, ncol * 0.6), max(2, nrows * 0.6 + 0.4)))
    ax.imshow(canvas.squeeze(-1) if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([] if row_labels is None else [r * (h + 2) + h / 2 for r in range(len(row_labels))])
    if row_labels is not None:
        ax.set_yticklabels(row_labels)
    ax.set_title(title)
    return save(fig, path)


def confusion_matrix(counts, classes: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """Heat map of a (K, K) count matrix, rows = true class, columns = predicted, counts written in the cells."""
    import numpy as np

    counts = np.asarray(counts)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax.imshow(counts, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set_xticks(range(k))
    ax.set_xticklabels(classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k))
    ax.set_yticklabels(classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return save(fig, path)


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def errorbars(variants: Sequence[dict[str, Any]], metrics: Sequence[str], path: str | Path, *,
              title: str = "") -> Path:
    """One panel per metric: each variant's mean over seeds, its 95% interval as the error bar, and every seed's
    value as a dot (a variant with one run has a dot and no bar). `variants` are a sweep summary's."""
    cols = min(3, len(metrics))
    rows = -(-len(metrics) // cols)
    names = [v["name"] for v in variants]
    fig, axes = plt.subplots(rows, cols, figsize=(max(3.2, 0.7 * len(names) + 1.5) * cols, 3.2 * rows),
                             squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):  # the grid may have spare panels
        for i, v in enumerate(variants):
            m = v["metrics"].get(metric)
            if m is None:
                continue
            if m["std"] is not None:
                ax.errorbar([i], [m["mean"]], yerr=[[m["mean"] - m["ci95_low"]], [m["ci95_high"] - m["mean"]]],
                            fmt="o", color="tab:blue", capsize=4, markersize=6)
            else:
                ax.plot([i], [m["mean"]], "o", color="tab:blue", markersize=6)
            ax.plot([i] * len(m["values"]), m["values"], ".", color="grey", alpha=0.6)
        ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 3 else 0, ha="right"
                      if len(names) > 3 else "center", fontsize=8)
        ax.set_title(metric, fontsize=9)
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.grid(alpha=0.3, axis="y")
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)
