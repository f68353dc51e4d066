"""MLP generators and discriminators built from a config; conditional when `n_classes > 0`.

    G: z (N, latent) [+ one-hot y (N, K)] -> 128 -> 256 -> 512 -> 1024 -> C*H*W, BatchNorm + LeakyReLU(0.2)
       between layers, tanh at the end; output (N, C, H, W) in [-1, 1].
    D: x (N, C, H, W) flattened [+ one-hot y (N, K)] -> 512 -> 256 -> 1, LeakyReLU(0.2) (or maxout units of
       `maxout` pieces each, as PacGAN's D on the 2-D mixtures); output (N,) raw scores.

D always returns raw (unbounded) scores: the losses decide what they mean (a logit for the vanilla GAN, whose
sigmoid lives inside its log-sigmoid for stability; a critic value for WGAN; a regression target for LSGAN).
The conditional label enters as a one-hot vector concatenated to G's latent and, by default, to D's flattened
input. With `projection` the label enters D at the end instead (Miyato & Koyama 2018, "cGANs with projection
discriminator"): with phi(x) (N, F) D's last hidden layer on the image alone, V (K, F) an embedding of the classes,

    D(x, y) = psi(phi(x)) + y^T V phi(x)     (y one-hot; psi the unconditional linear head)

the log-ratio form of a conditional discriminator when p(y | x) is log-linear in phi(x).
With `spectral_norm` every weight matrix of D (and V) is divided by its largest singular value, estimated by one
power iteration per training forward (Miyato et al. 2018, torch.nn.utils.parametrizations.spectral_norm): D is
then 1-Lipschitz in each layer.

Packing (PacGAN, Lin et al. 2018), `pack` = M: D judges M samples at once, all real or all generated. Its input
is M flattened samples (each with its one-hot label when conditional) concatenated, (N, F) -> (N / M, M F), so
rows 0..M-1 form the first pack, M..2M-1 the second, and so on; D returns N / M scores. A generator that puts
all its mass on a few modes is easy to spot from M samples (they keep coinciding) even when each one alone looks
real. M = 1 is the usual discriminator, parameter for parameter.

`output`: "tanh" bounds G's samples to [-1, 1] (images); "linear" leaves them unbounded (2-D mixtures whose
modes lie at +-4).

DCGAN (Radford et al. 2016), unconditional, for images whose side S is a multiple of 4, width c = `conv_width`:

    G: z (N, latent) -> linear -> (2c, S/4, S/4) -> 4x4 transposed conv, stride 2 -> (c, S/2, S/2)
       -> 4x4 transposed conv, stride 2 -> (C, S, S), tanh; BatchNorm + ReLU after the first two.
    D: x (N, C, S, S) -> 4x4 conv, stride 2 -> (c, S/2, S/2) -> 4x4 conv, stride 2 -> (2c, S/4, S/4)
       [BatchNorm] -> linear -> 1; LeakyReLU(0.2) after the convolutions.

the two-stage MNIST DCGAN the unrolled-GAN, VEEGAN and PacGAN papers' stacked-MNIST experiments build on, sized to
train on a CPU. Packed, its pack is the M images concatenated along the channels, (N, C, S, S) -> (N / M, M C, S, S)
(PacGAN's DCGAN), consecutive rows into one pack as in the MLP. `build(cfg)` makes the pair `cfg.arch` names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class NetConfig:
    latent: int = 100
    g_hidden: tuple[int, ...] = (128, 256, 512, 1024)
    d_hidden: tuple[int, ...] = (512, 256)
    channels: int = 1
    image_size: int = 28
    n_classes: int = 0  # > 0: conditional G and D
    slope: float = 0.2  # LeakyReLU negative slope
    maxout: int = 0  # > 0: D's hidden units are maxout units of this many pieces (PacGAN's 2-D D: 5), not LeakyReLU
    projection: bool = False  # conditional D: label as y^T V phi(x) at the end, not concatenated to x
    spectral_norm: bool = False  # D's weights (and V) divided by their spectral norm
    pack: int = 1  # PacGAN: D sees `pack` samples concatenated and returns one score per pack
    output: str = "tanh"  # G's last activation: "tanh" (images in [-1, 1]) or "linear" (unbounded points)
    arch: str = "mlp"  # "mlp" or "dcgan" (unconditional images only)
    conv_width: int = 64  # dcgan: channels c of G's last and D's first convolution (2c at the coarse scale)


def mlp(sizes: Sequence[int], *, slope: float = 0.2, batchnorm: bool = False) -> list[nn.Module]:
    """Linear layers sizes[0] -> ... -> sizes[-1] with (BatchNorm and) LeakyReLU after every layer."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers.append(nn.Linear(a, b))
        if batchnorm:
            layers.append(nn.BatchNorm1d(b))
        layers.append(nn.LeakyReLU(slope))
    return layers


