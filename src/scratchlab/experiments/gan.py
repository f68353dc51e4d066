"""GAN experiments: one `train_gan` run by every experiment here; sweeps are variants over its config.

    gan              one GAN (--set loss=vanilla|lsgan|wgan|mse unroll=K conditional=true dataset=...)
    gan-compare      every variant on the same budget: one table, one figure of label histograms
    wgan-clip-sweep  WGAN with c in 0.1, 0.01, 0.001, 0.0001
    gan-d-g-ratio    D:G update ratio 1:1 against 5:2
    cgan             conditional GAN: 3 samples per class, label accuracy
    gan-interpolate  latent interpolation: 7 steps between two samples, 9 images per row

Sweeps write each variant as a `gan` run directory of its own (`<run>/<variant>/`), so `scratchlab sample`
works on a variant's directory, and on the sweep's directory it samples the variant named by `sample_from`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from scratchlab.data import registry
from scratchlab.experiments import Plan, experiment, hook, sweep_experiment
from scratchlab.gan import classifier as clf
from scratchlab.gan import metrics as M
from scratchlab.gan.nets import ARCHS, Discriminator, Generator, NetConfig
from scratchlab.gan.trainer import GANTrainer, TrainerConfig
from scratchlab.run import config as C
from scratchlab.run import plots
from scratchlab.run.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Rate
from scratchlab.run.rundir import RunDir
from scratchlab.train import checkpoint
from scratchlab.train.loop import Context, fit

# Sweeps train several variants on the same data in one process: decompress each split once.
load_data = functools.lru_cache(maxsize=4)(registry.load)

# The WGAN paper's settings (Arjovsky et al. 2017, Algorithm 1): RMSprop, lr 5e-5, c = 0.01, n_critic = 5.
WGAN_DEFAULTS = {"optimizer": "rmsprop", "lr_g": 5e-5, "lr_d": 5e-5, "clip": 0.01, "d_steps": 5}
GAN_DEFAULTS = {"optimizer": "adam", "lr_g": 2e-4, "lr_d": 2e-4, "clip": 0.0, "d_steps": 1}


@dataclass
class GANConfig:
    dataset: str = "fashion-mnist"  # the images to learn: a `scratchlab data list` name
    loss: Literal["vanilla", "lsgan", "wgan", "mse"] = "vanilla"  # the D and G losses (gan/losses.py)
    conditional: bool = False  # G and D see the class label (a cGAN)
    projection: bool = False  # conditional D: the label as y^T V phi(x) (Miyato & Koyama 2018)
    spectral_norm: bool = False  # D's weights divided by their largest singular value (Miyato et al. 2018)
    pack: PositiveInt = 1  # PacGAN: D judges packs of this many samples (batch_size packs per update); 1: plain D
    unroll: NonNegativeInt = 0  # k: G trains against D advanced k steps (0: D itself)
    unroll_grad: bool = False  # unrolled D's steps differentiable, G's gradient through them (second order)
    ema: Rate = 0.0             # > 0: sample and judge a moving average of G's weights with this decay
    steps: PositiveInt = 3000  # rounds: d_steps discriminator updates + g_steps generator updates each
    batch_size: PositiveInt = 64  # real images (and generated ones) per update
    d_steps: PositiveInt | None = None  # None: 5 for wgan (n_critic), else 1
    g_steps: PositiveInt = 1  # generator updates per round
    clip: NonNegativeFloat | None = None  # None: 0.01 for wgan, else no clipping (0: none either)
    optimizer: Literal["adam", "rmsprop"] | None = None  # None: rmsprop for wgan, else adam
    lr_g: PositiveFloat | None = None  # None: 5e-5 for wgan, else 2e-4
    lr_d: PositiveFloat | None = None  # D's; None: as lr_g's (5e-5 for wgan, else 2e-4)
    latent: PositiveInt = 100  # size of G's input noise z
    n_train: NonNegativeInt = 0  # 0: the whole train split
    classifier: Literal["mlp", "cnn"] = "mlp"  # the judge: its labels and features score the samples
    second_judge: bool = True  # also judge the final samples by the other architecture: keys judge_<arch>.<metric>
    classifier_epochs: NonNegativeInt = 0  # 0: the default budget (classifier.RECIPES)
    classifier_n_train: NonNegativeInt = 0  # 0: the whole train split
    n_eval: PositiveInt = 3000  # samples judged at the end
    eval_every: NonNegativeInt = 500  # KL / Frechet curves on `eval_samples` samples (0: none)
    eval_samples: PositiveInt = 1000  # samples judged at each intermediate evaluation


def trainer_config(cfg: GANConfig) -> TrainerConfig:
    """The loss's defaults (WGAN's or the usual Adam ones), then every field the config sets explicitly."""
    base = WGAN_DEFAULTS if cfg.loss == "wgan" else GAN_DEFAULTS
    picked = {k: (getattr(cfg, k) if getattr(cfg, k) is not None else v) for k, v in base.items()}
    return TrainerConfig(loss=cfg.loss, batch_size=cfg.batch_size, g_steps=cfg.g_steps, unroll=cfg.unroll,
                         unroll_grad=cfg.unroll_grad, ema=cfg.ema, **picked)


@dataclass
class Judge:
    """The evaluation classifier and the test set's features: shared by every variant of a sweep."""

    model: clf.Classifier
    info: dict[str, Any]
    reference: np.ndarray  # test-set features (N, F)
    floor: float           # Frechet distance between train and test features: what real data scores
    n_classes: int


