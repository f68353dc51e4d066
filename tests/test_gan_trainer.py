"""Trainer invariants: clipping bounds, n_critic counts, the real D untouched by unrolling, gradients through
the unrolled steps (against finite differences), conditional shapes, and a seeded learning test."""

import copy

import pytest
import torch

from scratchlab.gan.nets import Discriminator, Generator, NetConfig
from scratchlab.gan.trainer import GANTrainer, TrainerConfig

TINY = NetConfig(latent=4, g_hidden=(8, 16), d_hidden=(16, 8), channels=1, image_size=3)


def make(cfg: TrainerConfig, net: NetConfig = TINY, n: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    data = torch.rand(n, net.channels, net.image_size, net.image_size) * 2 - 1
    labels = torch.arange(n) % net.n_classes if net.n_classes else None
    D = Discriminator(net) if cfg.loss != "mse" else None
    return GANTrainer(Generator(net), D, cfg, data, labels)


def test_wgan_clips_every_critic_step_and_counts_n_critic():
    t = make(TrainerConfig(loss="wgan", optimizer="rmsprop", clip=0.01, d_steps=5, g_steps=2, batch_size=8))
    with torch.no_grad():
        for p in t.D.parameters():
            p.normal_(0, 1)  # far outside [-c, c]: clipping has work to do
    seen = []
    t.opt_d.register_step_post_hook(lambda opt, a, k: seen.append(max(p.abs().max().item() for p in t.D.parameters())))
    for i in range(3):
        t.step(i)
    assert t.d_updates == 15 and t.g_updates == 6
    # the optimisers' own counters agree: 5 critic and 2 generator steps per round
    assert all(s["step"] == 15 for s in t.opt_d.state.values())
    assert all(s["step"] == 6 for s in t.opt_g.state.values())
    assert isinstance(t.opt_d, torch.optim.RMSprop)
    assert max(p.abs().max().item() for p in t.D.parameters()) <= 0.01
    assert seen[0] > 0.01, "right after the optimiser step, before clipping, weights exceed c"
    assert len(seen) == 15


@pytest.mark.parametrize("unroll_grad", [False, True])
def test_unrolling_leaves_the_real_discriminator_bit_identical(unroll_grad):
    t = make(TrainerConfig(unroll=3, unroll_grad=unroll_grad, batch_size=16))
    t.step(0)  # fill Adam's state so there is state to (not) disturb
    d_before = copy.deepcopy(t.D.state_dict())
    opt_before = copy.deepcopy(t.opt_d.state_dict())
    g_before = copy.deepcopy(t.G.state_dict())
    t.g_update()
    for name, value in t.D.state_dict().items():
        assert torch.equal(value, d_before[name]), name
    for pid, s in t.opt_d.state_dict()["state"].items():
        for key, value in s.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_before["state"][pid][key])), key
    assert any(not torch.equal(v, g_before[k]) for k, v in t.G.state_dict().items()), "G must have moved"
    x = t.data[:8]
    assert not torch.allclose(t.unrolled()(x, None), t.D(x)), "the unrolled copy differs from D"


def _surrogate(t: GANTrainer, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    D_k = t.unrolled()
    fake, y = t.fake_batch()
    return t.loss.g_loss(D_k(fake, y))


@pytest.mark.parametrize("unroll_grad", [True, False])
def test_gradient_through_unrolled_steps_matches_finite_differences(unroll_grad):
    """Second order: dL_G/dtheta_G includes how D's k updates depend on G. First order misses that term."""
    torch.set_default_dtype(torch.float64)
    try:
        t = make(TrainerConfig(loss="lsgan", unroll=2, unroll_grad=True, unroll_lr=0.5, batch_size=8))
        t.G.double(), t.D.double()
        t.data = t.data.double()
        t.cfg.unroll_grad = unroll_grad
        t.G.zero_grad()
        _surrogate(t, 1).backward()
        params = list(t.G.parameters())
        grads = [p.grad.clone() for p in params]
        direction = [torch.randn_like(p) for p in params]
        analytic = sum((g * d).sum() for g, d in zip(grads, direction, strict=True)).item()
        t.cfg.unroll_grad = True  # the true surrogate: D_k as a function of G
        eps, vals = 1e-6, []
        with torch.no_grad():
            for sign in (1, -1):
                for p, d in zip(params, direction, strict=True):
                    p.add_(sign * eps * d)
                with torch.enable_grad():
                    vals.append(_surrogate(t, 1).item())
                for p, d in zip(params, direction, strict=True):
                    p.sub_(sign * eps * d)
        numeric = (vals[0] - vals[1]) / (2 * eps)
    finally:
        torch.set_default_dtype(torch.float32)
    if unroll_grad:
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    else:
        assert abs(analytic - numeric) > 1e-3 * abs(numeric), "first order should miss the unrolled term"


def test_conditional_shapes_and_errors():
    net = NetConfig(latent=4, g_hidden=(8, 16), d_hidden=(16, 8), image_size=3, n_classes=10)
    G, D = Generator(net), Discriminator(net)
    z, y = torch.randn(5, 4), torch.arange(5)
    assert G.net[0].in_features == 4 + 10 and D.body[0].in_features == 9 + 10  # one-hot concatenated
    assert G(z, y).shape == (5, 1, 3, 3) and D(G(z, y), y).shape == (5,)
    with pytest.raises(ValueError, match="labels"):
        G(z)
    t = make(TrainerConfig(batch_size=8), net)
    out = t.step(0)
    assert set(out) == {"d_loss", "d_real", "d_fake", "g_loss"}
    with pytest.raises(ValueError, match="labels"):
        GANTrainer(G, D, TrainerConfig(), t.data, None)


def test_full_size_nets_follow_the_spec():
    G, D = Generator(NetConfig()), Discriminator(NetConfig())
    assert [m.out_features for m in G.net if isinstance(m, torch.nn.Linear)] == [128, 256, 512, 1024, 784]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in G.net) == 3
    assert [m.out_features for m in D.modules() if isinstance(m, torch.nn.Linear)] == [512, 256, 1]
    assert G(torch.randn(2, 100)).shape == (2, 1, 28, 28) and G(torch.randn(2, 100)).abs().max() <= 1


