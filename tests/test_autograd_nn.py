"""Modules and optimisers against torch.nn / torch.optim with the same weights, batches and gradients;
and a learning test on real Fashion-MNIST images."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scratchlab.autograd import Tensor, nn, optim
from scratchlab.autograd import functional as F

FASHION = Path("/usr/share/datasets/fashion-mnist")


def torch_twin(model: nn.Sequential, dtype=torch.float64) -> torch.nn.Sequential:
    layers = [torch.nn.Linear(m.in_features, m.out_features, dtype=dtype) if isinstance(m, nn.Linear)
              else torch.nn.ReLU() for m in model.layers]
    twin = torch.nn.Sequential(*layers)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return twin


@pytest.mark.parametrize(("dtype", "tol"), [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_mlp_gradients_equal_torch(dtype, tol):
    rng = np.random.default_rng(0)
    model = nn.mlp([20, 16, 12, 5], dtype=dtype, rng=rng)
    twin = torch_twin(model, torch.float64 if dtype == np.float64 else torch.float32)
    x, y = rng.standard_normal((8, 20)).astype(dtype), rng.integers(0, 5, 8)
    loss = nn.CrossEntropyLoss()(model(Tensor(x, dtype=dtype)), y)
    loss.backward()
    ref = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
    ref.backward()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=tol)
    grads = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), rtol=tol, atol=tol, err_msg=name)


def test_linear_init_matches_torch_bounds():
    torch.manual_seed(0)
    ref = torch.nn.Linear(300, 50)
    ours = nn.Linear(300, 50, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(300)  # torch: kaiming_uniform(a=sqrt(5)) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for a, b in ((ours.weight.data, ref.weight.detach().numpy()), (ours.bias.data, ref.bias.detach().numpy())):
        assert a.shape == b.shape and np.abs(a).max() <= bound and np.abs(b).max() <= bound
        assert abs(a.std() - b.std()) < 0.1 * bound  # both ~ bound / sqrt(3)


def test_state_dict_roundtrip_npz_and_torch(tmp_path):
    model = nn.mlp([6, 4, 3], rng=np.random.default_rng(1))
    assert list(model.state_dict()) == list(torch.nn.Sequential(
        torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).state_dict())
    model.save(tmp_path / "m.npz")
    other = nn.mlp([6, 4, 3], rng=np.random.default_rng(2)).load(tmp_path / "m.npz")
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=k)
    twin = torch_twin(model, torch.float32)
    other.load_state_dict(twin.state_dict())  # torch tensors are accepted too
    with pytest.raises(ValueError, match=r"0.weight has shape \(4, 5\), expected \(4, 6\)"):
        other.load_state_dict({**model.state_dict(), "0.weight": np.zeros((4, 5))})
    with pytest.raises(KeyError, match=r"missing keys \['2.bias'\]"):
        other.load_state_dict({k: v for k, v in model.state_dict().items() if k != "2.bias"})


def test_dropout_train_and_eval():
    drop = nn.Dropout(0.25, rng=np.random.default_rng(0))
    x = Tensor(np.ones((200, 50)), requires_grad=True)
    y = drop(x)
    kept = y.data != 0
    assert abs(kept.mean() - 0.75) < 0.02 and np.allclose(y.data[kept], 1 / 0.75)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, kept / 0.75)  # gradient flows only through kept units
    seq = nn.Sequential(nn.Linear(50, 3), drop).eval()
    assert not drop.training
    np.testing.assert_array_equal(seq(x).data, seq.layers[0](x).data)


def run_optimizer(make_ours, make_theirs, steps=6, seed=0):
    """Same start, same gradient sequence (random arrays): parameters must match after every step."""
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    ours = [Tensor(a, requires_grad=True, dtype=np.float64) for a in start]
    theirs = [torch.tensor(a, requires_grad=True) for a in start]
    opt, ref = make_ours(ours), make_theirs(theirs)
    for _ in range(steps):
        for p, t in zip(ours, theirs, strict=True):
            g = rng.standard_normal(p.shape)
            p.grad, t.grad = g.copy(), torch.from_numpy(g.copy())
        opt.step()
        ref.step()
        for p, t in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-12, atol=1e-12)
    return opt


@pytest.mark.parametrize("kw", [{"lr": 0.1}, {"lr": 0.05, "momentum": 0.9},
                                {"lr": 0.05, "momentum": 0.9, "dampening": 0.3},
                                {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01},
                                {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-3}])
def test_sgd_equals_torch(kw):
    run_optimizer(lambda ps: optim.SGD(ps, **kw), lambda ps: torch.optim.SGD(ps, **kw))


@pytest.mark.parametrize("kw", [{"lr": 0.01}, {"lr": 0.003, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05}])
def test_adam_equals_torch(kw):
    run_optimizer(lambda ps: optim.Adam(ps, **kw), lambda ps: torch.optim.Adam(ps, **kw))


def test_optimizer_state_dict_resumes_exactly():
    """Steps 1-3, save, fresh optimiser loads the state, steps 4-6 == six uninterrupted steps (torch's Adam)."""
    rng = np.random.default_rng(3)
    start = rng.standard_normal((3, 2))
    grads = [rng.standard_normal((3, 2)) for _ in range(6)]

    def steps(opt, p, gs):
        for g in gs:
            p.grad = g.copy()
            opt.step()

    a = Tensor(start, requires_grad=True, dtype=np.float64)
    opt = optim.Adam([a], lr=0.01)
    steps(opt, a, grads[:3])
    saved = {"hyper": opt.state_dict()["hyper"], "steps": opt.state_dict()["steps"],
             "state": {k: {n: torch.from_numpy(v) for n, v in s.items()} for k, s in opt.state_dict()["state"].items()}}
    opt2 = optim.Adam([a], lr=0.5)
    opt2.load_state_dict(saved)  # as it comes back from a torch checkpoint
    steps(opt2, a, grads[3:])
    t = torch.tensor(start, requires_grad=True)
    ref = torch.optim.Adam([t], lr=0.01)
    for g in grads:
        t.grad = torch.from_numpy(g.copy())
        ref.step()
    np.testing.assert_allclose(a.data, t.detach().numpy(), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").exists(),
                    reason=f"real Fashion-MNIST not installed at {FASHION} (Debian package dataset-fashion-mnist)")
def test_mlp_learns_fashion_mnist_subset():
    """2,000 real training images, 1,000 held-out test images: >= 80% test accuracy in a few seconds."""
    from scratchlab.data.registry import load

    train, test = load("fashion-mnist", "train", allow_download=False), load("fashion-mnist", "test",
                                                                              allow_download=False)
    x = train.images[:2000].reshape(2000, -1).astype(np.float32) / 255
    y = train.labels[:2000]
    xt, yt = test.images[:1000].reshape(1000, -1).astype(np.float32) / 255, test.labels[:1000]
    rng = np.random.default_rng(0)
    model = nn.mlp([784, 128, 10], rng=rng)
    opt = optim.Adam(model.parameters(), lr=2e-3)
    t0 = time.perf_counter()
    for _epoch in range(15):
        order = rng.permutation(2000)
        for i in range(0, 2000, 50):
            idx = order[i:i + 50]
            loss = F.cross_entropy(model(Tensor(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    accuracy = (model(Tensor(xt)).data.argmax(1) == yt).mean()
    assert accuracy >= 0.80, f"test accuracy {accuracy:.3f} after {time.perf_counter() - t0:.1f}s"