def make_judge(cfg: GANConfig, ctx: Context, arch: str | None = None) -> Judge:
    """The evaluation classifier of `arch` (default cfg.classifier) with its test-set features and floor."""
    model, info = clf.load_or_train(cfg.dataset, arch or cfg.classifier, seed=0,
                                    epochs=cfg.classifier_epochs or None, n_train=cfg.classifier_n_train or None,
                                    device=ctx.device)
    train, test = load_data(cfg.dataset, "train"), load_data(cfg.dataset, "test")
    reference = clf.features(model, test.images)
    pick = np.random.default_rng(0).choice(len(train), min(cfg.n_eval, len(train)), replace=False)
    floor = M.frechet_from_features(clf.features(model, train.images[pick]), reference)
    return Judge(model, info, reference, floor, len(test.classes))


def net_config(cfg: GANConfig, data: torch.Tensor, n_classes: int) -> NetConfig:
    if cfg.pack > 1 and cfg.loss == "mse":
        raise ValueError("pack > 1 with loss=mse: the MSE generator has no discriminator to pack samples for")
    return NetConfig(latent=cfg.latent, channels=data.shape[1], image_size=data.shape[-1],
                     n_classes=n_classes if cfg.conditional else 0, projection=cfg.projection,
                     spectral_norm=cfg.spectral_norm, pack=cfg.pack)


def fixed_grid_inputs(G: Generator, n: int = 64) -> tuple[torch.Tensor, torch.Tensor | None]:
    z = torch.randn(n, G.cfg.latent, generator=torch.Generator().manual_seed(1234))
    y = M.conditional_labels(n, G.cfg.n_classes) if G.cfg.n_classes else None
    return z, y


@torch.no_grad()
def save_grid(G: Generator, path: Path, title: str, when: str = "") -> None:
    """Samples of G from the same fixed latent vectors (and labels) at every call: grids at different steps
    show the same samples as they learn."""
    z, y = fixed_grid_inputs(G, 80 if G.cfg.n_classes else 64)
    G.eval()
    dev = next(G.parameters()).device
    x = G(z.to(dev), None if y is None else y.to(dev))
    G.train()
    per_class = " Column k is conditioned on class k." if G.cfg.n_classes else ""
    plots.image_grid(M.to_uint8(x), path, nrow=10 if G.cfg.n_classes else 8, title=title,
                     caption=f"Samples of the generator {when}, from the same latent vectors in every samples_*.png, "
                     f"so the grids show the same samples learning.{per_class} Many near-copies of one kind of "
                     "image is mode collapse.")


def moving_average(records: list[dict[str, Any]], keys: list[str], window: int) -> list[dict[str, Any]]:
    """Per-round GAN losses swing by 2x from batch to batch: plot the mean of the last `window` rounds."""
    out, recent = [], {k: [] for k in keys}
    for r in records:
        row = {"step": r["step"]}
        for k in keys:
            if k in r:
                recent[k] = (recent[k] + [r[k]])[-window:]
                row[k] = sum(recent[k]) / len(recent[k])
        out.append(row)
    return out


