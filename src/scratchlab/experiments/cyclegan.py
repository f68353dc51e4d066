"""cyclegan-digits: CycleGAN between MNIST (X) and house-number digits (Y), with label preservation measured.

Y is `synthdigits` (offline, SYNTHETIC, rendered from system fonts) by default, or real SVHN (`--set target=svhn`,
official .mat files, downloaded with their SHA-256). The game and the losses are in `scratchlab.gan.cyclegan`;
the default runs `d_warmup` discriminator-only classification steps first and `model.class_weight=1` (set both to
0 for the exercise's game exactly).

Measurement (every `eval_every` steps on `eval_n` test images per domain, at the end on the whole test sets):
  label preservation X -> Y  classifier trained on real Y-train images, applied to G(x_test), scored against the
                             MNIST labels of x_test;   Y -> X likewise with a classifier trained on real MNIST
  classifier accuracy        each classifier on its own domain's test split (the ceiling for the above)
  no-translation baseline    the same classifiers on the other domain's images converted by hand (grey <-> RGB,
                             pad/crop): how much of the score the translation itself earns
  cycle error                MSE(F(G(x)), x) and MSE(G(F(y)), y) on [-1, 1] pixels
  at the end only:
  confusion X -> Y, Y -> X   counts of (source label, judged label of the translation), 10 x 10
  permuted preservation      the share of translations the best one-to-one relabelling of the digits explains
                             (gan.metrics.permuted_accuracy): near 1 with a low preservation means G maps each
                             digit consistently onto another one (a permutation), near chance means it scrambles
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from scratchlab.data import registry
from scratchlab.experiments import experiment, hook
from scratchlab.gan import classifier as clf
from scratchlab.gan import metrics as M
from scratchlab.gan.cyclegan import CycleConfig, CycleGAN, Domain, fit_size
from scratchlab.run import config as C
from scratchlab.run import plots
from scratchlab.run.config import NonNegativeInt, PositiveInt, Probability
from scratchlab.run.rundir import RunDir
from scratchlab.train import checkpoint
from scratchlab.train.loop import fit

X_DOMAIN, Y_DOMAIN = Domain(1, 28), Domain(3, 32)


@dataclass
class CycleDigitsConfig:
    target: Literal["synthdigits", "svhn"] = "synthdigits"  # Y; synthdigits is synthetic, svhn downloads
    source: Literal["mnist-5k", "mnist"] = "mnist-5k"        # X; mnist-5k is offline (4000 train / 1000 test)
    steps: PositiveInt = 2500  # CycleGAN steps (each updates D_X, D_Y, then G, F)
    d_warmup: NonNegativeInt = 400  # discriminator-only digit-classification steps first (labels game only; 0 = off)
    batch_size: PositiveInt = 32  # images per domain per step
    lr_decay: Probability = 0.5  # learning rates fall linearly to 0 over this last fraction of the steps (0: constant)
    model: CycleConfig = field(default_factory=CycleConfig)
    eval_every: NonNegativeInt = 100  # 0: no intermediate evaluations
    eval_n: PositiveInt = 500  # test images per domain at intermediate evaluations (the final one uses all)
    n_target_train: PositiveInt = 10000  # Y training images (synthdigits renders this many; svhn takes the first n)
    n_target_test: PositiveInt = 2000  # Y test images
    n_source_train: PositiveInt | None = None  # X images used (None: all of the split)
    n_source_test: PositiveInt | None = None  # X test images used (None: all of the split)
    classifier_arch: Literal["cnn", "mlp"] = "cnn"  # judges: does a translated digit keep its label?
    classifier_epochs: PositiveInt = 6  # 4 left the MNIST classifier at 94.6%, 6 reaches ~96-97%


QUICK = {"steps": 6, "d_warmup": 2, "batch_size": 8, "eval_every": 3, "eval_n": 40, "n_target_train": 200,
         "n_target_test": 100, "n_source_train": 300, "n_source_test": 100, "classifier_epochs": 1,
         "model.ch": 8, "model.d_ch": 8, "model.n_res": 1}


def svhn_missing(cfg: CycleDigitsConfig) -> str | None:
    """`available` hook: the reason to skip when target=svhn and the .mat files are not on this machine."""
    if cfg.target != "svhn":
        return None
    try:
        registry.find_files("svhn", ["train_32x32.mat", "test_32x32.mat"], allow_download=False)
    except FileNotFoundError as e:
        return f"real SVHN is not on this machine ({e}); `scratchlab data fetch svhn` downloads it"
    return None


def _load(name: str, split: str, n: int | None) -> registry.ImageSet:
    if name == "synthdigits":
        return registry.load(name, split, n=n)
    data = registry.load(name, split)
    if n is None or n >= len(data):
        return data
    return registry.ImageSet(data.images[:n], data.labels[:n], data.classes, f"{data.source}; the first {n} used")


def load_domains(cfg: CycleDigitsConfig) -> dict[str, registry.ImageSet]:
    return {"x_train": _load(cfg.source, "train", cfg.n_source_train),
            "x_test": _load(cfg.source, "test", cfg.n_source_test),
            "y_train": _load(cfg.target, "train", cfg.n_target_train),
            "y_test": _load(cfg.target, "test", cfg.n_target_test)}


def _classifiers(cfg, data, ctx) -> tuple[clf.Classifier, clf.Classifier, dict]:
    """Classifiers on real X and real Y, trained once per run (kept in classifiers.pt for resume and sampling)."""
    path = ctx.run / "classifiers.pt"
    if ctx.resume and path.exists():
        payload = checkpoint.load(path)
        models = []
        for name in ("clf_x", "clf_y"):
            spec = payload[f"{name}_info"]
            m = clf.build_classifier(spec["arch"], spec["in_channels"], spec["image_size"], spec["n_classes"])
            m.load_state_dict(payload[name])
            models.append(m.to(ctx.device).eval())
        return models[0], models[1], {"x": payload["clf_x_info"], "y": payload["clf_y_info"]}
    kw = {"epochs": cfg.classifier_epochs, "seed": ctx.seed, "device": ctx.device}
    cx, ix = clf.train_classifier(data["x_train"].images, data["x_train"].labels, cfg.classifier_arch,
                                  test=(data["x_test"].images, data["x_test"].labels), **kw)
    cy, iy = clf.train_classifier(data["y_train"].images, data["y_train"].labels, cfg.classifier_arch,
                                  test=(data["y_test"].images, data["y_test"].labels), **kw)
    checkpoint.save(path, clf_x=cx, clf_y=cy, clf_x_info=ix, clf_y_info=iy)
    return cx, cy, {"x": ix, "y": iy}


def lr_factor(step: int, steps: int, decay: float) -> float:
    """CycleGAN's schedule: 1 for the first (1 - decay) * steps steps, then linearly down to 0 at `steps`."""
    start = steps * (1 - decay)
    return 1.0 if step < start else max(0.0, (steps - step) / (steps - start))


