"""The projection discriminator (Miyato & Koyama 2018) against a hand-written forward pass, its shapes, and the
default (concatenated-label) discriminator unchanged by the option."""

import pytest
import torch
from torch.nn import functional as F

from scratchlab.experiments.gan import CGANConfig, GANConfig, net_config
from scratchlab.gan.nets import Discriminator, NetConfig
from scratchlab.gan.trainer import GANTrainer, TrainerConfig

K = 4
NET = NetConfig(latent=3, g_hidden=(8, 16), d_hidden=(12, 6), image_size=3, n_classes=K)


def by_hand(D: Discriminator, x: torch.Tensor, y: torch.Tensor | None, project: bool) -> torch.Tensor:
    """Plain matrix products with D's weights, float64: phi(x) = lrelu(W2 lrelu(W1 v + b1) + b2), then
    psi(phi) + y^T V phi with y one-hot (projection) or the head on phi of [x, y] (concatenated label)."""
    lin = [m for m in D.body if isinstance(m, torch.nn.Linear)]
    (w1, b1), (w2, b2) = [(m.weight.double(), m.bias.double()) for m in lin]
    w, b = D.head.weight.double()[0], D.head.bias.double()[0]
    v = x.flatten(1).double()
    onehot = torch.eye(K, dtype=torch.float64)[y] if y is not None else None
    if onehot is not None and not project:
        v = torch.cat([v, onehot], 1)
    phi = F.leaky_relu(F.leaky_relu(v @ w1.T + b1, 0.2) @ w2.T + b2, 0.2)  # (N, F)
    out = phi @ w + b
    if project:
        V = D.embed.weight.double()  # (K, F)
        out = out + torch.einsum("nk,kf,nf->n", onehot, V, phi)  # y^T V phi(x), sample by sample
    return out


def test_projection_term_is_the_inner_product_y_V_phi():
    torch.manual_seed(0)
    D = Discriminator(NetConfig(**{**NET.__dict__, "projection": True})).double()
    x, y = torch.randn(7, 1, 3, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 3, 1, 0])
    assert D.body[0].in_features == 9, "the image alone enters the body"
    assert D.embed.weight.shape == (K, 6) and D(x, y).shape == (7,)
    torch.testing.assert_close(D(x, y), by_hand(D, x, y, project=True), rtol=1e-12, atol=1e-12)
    # swapping the label moves the score by exactly (V_y' - V_y) . phi(x), nothing else
    phi = D.body(x.flatten(1))
    y2 = (y + 1) % K
    torch.testing.assert_close(D(x, y2) - D(x, y), ((D.embed.weight[y2] - D.embed.weight[y]) * phi).sum(1))
    with pytest.raises(ValueError, match="labels"):
        D(x)


def test_default_discriminator_is_unchanged_by_the_option():
    """projection=False: the one-hot label concatenated to the input, the same parameters drawn from the same
    seed as nn.Linear layers built by hand in that order, and no embedding."""
    torch.manual_seed(3)
    D = Discriminator(NET)
    torch.manual_seed(3)
    ref = [torch.nn.Linear(9 + K, 12), torch.nn.Linear(12, 6), torch.nn.Linear(6, 1)]
    assert not hasattr(D, "embed") and D.body[0].in_features == 9 + K
    got = [m for m in D.modules() if isinstance(m, torch.nn.Linear)]
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    x, y = torch.randn(5, 1, 3, 3), torch.arange(5) % K
    torch.testing.assert_close(D(x, y).double(), by_hand(D, x, y, project=False))
    # unconditional: the option has nothing to act on
    torch.manual_seed(3)
    plain = Discriminator(NetConfig(**{**NET.__dict__, "n_classes": 0}))
    torch.manual_seed(3)
    flagged = Discriminator(NetConfig(**{**NET.__dict__, "n_classes": 0, "projection": True}))
    assert not hasattr(flagged, "embed")
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), flagged.state_dict().values(),
                                                 strict=True))


def test_projection_trains_its_embedding_and_reaches_the_config():
    from scratchlab.gan.nets import Generator

    net = NetConfig(**{**NET.__dict__, "projection": True})
    torch.manual_seed(0)
    data, labels = torch.rand(32, 1, 3, 3) * 2 - 1, torch.arange(32) % K
    t = GANTrainer(Generator(net), Discriminator(net), TrainerConfig(loss="lsgan", batch_size=8), data, labels)
    before = t.D.embed.weight.clone()
    t.step(0)
    assert not torch.equal(before, t.D.embed.weight), "V gets gradient through y^T V phi(x)"
    images = torch.zeros(2, 1, 28, 28)
    assert net_config(GANConfig(conditional=True, projection=True), images, 10).projection
    assert net_config(CGANConfig(), images, 10).projection, "cgan's default: the projection discriminator"
    assert not GANConfig().projection, "gan and the sweeps keep the concatenated label"


@pytest.mark.parametrize("projection", [False, True])
def test_spectral_norm_divides_each_weight_by_its_largest_singular_value(projection):
    torch.manual_seed(0)
    D = Discriminator(NetConfig(**{**NET.__dict__, "projection": projection, "spectral_norm": True}))
    x, y = torch.randn(16, 1, 3, 3), torch.arange(16) % K
    for _ in range(200):  # one power iteration per training-mode forward
        D(x, y)
    D.eval()
    layers = [m for m in D.modules() if isinstance(m, torch.nn.Linear | torch.nn.Embedding)]
    assert len(layers) == 3 + projection
    for m in layers:
        raw = m.parametrizations.weight.original.detach()
        torch.testing.assert_close(m.weight, raw / torch.linalg.svdvals(raw)[0], rtol=1e-4, atol=1e-6)
    assert torch.isfinite(D(x, y)).all()


def test_maxout_discriminator_takes_the_largest_piece_of_each_unit():
    # PacGAN's 2-D discriminator: unit u of a layer is max_k (w_uk . x + c_uk) over its k pieces, checked here
    # against that formula written out piece by piece with the layer's own weights
    torch.manual_seed(0)
    cfg = NetConfig(latent=2, d_hidden=(7, 5), channels=2, image_size=1, maxout=3, pack=2)
    D = Discriminator(cfg)
    x = torch.randn(8, 2, 1, 1)
    h = x.flatten(1).reshape(4, 4)  # packs of 2 samples side by side
    for layer in D.body:
        W, c = layer.linear.weight, layer.linear.bias  # (units * pieces, in)
        pieces = [[h @ W[u * 3 + k] + c[u * 3 + k] for k in range(3)] for u in range(len(W) // 3)]
        h = torch.stack([torch.stack(p, 1).max(1).values for p in pieces], 1)
    want = D.head(h).squeeze(1)
    torch.testing.assert_close(D(x), want)
    assert [m.linear.out_features for m in D.body] == [21, 15]
    with pytest.raises(ValueError, match="maxout"):
        Discriminator(NetConfig(maxout=-1))