def train_gan(cfg: GANConfig, ctx: Context, judge: Judge | None = None, name: str = "gan") -> dict[str, Any]:
    """Train one GAN into ctx.run; figures, checkpoint and the measurements of `metrics.evaluate_generator`."""
    run, dev = ctx.run, ctx.device
    judge = judge or make_judge(cfg, ctx)
    train = load_data(cfg.dataset, "train")
    n = cfg.n_train or len(train)
    data = clf.as_float_images(train.images[:n]).to(dev)  # (N, C, H, W) in [-1, 1]
    labels = torch.as_tensor(train.labels[:n]).to(dev)
    net = net_config(cfg, data, judge.n_classes)
    tcfg = trainer_config(cfg)
    G = Generator(net).to(dev)
    D = Discriminator(net).to(dev) if cfg.loss != "mse" else None
    trainer = GANTrainer(G, D, tcfg, data, labels if net.n_classes else None, world=ctx.world)
    if not (ctx.resume and (run / "samples_start.png").exists()):
        save_grid(G, run / "samples_start.png", f"{name}: step 0", "before training (noise)")

    def step(i: int) -> dict[str, float]:
        if i == cfg.steps // 2:
            save_grid(trainer.sampler, run / "samples_middle.png", f"{name}: step {i}", f"half-way, at step {i}")
        return trainer.step(i)

    def evaluate(i: int) -> dict[str, float]:
        ev = M.evaluate_generator(trainer.sampler, judge.model, judge.reference, n=cfg.eval_samples,
                                  n_classes=judge.n_classes)
        return {k: v for k, v in ev.items() if k != "histogram"}

    fit(step, cfg.steps, ctx, state=trainer.state(), eval_fn=evaluate, eval_every=cfg.eval_every,
        monitor="none", desc=name, config={"net": dataclasses.asdict(net)})
    save_grid(trainer.sampler, run / "samples_end.png", f"{name}: step {cfg.steps}", f"at the end, step {cfg.steps}")
    window = max(1, cfg.steps // 100)
    records = moving_average(run.metrics("train"), ["g_loss", "d_loss", "d_real", "d_fake"], window)
    avg = f" (mean of {window} rounds)" if window > 1 else ""
    game = ("In a working game both stay roughly level; a discriminator loss that keeps falling while the "
            "generator's climbs means D is winning and G learns less and less." if D is not None else
            "No discriminator: G fits the pixels of random data batches, whose best answer is the mean image.")
    plots.curves(records, ["g_loss", "d_loss"], run / "losses.png", title=f"{name}: losses{avg}",
                 labels=["G (g_loss)", "D (d_loss)"], ylabel=f"{cfg.loss} loss",
                 caption=f"Generator and discriminator losses ({cfg.loss}){avg}. {game}")
    if D is not None:
        plots.curves(records, ["d_real", "d_fake"], run / "d_outputs.png", labels=["D(real)", "D(fake)"],
                     title=f"{name}: mean D(x), D(G(z)){avg}",
                     ylabel="mean D (probability)" if cfg.loss == "vanilla" else "mean D (raw score)",
                     caption=f"The discriminator's mean output on real images and on generated ones{avg}. The gap "
                     "between the curves is how easily D tells them apart: it should stay open without running "
                     "away (a gap that keeps widening means G has stopped fooling D).")
    plots.curves(run.metrics("eval"), ["kl_uniform"], run / "kl_curve.png", title=f"{name}: KL(labels || uniform)",
                 ylabel="KL (nats)", caption="KL divergence from the uniform distribution to the labels that the "
                 "evaluation classifier gives generated samples: 0 when every class is generated equally often, "
                 f"log {judge.n_classes} = {math.log(judge.n_classes):.2f} nats when all samples fall in one class "
                 "(mode collapse). Falling is good.")
    final = M.evaluate_generator(trainer.sampler, judge.model, judge.reference, n=cfg.n_eval,
                                 n_classes=judge.n_classes)
    return {**final, "frechet_floor_train_vs_test": judge.floor, "steps": cfg.steps,
            "d_updates": trainer.d_updates, "g_updates": trainer.g_updates,
            "classifier": cfg.classifier, "classifier_test_accuracy": judge.info.get("test_accuracy"),
            **(second_opinion(cfg, ctx, trainer.sampler) if cfg.second_judge else {}),
            "data": train.source}


SECOND = {"mlp": "cnn", "cnn": "mlp"}


def second_opinion(cfg: GANConfig, ctx: Context, G: Generator) -> dict[str, Any]:
    """The final samples judged again by the other classifier architecture (mlp <-> cnn), on the same latent draws:
    two judges can disagree (issue 16: vanilla KL 0.023 by the MLP, 0.156 by a CNN, on the same samples). Under
    its own RNG, so the run's numbers are those it gives without it. Keys judge_<arch>.<metric>."""
    arch = SECOND[cfg.classifier]
    with torch.random.fork_rng(devices=[]):
        other = make_judge(cfg, ctx, arch)
        ev = M.evaluate_generator(G, other.model, other.reference, n=cfg.n_eval, n_classes=other.n_classes)
    ev = {k: v for k, v in ev.items() if k != "histogram"}
    return {**{f"judge_{arch}.{k}": v for k, v in ev.items()},
            f"judge_{arch}.frechet_floor_train_vs_test": other.floor,
            f"judge_{arch}.classifier_test_accuracy": other.info.get("test_accuracy")}


def classification_accuracy_score(cfg: CGANConfig, ctx: Context, G: Generator) -> dict[str, Any]:
    """CAS (Ravuri & Vinyals 2019): a classifier trained on `cas_samples` generated labelled samples (every class
    equally often), tested on the real test set, beside the same classifier trained on as many real training
    images (the baseline: what the data itself gives at that size). The MLP judge's architecture and recipe
    (classifier.RECIPES, `classifier_epochs` when set), under its own RNG."""
    n = cfg.cas_samples
    train, test = load_data(cfg.dataset, "train"), load_data(cfg.dataset, "test")
    recipe = {**clf.RECIPES["mlp"], **({"epochs": cfg.classifier_epochs} if cfg.classifier_epochs else {})}
    labels = M.conditional_labels(n, len(test.classes))
    with torch.random.fork_rng(devices=[]):
        fake = M.generate(G, n, labels=labels, generator=torch.Generator().manual_seed(11))
        kw = {**recipe, "seed": 0, "device": ctx.device, "n_classes": len(test.classes),
              "test": (test.images, test.labels)}
        _, on_fake = clf.train_classifier(fake, labels.numpy(), "mlp", **kw)
        pick = np.random.default_rng(0).choice(len(train), min(n, len(train)), replace=False)
        _, on_real = clf.train_classifier(train.images[pick], train.labels[pick], "mlp", **kw)
    return {"cas": on_fake["test_accuracy"], "cas_real_baseline": on_real["test_accuracy"], "cas_samples": n}


def load_generator(run_dir: Path) -> Generator:
    """The checkpoint's generator to sample: its moving average (`ema`) when it was trained with one."""
    payload = checkpoint.load(Path(run_dir) / "checkpoint.pt")
    net = payload["config"]["net"]
    cfg = NetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in net.items()})
    G = ARCHS[cfg.arch][0](cfg)
    G.load_state_dict(payload.get("generator_ema", payload["generator"]))
    return G.eval()