def grey_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """The no-translation baseline X -> Y: (N, 1, 28, 28) -> (N, 3, 32, 32) by padding and copying channels."""
    return fit_size(x, Y_DOMAIN.size).expand(-1, 3, -1, -1)


def rgb_to_grey(y: torch.Tensor) -> torch.Tensor:
    """The no-translation baseline Y -> X: (N, 3, 32, 32) -> (N, 1, 28, 28) by channel mean and centre crop."""
    return fit_size(y.mean(1, keepdim=True), X_DOMAIN.size)


N_CLASSES = 10  # digits in both domains


def _translate_all(model: CycleGAN, x: torch.Tensor, y: torch.Tensor, batch: int = 250) -> dict[str, torch.Tensor]:
    parts = [model.translate(x[i:i + batch], y[i:i + batch]) for i in range(0, max(len(x), len(y)), batch)]
    return {k: torch.cat([p[k] for p in parts if k in p]) for k in ("fake_y", "rec_x", "fake_x", "rec_y")}


def measure(model: CycleGAN, clf_x, clf_y, x, lx, y, ly, *, confusions: bool = False) -> dict[str, Any]:
    """Label preservation both ways (classifier of the target domain vs source labels) and cycle MSEs; with
    `confusions`, each way's confusion matrix (source label x judged label) and permuted accuracy (the share
    the best one-to-one relabelling explains: high with a low preservation is a consistent permutation)."""
    t = _translate_all(model, x, y)
    out: dict[str, Any] = {}
    for way, judge, fake, labels in (("x2y", clf_y, t["fake_y"], lx), ("y2x", clf_x, t["fake_x"], ly)):
        conf = M.confusion(labels.cpu().numpy(), clf.predict(judge, fake), N_CLASSES)
        out[f"label_preservation_{way}"] = float(np.trace(conf) / conf.sum())
        if confusions:
            out[f"permuted_preservation_{way}"], out[f"best_permutation_{way}"] = M.permuted_accuracy(conf)
            out[f"confusion_{way}"] = conf.tolist()
    return {**out, "label_preservation_min": min(out["label_preservation_x2y"], out["label_preservation_y2x"]),
            "cycle_mse_x": torch.mean((t["rec_x"] - x) ** 2).item(),
            "cycle_mse_y": torch.mean((t["rec_y"] - y) ** 2).item()}


