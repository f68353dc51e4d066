"""gan-stacked: stacked MNIST (Metz et al. 2017; VEEGAN and PacGAN Table 2), 1,000 modes with known answers.

A stacked image puts three digits drawn independently from the training split in the three channels, (3, 28, 28),
so there are 10^3 = 1000 modes, one per digit triple (d_1, d_2, d_3). An evaluation classifier trained on single
digits labels each channel of a generated image; its mode is 100 d_1 + 10 d_2 + d_3. Over N generated images
(N = 26,000 in the papers):

    modes   #{modes with at least one sample}            (1000 when every triple is generated)
    kl      KL(mode histogram || uniform over 1000)      (gan.metrics.kl_to_uniform)
    kl_floor  the same KL for N draws of a perfect, uniform generator (seeded): with N = 26,000 about 0.02, the
              best any generator can show on this many samples
    real_modes, real_kl  the same judge on N stacked triples of the digits' test split: what real data is credited
              with through this judge (its errors move a triple to a neighbouring mode)

The nets are the project's MLP G and D (gan/nets.py) on 3 x 28 x 28 by default; `arch=dcgan` trains the
two-stage DCGAN of gan/nets.py instead, the kind of net the papers use; `pack` makes either a PacGAN. The digits
are the 5,000 offline MNIST digits by default (`dataset=mnist` when downloaded).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from scratchlab.experiments import experiment
from scratchlab.experiments.gan import GAN_DEFAULTS, WGAN_DEFAULTS, load_data
from scratchlab.gan import classifier as clf
from scratchlab.gan import metrics as M
from scratchlab.gan.nets import NetConfig, build
from scratchlab.gan.trainer import GANTrainer, TrainerConfig
from scratchlab.run import plots
from scratchlab.run.config import NonNegativeInt, PositiveInt
from scratchlab.train.loop import Context, fit


@dataclass
class StackedConfig:
    dataset: Literal["mnist-5k", "mnist"] = "mnist-5k"  # the digits stacked: 4000 offline train digits, or MNIST
    loss: Literal["vanilla", "lsgan", "wgan"] = "vanilla"  # the D and G losses (gan/losses.py)
    pack: PositiveInt = 1  # PacGAN: D judges packs of this many images; 1: the plain GAN
    arch: Literal["mlp", "dcgan"] = "mlp"  # G and D: the project's MLPs, or the DCGAN (gan/nets.py)
    conv_width: PositiveInt = 64  # dcgan: channels of G's last and D's first convolution
    unroll: NonNegativeInt = 0  # k: G trains against D advanced k steps (0: D itself)
    steps: PositiveInt = 5000  # rounds: d_steps discriminator updates + one generator update each
    batch_size: PositiveInt = 64  # packs per update
    latent: PositiveInt = 100  # size of G's input noise z
    n_stacked: PositiveInt = 20000  # stacked training images built once from random digit triples
    n_eval: PositiveInt = 26000  # generated images judged at the end (the papers: 26,000)
    eval_every: NonNegativeInt = 1000  # modes / KL on eval_samples images (0: only at the end)
    eval_samples: PositiveInt = 2600  # images judged at each intermediate evaluation
    classifier_epochs: NonNegativeInt = 0  # the CNN judge's epochs; 0: its default recipe (classifier.RECIPES)
    classifier_n_train: NonNegativeInt = 0  # the judge's training digits; 0: the whole train split


def stack(images: np.ndarray, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n stacked images (n, 3, 28, 28) in [-1, 1] from digit images (N, 28, 28) and their triples' indices (n, 3)."""
    x = clf.as_float_images(images)  # (N, 1, 28, 28)
    idx = torch.randint(len(x), (n, 3), generator=generator)
    return x[idx].squeeze(2), idx  # (n, 3, 1, 28, 28) -> (n, 3, 28, 28)


def modes_of(model: clf.Classifier, images: torch.Tensor) -> np.ndarray:
    """(N,) mode 100 d_1 + 10 d_2 + d_3 of stacked images (N, 3, 28, 28), each channel labelled by `model`."""
    d = [clf.predict(model, images[:, c:c + 1]) for c in range(3)]
    return 100 * d[0] + 10 * d[1] + d[2]


