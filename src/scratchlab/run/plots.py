"""Figures from metrics, drawn on matplotlib's object API, and the caption of each figure.

No global state is touched: no `matplotlib.use`, no pyplot. Every figure is a `matplotlib.figure.Figure` on its own
`FigureCanvasAgg`, so importing scratchlab in a notebook keeps the notebook's backend and inline plots, and a run's
figures never enter pyplot's figure list. To draw a figure of your own: `fig, ax = plots.subplots(...)` (pyplot's
arguments), draw on the axes, then `plots.save(fig, path, caption=...)`. In a notebook, `fig` displays itself.

Captions. `save` is the one writer of `figures.json`, beside the PNGs in each folder that has figures: a JSON
object, PNG file name -> caption (plain text, one to three sentences saying what to see in the figure), e.g.

    {"loss.png": "Training loss of both LSTMs from the same weights on the same data: the dashed curve lies on
                  the solid one. Right: their difference, of the size of float32 rounding."}

A figure saved without a caption has no entry (a stale one is removed). `captions(folder)` reads the file ({} when
there is none); `copy(src, dst)` copies a figure and its caption into another folder.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from scratchlab.run.rundir import atomic_write_text

CAPTIONS = "figures.json"  # in each folder with figures: {"<name>.png": "<caption>"}


def figure(**kw) -> Figure:
    """A Figure (`matplotlib.figure.Figure` arguments: figsize, layout, ...) drawn by Agg, outside pyplot."""
    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kw):
    """`pyplot.subplots` without pyplot: (fig, axes); `kw` go to `Figure.subplots` (squeeze, sharex, sharey, ...)."""
    fig = figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kw)


def save(fig: Figure, path: str | Path, *, caption: str = "") -> Path:
    """Write `fig` as a PNG at `path` and record its caption in the folder's figures.json."""
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _record_caption(path, caption)
    return path


def captions(folder: str | Path) -> dict[str, str]:
    """figures.json of `folder`: PNG file name -> caption ({} when there is none)."""
    try:
        return json.loads((Path(folder) / CAPTIONS).read_text())
    except FileNotFoundError:
        return {}


def copy(src: str | Path, dst: str | Path) -> Path:
    """Copy a figure and its caption (e.g. a sub-run's figure into the sweep's folder)."""
    src, dst = Path(src), Path(dst)
    shutil.copyfile(src, dst)
    _record_caption(dst, captions(src.parent).get(src.name, ""))
    return dst


def _record_caption(path: Path, caption: str) -> None:
    try:
        table = captions(path.parent)
    except json.JSONDecodeError:  # a half-written file from a killed run: the captions of this run replace it
        table = {}
    if caption:
        table[path.name] = " ".join(caption.split())
    elif table.pop(path.name, None) is None:
        return
    atomic_write_text(path.parent / CAPTIONS, json.dumps(table, indent=1, sort_keys=True) + "\n")


def integer_ticks(axis) -> None:
    """Ticks at whole numbers only on `axis` (`ax.xaxis`, `ax.yaxis`): steps, lengths, counts."""
    axis.set_major_locator(MaxNLocator(integer=True))


def _points(records: Sequence[dict[str, Any]], key: str) -> tuple[list, list]:
    """(steps, values) of the records where `key` is a number."""
    pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
    return ([p[0] for p in pts], [p[1] for p in pts])


def curves(records: Sequence[dict[str, Any]], keys: Sequence[str], path: str | Path, *, title: str = "",
           xlabel: str = "step", ylabel: str = "", logy: bool = False, labels: Sequence[str] | None = None,
           ax=None, caption: str = "") -> Path:
    """Line plot of `keys` against `step` from metrics records (e.g. `run.metrics("train")`). With `ax`, draw there
    and save nothing (the caller saves the figure). Without a `ylabel`, a single curve's label is the y-label."""
    fig, ax = subplots(figsize=(6, 4)) if ax is None else (None, ax)
    names = list(labels) if labels else list(keys)
    for key, name in zip(keys, names, strict=True):
        xs, ys = _points(records, key)
        if xs:
            ax.plot(xs, ys, label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel or (names[0] if len(names) == 1 else "value"))
    integer_ticks(ax.xaxis)  # steps: no tick at step 2.5 in a short run
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path, caption=caption) if fig is not None else Path(path)