class Maxout(nn.Module):
    """Linear a -> b * k, then the largest of each unit's k pieces (Goodfellow et al. 2013): (N, a) -> (N, b)."""

    def __init__(self, a: int, b: int, pieces: int):
        super().__init__()
        self.b, self.pieces = b, pieces
        self.linear = nn.Linear(a, b * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(len(x), self.b, self.pieces).amax(2)


def one_hot(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.one_hot(y, n_classes).to(torch.get_default_dtype())


class _Latent:
    cfg: NetConfig

    def sample_latent(self, n: int, *, like: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """(n, latent) standard normal, on the device of `like` (or of this module's parameters)."""
        ref = like if like is not None else next(self.parameters())
        return torch.randn(n, self.cfg.latent, device=ref.device, generator=generator)


class Generator(_Latent, nn.Module):
    """z (N, latent), y (N,) int64 or None -> images (N, C, H, W) in [-1, 1]."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        n_in = cfg.latent + cfg.n_classes
        n_out = cfg.channels * cfg.image_size**2
        # The first layer has no BatchNorm (as in the course's generator): normalising straight after the
        # latent only rescales z.
        if cfg.output not in ("tanh", "linear"):
            raise ValueError(f"output: expected 'tanh' or 'linear', got {cfg.output!r}")
        self.net = nn.Sequential(*mlp([n_in, cfg.g_hidden[0]], slope=cfg.slope),
                                 *mlp(cfg.g_hidden, slope=cfg.slope, batchnorm=True),
                                 nn.Linear(cfg.g_hidden[-1], n_out), *([nn.Tanh()] if cfg.output == "tanh" else []))

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.cfg.n_classes:
            if y is None:
                raise ValueError("conditional generator: labels y are required")
            z = torch.cat([z, one_hot(y, self.cfg.n_classes)], dim=1)  # (N, latent + K)
        c, s = self.cfg.channels, self.cfg.image_size
        return self.net(z).view(-1, c, s, s)


class Discriminator(nn.Module):
    """x (N, C, H, W), y (N,) or None -> raw scores (N / pack,)."""

    def __init__(self, cfg: NetConfig, n_out: int = 1):
        super().__init__()
        self.cfg = cfg
        self.project = bool(cfg.n_classes and cfg.projection)
        if cfg.pack < 1:
            raise ValueError(f"pack: expected at least 1 sample per pack, got {cfg.pack}")
        if self.project and cfg.pack > 1:
            raise ValueError("pack > 1 with the projection discriminator: a pack has M labels and the projection "
                             "y^T V phi(x) one; use projection=false (labels concatenated to each sample) to pack")
        n_in = cfg.pack * (cfg.channels * cfg.image_size**2 + (0 if self.project else cfg.n_classes))
        if cfg.maxout < 0:
            raise ValueError(f"maxout: expected 0 (LeakyReLU) or a number of pieces, got {cfg.maxout}")
        sizes = [n_in, *cfg.d_hidden]
        self.body = nn.Sequential(*(mlp(sizes, slope=cfg.slope) if not cfg.maxout else
                                    [Maxout(a, b, cfg.maxout) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]))
        self.head = nn.Linear(cfg.d_hidden[-1], n_out)
        if self.project:
            if n_out != 1:
                raise ValueError("projection discriminator: one output (n_out = 1)")
            self.embed = nn.Embedding(cfg.n_classes, cfg.d_hidden[-1])  # V (K, F)
            nn.init.normal_(self.embed.weight, std=cfg.d_hidden[-1] ** -0.5)
        if cfg.spectral_norm:
            for m in [m for m in self.modules() if isinstance(m, nn.Linear | nn.Embedding)]:
                nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)  # (N, C*H*W)
        if self.cfg.n_classes:
            if y is None:
                raise ValueError("conditional discriminator: labels y are required")
            if self.project:
                phi = self.body(h)  # (N, F)
                return self.head(phi).squeeze(1) + (self.embed(y) * phi).sum(1)  # psi(phi) + <V_y, phi>
            h = torch.cat([h, one_hot(y, self.cfg.n_classes)], dim=1)
        if self.cfg.pack > 1:
            if len(h) % self.cfg.pack:
                raise ValueError(f"pack {self.cfg.pack}: a batch of {len(h)} samples does not split into packs")
            h = h.reshape(len(h) // self.cfg.pack, -1)  # (N / M, M F): consecutive rows side by side
        out = self.head(self.body(h))  # (N / M, n_out)
        return out.squeeze(1) if out.shape[1] == 1 else out


def _check_dcgan(cfg: NetConfig) -> None:
    if cfg.n_classes:
        raise ValueError("arch=dcgan is unconditional: n_classes must be 0 (use arch=mlp for a conditional GAN)")
    if cfg.image_size % 4:
        raise ValueError(f"arch=dcgan halves the image twice: image_size must be a multiple of 4, got "
                         f"{cfg.image_size}")
    if cfg.pack < 1:
        raise ValueError(f"pack: expected at least 1 sample per pack, got {cfg.pack}")


class DCGenerator(_Latent, nn.Module):
    """z (N, latent) -> images (N, C, S, S) in [-1, 1] through two stride-2 transposed convolutions."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        _check_dcgan(cfg)
        self.cfg = cfg
        c, q = cfg.conv_width, cfg.image_size // 4
        self.project = nn.Sequential(nn.Linear(cfg.latent, 2 * c * q * q, bias=False), nn.BatchNorm1d(2 * c * q * q),
                                     nn.ReLU())
        self.net = nn.Sequential(nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                 nn.ConvTranspose2d(c, cfg.channels, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        q = self.cfg.image_size // 4
        return self.net(self.project(z).view(len(z), -1, q, q))  # (N, 2c, S/4, S/4) -> (N, C, S, S)


class DCDiscriminator(nn.Module):
    """x (N, C, S, S) -> raw scores (N / pack,) through two stride-2 convolutions."""

    def __init__(self, cfg: NetConfig, n_out: int = 1):
        super().__init__()
        _check_dcgan(cfg)
        self.cfg = cfg
        c, q = cfg.conv_width, cfg.image_size // 4
        sn = nn.utils.parametrizations.spectral_norm if cfg.spectral_norm else (lambda m: m)
        self.body = nn.Sequential(sn(nn.Conv2d(cfg.pack * cfg.channels, c, 4, 2, 1)), nn.LeakyReLU(cfg.slope),
                                  sn(nn.Conv2d(c, 2 * c, 4, 2, 1)),
                                  *([] if cfg.spectral_norm else [nn.BatchNorm2d(2 * c)]), nn.LeakyReLU(cfg.slope))
        self.head = sn(nn.Linear(2 * c * q * q, n_out))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        m = self.cfg.pack
        if len(x) % m:
            raise ValueError(f"pack {m}: a batch of {len(x)} samples does not split into packs")
        x = x.reshape(len(x) // m, m * x.shape[1], *x.shape[2:])  # (N / M, M C, S, S): a pack's images stacked
        out = self.head(self.body(x).flatten(1))
        return out.squeeze(1) if out.shape[1] == 1 else out


ARCHS = {"mlp": (Generator, Discriminator), "dcgan": (DCGenerator, DCDiscriminator)}


def build(cfg: NetConfig) -> tuple[nn.Module, nn.Module]:
    """(G, D) of the architecture `cfg.arch` names."""
    if cfg.arch not in ARCHS:
        raise ValueError(f"arch: expected one of {sorted(ARCHS)}, got {cfg.arch!r}")
    G, D = ARCHS[cfg.arch]
    return G(cfg), D(cfg)
