"""CycleGAN (Zhu et al. 2017) between two image domains, as in the MNIST <-> SVHN exercise.

Two generators G: X -> Y and F: Y -> X, two discriminators D_X (on X) and D_Y (on Y). Images are floats in
[-1, 1], (N, C, S, S); each domain has its own channels and size (MNIST 1x28x28, SVHN 3x32x32), and the nets
convert between them (pad/crop to a common working size, channels in the first and last convolution).

With labels (the exercise's default), D_X and D_Y are (K+1)-class classifiers, class K meaning "fake":

    L_D = CE(D_X(x), l_x) + CE(D_Y(y), l_y) + CE(D_Y(G(x)), K) + CE(D_X(F(y)), K)
    L_G = CE(D_Y(G(x)), l_x) + CE(D_X(F(y)), l_y)                                 G, F: keep the source's label
          + lambda * (MSE(F(G(x)), x) + MSE(G(F(y)), y))                          cycle consistency

so a translated 7 is pushed to look like a real 7 of the other domain. Label-free (any `gan.losses.LOSSES`
entry with a discriminator, e.g. "lsgan"), D_X and D_Y give one score and

    L_D = d_loss(D_X(x), D_X(F(y))) + d_loss(D_Y(y), D_Y(G(x)))
    L_G = g_loss(D_Y(G(x))) + g_loss(D_X(F(y))) + lambda * (same cycle term)

CE and MSE are batch means. Real and translated batches go through a discriminator separately (BatchNorm sees
one kind per batch), and D takes its step on translations detached from G before G's step (`CycleGAN.step`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from scratchlab.gan.losses import LOSSES
from scratchlab.run.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Rate


@dataclass(frozen=True)
class Domain:
    """An image domain: channels and (square) size, e.g. MNIST Domain(1, 28), SVHN Domain(3, 32)."""

    channels: int
    size: int


def fit_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-pad (replicating the border) or centre-crop (N, C, S, S) to (N, C, size, size)."""
    s = x.shape[-1]
    if s < size:
        lo = (size - s) // 2
        return F.pad(x, (lo, size - s - lo, lo, size - s - lo), mode="replicate")
    lo = (s - size) // 2
    return x[..., lo:lo + size, lo:lo + size]


