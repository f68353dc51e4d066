"""CycleGAN nets and training step. References: torch functional ops by hand, hand-written CE/MSE, a seeded run."""

import pytest
import torch
from torch.nn import functional as F

from scratchlab.gan.cyclegan import (
    CycleConfig,
    CycleGAN,
    Discriminator,
    Domain,
    Generator,
    ResidualBlock,
    adversary,
    fit_size,
)

X, Y = Domain(1, 28), Domain(3, 32)
TINY = CycleConfig(ch=4, n_res=1, n_down=1, d_ch=4)


def batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g) * 2 - 1
    y = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
    return x, torch.randint(10, (n,), generator=g), y, torch.randint(10, (n,), generator=g)


@pytest.mark.parametrize("n_down", [1, 2])
def test_generators_translate_between_grey_28_and_rgb_32(n_down):
    torch.manual_seed(0)
    x, _, y, _ = batch(3)
    G, F_ = Generator(X, Y, ch=4, n_res=2, n_down=n_down), Generator(Y, X, ch=4, n_res=2, n_down=n_down)
    assert G(x).shape == (3, 3, 32, 32) and F_(y).shape == (3, 1, 28, 28)
    assert G(x).abs().max() <= 1 and F_(y).abs().max() <= 1  # tanh: the images' [-1, 1] range
    assert F_(G(x)).shape == x.shape and G(F_(y)).shape == y.shape
    with pytest.raises(ValueError, match=r"expected \(N, 1, 28, 28\), got \(3, 3, 32, 32\)"):
        G(y)


def test_discriminators_have_k_plus_one_outputs_or_one():
    x, _, y, _ = batch(5)
    assert Discriminator(X, 11, ch=4)(x).shape == (5, 11) and Discriminator(Y, 11, ch=4)(y).shape == (5, 11)
    model = CycleGAN(X, Y, CycleConfig(ch=4, d_ch=4, loss="lsgan"))
    assert model.D_X(x).shape == (5, 1) and model.D_Y(y).shape == (5, 1)
    assert CycleGAN(X, Y, TINY).D_Y(y).shape == (5, 11)


def test_fit_size_pads_with_border_and_crops_back():
    x = torch.randn(2, 1, 28, 28)
    padded = fit_size(x, 32)
    assert padded.shape == (2, 1, 32, 32)
    assert torch.equal(padded[..., 2:30, 2:30], x) and torch.equal(padded[..., 0, 2:30], x[..., 0, :])
    assert torch.equal(fit_size(padded, 28), x)


@pytest.mark.parametrize("train", [True, False])
def test_residual_block_equals_its_formula(train):
    torch.manual_seed(0)
    block = ResidualBlock(6).double()
    for bn in (block.bn1, block.bn2):  # non-trivial affine parameters and running statistics
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    block.train(train)
    x = torch.randn(4, 6, 8, 8, dtype=torch.float64)

    def bn(h, m):
        if train:  # batch statistics, biased variance
            mean, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
        else:
            mean, var = m.running_mean.view(1, -1, 1, 1), m.running_var.view(1, -1, 1, 1)
        return (h - mean) / torch.sqrt(var + m.eps) * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)

    h = torch.relu(bn(F.conv2d(x, block.conv1.weight, padding=1), block.bn1))
    expected = torch.relu(x + bn(F.conv2d(h, block.conv2.weight, padding=1), block.bn2))
    torch.testing.assert_close(block(x), expected, rtol=1e-10, atol=1e-10)


def ce(logits, labels):
    """Cross-entropy written out: mean over the batch of log(sum_j exp z_j) - z_label."""
    m = logits.max(1, keepdim=True).values
    lse = (m + torch.log(torch.exp(logits - m).sum(1, keepdim=True))).squeeze(1)
    return (lse - logits[torch.arange(len(labels)), labels]).mean()


def mse(a, b):
    return ((a - b) ** 2).sum() / a.numel()


def frozen(model):
    """Adam with lr 0: the step runs in full but moves nothing, so its losses can be recomputed by hand."""
    g, d = model.optimizers()
    for opt in (g, d):
        opt.param_groups[0]["lr"] = 0.0
    return g, d