def sample(run_dir: Path, n: int) -> dict[str, np.ndarray]:
    """`scratchlab sample`: images uint8 (n, C, H, W); labels (n,) cycling through the classes if conditional."""
    G = load_generator(run_dir)
    labels = M.conditional_labels(n, G.cfg.n_classes) if G.cfg.n_classes else None
    out = {"images": M.to_uint8(M.generate(G, n, labels=labels, generator=torch.Generator().manual_seed(0)))}
    if labels is not None:
        out["labels"] = labels.numpy()
    return out


QUICK = {"steps": 30, "n_train": 2000, "eval_every": 15, "eval_samples": 200, "n_eval": 300,
         "classifier_epochs": 1, "classifier_n_train": 2000, "batch_size": 32}


@experiment("gan", GANConfig, help="one GAN (loss=vanilla|lsgan|wgan|mse, unroll=K, conditional) judged by a "
            "classifier: label KL, classes covered, Frechet distance", quick=QUICK, parallel=True, batch="batch_size")
def gan(cfg: GANConfig, ctx: Context) -> dict[str, Any]:
    extra = (f", unroll {cfg.unroll}" if cfg.unroll else "") + (f", pack {cfg.pack}" if cfg.pack > 1 else "")
    return train_gan(cfg, ctx, name=f"gan ({cfg.loss}{extra})")


