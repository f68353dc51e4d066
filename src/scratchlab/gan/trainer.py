"""One adversarial trainer for every variant: the loss is a registry entry, the rest are knobs.

One `step` is a round of `d_steps` discriminator (critic) updates followed by `g_steps` generator updates:

    for d_steps:  x ~ data, z ~ N(0, I)          L_D = loss.d_loss(D(x), D(G(z)))   (G(z) detached)
                  D <- opt_D(D, dL_D/dD);  if clip > 0: every D weight <- clamp(w, -c, c)   (WGAN)
    for g_steps:  z ~ N(0, I)                    L_G = loss.g_loss(D_k(G(z)))
                  G <- opt_G(G, dL_G/dG)

D_k is D itself when `unroll == 0`; otherwise a copy of D advanced `unroll` more discriminator updates
(Metz et al. 2016), so G answers the discriminator's next moves rather than its current one. The real D is
never touched by the unrolling. With `unroll_grad`, the copy's updates are differentiable SGD steps
(theta_{i+1} = theta_i - unroll_lr * dL_D/dtheta_i, through torch.func.functional_call) and G's gradient flows
through them (the paper's second-order surrogate); without it the copy takes D's own optimiser steps (Adam state
included) and G sees only the final parameters (first order, cheaper).

PacGAN (`D.cfg.pack` = M > 1): `batch_size` counts packs, so every D and G update draws batch_size * M real and
batch_size * M generated samples, and D scores batch_size packs of M (as PacGAN's code, whose streams hold M
minibatches per step). With M = 1 the trainer draws and computes exactly what it did before packing existed.

Conditional models (n_classes > 0) draw fake labels uniformly and pass them to G and D; real batches carry
their labels. The MSE "GAN" has no D: G regresses its samples onto data batches.
D:G ratios: 1:1 is d_steps = g_steps = 1; the 5:2 ratio is d_steps = 5, g_steps = 2; WGAN's n_critic = d_steps.

EMA (`ema` = decay beta > 0): a copy G_ema of the generator follows G's weights as an exponential moving average,
updated after every generator step n = 1, 2, ... (counted from the round index, so --resume continues it):

    beta_n = min(beta, (1 + n) / (10 + n))        (warm-up, as TensorFlow's ExponentialMovingAverage: early
    theta_ema <- beta_n * theta_ema + (1 - beta_n) * theta    averages do not sit on the random initialisation)

and G_ema's buffers (BatchNorm running statistics) are copied from G. G_ema is what is sampled and judged
(`sampler`): averaging damps the swing of G from round to round (Yazici et al. 2019). It is part of `state()`,
so --resume keeps it.

Data-parallel (`world`, a `scratchlab.train.distributed.World`; torchrun): every rank draws each batch whole
(indices, latents, labels, from the generators all ranks share) and keeps its rows, so the ranks together see the
batch one process would; every optimiser (G's, D's, an unrolled copy's) averages its gradients over the ranks
before it steps, and G's BatchNorm normalises over the global batch. Each rank then takes the same step, so
weight clipping and the EMA stay identical everywhere with nothing more. The differentiable unrolling averages
its inner gradients over the ranks (an all-reduce that autograd differentiates through).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

from scratchlab.gan.losses import LOSSES
from scratchlab.gan.nets import Discriminator, Generator
from scratchlab.train.distributed import World


@dataclass
class TrainerConfig:
    loss: Literal["vanilla", "lsgan", "wgan", "mse"] = "vanilla"
    optimizer: Literal["adam", "rmsprop"] = "adam"  # WGAN: rmsprop (momentum-based optimisers destabilise it)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5  # Adam's beta1 = 0.5 (DCGAN): the default 0.9 oscillates in adversarial training
    batch_size: int = 64
    d_steps: int = 1    # discriminator (critic) updates per round: WGAN's n_critic
    g_steps: int = 1    # generator updates per round
    clip: float = 0.0   # WGAN weight clipping c; 0 = none
    unroll: int = 0     # k: G trains against D advanced k steps
    unroll_grad: bool = False  # backpropagate through the unrolled steps (differentiable SGD)
    unroll_lr: float = 0.01    # SGD step of the differentiable unrolling
    ema: float = 0.0    # decay of the moving average of G's weights that is sampled; 0 = none (sample G itself)


def make_optimizer(params, cfg: TrainerConfig, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, 0.999))


class GANTrainer:
    """Holds G, D, their optimisers and the data; `step(i)` runs one round and returns floats for `fit`.

    data: float (N, C, H, W) in [-1, 1] on the training device; labels: int64 (N,) or None.
    world: this process's place in a data-parallel run (default: one process).
    """

    def __init__(self, G: Generator, D: Discriminator | None, cfg: TrainerConfig, data: torch.Tensor,
                 labels: torch.Tensor | None = None, world: World | None = None):
        self.G, self.D, self.cfg, self.data, self.labels = G, D, cfg, data, labels
        self.world = world or World()
        self.loss = LOSSES[cfg.loss]
        if self.loss.discriminator and D is None:
            raise ValueError(f"loss {cfg.loss!r} needs a discriminator")
        self.pack = D.cfg.pack if D is not None and self.loss.discriminator else 1  # samples per pack (PacGAN)
        self.n = cfg.batch_size * self.pack  # samples drawn per batch: batch_size packs
        packs = self.world.shard(cfg.batch_size).rows  # this rank's packs of every batch: whole packs per rank
        self.rows = slice(packs.start * self.pack, packs.stop * self.pack)  # ... and their samples
        if G.cfg.n_classes and labels is None:
            raise ValueError("conditional generator: the trainer needs the data's labels")
        for net in (G, D):
            if net is not None:
                self.world.sync_batchnorm(net)
        self.opt_g = self.world.average_gradients_on_step(make_optimizer(G.parameters(), cfg, cfg.lr_g))
        self.opt_d = (self.world.average_gradients_on_step(make_optimizer(D.parameters(), cfg, cfg.lr_d))
                      if self.loss.discriminator else None)
        self.d_updates = self.g_updates = 0
        if not 0 <= cfg.ema < 1:
            raise ValueError(f"ema: expected a decay in [0, 1), got {cfg.ema}")
        self.G_ema = copy.deepcopy(G).requires_grad_(False) if cfg.ema > 0 else None

    @property
    def sampler(self) -> Generator:
        """The generator to sample and judge: the moving average when `ema` is set, else G."""
        return self.G if self.G_ema is None else self.G_ema

    def state(self) -> dict[str, object]:
        """What `fit` checkpoints (and restores on --resume)."""
        s = {"generator": self.G, "opt_g": self.opt_g, "updates": _UpdateCounts(self)}
        if self.G_ema is not None:
            s["generator_ema"] = self.G_ema
        if self.opt_d is not None:
            s |= {"discriminator": self.D, "opt_d": self.opt_d}
        return s

    @torch.no_grad()
    def ema_update(self, n: int) -> None:
        """theta_ema <- beta_n theta_ema + (1 - beta_n) theta after generator update n >= 1; buffers copied."""
        beta = min(self.cfg.ema, (1 + n) / (10 + n))
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            pe.lerp_(p, 1 - beta)
        for be, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            be.copy_(b)

    # ------------------------------------------------------------------ batches
    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.randint(len(self.data), (self.n,), device=self.data.device)[self.rows]
        return self.data[idx], None if self.labels is None else self.labels[idx]

    def fake_labels(self) -> torch.Tensor | None:
        k = self.G.cfg.n_classes
        if not k:
            return None
        return torch.randint(k, (self.n,), device=self.data.device)[self.rows]

    def fake_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = self.fake_labels()
        return self.G(self.G.sample_latent(self.n, like=self.data)[self.rows], y), y

    # ------------------------------------------------------------------ updates
    def d_loss(self, D: Callable[..., torch.Tensor], detach: bool = True) -> tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor]:
        x, y = self.real_batch()
        with torch.set_grad_enabled(not detach and torch.is_grad_enabled()):
            fake, yf = self.fake_batch()  # no graph through G unless the unrolling differentiates through it
        d_real, d_fake = D(x, y), D(fake, yf)
        return self.loss.d_loss(d_real, d_fake), d_real, d_fake

    def d_update(self, D: Discriminator, opt: torch.optim.Optimizer) -> tuple[torch.Tensor, ...]:
        """One discriminator/critic step on `D` with `opt` (the real D, or the unrolled copy)."""
        loss, d_real, d_fake = self.d_loss(D)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if self.cfg.clip > 0:
            self.clip_(D)
        return loss, d_real, d_fake

    @torch.no_grad()
    def clip_(self, D: nn.Module) -> None:
        for p in D.parameters():
            p.clamp_(-self.cfg.clip, self.cfg.clip)

    def unrolled(self) -> Callable[..., torch.Tensor]:
        """D advanced `unroll` steps, as a callable (x, y) -> scores; the real D and its optimiser stay as they are."""
        k = self.cfg.unroll
        if not self.cfg.unroll_grad:
            D = copy.deepcopy(self.D)
            opt = self.world.average_gradients_on_step(make_optimizer(D.parameters(), self.cfg, self.cfg.lr_d))
            # deepcopy: load_state_dict keeps Adam's `step` tensors shared, and the copy's steps would advance them
            opt.load_state_dict(copy.deepcopy(self.opt_d.state_dict()))
            for _ in range(k):
                self.d_update(D, opt)
            return D
        # Differentiable: parameters become functions of D's and (through the fakes) of G's parameters.
        params = dict(self.D.named_parameters())
        for _ in range(k):
            loss, _, _ = self.d_loss(lambda x, y, p=params: functional_call(self.D, p, (x, y)), detach=False)
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            grads = [self.world.all_reduce_mean(g) for g in grads]  # the global batch's gradient
            params = {n: p - self.cfg.unroll_lr * g for (n, p), g in zip(params.items(), grads, strict=True)}
            if self.cfg.clip > 0:
                params = {n: p.clamp(-self.cfg.clip, self.cfg.clip) for n, p in params.items()}
        return lambda x, y: functional_call(self.D, params, (x, y))

    def g_update(self) -> torch.Tensor:
        if not self.loss.discriminator:
            x, _ = self.real_batch()
            fake, _ = self.fake_batch()
            loss = self.loss.g_loss(fake, x)
        else:
            D = self.unrolled() if self.cfg.unroll else self.D
            fake, y = self.fake_batch()
            loss = self.loss.g_loss(D(fake, y))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return loss

    def step(self, i: int = 0) -> dict[str, float]:
        """Round `i` (0-based; it numbers the EMA updates): d_steps discriminator updates, then g_steps generator
        updates."""
        out: dict[str, float] = {}
        if self.loss.discriminator:
            for _ in range(self.cfg.d_steps):
                d_loss, d_real, d_fake = self.d_update(self.D, self.opt_d)
                self.d_updates += 1
            with torch.no_grad():
                out |= {"d_loss": d_loss.item(), "d_real": self.loss.score(d_real).mean().item(),
                        "d_fake": self.loss.score(d_fake).mean().item()}
        for j in range(self.cfg.g_steps):
            g_loss = self.g_update()
            self.g_updates += 1
            if self.G_ema is not None:
                self.ema_update(i * self.cfg.g_steps + j + 1)
        out["g_loss"] = g_loss.item()
        return out


class _UpdateCounts:
    """The trainer's update counters as a checkpointable state, so a resumed run reports the same counts."""

    def __init__(self, trainer: GANTrainer):
        self.trainer = trainer

    def state_dict(self) -> dict[str, int]:
        return {"d_updates": self.trainer.d_updates, "g_updates": self.trainer.g_updates}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.trainer.d_updates, self.trainer.g_updates = int(state["d_updates"]), int(state["g_updates"])
