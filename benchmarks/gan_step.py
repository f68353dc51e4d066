"""A GAN training step through scratchlab (GANTrainer.step driven by train.loop.fit) against a plain PyTorch loop
with the same nets, the same data and the same updates, in one process.

The two sides alternate in blocks of `--block` steps; within a block each step is timed (for scratchlab: the gap
between consecutive step calls inside `fit`, so the loop's logging, NaN guard and progress bookkeeping count).
The ratio per block is median(scratchlab) / median(plain); the result is the median of those ratios.

    python benchmarks/gan_step.py [--rounds 15] [--block 20] [--threads 1] [--no-write]

Which side runs first alternates from round to round. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import tempfile
import time

import torch
from torch.nn import functional as F

from common import markdown_table, write_section
from scratchlab.gan.nets import Discriminator, Generator, NetConfig
from scratchlab.gan.trainer import GANTrainer, TrainerConfig
from scratchlab.run.rundir import RunDir
from scratchlab.train.loop import Context, fit

VARIANTS = {
    "vanilla 1:1 (Adam)": TrainerConfig(loss="vanilla"),
    "wgan n_critic=5, clip 0.01 (RMSprop)": TrainerConfig(loss="wgan", optimizer="rmsprop", lr_g=5e-5, lr_d=5e-5,
                                                          d_steps=5, clip=0.01),
}


def plain_step(G, D, opt_g, opt_d, data, cfg: TrainerConfig) -> tuple[float, float]:
    """The loop as one writes it by hand (DCGAN-tutorial style), for vanilla and WGAN."""
    n = cfg.batch_size
    for _ in range(cfg.d_steps):
        x = data[torch.randint(len(data), (n,))]
        with torch.no_grad():
            fake = G(torch.randn(n, G.cfg.latent))
        d_real, d_fake = D(x), D(fake)
        if cfg.loss == "wgan":
            loss = d_fake.mean() - d_real.mean()
        else:
            loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                    + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        if cfg.clip:
            with torch.no_grad():
                for p in D.parameters():
                    p.clamp_(-cfg.clip, cfg.clip)
        d_loss = loss.item()
    for _ in range(cfg.g_steps):
        d_fake = D(G(torch.randn(n, G.cfg.latent)))
        loss = -d_fake.mean() if cfg.loss == "wgan" else F.binary_cross_entropy_with_logits(
            d_fake, torch.ones_like(d_fake))
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    return d_loss, loss.item()


def bench(name: str, cfg: TrainerConfig, rounds: int, block: int) -> dict[str, float]:
    torch.manual_seed(0)
    data = torch.rand(4096, 1, 28, 28) * 2 - 1
    G0, D0 = Generator(NetConfig()), Discriminator(NetConfig())
    trainer = GANTrainer(copy.deepcopy(G0), copy.deepcopy(D0), cfg, data)
    G, D = copy.deepcopy(G0), copy.deepcopy(D0)
    opt_g = trainer.opt_g.__class__(G.parameters(), **trainer.opt_g.defaults)
    opt_d = trainer.opt_d.__class__(D.parameters(), **trainer.opt_d.defaults)
    tmp = tempfile.mkdtemp()
    ratios, ours_ms, ref_ms = [], [], []

    def plain_block() -> list[float]:
        ref = []
        for _ in range(block):
            t0 = time.perf_counter()
            plain_step(G, D, opt_g, opt_d, data, cfg)
            ref.append(time.perf_counter() - t0)
        return ref

    def ours_block() -> list[float]:
        stamps = []

        def step(i):
            stamps.append(time.perf_counter())
            return trainer.step(i)

        # checkpoints overwrite each other in one folder
        ctx = Context(run=RunDir(f"{tmp}/run", create=True), device=torch.device("cpu"), progress=False)
        fit(step, block + 1, ctx, state=trainer.state(), monitor="none")
        return [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]

    for r in range(rounds + 1):  # round 0 warms both up and is not counted
        if r % 2:
            ref, ours = plain_block(), ours_block()
        else:
            ours, ref = ours_block(), plain_block()
        if r:
            ratios.append(statistics.median(ours) / statistics.median(ref))
            ours_ms.append(statistics.median(ours) * 1e3)
            ref_ms.append(statistics.median(ref) * 1e3)
    shutil.rmtree(tmp)
    return {"ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ours_ms": statistics.median(ours_ms), "plain_ms": statistics.median(ref_ms)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--block", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, cfg in VARIANTS.items():
        r = bench(name, cfg, args.rounds, args.block)
        rows.append([name, round(r["ours_ms"], 1), round(r["plain_ms"], 1), f"**{r['ratio']:.3f}**",
                     f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"])
        print(rows[-1], flush=True)
    body = ("## GAN training step: scratchlab trainer + fit vs a plain PyTorch loop\n\n"
            f"The MLP G and D of issue 4 (latent 100, G 128-256-512-1024-784 with BatchNorm, D 784-512-256-1), "
            f"batch 64, random data; one step = one round (d_steps D updates + 1 G update). Interleaved blocks of "
            f"{args.block} steps, {args.rounds} rounds after a warm-up round; ratio = median(scratchlab) / "
            f"median(plain) per block, median over blocks. Target: <= 1.05.\n\n"
            + markdown_table(["variant", "scratchlab ms/step", "plain ms/step", "ratio", "ratio range"], rows))
    print(body)
    if not args.no_write:
        write_section("gan_step", body)


if __name__ == "__main__":
    main()