hook("gan", "sample")(sample)


# ---------------------------------------------------------------------------------------------- cgan, interpolate
@dataclass
class CGANConfig(GANConfig):
    # LSGAN conditions better than the vanilla loss here: label accuracy 0.80 against 0.76 after 4000 rounds.
    # Sampling the moving average of G's weights: 0.884 after 8000 rounds against 0.840 for G itself (seed 0).
    # The projection discriminator, over seeds 0-4 (docs/gan.md): label accuracy 0.961 +- 0.006, 95% CI
    # [0.953, 0.969], Frechet 1.42, against 0.911 +- 0.009 [0.900, 0.922], Frechet 1.89 with the label
    # concatenated to D's input; at 8000 rounds it keeps the accuracy but not the Frechet distance.
    loss: Literal["vanilla", "lsgan", "wgan", "mse"] = "lsgan"  # the D and G losses: lsgan here (see above)
    conditional: bool = True
    steps: PositiveInt = 16000
    ema: Rate = 0.999
    projection: bool = True  # D: the label as y^T V phi(x), not concatenated to the image
    cas_samples: NonNegativeInt = 10000  # CAS: train a classifier on this many generated samples (0: no CAS)


@experiment("cgan", CGANConfig, help="conditional GAN (one-hot label into G, projection D): 3 samples per class, "
            "label accuracy by the evaluation classifier, CAS", quick={**QUICK, "cas_samples": 500}, parallel=True,
            batch="batch_size")
def cgan(cfg: CGANConfig, ctx: Context) -> dict[str, Any]:
    summary = train_gan(cfg, ctx, name="cgan")
    G = load_generator(ctx.run.path)
    if cfg.cas_samples:
        summary.update(classification_accuracy_score(cfg, ctx, G))
    classes = load_data(cfg.dataset, "test").classes
    labels = torch.arange(len(classes)).repeat_interleave(3)  # (3K,): 3 samples per class, one class per row
    x = M.generate(G, len(labels), labels=labels, generator=torch.Generator().manual_seed(7))
    plots.image_grid(M.to_uint8(x), ctx.run / "per_class.png", nrow=3, row_labels=classes,
                     title="cgan: 3 per class", caption="Three samples per class from the conditional generator, "
                     "one row per requested class: each row should show that class (label_accuracy is how often "
                     "the evaluation classifier agrees) and the three should differ.")
    return summary


@dataclass
class InterpolateConfig(GANConfig):
    rows: PositiveInt = 8   # pairs of samples
    steps_between: NonNegativeInt = 7  # interpolated images between the two ends of each row


# reproduce: one seed. Its training is `gan`'s (same config, same numbers), which reproduce runs over 5 seeds; what
# this experiment adds is the interpolation figure.
@experiment("gan-interpolate", InterpolateConfig, help="latent interpolation: 7 steps between two samples "
            "(9 images per row)", quick=QUICK, seeds=1, parallel=True, batch="batch_size")
def gan_interpolate(cfg: InterpolateConfig, ctx: Context) -> dict[str, Any]:
    summary = train_gan(cfg, ctx, name="gan-interpolate")
    G = load_generator(ctx.run.path)
    g = torch.Generator().manual_seed(11)
    z0, z1 = torch.randn(cfg.rows, cfg.latent, generator=g), torch.randn(cfg.rows, cfg.latent, generator=g)
    z = torch.cat([M.interpolate(a, b, cfg.steps_between) for a, b in zip(z0, z1, strict=True)])  # (rows*9, L)
    y = M.conditional_labels(cfg.rows, G.cfg.n_classes).repeat_interleave(cfg.steps_between + 2) \
        if G.cfg.n_classes else None
    with torch.no_grad():
        x = G(z, y)
    plots.image_grid(M.to_uint8(x), ctx.run / "interpolation.png", nrow=cfg.steps_between + 2,
                     title=f"linear interpolation in z: {cfg.steps_between} steps between two samples",
                     caption="Each row walks in a straight line through latent space from one sample (left) to "
                     "another (right). Smooth changes through plausible images mean G learned a continuous map; "
                     "abrupt jumps or blurry midpoints mean it memorised a few images.")
    return summary


