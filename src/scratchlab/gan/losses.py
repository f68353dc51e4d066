"""GAN losses as pure functions of the discriminator's raw outputs; `LOSSES` is the registry.

Every loss is a mean over the batch. `d_real = D(x)` and `d_fake = D(G(z))` are raw scores (N,):

    vanilla  D(x) = sigmoid(d) is a probability; with that,
             L_D = -log D(x) - log(1 - D(G(z)))        G: L_G = -log D(G(z))   (non-saturating)
             computed on the logit d with log-sigmoid: -log sigmoid(d) = softplus(-d) and
             -log(1 - sigmoid(d)) = softplus(d): the same formula, without log(0) when sigmoid saturates.
    lsgan    L_D = (D(x) - 1)^2 + D(G(z))^2             L_G = (D(G(z)) - 1)^2      (Mao et al. 2017)
    wgan     L_D = -D(x) + D(G(z))                      L_G = -D(G(z))             (Arjovsky et al. 2017)
             the critic's weights are clipped to [-c, c] after every critic step (the trainer does it)
    mse      no discriminator: L_G = mean((G(z) - x)^2) over a data batch x. The minimiser for random
             pairings is the mean image, which is why this "GAN" averages the modes into one blur.

`GANLoss.score(d)` maps raw outputs to what the curves show as D(x): a probability for vanilla, the raw score
otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F


def vanilla_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    # -log sigmoid(d_r) - log(1 - sigmoid(d_f)) = softplus(-d_r) + softplus(d_f)
    return (F.softplus(-d_real) + F.softplus(d_fake)).mean()


def vanilla_g(d_fake: torch.Tensor) -> torch.Tensor:
    # -log sigmoid(d_f) = softplus(-d_f)
    return F.softplus(-d_fake).mean()


def lsgan_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return ((d_real - 1) ** 2).mean() + (d_fake**2).mean()


def lsgan_g(d_fake: torch.Tensor) -> torch.Tensor:
    return ((d_fake - 1) ** 2).mean()


def wgan_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return -d_real.mean() + d_fake.mean()


def wgan_g(d_fake: torch.Tensor) -> torch.Tensor:
    return -d_fake.mean()


def mse_g(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Not a function of D: G's images (N, C, H, W) regressed onto a data batch of the same shape."""
    return ((fake - real) ** 2).mean()


def _identity(d: torch.Tensor) -> torch.Tensor:
    return d


@dataclass(frozen=True)
class GANLoss:
    """d_loss(d_real, d_fake) and g_loss(d_fake) on raw D outputs; `discriminator=False` means g_loss(fake, real)."""

    name: str
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    g_loss: Callable[..., torch.Tensor]
    score: Callable[[torch.Tensor], torch.Tensor] = _identity
    discriminator: bool = True


LOSSES: dict[str, GANLoss] = {
    "vanilla": GANLoss("vanilla", vanilla_d, vanilla_g, score=torch.sigmoid),
    "lsgan": GANLoss("lsgan", lsgan_d, lsgan_g),
    "wgan": GANLoss("wgan", wgan_d, wgan_g),
    "mse": GANLoss("mse", None, mse_g, discriminator=False),
}
