"""Mode collapse with known answers: GANs on the 2-D ring and grid mixtures, judged as VEEGAN and PacGAN judge them.

    gan-mixture  one GAN (--set mixture=ring|grid loss=... unroll=K pack=M) on a 2-D mixture: modes covered,
                 high-quality fraction, reverse KL of 2,500 samples (gan/mixtures.py), a scatter over the modes
    gan-modes    vanilla, unrolled (k = 5), WGAN, PacGAN2, PacGAN4 and LSGAN on both mixtures over seeds:
                 summary keys <mixture>.<variant>.modes / .high_quality / .reverse_kl (means over seeds; the
                 variants list has every seed, std and 95% interval), one scatter figure per mixture

The nets are the project's MLPs (gan/nets.py: LeakyReLU, BatchNorm in G) at the widths of PacGAN's code for these
mixtures, G 4 x 400 and D 3 x 200 with a 2-D latent, D's units maxout of 5 pieces as PacGAN's; PacGAN trains for
400 epochs of 100,000 points (400,000 updates), far beyond what `steps` here affords on a CPU: docs/gan.md says
which budget gave which numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.patches import Circle

from scratchlab.experiments import Plan, experiment, hook, sweep_experiment
from scratchlab.experiments.cyclegan import lr_factor
from scratchlab.experiments.gan import GAN_DEFAULTS, WGAN_DEFAULTS
from scratchlab.gan import metrics as M
from scratchlab.gan import mixtures as X
from scratchlab.gan.nets import Discriminator, Generator, NetConfig
from scratchlab.gan.trainer import GANTrainer, TrainerConfig
from scratchlab.run import config as C
from scratchlab.run import plots
from scratchlab.run.config import NonNegativeInt, PositiveFloat, PositiveInt, Probability, Rate
from scratchlab.run.rundir import RunDir
from scratchlab.train.loop import Context, fit


@dataclass
class MixtureConfig:
    mixture: Literal["ring", "grid"] = "ring"  # ring: 8 modes, radius 1, std 0.01; grid: 25 modes at +-4, std 0.05
    loss: Literal["vanilla", "lsgan", "wgan"] = "vanilla"  # the D and G losses (gan/losses.py)
    unroll: NonNegativeInt = 0  # k: G trains against D advanced k steps (0: D itself)
    unroll_grad: bool = False  # unrolled D's steps differentiable (second order; slower)
    pack: PositiveInt = 1  # PacGAN: D judges packs of this many samples; 1: the plain GAN
    steps: PositiveInt = 8000  # rounds: d_steps discriminator updates + one generator update each
    batch_size: PositiveInt = 100  # packs per update, as PacGAN's code (100 samples per pack slot)
    latent: PositiveInt = 2  # size of z ~ N(0, I), as PacGAN's code
    g_hidden: tuple[PositiveInt, ...] = (400, 400, 400, 400)  # G's widths (PacGAN's code: 4 x 400)
    d_hidden: tuple[PositiveInt, ...] = (200, 200, 200)  # D's widths (PacGAN's code: 3 x 200, maxout units)
    maxout: NonNegativeInt = 5  # D's units: maxout of this many pieces (PacGAN's code: 5); 0: LeakyReLU
    lr: PositiveFloat | None = None  # G's and D's; None: 5e-5 for wgan (its paper), else 1e-3
    beta1: Rate = 0.5  # Adam's beta1 (PacGAN's code: 0.8 at lr 1e-4)
    lr_decay: Probability = 0.5  # learning rates fall linearly to 0 over this last fraction of the steps (0: constant)
    d_steps: PositiveInt | None = None  # None: 5 for wgan (n_critic), else 1
    n_train: PositiveInt = 100_000  # points drawn from the mixture once, as PacGAN's code
    n_eval: PositiveInt = 2500  # samples judged (VEEGAN and PacGAN: 2,500)
    min_count: PositiveInt = 1  # high-quality samples a mode needs to count as covered (PacGAN's code: 1)
    eval_every: NonNegativeInt = 500  # modes / high quality / reverse KL on n_eval samples (0: only at the end)


def trainer_config(cfg: MixtureConfig) -> TrainerConfig:
    base = WGAN_DEFAULTS if cfg.loss == "wgan" else {**GAN_DEFAULTS, "lr_g": 1e-3, "lr_d": 1e-3}
    picked = {**base, **({"lr_g": cfg.lr, "lr_d": cfg.lr} if cfg.lr else {}),
              **({"d_steps": cfg.d_steps} if cfg.d_steps else {})}
    return TrainerConfig(loss=cfg.loss, batch_size=cfg.batch_size, unroll=cfg.unroll, unroll_grad=cfg.unroll_grad,
                         beta1=cfg.beta1, **picked)


def net_config(cfg: MixtureConfig) -> NetConfig:
    # a point (x1, x2) travels as a 2-channel 1x1 "image", so G and D are the image GAN's nets unchanged
    return NetConfig(latent=cfg.latent, g_hidden=cfg.g_hidden, d_hidden=cfg.d_hidden, channels=2, image_size=1,
                     pack=cfg.pack, maxout=cfg.maxout, output="linear")


def points(G: Generator, n: int, seed: int = 0) -> np.ndarray:
    """(n, 2) samples of G in eval mode, from a fixed latent stream."""
    with torch.no_grad():
        return M.generate(G, n, generator=torch.Generator().manual_seed(seed)).reshape(n, 2).numpy()


def scatter(ax, pts: np.ndarray, mixture: X.Mixture, title: str) -> None:
    """Samples (black dots) over the modes (red crosses, with the 3-std circle that makes a sample high quality)."""
    ax.scatter(pts[:, 0], pts[:, 1], s=2, c="k", alpha=0.3, linewidths=0)
    ax.scatter(mixture.means[:, 0], mixture.means[:, 1], marker="x", c="r", s=12, linewidths=0.8)
    for mx, my in mixture.means:
        ax.add_patch(Circle((mx, my), 3 * mixture.std, fill=False, color="r", lw=0.5))
    lim = np.abs(mixture.means).max() * 1.5
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)
    ax.tick_params(labelsize=7)


def caption(mixture: X.Mixture, n: int) -> str:
    return (f"{n} samples of the generator (dots) over the {len(mixture.means)} modes of the {mixture.name} "
            f"(crosses; each circle is 3 std = {3 * mixture.std:g} around its mode: a sample inside one is high "
            "quality and counts for that mode). Dots piled on a few modes, and modes without dots, are mode "
            "collapse; dots between the modes are low-quality samples.")


QUICK = {"steps": 40, "n_train": 2000, "eval_every": 20, "n_eval": 500, "batch_size": 32, "g_hidden": (32, 32),
         "d_hidden": (32, 32)}


# reproduce: not on its own; gan-modes runs it for every variant, mixture and seed.
@experiment("gan-mixture", MixtureConfig, help="one GAN on the 2-D ring or grid mixture: modes covered, % high "
            "quality, reverse KL of 2,500 samples (VEEGAN/PacGAN protocol)", quick=QUICK, in_reproduce=False)
def gan_mixture(cfg: MixtureConfig, ctx: Context) -> dict[str, Any]:
    run, dev = ctx.run, ctx.device
    mixture = X.MIXTURES[cfg.mixture]()
    data = mixture.sample(cfg.n_train, generator=torch.Generator().manual_seed(ctx.seed)).view(-1, 2, 1, 1).to(dev)
    net = net_config(cfg)
    G, D = Generator(net).to(dev), Discriminator(net).to(dev)
    tcfg = trainer_config(cfg)
    trainer = GANTrainer(G, D, tcfg, data)

    def step(i: int) -> dict[str, float]:
        # the schedule is a function of the step alone, so --resume continues it; the unrolled copy's optimiser
        # is loaded from D's, decayed rate included
        f = lr_factor(i, cfg.steps, cfg.lr_decay)
        for opt, lr in ((trainer.opt_g, tcfg.lr_g), (trainer.opt_d, tcfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * f
        return trainer.step(i)

    def evaluate(i: int) -> dict[str, float]:
        r = X.judge(points(trainer.sampler, cfg.n_eval), mixture, cfg.min_count)
        return {k: v for k, v in r.items() if k != "counts"}

    fit(step, cfg.steps, ctx, state=trainer.state(), eval_fn=evaluate, eval_every=cfg.eval_every,
        monitor="none", desc=f"gan-mixture ({cfg.mixture})", config={"net": dataclasses.asdict(net)})
    pts = points(trainer.sampler, cfg.n_eval)
    np.save(run / "samples.npy", pts)
    final = X.judge(pts, mixture, cfg.min_count)
    fig, ax = plots.subplots(figsize=(4.2, 4.2))
    scatter(ax, pts, mixture, f"{cfg.mixture}: {final['modes']}/{len(mixture.means)} modes, "
            f"{100 * final['high_quality']:.1f}% high quality")
    plots.save(fig, run / "samples.png", caption=caption(mixture, cfg.n_eval))
    plots.curves(run.metrics("eval"), ["modes"], run / "modes_curve.png", title=f"{cfg.mixture}: modes covered",
                 ylabel="modes", caption=f"Modes with at least {cfg.min_count} high-quality sample(s) among "
                 f"{cfg.n_eval} samples during training (of {len(mixture.means)}). Rising to the total is good; "
                 "a curve that climbs and falls back is the generator hopping between modes.")
    return {**final, "n_modes": len(mixture.means), "steps": cfg.steps, "d_updates": trainer.d_updates,
            "g_updates": trainer.g_updates}


# ---------------------------------------------------------------------------------------------- gan-modes
VARIANTS: dict[str, dict[str, Any]] = {"vanilla": {}, "unrolled": {"unroll": 5}, "wgan": {"loss": "wgan"},
                                       "pacgan2": {"pack": 2}, "pacgan4": {"pack": 4}, "lsgan": {"loss": "lsgan"}}
METRICS = ("modes", "high_quality", "reverse_kl")


@dataclass
class ModesConfig:
    base: MixtureConfig = dataclasses.field(default_factory=MixtureConfig)
    mixtures: tuple[Literal["ring", "grid"], ...] = ("ring", "grid")  # each variant on each of these
    variants: tuple[str, ...] = ("vanilla", "unrolled", "wgan", "pacgan2", "pacgan4", "lsgan")  # of VARIANTS
    seeds: PositiveInt = 10  # each variant over seeds seed, seed + 1, ... (both papers: 10 runs)


@sweep_experiment("gan-modes", ModesConfig, help="vanilla, unrolled, WGAN, PacGAN2/4 and LSGAN on the 2-D ring "
                  "and grid over seeds: modes covered, % high quality, reverse KL (VEEGAN/PacGAN Table 1)",
                  seeds=10, quick={**{f"base.{k}": v for k, v in QUICK.items()}, "seeds": 2})
def gan_modes(cfg: ModesConfig) -> Plan:
    unknown = set(cfg.variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"gan-modes: unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")
    default = C.to_dict(MixtureConfig())
    base = {k: v for k, v in C.to_dict(cfg.base).items() if v != default[k]}
    variants = {f"{m}.{v}": {"mixture": m, **VARIANTS[v]} for m in cfg.mixtures for v in cfg.variants}
    return Plan("gan-mixture", variants, seeds=cfg.seeds, base=base, metrics=METRICS)


def modes_finish(cfg: ModesConfig, summary: dict[str, Any], run: RunDir) -> dict[str, Any]:
    """<mixture>.<variant>.<metric>: the mean over seeds (n and spread are in `variants`); one scatter per mixture
    of every variant's first seed."""
    out: dict[str, Any] = {}
    for v in summary["variants"]:
        for m in METRICS:
            if m in v["metrics"]:
                out[f"{v['name']}.{m}"] = v["metrics"][m]["mean"]
    seed = run.read_json("config.json")["seed"]
    for mix in cfg.mixtures:
        mixture = X.MIXTURES[mix]()
        names = [v["name"] for v in summary["variants"] if v["name"].startswith(mix + ".") and v["n"]]
        if not names:
            continue
        fig, axes = plots.subplots(1, len(names), figsize=(2.6 * len(names), 2.9), squeeze=False)
        for ax, name in zip(axes[0], names, strict=True):
            path = run.path / name / f"seed{seed}"
            r = RunDir(path).read_json("summary.json")
            scatter(ax, np.load(path / "samples.npy"), mixture, f"{name.split('.', 1)[1]}: {r['modes']} modes, "
                    f"{100 * r['high_quality']:.0f}% HQ")
        plots.save(fig, run / f"samples_{mix}.png", caption=caption(mixture, cfg.base.n_eval)
                   + " One panel per variant, its first seed; the table has every seed.")
    return out


hook("gan-modes", "finish")(modes_finish)


def saved_points(run_dir: Path, n: int) -> dict[str, np.ndarray]:
    """`scratchlab sample` on a gan-mixture run: the judged samples it saved (n of them, at most 2,500)."""
    return {"points": np.load(Path(run_dir) / "samples.npy")[:n]}


hook("gan-mixture", "sample")(saved_points)