def to_display(images: torch.Tensor) -> np.ndarray:
    """Any domain's float images -> uint8 (N, 3, 32, 32) for one grid (grey is copied to RGB and padded)."""
    if images.shape[1] == 1:
        images = grey_to_rgb(images)
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def sample_grids(model: CycleGAN, x, lx, y, ly, run: RunDir, per_row: int = 10) -> None:
    """Rows: source, translated, reconstructed; one figure per direction, one example of each digit."""
    pick_x = [int((lx == d).nonzero()[0]) for d in range(per_row)]
    pick_y = [int((ly == d).nonzero()[0]) for d in range(per_row)]
    t = model.translate(x[pick_x], y[pick_y])
    rows = ["source", "translated", "reconstructed"]
    what = ("Top: one test image of each digit 0-9; middle: translated into the other domain; bottom: translated "
            "back. A good translation keeps the digit (middle row reads 0-9) and the cycle brings the source back.")
    plots.image_grid(np.concatenate([to_display(v) for v in (x[pick_x], t["fake_y"], t["rec_x"])]),
                     run / "samples_x2y.png", nrow=per_row, title="MNIST -> G -> F", row_labels=rows,
                     caption=f"MNIST to the target domain and back (G then F). {what}")
    plots.image_grid(np.concatenate([to_display(v) for v in (y[pick_y], t["fake_x"], t["rec_y"])]),
                     run / "samples_y2x.png", nrow=per_row, title="target -> F -> G", row_labels=rows,
                     caption=f"The target domain to MNIST and back (F then G). {what}")


def preservation_figure(run: RunDir, warmup: int, baseline_x2y: float, baseline_y2x: float) -> None:
    """Label preservation both ways during training, each beside its no-translation baseline (dotted)."""
    fig, ax = plots.subplots(figsize=(6, 4))
    path = run / "label_preservation.png"
    plots.curves(run.metrics("eval"), ["label_preservation_x2y", "label_preservation_y2x"], path, ax=ax,
                 ylabel="accuracy", title=f"label preservation (test); steps < {warmup}: D-only warm-up",
                 labels=["MNIST -> target", "target -> MNIST"])
    for line, base in zip(ax.get_lines(), (baseline_x2y, baseline_y2x), strict=False):
        ax.axhline(base, color=line.get_color(), ls=":", lw=1)
    plots.save(fig, path, caption="Fraction of translated test digits that the target domain's classifier labels "
               "as the source digit, each way. Dotted lines: the same classifiers on images converted by hand "
               "(grey <-> RGB, pad/crop), the no-translation baseline; the curves above them are what translating "
               "earns.")


def _tensors(data: registry.ImageSet, device) -> tuple[torch.Tensor, torch.Tensor]:
    return clf.as_float_images(data.images).to(device), torch.as_tensor(data.labels).to(device)


@experiment("cyclegan-digits", CycleDigitsConfig, quick=QUICK, available=svhn_missing, seeds=3, parallel=True,
            batch="batch_size",
            help="CycleGAN MNIST <-> house-number digits ((K+1)-class D, cycle MSE); label preservation both ways")