for _name in ("cgan", "gan-interpolate"):
    hook(_name, "sample")(sample)


# ---------------------------------------------------------------------------------------------- sweeps
# gan-compare, wgan-clip-sweep and gan-d-g-ratio are plans of `gan` runs (scratchlab.sweep runs and aggregates
# them): every variant over `seeds` seeds, each run a `gan` run directory <run>/<variant>/seed<k>/.
SWEEP_METRICS = ("frechet", "kl_uniform", "classes_covered", "label_accuracy")


def base_overrides(base: GANConfig) -> dict[str, Any]:
    """The fields of a sweep's `base` that differ from the `gan` defaults: what every variant's run overrides."""
    default = C.to_dict(GANConfig())
    return {k: v for k, v in C.to_dict(base).items() if v != default[k]}


def gan_plan(base: GANConfig, variants: dict[str, dict[str, Any]], seeds: int) -> Plan:
    return Plan("gan", variants, seeds=seeds, base=base_overrides(base), metrics=SWEEP_METRICS)


def first_run(run: RunDir, variant: str) -> Path:
    """A variant's first seed's run directory (what the figures and `sample` show of it)."""
    return run.path / variant / f"seed{run.read_json('config.json')['seed']}"


def comparison_figures(summary: dict[str, Any], run: RunDir, title: str, classes: list[str]) -> dict[str, Any]:
    """The `finish` of every GAN sweep: label histograms (bars named by the data set's `classes`), final samples
    and KL curves of each variant's first seed (the table and errorbars.png have every seed)."""
    names = [v["name"] for v in summary["variants"] if v["n"]]
    results = {n: RunDir(first_run(run, n)).read_json("summary.json") for n in names}
    label_histograms(results, classes, run / "label_histograms.png", title)
    grids = [M.to_uint8(M.generate(load_generator(first_run(run, n)), 10, generator=torch.Generator().manual_seed(3),
                                   labels=torch.arange(10) if "label_accuracy" in results[n] else None))
             for n in names]
    plots.image_grid(np.concatenate(grids), run / "final_samples.png", nrow=10, row_labels=names,
                     title=f"{title}: final samples (first seed)",
                     caption="Ten samples from each variant's final generator (first seed), one row per variant "
                     "(conditional ones: classes 0-9 left to right). Compare variety within a row: a row of "
                     "near-copies is mode collapse, a row of blurs the mean image.")
    fig, ax = plots.subplots(figsize=(6, 4))
    for name in names:
        recs = RunDir(first_run(run, name)).metrics("eval")
        ax.plot([r["step"] for r in recs], [r["kl_uniform"] for r in recs], marker="o", label=name)
    ax.set(title=f"{title}: KL(labels || uniform) (first seed)", xlabel="step", ylabel="KL (nats)")
    plots.integer_ticks(ax.xaxis)
    ax.grid(alpha=0.3)
    ax.legend()
    plots.save(fig, run / "kl_curves.png", caption="KL divergence from uniform of the classes of generated "
               "samples during training, per variant (first seed): lower means the classes are generated more "
               f"evenly; log {len(classes)} = {math.log(len(classes)):.2f} nats is every sample in one class.")
    return {}


def label_histograms(results: dict[str, dict[str, Any]], classes: list[str], path: Path, title: str) -> Path:
    """One panel per variant: the share of generated samples the evaluation classifier puts in each class."""
    fig, axes = plots.subplots(1, len(results), figsize=(1.3 + 2.2 * len(results), 3.2), squeeze=False, sharey=True)
    for ax, (name, r) in zip(axes[0], results.items(), strict=True):
        ax.barh(range(len(r["histogram"])), r["histogram"])
        ax.axvline(1 / len(r["histogram"]), color="k", lw=0.8, ls="--")  # the uniform share
        ax.set(title=f"{name}\nKL {r['kl_uniform']:.3f}", xlabel="fraction of samples")
    axes[0][0].set_yticks(range(len(classes)), classes, fontsize=8)
    axes[0][0].set_ylim(len(classes) - 0.5, -0.5)  # class 0 on top, as in the data set's list
    axes[0][0].set_ylabel("predicted class")
    fig.suptitle(f"{title}: predicted classes of generated samples (first seed)", fontsize=10)
    return plots.save(fig, path, caption="The classes the evaluation classifier gives each variant's generated "
                      "samples (first seed); the dashed line is the uniform share. Bars all near it: every class "
                      "is generated (KL near 0); a few long bars: the generator covers only those classes.")