class ResidualBlock(nn.Module):
    """y = relu(x + BN(conv3x3(relu(BN(conv3x3(x)))))), channels and size unchanged."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(h)))


def _conv_bn_relu(c_in: int, c_out: int, k: int, stride: int, pad: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, pad, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class Generator(nn.Module):
    """source (N, C_s, S_s, S_s) in [-1, 1] -> target (N, C_t, S_t, S_t) in [-1, 1].

    encoder: conv3x3 C_s -> ch, then n_down x [conv4x4 stride 2, channels doubled]   (size S -> S / 2^n_down)
    n_res residual blocks at ch * 2^n_down channels
    decoder: n_down x [transposed conv4x4 stride 2, channels halved], conv3x3 ch -> C_t, tanh
    The working size is max(S_s, S_t): the source is padded up to it and the output cropped down to S_t.
    """

    def __init__(self, source: Domain, target: Domain, ch: int = 32, n_res: int = 2, n_down: int = 1):
        super().__init__()
        self.source, self.target = source, target
        self.work = max(source.size, target.size)
        if self.work % 2**n_down:
            raise ValueError(f"Generator: working size {self.work} is not divisible by 2^n_down = {2**n_down}")
        layers = _conv_bn_relu(source.channels, ch, 3, 1, 1)
        c = ch
        for _ in range(n_down):
            layers += _conv_bn_relu(c, 2 * c, 4, 2, 1)
            c *= 2
        layers += [ResidualBlock(c) for _ in range(n_res)]
        for _ in range(n_down):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        layers += [nn.Conv2d(c, target.channels, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check(x, self.source, "Generator input")
        return fit_size(self.net(fit_size(x, self.work)), self.target.size)


class Discriminator(nn.Module):
    """image (N, C, S, S) -> scores (N, n_out): n_out = K + 1 class logits (K = "fake"), or 1 real/fake score.

    The image is padded to the next multiple of 8, then 3 x [conv4x4 stride 2] (ch, 2ch, 4ch; LeakyReLU 0.2,
    BatchNorm after the first) down to (4ch, S/8, S/8), and a linear layer to n_out.
    """

    def __init__(self, domain: Domain, n_out: int, ch: int = 32):
        super().__init__()
        self.domain = domain
        self.work = -(-domain.size // 8) * 8
        layers: list[nn.Module] = [nn.Conv2d(domain.channels, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        for c in (ch, 2 * ch):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2)]
        layers += [nn.Flatten(), nn.Linear(4 * ch * (self.work // 8) ** 2, n_out)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check(x, self.domain, "Discriminator input")
        return self.net(fit_size(x, self.work))


def _check(x: torch.Tensor, d: Domain, what: str) -> None:
    if x.ndim != 4 or x.shape[1] != d.channels or x.shape[2:] != (d.size, d.size):
        raise ValueError(f"{what}: expected (N, {d.channels}, {d.size}, {d.size}), got {tuple(x.shape)}")


@dataclass(frozen=True)
class Adversary:
    """How discriminators score: n_out outputs, d_loss(d_real, labels, d_fake) and g_loss(d_fake, labels)."""

    n_out: int
    d_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def adversary(name: str, n_classes: int = 10, class_weight: float = 0.0) -> Adversary:
    """"labels": the (K+1)-class game of the exercise; otherwise a label-free `LOSSES` entry (e.g. "lsgan").

    With labels, G's term CE(D(G(x)), l) = -log p(real) - log p(l | real): "look real" plus "look like an l".
    `class_weight` adds w * CE over the K digit logits alone, i.e. w more of the second part (0: the exercise).
    """
    if name == "labels":
        def d_loss(d_real, labels, d_fake):
            fake = torch.full((len(d_fake),), n_classes, dtype=torch.long, device=d_fake.device)
            return F.cross_entropy(d_real, labels) + F.cross_entropy(d_fake, fake)

        def g_loss(d_fake, labels):
            loss = F.cross_entropy(d_fake, labels)
            if class_weight:
                loss = loss + class_weight * F.cross_entropy(d_fake[:, :n_classes], labels)
            return loss

        return Adversary(n_classes + 1, d_loss, g_loss)
    usable = ["labels", *(k for k, v in LOSSES.items() if v.discriminator)]
    if name not in usable:
        raise ValueError(f"CycleGAN adversarial loss: expected one of {usable}, got {name!r}")
    loss = LOSSES[name]
    return Adversary(1, lambda d_real, labels, d_fake: loss.d_loss(d_real.squeeze(1), d_fake.squeeze(1)),
                     lambda d_fake, labels: loss.g_loss(d_fake.squeeze(1)))


@dataclass
class CycleConfig:
    # 16 channels, two downsamplings (32x32 -> 8x8 at 64 channels), 3 blocks: as good per step as 32/1/2 in
    # 300-step trials and half the CPU time per step, with a receptive field over the whole 32x32 image
    ch: PositiveInt = 16     # generator's first-layer channels (doubled per downsampling)
    n_res: NonNegativeInt = 3  # residual blocks
    n_down: NonNegativeInt = 2  # stride-2 downsamplings
    d_ch: PositiveInt = 32   # discriminator's first-layer channels
    loss: str = "labels"     # "labels" ((K+1)-class D) or a label-free LOSSES entry, e.g. "lsgan"
    # extra weight on "look like your source's digit" in G (`adversary`); 0 = exercise
    class_weight: NonNegativeFloat = 1.0
    cycle_weight: NonNegativeFloat = 2.0  # lambda on the two cycle MSEs; 10 preserved labels worse in 200-step trials
    lr: PositiveFloat = 2e-4  # Adam's learning rate, for G and F and for both discriminators
    beta1: Rate = 0.5        # Adam's beta1 = 0.5, as for DCGAN: the default 0.9 oscillates in GAN games


class CycleGAN(nn.Module):
    """G: X -> Y, F: Y -> X, D_X, D_Y; `d_loss`/`g_loss` compute the equations above, `step(...)` trains on them."""

    def __init__(self, x: Domain, y: Domain, cfg: CycleConfig | None = None, n_classes: int = 10):
        super().__init__()
        cfg = CycleConfig() if cfg is None else cfg
        self.cfg, self.adv = cfg, adversary(cfg.loss, n_classes, cfg.class_weight)
        self.G = Generator(x, y, cfg.ch, cfg.n_res, cfg.n_down)
        self.F = Generator(y, x, cfg.ch, cfg.n_res, cfg.n_down)
        self.D_X = Discriminator(x, self.adv.n_out, cfg.d_ch)
        self.D_Y = Discriminator(y, self.adv.n_out, cfg.d_ch)

    def optimizers(self) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        """(generators' optimiser, discriminators' optimiser)."""
        betas = (self.cfg.beta1, 0.999)
        g = torch.optim.Adam([*self.G.parameters(), *self.F.parameters()], lr=self.cfg.lr, betas=betas)
        d = torch.optim.Adam([*self.D_X.parameters(), *self.D_Y.parameters()], lr=self.cfg.lr, betas=betas)
        return g, d

    def d_loss(self, x, lx, y, ly, fake_x, fake_y) -> torch.Tensor:
        """L_D on real batches and (detached) translations fake_y = G(x), fake_x = F(y)."""
        a = self.adv
        return (a.d_loss(self.D_X(x), lx, self.D_X(fake_x.detach()))
                + a.d_loss(self.D_Y(y), ly, self.D_Y(fake_y.detach())))

    def g_loss(self, x, lx, y, ly, fake_x, fake_y) -> dict[str, torch.Tensor]:
        """Adversarial and cycle parts of L_G, given fake_y = G(x) and fake_x = F(y) (with their graphs)."""
        adv = self.adv.g_loss(self.D_Y(fake_y), lx) + self.adv.g_loss(self.D_X(fake_x), ly)
        cycle_x = F.mse_loss(self.F(fake_y), x)  # x -> G -> F -> x
        cycle_y = F.mse_loss(self.G(fake_x), y)  # y -> F -> G -> y
        total = adv + self.cfg.cycle_weight * (cycle_x + cycle_y)
        return {"g_loss": total, "g_adv": adv, "cycle_x": cycle_x, "cycle_y": cycle_y}

    def step(self, x, lx, y, ly, opt_g, opt_d) -> dict[str, float]:
        """One update of D_X, D_Y (on L_D), then of G, F (on L_G); returns the losses as floats.

        x (N, C_x, S_x, S_x), y (M, C_y, S_y, S_y) in [-1, 1]; lx (N,), ly (M,) int64 labels (unused label-free).
        """
        fake_y, fake_x = self.G(x), self.F(y)  # computed once: D's step sees them detached, G's step with graph
        d = self.d_loss(x, lx, y, ly, fake_x, fake_y)
        opt_d.zero_grad(set_to_none=True)
        d.backward()
        opt_d.step()
        discriminators = [*self.D_X.parameters(), *self.D_Y.parameters()]
        for p in discriminators:  # G's backward goes through D but needs no gradient for D's weights
            p.requires_grad_(False)
        g = self.g_loss(x, lx, y, ly, fake_x, fake_y)
        opt_g.zero_grad(set_to_none=True)
        g["g_loss"].backward()
        opt_g.step()
        for p in discriminators:
            p.requires_grad_(True)
        return {"d_loss": d.item(), **{k: v.item() for k, v in g.items()}}

    def warmup_step(self, x, lx, y, ly, opt_d) -> dict[str, float]:
        """A head start for the (K+1)-class discriminators: L = CE(D_X(x), l_x) + CE(D_Y(y), l_y) on real images.

        In the exercise D learns the digits while it learns to spot fakes, and until it knows them G's label
        term points nowhere in particular; a few hundred of these steps (no generator involved, so ~10x cheaper
        than `step`) give G a useful signal from its first step.
        """
        if self.adv.n_out == 1:
            raise ValueError("warmup_step: the label-free discriminators have no digit classes to learn")
        loss = F.cross_entropy(self.D_X(x), lx) + F.cross_entropy(self.D_Y(y), ly)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        return {"d_warmup_loss": loss.item()}

    @torch.no_grad()
    def translate(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Eval-mode translations and reconstructions: {fake_y, rec_x} for x, {fake_x, rec_y} for y."""
        was = self.training
        self.eval()
        out = {}
        if x is not None:
            out["fake_y"] = self.G(x)
            out["rec_x"] = self.F(out["fake_y"])
        if y is not None:
            out["fake_x"] = self.F(y)
            out["rec_y"] = self.G(out["fake_x"])
        self.train(was)
        return out