def uniform_floor(n: int, k: int = 1000, seed: int = 0) -> float:
    """KL to uniform of the histogram of n uniform draws from k modes: what a perfect generator shows."""
    draws = np.random.default_rng(seed).integers(k, size=n)
    return M.kl_to_uniform(M.label_histogram(draws, k))


def judge(model: clf.Classifier, images: torch.Tensor) -> dict[str, Any]:
    hist = M.label_histogram(modes_of(model, images), 1000)
    return {"modes": int(np.sum(hist > 0)), "kl": M.kl_to_uniform(hist)}


@experiment("gan-stacked", StackedConfig, help="stacked MNIST (3 digits, one per channel, 1000 modes): modes "
            "covered and KL to uniform of 26,000 samples, the uniform floor beside it", seeds=3,
            quick={"steps": 10, "n_stacked": 500, "n_eval": 600, "eval_every": 5, "eval_samples": 200,
                   "classifier_epochs": 1, "classifier_n_train": 1000, "batch_size": 16})
def gan_stacked(cfg: StackedConfig, ctx: Context) -> dict[str, Any]:
    run, dev = ctx.run, ctx.device
    model, info = clf.load_or_train(cfg.dataset, "cnn", seed=0, epochs=cfg.classifier_epochs or None,
                                    n_train=cfg.classifier_n_train or None, device=ctx.device)
    train = load_data(cfg.dataset, "train")
    data, _ = stack(train.images, cfg.n_stacked, torch.Generator().manual_seed(ctx.seed))
    data = data.to(dev)
    net = NetConfig(latent=cfg.latent, channels=3, image_size=28, pack=cfg.pack, arch=cfg.arch,
                    conv_width=cfg.conv_width)
    base = WGAN_DEFAULTS if cfg.loss == "wgan" else GAN_DEFAULTS
    tcfg = TrainerConfig(loss=cfg.loss, batch_size=cfg.batch_size, unroll=cfg.unroll, **base)
    G, D = (m.to(dev) for m in build(net))
    trainer = GANTrainer(G, D, tcfg, data)

    def generated(n: int) -> torch.Tensor:
        return M.generate(trainer.sampler, n, generator=torch.Generator().manual_seed(0))

    fit(trainer.step, cfg.steps, ctx, state=trainer.state(), eval_fn=lambda i: judge(model, generated(
        cfg.eval_samples)), eval_every=cfg.eval_every, monitor="none", desc="gan-stacked",
        config={"net": dataclasses.asdict(net)})
    x = generated(cfg.n_eval)
    final = judge(model, x)
    plots.image_grid(M.to_uint8(x[:64]), run / "samples_end.png", nrow=8, title=f"gan-stacked: step {cfg.steps}",
                     caption="Generated stacked digits: each colour channel should hold one digit, and the 1000 "
                     "triples should all occur. The same colours and digits again and again is mode collapse.")
    real = data[:64].cpu()
    plots.image_grid(M.to_uint8(real), run / "data.png", nrow=8, title="stacked MNIST: training images",
                     caption="Training images: three random digits in the red, green and blue channels.")
    plots.curves(run.metrics("eval"), ["modes"], run / "modes_curve.png", title="gan-stacked: modes covered",
                 ylabel="modes (of 1000)", caption=f"Digit triples with at least one of {cfg.eval_samples} "
                 f"samples during training (at most {min(1000, cfg.eval_samples)} on that many samples).")
    test_digits = load_data(cfg.dataset, "test").images
    real_ref = judge(model, stack(test_digits, cfg.n_eval, torch.Generator().manual_seed(0))[0])
    return {**final, "kl_floor": uniform_floor(cfg.n_eval), "n_eval": cfg.n_eval,
            "real_modes": real_ref["modes"], "real_kl": real_ref["kl"],
            "classifier_test_accuracy": info.get("test_accuracy"), "steps": cfg.steps,
            "d_updates": trainer.d_updates, "g_updates": trainer.g_updates, "data": train.source}