def sample_variant(run_dir: Path, n: int) -> dict[str, np.ndarray]:
    """Sweeps: sample from the first seed of the variant named by the config's `sample_from`."""
    run = RunDir(run_dir)
    return sample(first_run(run, str(run.read_json("config.json")["config"]["sample_from"])), n)


def _base(**kw: Any):
    return dataclasses.field(default_factory=lambda: GANConfig(**kw))


SWEEP_QUICK = {**{f"base.{k}": v for k, v in QUICK.items()}, "seeds": 2}


@dataclass
class CompareConfig:
    base: GANConfig = _base(steps=1500)
    unroll: PositiveInt = 3  # k of the unrolled variant
    variants: tuple[str, ...] = ("vanilla", "lsgan", "wgan", "mse", "unrolled", "cgan")  # a subset of COMPARED
    sample_from: str = "vanilla"  # the variant `scratchlab sample` draws from (its first seed)
    seeds: PositiveInt = 5  # each variant over seeds seed, seed + 1, ...


COMPARED = {"vanilla": {}, "lsgan": {"loss": "lsgan"}, "wgan": {"loss": "wgan"}, "mse": {"loss": "mse"},
            "unrolled": {"unroll": None}, "cgan": {"conditional": True}}  # None: the config's `unroll`


@sweep_experiment("gan-compare", CompareConfig, help="vanilla, LSGAN, WGAN, MSE, unrolled and conditional GANs on "
                  "the same budget over seeds: Frechet distance, label KL, classes covered, cGAN label accuracy",
                  quick=SWEEP_QUICK)
def gan_compare(cfg: CompareConfig) -> Plan:
    unknown = set(cfg.variants) - set(COMPARED)
    if unknown:
        raise ValueError(f"gan-compare: unknown variants {sorted(unknown)}; known: {list(COMPARED)}")
    variants = {v: {k: cfg.unroll if x is None else x for k, x in COMPARED[v].items()} for v in cfg.variants}
    return gan_plan(cfg.base, variants, cfg.seeds)


@dataclass
class ClipSweepConfig:
    base: GANConfig = _base(loss="wgan", steps=1000)
    clips: tuple[PositiveFloat, ...] = (0.1, 0.01, 0.001, 0.0001)  # weight-clip bounds c: one variant each
    sample_from: str = "c0.01"  # the variant `scratchlab sample` draws from (its first seed)
    seeds: PositiveInt = 5  # each variant over seeds seed, seed + 1, ...


@sweep_experiment("wgan-clip-sweep", ClipSweepConfig, help="WGAN weight clipping c in 0.1, 0.01, 0.001, 0.0001 "
                  "over seeds", quick=SWEEP_QUICK)
def wgan_clip_sweep(cfg: ClipSweepConfig) -> Plan:
    return gan_plan(cfg.base, {f"c{c:g}": {"clip": c} for c in cfg.clips}, cfg.seeds)


@dataclass
class RatioConfig:
    base: GANConfig = _base(steps=2000)
    sample_from: str = "5to2"  # the variant `scratchlab sample` draws from (its first seed)
    seeds: PositiveInt = 5  # each variant over seeds seed, seed + 1, ...


@sweep_experiment("gan-d-g-ratio", RatioConfig, help="discriminator:generator updates 1:1 against 5:2, the same "
                  "number of generator updates, over seeds", quick=SWEEP_QUICK)
def gan_d_g_ratio(cfg: RatioConfig) -> Plan:
    variants = {"1to1": {"d_steps": 1, "g_steps": 1},
                "5to2": {"d_steps": 5, "g_steps": 2, "steps": max(1, cfg.base.steps // 2)}}
    return gan_plan(cfg.base, variants, cfg.seeds)


for _name in ("gan-compare", "wgan-clip-sweep", "gan-d-g-ratio"):
    hook(_name, "sample")(sample_variant)
    hook(_name, "finish")(lambda cfg, summary, run, _n=_name: comparison_figures(
        summary, run, _n, load_data(cfg.base.dataset, "test").classes))