def ring(n: int, k: int = 4, r: float = 0.6, std: float = 0.04, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    angles = torch.arange(k) * (2 * torch.pi / k)
    modes = torch.stack([r * angles.cos(), r * angles.sin()], 1)  # (k, 2)
    pick = torch.randint(k, (n,), generator=g)
    return (modes[pick] + std * torch.randn(n, 2, generator=g)).view(n, 2, 1, 1), modes


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["vanilla", "mse"])
def test_learns_a_2d_mixture(loss):
    """Points (N, 2, 1, 1) from 4 Gaussians on a ring. The GAN puts its samples on the modes; the MSE regression
    collapses onto the data mean (the origin), far from every mode, as losses.py says it must."""
    data, modes = ring(2048)
    net = NetConfig(latent=4, g_hidden=(32, 64), d_hidden=(64, 32), channels=2, image_size=1)
    torch.manual_seed(0)
    cfg = TrainerConfig(loss=loss, batch_size=128, lr_g=2e-3, lr_d=2e-3)
    t = GANTrainer(Generator(net), Discriminator(net) if loss != "mse" else None, cfg, data)
    for i in range(600):
        t.step(i)
    t.G.eval()
    with torch.no_grad():
        x = t.G(torch.randn(1000, 4)).view(-1, 2)
    nearest = torch.cdist(x, modes).min(1)
    if loss == "mse":
        assert x.mean(0).norm() < 0.15 and nearest.values.median() > 0.4
    else:
        near = nearest.values < 0.15
        assert near.float().mean() > 0.7, near.float().mean()
        assert len(nearest.indices[near].unique()) >= 3


def test_ema_is_the_hand_computed_running_average_of_g():
    """G_ema after each generator update = beta_n * previous + (1 - beta_n) * G, beta_n = min(beta, (1+n)/(10+n)),
    computed here in float64 from snapshots of G; BatchNorm buffers copied; part of the checkpointed state."""
    beta = 0.3  # small, so the warm-up (0.18, 0.25 for n = 1, 2) and the cap (n >= 3) both apply
    t = make(TrainerConfig(ema=beta, g_steps=2, batch_size=8))
    expected = {n: p.detach().double().clone() for n, p in t.G.named_parameters()}
    n = 0
    for i in range(5):
        before = {k: p.detach().clone() for k, p in t.G.named_parameters()}
        snapshots: list[dict[str, torch.Tensor]] = []
        handle = t.opt_g.register_step_post_hook(
            lambda opt, a, k, s=snapshots: s.append({k2: p.detach().double().clone()
                                                      for k2, p in t.G.named_parameters()}))
        t.step(i)
        handle.remove()
        assert len(snapshots) == 2
        for snap in snapshots:
            n += 1
            b = min(beta, (1 + n) / (10 + n))
            expected = {k: b * expected[k] + (1 - b) * snap[k] for k in expected}
        assert any(not torch.equal(before[k], p) for k, p in t.G.named_parameters()), "G moved"
    assert n == 10
    for k, p in t.G_ema.named_parameters():
        torch.testing.assert_close(p.double(), expected[k], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(p, dict(t.G.named_parameters())[k]), "the average lags G"
    for be, b in zip(t.G_ema.buffers(), t.G.buffers(), strict=True):
        assert torch.equal(be, b)
    assert t.sampler is t.G_ema and t.state()["generator_ema"] is t.G_ema
    assert make(TrainerConfig()).sampler is not None and "generator_ema" not in make(TrainerConfig()).state()
    with pytest.raises(ValueError, match="ema"):
        make(TrainerConfig(ema=1.0))


def test_ema_survives_a_checkpoint_round_trip(tmp_path):
    """4 rounds in one go equal 2 rounds, save `state()`, a fresh trainer restored from it, 2 more rounds: the
    moving average is checkpointed and its update count continues from the round index."""
    from scratchlab.train import checkpoint

    cfg = TrainerConfig(ema=0.9, batch_size=8)
    full = make(cfg)
    for i in range(4):
        full.step(i)
    half = make(cfg)
    for i in range(2):
        half.step(i)
    checkpoint.save(tmp_path / "c.pt", **half.state())
    rng = torch.get_rng_state()
    resumed = make(cfg)  # the same data; weights scrambled below: everything must come from the checkpoint
    with torch.no_grad():
        for p in (*resumed.G.parameters(), *resumed.G_ema.parameters(), *resumed.D.parameters()):
            p.normal_()
    checkpoint.restore(checkpoint.load(tmp_path / "c.pt"), restore_rng=False, **resumed.state())
    torch.set_rng_state(rng)
    for i in range(2, 4):
        resumed.step(i)
    for (name, a), b in zip(full.G_ema.state_dict().items(), resumed.G_ema.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)
