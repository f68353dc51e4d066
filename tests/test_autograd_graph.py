"""Whole graphs: shared nodes, diamonds, exponentially many paths, a 100,000-node chain; no_grad; dtypes.
References: torch autograd on the same graph, and known answers."""

import sys

import numpy as np
import pytest
import torch

from scratchlab.autograd import Tensor, no_grad


def both(build, *arrays):
    """Run `build` on our tensors and torch's (float64); return (ours, theirs) inputs after backward."""
    ours = [Tensor(a, requires_grad=True, dtype=np.float64) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, ref = build(*ours), build(*theirs)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    out.backward()
    ref.backward()
    for t, r in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(t.grad, r.grad.numpy(), rtol=1e-9, atol=1e-12)
    return ours


def test_diamond():
    def build(x):
        a = x.exp()
        b, c = a * 2.0, a.tanh()  # two paths from a
        return (b * c + a).sum()
    both(build, np.random.default_rng(0).standard_normal((3, 4)))


def test_shared_node_used_by_many_ops():
    def build(x, w):
        h = (x @ w).tanh()
        return (h * h + h @ w.T @ w + h.sum()).sum()
    rng = np.random.default_rng(1)
    both(build, rng.standard_normal((5, 3)), rng.standard_normal((3, 3)))


def test_exponentially_many_paths_each_node_once():
    """x_{k+1} = tanh(x_k) + x_k / 2: 2^60 paths from the output to x. Walking paths would never end; the
    topological backward visits each node once and sums what reaches it."""
    def build(x):
        for _ in range(60):
            x = x.tanh() + x * 0.5
        return x.sum()
    both(build, np.array([0.3, 1.2]))


def test_gradients_accumulate_across_backward_calls():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3)  # torch's semantics: .grad accumulates until zeroed


def test_leaf_gradients_are_independent_arrays():
    a, b = Tensor([1.0, 2.0], requires_grad=True), Tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad *= 10  # must not change b.grad (both came from the same incoming gradient)
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


def test_deep_chain_100k_nodes_no_recursion_limit():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True, dtype=np.float64)
    y = x
    for _ in range(100_001):  # an odd number of negations: y = -x, dy/dx = -1
        y = -y
    assert 100_000 > sys.getrecursionlimit()
    y.sum().backward()
    np.testing.assert_array_equal(y.data, [-1.0, -2.0])
    np.testing.assert_array_equal(x.grad, [-1.0, -1.0])


def test_no_grad_records_nothing():
    w = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = (w * 2.0).sum()
    assert not y.requires_grad and y._parents == ()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    z = (w * 2.0).sum()  # grad mode is back on after the block
    assert z.requires_grad


def test_dtypes_float32_default_float64_on_request():
    x = Tensor([[1, 2], [3, 4]], requires_grad=True)
    assert x.dtype == np.float32
    y = ((x @ x.T).relu() * 2 + 1.5).mean()
    assert y.dtype == np.float32
    y.backward()
    assert x.grad.dtype == np.float32
    d = Tensor(np.ones((2, 2)), dtype=np.float64, requires_grad=True)
    (d.exp() / 3.0).sum().backward()
    assert d.grad.dtype == np.float64


def test_backward_of_a_leaf():
    x = Tensor([3.0], requires_grad=True)
    x.backward()
    np.testing.assert_array_equal(x.grad, [1.0])


def test_backward_needs_scalar_or_gradient():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"needs a single value, got shape \(2, 2\)"):
        (x * 2.0).backward()
    (x * 2.0).backward(np.ones((2, 2)))
    np.testing.assert_array_equal(x.grad, 2 * np.ones((2, 2)))


def test_pow_rejects_tensor_exponent():
    with pytest.raises(TypeError, match="exponent must be a number"):
        Tensor([1.0]) ** Tensor([2.0])