def twin_curves(records: Sequence[dict[str, Any]], keys: tuple[str, str], labels: tuple[str, str],
                path: str | Path, *, title: str = "", ylabel: str = "", logy: bool = False,
                caption: str = "") -> Path:
    """Two curves that should coincide (one model, two engines). Left: both, the second dashed with hollow markers
    so it stays visible on top of the first. Right: their difference first - second, where the agreement shows."""
    fig, (left, right) = subplots(1, 2, figsize=(10, 3.8))
    (xa, ya), (xb, yb) = _points(records, keys[0]), _points(records, keys[1])
    left.plot(xa, ya, color="tab:blue", lw=2.5, alpha=0.8, label=labels[0])
    left.plot(xb, yb, color="tab:orange", ls="--", lw=1.2, marker="o", mfc="none", markersize=5,
              markevery=max(1, len(xb) // 20), label=labels[1])
    left.set(title=title, xlabel="step", ylabel=ylabel)
    if logy:
        left.set_yscale("log")
    both = dict(zip(xb, yb, strict=True))
    diff = [(x, y - both[x]) for x, y in zip(xa, ya, strict=True) if x in both]
    right.plot([d[0] for d in diff], [d[1] for d in diff], color="tab:green", marker=".", lw=0.8)
    right.axhline(0, color="grey", lw=0.8)
    right.set(title=f"{labels[0]} - {labels[1]}", xlabel="step", ylabel=f"difference in {ylabel or 'value'}")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        integer_ticks(ax.xaxis)
    left.legend()
    return save(fig, path, caption=caption)


def train_eval_curves(run, path: str | Path, *, metrics: Sequence[str] = ("loss", "accuracy"),
                      title: str = "", caption: str = "") -> Path:
    """One panel per metric, train and eval split on each (the usual loss/accuracy figure)."""
    fig, axes = subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    for ax, key in zip(axes[0], metrics, strict=True):
        for split in ("train", "eval"):
            xs, ys = _points(run.metrics(split), key)
            if xs:
                ax.plot(xs, ys, label=split, alpha=0.6 if split == "train" else 1.0)
        ax.set(title=f"{title} {key}".strip(), xlabel="step", ylabel=key)
        integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
        ax.legend()
    return save(fig, path, caption=caption)


def image_grid(images, path: str | Path, *, nrow: int = 8, title: str = "", row_labels=None,
               caption: str = "") -> Path:
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
    fig, ax = subplots(figsize=(max(3, ncol * 0.6), max(2, nrows * 0.6 + 0.4)))
    ax.imshow(canvas.squeeze(-1) if c == 1 else canvas, cmap="gray" if c == 1 else None, vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([] if row_labels is None else [r * (h + 2) + h / 2 for r in range(len(row_labels))])
    if row_labels is not None:
        ax.set_yticklabels(row_labels)
    ax.set_title(title)
    return save(fig, path, caption=caption)


def confusion_matrix(counts, classes: Sequence[str], path: str | Path, *, title: str = "",
                     caption: str = "") -> Path:
    """Heat map of a (K, K) count matrix, rows = true class, columns = predicted, counts written in the cells."""
    import numpy as np

    counts = np.asarray(counts)
    k = len(classes)
    fig, ax = subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
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
    return save(fig, path, caption=caption)


ERRORBARS_CAPTION = ("One panel per metric, one row per variant: the blue dot is the mean over seeds, the bar its "
                     "95% interval and each grey dot one seed (a variant run once has a dot and no bar). Variants "
                     "whose bars overlap are not told apart by these seeds.")


def errorbars(variants: Sequence[dict[str, Any]], metrics: Sequence[str], path: str | Path, *,
              title: str = "", caption: str = ERRORBARS_CAPTION) -> Path:
    """One panel per metric: each variant's mean over seeds, its 95% interval as the error bar, and every seed's
    value as a dot (a variant with one run has a dot and no bar). `variants` are a sweep summary's.

    Variants are rows (their names read horizontally, however many); a metric whose values are whole numbers
    (steps, classes covered) gets integer ticks, one whose values are all 0 or 1 (converged) the range [0, 1]."""
    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    names = [str(v["name"]) for v in variants]
    label_width = 0.07 * max(len(n) for n in names)
    fig, axes = subplots(rows, cols, figsize=(3.0 * cols + label_width, (0.3 * len(names) + 1.3) * rows),
                         squeeze=False, sharey=True)
    for ax, metric in zip(axes.flat, metrics, strict=False):  # the grid may have spare panels
        values = []
        for i, v in enumerate(variants):
            m = v["metrics"].get(metric)
            if m is None:
                continue
            values += m["values"]
            if m["std"] is not None:
                ax.errorbar([m["mean"]], [i], xerr=[[m["mean"] - m["ci95_low"]], [m["ci95_high"] - m["mean"]]],
                            fmt="o", color="tab:blue", capsize=4, markersize=6)
            else:
                ax.plot([m["mean"]], [i], "o", color="tab:blue", markersize=6)
            ax.plot(m["values"], [i] * len(m["values"]), ".", color="grey", alpha=0.6)
        _value_axis(ax, values)
        ax.set_xlabel(metric, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].set_yticks(range(len(names)), names, fontsize=9)
    axes[0][0].set_ylim(len(names) - 0.5, -0.5)  # the first variant on top; shared by every panel
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path, caption=caption)


def _value_axis(ax, values: list[float]) -> None:
    """x ticks for a metric's values: at most 5, plain numbers (no offset like '+1'), integers for counts (with
    thousands separators: parameter counts), [0, 1] for flags."""
    counts = bool(values) and all(float(v).is_integer() for v in values if math.isfinite(v))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10], integer=counts))
    ax.ticklabel_format(axis="x", useOffset=False)
    if counts and set(values) <= {0.0, 1.0}:
        ax.set_xlim(-0.05, 1.05)
    elif counts and max(abs(v) for v in values) >= 10_000:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
