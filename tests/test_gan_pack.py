"""PacGAN packing: a packed D is an unpacked D on samples placed side by side; pack=1 is the GAN as it was."""

import dataclasses
import math

import pytest
import torch

from scratchlab.experiments.gan import GANConfig, net_config
from scratchlab.gan.nets import DCDiscriminator, DCGenerator, Discriminator, Generator, NetConfig, build
from scratchlab.gan.trainer import GANTrainer, TrainerConfig

# sum of G's and D's parameters after 3 rounds of each setting below, computed by the code before packing
# existed (commit eaa390a); the new code gave the same tensors bit for bit on the machine that recorded them.
BEFORE = [3.022581422163057, 3.0969327023485675, 3.0198820564546622, 3.0874454542645253, 6.158468757610535,
          4.1513403279241174, 3.031028199038701, 3.0848662959833746, 3.0292169565946097, 3.0986291958543006]
SETTINGS = [("vanilla", {}), ("lsgan", {}), ("wgan", {"clip": 0.01, "d_steps": 2, "optimizer": "rmsprop"}),
            ("vanilla", {"unroll": 2}), ("vanilla", {"unroll": 1, "unroll_grad": True})]


def tiny_run(loss: str, kw: dict, n_classes: int, pack: int = 1, rounds: int = 3) -> tuple[GANTrainer, torch.Tensor]:
    torch.manual_seed(0)
    net = NetConfig(latent=4, g_hidden=(8, 8), d_hidden=(8, 6), channels=1, image_size=2, n_classes=n_classes,
                    pack=pack)
    G, D = Generator(net), Discriminator(net)
    data = torch.rand(50, 1, 2, 2) * 2 - 1
    labels = torch.randint(3, (50,))
    t = GANTrainer(G, D, TrainerConfig(loss=loss, batch_size=6, **kw), data, labels if n_classes else None)
    for i in range(rounds):
        t.step(i)
    return t, torch.cat([p.detach().flatten() for p in [*G.parameters(), *D.parameters()]])


def test_pack_1_is_the_gan_before_packing():
    runs = [(loss, kw, k) for loss, kw in SETTINGS for k in (0, 3)]
    for (loss, kw, k), before in zip(runs, BEFORE, strict=True):
        _, params = tiny_run(loss, kw, k)
        assert float(params.double().sum()) == pytest.approx(before, rel=1e-6, abs=1e-6), (loss, kw, k)


def test_packed_d_is_a_d_of_samples_side_by_side():
    torch.manual_seed(1)
    packed = Discriminator(NetConfig(channels=1, image_size=2, d_hidden=(5, 4), pack=3))
    wide = Discriminator(NetConfig(channels=3, image_size=2, d_hidden=(5, 4)))  # 3 samples as 3 channels
    wide.load_state_dict(packed.state_dict())
    x = torch.randn(6, 1, 2, 2)
    side_by_side = torch.stack([torch.cat([x[0], x[1], x[2]]), torch.cat([x[3], x[4], x[5]])])  # (2, 3, 2, 2)
    assert packed(x).shape == (2,)
    torch.testing.assert_close(packed(x), wide(side_by_side), rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not split into packs"):
        packed(x[:5])


def test_conditional_packs_carry_each_samples_label():
    torch.manual_seed(2)
    d = Discriminator(NetConfig(channels=1, image_size=1, d_hidden=(4,), n_classes=2, pack=2))
    x, y = torch.tensor([[0.5], [-1.0]]).view(2, 1, 1, 1), torch.tensor([1, 0])
    h = torch.tensor([[0.5, 0.0, 1.0, -1.0, 1.0, 0.0]])  # [x0, onehot(y0), x1, onehot(y1)]
    torch.testing.assert_close(d(x, y), d.head(d.body(h)).squeeze(1), rtol=0, atol=0)
    with pytest.raises(ValueError, match="projection"):
        Discriminator(NetConfig(n_classes=2, projection=True, pack=2))


@pytest.mark.parametrize("loss,kw", SETTINGS)
def test_every_loss_trains_packed(loss, kw):
    t, params = tiny_run(loss, kw, n_classes=0, pack=2, rounds=2)
    assert torch.isfinite(params).all()
    assert t.n == 12 and t.real_batch()[0].shape == (12, 1, 2, 2)  # batch_size packs of 2 samples
    _, d_real, d_fake = t.d_loss(t.D)
    assert d_real.shape == d_fake.shape == (6,)


def test_conditional_gan_trains_packed():
    _, params = tiny_run("lsgan", {}, n_classes=3, pack=4, rounds=2)
    assert torch.isfinite(params).all()


def test_gan_config_pack_reaches_d_and_mse_refuses_it():
    data = torch.zeros(1, 1, 28, 28)
    assert net_config(GANConfig(pack=2), data, 10).pack == 2
    with pytest.raises(ValueError, match="no discriminator"):
        net_config(GANConfig(pack=2, loss="mse"), data, 10)


def test_packed_dcgan_d_is_a_d_of_images_stacked_on_the_channels():
    torch.manual_seed(3)
    net = NetConfig(channels=3, image_size=8, arch="dcgan", conv_width=4)
    packed = DCDiscriminator(dataclasses.replace(net, pack=2))
    wide = DCDiscriminator(dataclasses.replace(net, channels=6))  # 2 images of 3 channels as one of 6
    wide.load_state_dict(packed.state_dict())
    x = torch.randn(6, 3, 8, 8)
    stacked = torch.stack([torch.cat([x[2 * k], x[2 * k + 1]]) for k in range(3)])  # (3, 6, 8, 8)
    torch.testing.assert_close(packed(x), wide(stacked), rtol=0, atol=0)
    assert packed(x).shape == (3,)
    with pytest.raises(ValueError, match="does not split into packs"):
        packed(x[:5])


def test_dcgan_shapes_and_what_it_refuses():
    G, D = build(NetConfig(latent=5, channels=3, image_size=12, arch="dcgan", conv_width=4))
    x = G(G.sample_latent(4))
    assert isinstance(G, DCGenerator) and x.shape == (4, 3, 12, 12) and x.abs().max() <= 1
    assert D(x).shape == (4,)
    x.sum().backward()  # G is differentiable end to end
    assert all(p.grad is not None for p in G.parameters())
    for bad, match in [({"n_classes": 10}, "unconditional"), ({"image_size": 10}, "multiple of 4"),
                       ({"arch": "resnet"}, "arch: expected one of")]:
        with pytest.raises(ValueError, match=match):
            build(NetConfig(**{"arch": "dcgan", **bad}))


def test_dcgan_trains_packed():
    torch.manual_seed(0)
    G, D = build(NetConfig(latent=4, channels=1, image_size=4, arch="dcgan", conv_width=2, pack=2))
    t = GANTrainer(G, D, TrainerConfig(loss="vanilla", batch_size=3), torch.rand(20, 1, 4, 4) * 2 - 1)
    before = [p.detach().clone() for p in G.parameters()]
    for i in range(2):
        out = t.step(i)
    assert t.n == 6 and all(map(math.isfinite, out.values()))
    assert any(not torch.equal(a, b) for a, b in zip(before, G.parameters(), strict=True))
