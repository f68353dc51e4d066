"""run/plots: figures drawn without touching matplotlib's global state, valid PNGs, captions in figures.json, and
the figure fixes of issue 13 read back from the Axes (integer ticks, class names, two distinguishable curves)."""

import json
import subprocess
import sys
import textwrap

import pytest

from scratchlab.run import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    from PIL import Image

    with open(path, "rb") as f:
        if f.read(8) != PNG_MAGIC:
            return False
    with Image.open(path) as im:
        im.verify()
    return True


def variant(name: str, **metrics: list[float]) -> dict:
    def stats(values):
        n, mean = len(values), sum(values) / len(values)
        std = None if n == 1 else (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
        return {"n": n, "mean": mean, "std": std, "ci95_low": None if std is None else mean - std,
                "ci95_high": None if std is None else mean + std, "values": values}
    return {"name": name, "n": 2, "metrics": {k: stats(v) for k, v in metrics.items()}}


def test_importing_scratchlab_and_drawing_leaves_the_backend_and_pyplot_alone():
    """A notebook's state, stood in for by the svg backend and an open pyplot figure: importing every scratchlab
    module that draws, and drawing and saving figures, changes neither. Without a prior pyplot import, pyplot
    stays unimported. Run in a fresh interpreter: this process may have imported matplotlib already."""
    script = textwrap.dedent("""
        import json, sys
        import matplotlib
        fresh = dict.__getitem__(matplotlib.rcParams, "backend")
        import scratchlab, scratchlab.run.plots as plots, scratchlab.experiments as ex, scratchlab.runner
        ex.load_all()
        fig, ax = plots.subplots()
        ax.plot([0, 1], [1, 0])
        plots.save(fig, "a.png", caption="a line")
        plots.curves([{"step": 0, "x": 1.0}, {"step": 1, "x": 2.0}], ["x"], "b.png")
        untouched = ("matplotlib.pyplot" not in sys.modules
                     and dict.__getitem__(matplotlib.rcParams, "backend") is fresh)
        matplotlib.use("svg")
        import matplotlib.pyplot as plt
        plt.figure()
        before = (matplotlib.get_backend(), plt.get_fignums())
        plots.errorbars([{"name": "v", "metrics": {"m": {"mean": 1.0, "std": None, "values": [1.0]}}}], ["m"],
                        "c.png")
        print(json.dumps([untouched, before == (matplotlib.get_backend(), plt.get_fignums()), before[0]]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == [True, True, "svg"], out.stderr


def test_figures_are_pngs_with_their_captions(tmp_path):
    records = [{"step": i, "a": 1.0 / (i + 1), "b": 1.0 / (i + 1)} for i in range(10)]
    plots.curves(records, ["a"], tmp_path / "one.png", caption="One   curve\nfalling.")
    plots.image_grid([[[0.0, 1.0], [1.0, 0.0]]] * 4, tmp_path / "grid.png", nrow=2, caption="Four images.")
    plots.confusion_matrix([[3, 1], [0, 4]], ["cat", "dog"], tmp_path / "cm.png", caption="Mostly right.")
    plots.errorbars([variant("x", m=[1.0, 2.0])], ["m"], tmp_path / "err.png")
    plots.curves(records, ["a", "b"], tmp_path / "none.png")
    assert all(is_png(p) for p in tmp_path.glob("*.png")) and len(list(tmp_path.glob("*.png"))) == 5
    table = json.loads((tmp_path / plots.CAPTIONS).read_text())
    assert table == {"one.png": "One curve falling.", "grid.png": "Four images.", "cm.png": "Mostly right.",
                     "err.png": plots.ERRORBARS_CAPTION}  # whitespace collapsed; no caption, no entry
    assert plots.captions(tmp_path) == table and plots.captions(tmp_path / "nowhere") == {}
    plots.curves(records, ["a"], tmp_path / "one.png")  # redrawn without a caption: the old one is dropped
    (tmp_path / "sub").mkdir()
    plots.copy(tmp_path / "grid.png", tmp_path / "sub" / "grid_copy.png")
    assert "one.png" not in plots.captions(tmp_path)
    assert plots.captions(tmp_path / "sub") == {"grid_copy.png": "Four images."}


def test_every_curve_figure_has_a_y_label(tmp_path):
    records = [{"step": i, "kl": 0.5, "g": 1.0, "d": 2.0} for i in range(3)]
    fig, (a, b) = plots.subplots(1, 2)
    plots.curves(records, ["kl"], tmp_path / "x.png", ax=a, labels=["KL"])
    plots.curves(records, ["g", "d"], tmp_path / "x.png", ax=b)
    assert a.get_ylabel() == "KL" and b.get_ylabel() == "value"


@pytest.fixture
def drawn(monkeypatch):
    """The figures plots.save is handed, in order (it still writes them)."""
    figures, save = [], plots.save
    monkeypatch.setattr(plots, "save", lambda fig, path, caption="": (figures.append(fig),
                                                                     save(fig, path, caption=caption))[1])
    return figures


def test_twin_curves_are_distinguishable_and_their_difference_is_drawn(tmp_path, drawn):
    records = [{"step": i, "ours": 2.0 - 0.1 * i, "torch": 2.0 - 0.1 * i + (1e-7 if i % 2 else 0)}
               for i in range(30)]
    path = plots.twin_curves(records, ("ours", "torch"), ("scratchlab", "torch.nn"), tmp_path / "loss.png",
                             ylabel="cross-entropy", logy=True, caption="c")
    assert is_png(path) and plots.captions(tmp_path) == {"loss.png": "c"}
    left, right = drawn[0].axes
    first, second = left.get_lines()
    assert (first.get_linestyle(), first.get_marker()) != (second.get_linestyle(), second.get_marker())
    assert [line.get_label() for line in (first, second)] == ["scratchlab", "torch.nn"]
    assert left.get_ylabel() == "cross-entropy" and right.get_ylabel()
    diff = right.get_lines()[0].get_ydata()
    assert len(diff) == 30 and max(abs(d) for d in diff) == pytest.approx(1e-7)


def test_errorbars_use_integer_ticks_for_counts_and_name_every_variant(tmp_path, drawn):
    names = ["rnn-T50", "lstm-T50", "gru-T5"]
    variants = [variant(n, steps=[600.0, 700.0 + k], test_accuracy=[0.5, 0.6 + 0.1 * k], converged=[0.0, 1.0])
                for k, n in enumerate(names)]
    plots.errorbars(variants, ["steps", "test_accuracy", "converged"], tmp_path / "e.png")
    steps, acc, flag = drawn[0].axes
    drawn[0].canvas.draw()  # tick labels are set at draw time
    assert [t.get_text() for t in steps.get_yticklabels()] == names
    assert [a.get_xlabel() for a in (steps, acc, flag)] == ["steps", "test_accuracy", "converged"]
    assert all(float(v).is_integer() for v in steps.get_xticks())
    assert not all(float(v).is_integer() for v in acc.get_xticks())
    assert flag.get_xlim() == (-0.05, 1.05)
    assert all("+" not in t.get_text() for t in acc.get_xticklabels())  # no offset text, plain values
    assert is_png(tmp_path / "e.png")


def test_palindrome_sweep_plot_ticks_the_swept_lengths(tmp_path, drawn):
    from scratchlab.experiments import palindrome_sweep as ps

    cfg = ps.SweepConfig(models=("rnn", "gru"), lengths=(5, 8), seeds=2)
    stat = {"mean": 0.5, "std": 0.1, "ci95_low": 0.4, "ci95_high": 0.6, "values": [0.4, 0.6]}
    by_name = {ps.variant(m, t): {"metrics": {"test_accuracy": stat}} for m in cfg.models for t in cfg.lengths}
    ps._plot(by_name, cfg, [5, 8], tmp_path / "acc.png")
    ax = drawn[0].axes[0]
    assert list(ax.get_xticks()) == [5, 8] and ax.get_ylabel() == "test accuracy"
    assert "accuracy" in plots.captions(tmp_path)["acc.png"]


def test_gan_label_histograms_name_the_classes(tmp_path, drawn):
    from scratchlab.data.registry import FASHION_CLASSES
    from scratchlab.experiments.gan import label_histograms

    hist = [0.1] * 10
    results = {"vanilla": {"histogram": hist, "kl_uniform": 0.0}, "wgan": {"histogram": hist, "kl_uniform": 0.0}}
    label_histograms(results, FASHION_CLASSES, tmp_path / "h.png", "gan-compare")
    axes = drawn[0].axes
    assert [t.get_text() for t in axes[0].get_yticklabels()] == FASHION_CLASSES
    assert axes[0].get_ylabel() == "predicted class"
    assert all(a.get_xlabel() == "fraction of samples" for a in axes)
    assert is_png(tmp_path / "h.png") and "h.png" in plots.captions(tmp_path)