@pytest.mark.parametrize("w", [0.0, 0.5])  # 0: the exercise's loss; 0.5: extra weight on the digit logits
def test_step_losses_equal_hand_computed_cross_entropy_and_mse(w):
    torch.manual_seed(0)
    model = CycleGAN(X, Y, CycleConfig(ch=4, n_res=1, d_ch=4, cycle_weight=3.0, class_weight=w)).double()
    x, lx, y, ly = (t.double() if t.is_floating_point() else t for t in batch(4))
    out = model.step(x, lx, y, ly, *frozen(model))
    with torch.no_grad():  # train mode (batch statistics), real and fake batches through D separately
        fy, fx = model.G(x), model.F(y)
        fake = torch.full((4,), 10)  # class K = 10 means "fake"
        d = ce(model.D_X(x), lx) + ce(model.D_X(fx), fake) + ce(model.D_Y(y), ly) + ce(model.D_Y(fy), fake)
        adv = ce(model.D_Y(fy), lx) + ce(model.D_X(fx), ly)  # the source's labels through the other D
        adv = adv + w * (ce(model.D_Y(fy)[:, :10], lx) + ce(model.D_X(fx)[:, :10], ly))
        cx, cy = mse(model.F(fy), x), mse(model.G(fx), y)
    assert out["d_loss"] == pytest.approx(d.item(), rel=1e-10)
    assert out["g_adv"] == pytest.approx(adv.item(), rel=1e-10)
    assert out["cycle_x"] == pytest.approx(cx.item(), rel=1e-10)
    assert out["cycle_y"] == pytest.approx(cy.item(), rel=1e-10)
    assert out["g_loss"] == pytest.approx((adv + 3.0 * (cx + cy)).item(), rel=1e-10)


def test_label_free_least_squares_step():
    torch.manual_seed(1)
    model = CycleGAN(X, Y, CycleConfig(ch=4, n_res=1, d_ch=4, loss="lsgan")).double()
    x, lx, y, ly = (t.double() if t.is_floating_point() else t for t in batch(4, seed=1))
    out = model.step(x, lx, y, ly, *frozen(model))
    with torch.no_grad():
        fy, fx = model.G(x), model.F(y)
        d = (((model.D_X(x) - 1) ** 2).mean() + (model.D_X(fx) ** 2).mean()
             + ((model.D_Y(y) - 1) ** 2).mean() + (model.D_Y(fy) ** 2).mean())
        adv = ((model.D_Y(fy) - 1) ** 2).mean() + ((model.D_X(fx) - 1) ** 2).mean()
    assert out["d_loss"] == pytest.approx(d.item(), rel=1e-10)
    assert out["g_adv"] == pytest.approx(adv.item(), rel=1e-10)


def test_discriminator_loss_does_not_reach_generators():
    model = CycleGAN(X, Y, TINY)
    x, lx, y, ly = batch(4)
    model.d_loss(x, lx, y, ly, model.F(y), model.G(x)).backward()
    assert all(p.grad is None for p in [*model.G.parameters(), *model.F.parameters()])
    assert all(p.grad is not None for p in model.D_X.parameters())


def test_unknown_adversarial_loss_is_named():
    with pytest.raises(ValueError, match=r"expected one of \['labels', .*'lsgan'.*\], got 'hinge'"):
        adversary("hinge")


def test_cycle_loss_decreases():
    torch.manual_seed(0)
    model = CycleGAN(X, Y, CycleConfig(ch=8, n_res=1, d_ch=8, lr=2e-3))
    g, d = model.optimizers()
    x, lx, y, ly = batch(8, seed=2)
    x, y = F.avg_pool2d(x, 5, 1, 2), F.avg_pool2d(y, 5, 1, 2)  # smooth blobs: structure to reconstruct
    cycle = [sum(model.step(x, lx, y, ly, g, d)[k] for k in ("cycle_x", "cycle_y")) for _ in range(40)]
    first, last = sum(cycle[:3]) / 3, sum(cycle[-3:]) / 3
    assert last < 0.45 * first, (first, last)
