"""Each loss pinned to its formula on hand-computed values (d_real = [2, -1], d_fake = [0.5, -3])."""

import math

import pytest
import torch

from scratchlab.gan.losses import LOSSES

D_REAL = torch.tensor([2.0, -1.0], dtype=torch.float64)
D_FAKE = torch.tensor([0.5, -3.0], dtype=torch.float64)


def sig(v):
    return 1 / (1 + math.exp(-v))


def test_vanilla_is_the_log_probability_formula():
    # L_D = mean(-log D(x) - log(1 - D(G(z)))) with D = sigmoid(logit), written with probabilities
    expected_d = ((-math.log(sig(2.0)) - math.log(1 - sig(0.5))) + (-math.log(sig(-1.0)) - math.log(1 - sig(-3.0)))) / 2
    expected_g = (-math.log(sig(0.5)) - math.log(sig(-3.0))) / 2  # non-saturating: -log D(G(z))
    loss = LOSSES["vanilla"]
    assert loss.d_loss(D_REAL, D_FAKE).item() == pytest.approx(expected_d, rel=1e-12)
    assert loss.g_loss(D_FAKE).item() == pytest.approx(expected_g, rel=1e-12)
    assert loss.score(torch.tensor([0.0])).item() == 0.5


def test_vanilla_stays_finite_where_the_naive_formula_does_not():
    big = torch.tensor([40.0])  # sigmoid(40) == 1.0 in float32, so log(1 - D) would be -inf
    assert torch.isinf(-torch.log(1 - torch.sigmoid(big))).item()
    assert LOSSES["vanilla"].d_loss(torch.tensor([0.0]), big).item() == pytest.approx(math.log(2) + 40, rel=1e-6)
    assert LOSSES["vanilla"].g_loss(-big).item() == pytest.approx(40, rel=1e-6)


def test_lsgan():
    loss = LOSSES["lsgan"]
    # ((2-1)^2 + (-1-1)^2)/2 + (0.5^2 + 3^2)/2 = 2.5 + 4.625
    assert loss.d_loss(D_REAL, D_FAKE).item() == pytest.approx(7.125)
    # ((0.5-1)^2 + (-3-1)^2)/2
    assert loss.g_loss(D_FAKE).item() == pytest.approx(8.125)


def test_wgan():
    loss = LOSSES["wgan"]
    assert loss.d_loss(D_REAL, D_FAKE).item() == pytest.approx(-0.5 + -1.25)  # -mean D(x) + mean D(G(z))
    assert loss.g_loss(D_FAKE).item() == pytest.approx(1.25)                   # -mean D(G(z))


def test_mse_has_no_discriminator():
    loss = LOSSES["mse"]
    assert loss.d_loss is None and not loss.discriminator
    fake = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    real = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    assert loss.g_loss(fake, real).item() == pytest.approx((1 + 0 + 4 + 0) / 4)


def test_gradients_match_the_probability_form():
    """d/dlogit of the vanilla losses equals autograd through the explicit sigmoid/log formula."""
    lr, lf = D_REAL.clone().requires_grad_(), D_FAKE.clone().requires_grad_()
    LOSSES["vanilla"].d_loss(lr, lf).backward()
    lr2, lf2 = D_REAL.clone().requires_grad_(), D_FAKE.clone().requires_grad_()
    (-(torch.sigmoid(lr2)).log() - (1 - torch.sigmoid(lf2)).log()).mean().backward()
    assert torch.allclose(lr.grad, lr2.grad) and torch.allclose(lf.grad, lf2.grad)