def cyclegan_digits(cfg: CycleDigitsConfig, ctx) -> dict:
    data = load_domains(cfg)
    clf_x, clf_y, info = _classifiers(cfg, data, ctx)
    x, lx = _tensors(data["x_train"], ctx.device)
    y, ly = _tensors(data["y_train"], ctx.device)
    xt, lxt = _tensors(data["x_test"], ctx.device)
    yt, lyt = _tensors(data["y_test"], ctx.device)
    model = CycleGAN(X_DOMAIN, Y_DOMAIN, cfg.model).to(ctx.device)
    # Data-parallel (torchrun): BatchNorm over the global batch, both optimisers average their gradients over the
    # ranks, and each rank keeps its rows of the batch every rank draws (train/distributed.py).
    ctx.world.sync_batchnorm(model)
    opt_g, opt_d = (ctx.world.average_gradients_on_step(o) for o in model.optimizers())
    b = cfg.batch_size
    rows = ctx.world.shard(b).rows
    warmup = cfg.d_warmup if cfg.model.loss == "labels" else 0  # label-free discriminators have no classes

    def step(i: int) -> dict[str, float]:
        ix = torch.randint(len(x), (b,))[rows].to(ctx.device)  # unpaired: independent draws from each domain
        iy = torch.randint(len(y), (b,))[rows].to(ctx.device)
        if i < warmup:
            return model.warmup_step(x[ix], lx[ix], y[iy], ly[iy], opt_d)
        for opt in (opt_g, opt_d):  # set from the step alone, so a resumed run continues the same schedule
            opt.param_groups[0]["lr"] = cfg.model.lr * lr_factor(i - warmup, cfg.steps, cfg.lr_decay)
        return model.step(x[ix], lx[ix], y[iy], ly[iy], opt_g, opt_d)

    n = cfg.eval_n
    fit(step, warmup + cfg.steps, ctx, state={"G": model.G, "F": model.F, "D_X": model.D_X, "D_Y": model.D_Y,
                                     "opt_g": opt_g, "opt_d": opt_d},
        eval_fn=lambda i: measure(model, clf_x, clf_y, xt[:n], lxt[:n], yt[:n], lyt[:n]),
        eval_every=cfg.eval_every, monitor="label_preservation_min", mode="max", desc="cyclegan",
        config=C.to_dict(cfg))

    final = measure(model, clf_x, clf_y, xt, lxt, yt, lyt, confusions=True)
    baseline_x2y = clf.evaluate(clf_y, grey_to_rgb(xt), lxt.cpu())
    baseline_y2x = clf.evaluate(clf_x, rgb_to_grey(yt), lyt.cpu())
    sample_grids(model, xt, lxt, yt, lyt, ctx.run)
    run = ctx.run
    preservation_figure(run, warmup, baseline_x2y, baseline_y2x)
    plots.curves(run.metrics("eval"), ["cycle_mse_x", "cycle_mse_y"], run / "cycle_error.png",
                 title="cycle reconstruction error (test)", ylabel="MSE", labels=["x -> G -> F", "y -> F -> G"],
                 caption="Mean squared error between a test image and its round trip through both generators "
                 "(pixels in [-1, 1]): falling means each translation keeps enough of the image to undo it.")
    plots.curves(run.metrics("train"), ["d_loss", "g_adv", "cycle_x", "cycle_y"], run / "losses.png",
                 title="training losses", ylabel="loss", logy=True,
                 caption="Training losses per step: the discriminators' (d_loss), the generators' adversarial "
                 "term (g_adv) and the two cycle terms. Adversarial losses stay level while the players are "
                 "balanced; one collapsing to 0 means that side won.")
    return {**final, "classifier_x_test_accuracy": info["x"]["test_accuracy"],
            "classifier_y_test_accuracy": info["y"]["test_accuracy"],
            "no_translation_x2y": baseline_x2y, "no_translation_y2x": baseline_y2x,
            "steps": cfg.steps, "d_warmup_steps": warmup,
            "source_data": data["x_train"].source, "target_data": data["y_train"].source}


@hook("cyclegan-digits", "sample")
def sample(run_dir: Path, n: int) -> dict[str, np.ndarray]:
    """MNIST test digits translated by G: images uint8 (n, 3, 32, 32), their source labels and source images."""
    run = RunDir(run_dir)
    saved = run.read_json("config.json")
    cfg = C.from_dict(CycleDigitsConfig, saved["config"])
    model = CycleGAN(X_DOMAIN, Y_DOMAIN, cfg.model)
    checkpoint.restore(checkpoint.load(run / "checkpoint.pt"), restore_rng=False, G=model.G, F=model.F)
    test = registry.load(cfg.source, "test")
    x = clf.as_float_images(test.images[:n])
    t = model.translate(x)
    return {"images": to_display(t["fake_y"]), "labels": test.labels[:n].astype(np.int64),
            "sources": test.images[:n]}
