"""Every op of scratchlab.autograd against two independent references, in float64:
finite differences (central, per element) and torch autograd (forward values and every input's gradient).

`check(fn, shapes)` runs `fn` on our Tensors and on torch tensors with the same numbers; one line per op.
"""

import numpy as np
import pytest
import torch

from scratchlab.autograd import Tensor, concatenate
from scratchlab.autograd import functional as F


def fd_grads(fn, arrays, weight, eps=1e-6):
    """d sum(fn(x) * weight) / dx for each input, by central differences (float64)."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + eps
            up = (fn(*[Tensor(x, dtype=np.float64) for x in arrays]).data * weight).sum()
            a[i] = old - eps
            down = (fn(*[Tensor(x, dtype=np.float64) for x in arrays]).data * weight).sum()
            a[i] = old
            g[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def check(fn, *shapes, torch_fn=None, positive=False, seed=0, fd=True):
    """Compare fn's value and input gradients with torch (torch_fn, default fn) and with finite differences."""
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(0.5, 2.0, s) if positive else rng.standard_normal(s) for s in shapes]
    ours = [Tensor(a, requires_grad=True, dtype=np.float64) for a in arrays]
    out = fn(*ours)
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    ref = (torch_fn or fn)(*theirs)
    assert out.shape == tuple(ref.shape), f"shape {out.shape} != torch {tuple(ref.shape)}"
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    weight = rng.standard_normal(out.shape)  # L = sum(out * weight): tests backward(grad) with a general grad
    out.backward(weight)
    ref.backward(torch.from_numpy(weight))
    for i, (t, r) in enumerate(zip(ours, theirs, strict=True)):
        assert t.grad is not None and t.grad.shape == t.shape, f"input {i}: gradient missing or misshapen"
        np.testing.assert_allclose(t.grad, r.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=f"input {i} vs torch")
    if fd:
        for i, (t, g) in enumerate(zip(ours, fd_grads(fn, arrays, weight), strict=True)):
            np.testing.assert_allclose(t.grad, g, rtol=1e-5, atol=1e-7, err_msg=f"input {i} vs finite differences")


# ---------------------------------------------------------------- elementwise, with broadcasting
def test_add(): check(lambda a, b: a + b, (3, 4), (3, 4))
def test_add_broadcast_row(): check(lambda a, b: a + b, (3, 4), (4,))
def test_add_broadcast_both(): check(lambda a, b: a + b, (2, 3, 1), (3, 4))
def test_add_scalar(): check(lambda a: 2.5 + a + 1.0, (3, 2))
def test_sub_broadcast(): check(lambda a, b: a - b, (3, 1), (1, 4))
def test_rsub(): check(lambda a: 1.0 - a, (5,))
def test_mul_broadcast(): check(lambda a, b: a * b, (2, 3, 4), (3, 1))
def test_mul_scalar(): check(lambda a: 3.0 * a * -2.0, (4,))
def test_div_broadcast(): check(lambda a, b: a / b, (3, 4), (4,), positive=True)
def test_rdiv(): check(lambda a: 2.0 / a, (3, 2), positive=True)
def test_neg(): check(lambda a: -a, (2, 5))
def test_pow_square(): check(lambda a: a ** 2, (3, 4))
def test_pow_cube(): check(lambda a: a ** 3, (3, 4))
def test_pow_sqrt(): check(lambda a: a ** 0.5, (3, 4), positive=True)
def test_pow_inverse(): check(lambda a: a ** -1.5, (3, 4), positive=True)
def test_exp(): check(lambda a: a.exp(), (3, 4))
def test_log(): check(lambda a: a.log(), (3, 4), positive=True)
def test_tanh(): check(lambda a: a.tanh(), (3, 4))
def test_sigmoid(): check(lambda a: a.sigmoid(), (3, 4))
def test_relu(): check(lambda a: a.relu(), (4, 5))
def test_same_tensor_twice(): check(lambda a: a * a + a, (3, 3))


# ---------------------------------------------------------------- matmul: 2-d, vectors, batches, broadcast batches
def test_matmul(): check(lambda a, b: a @ b, (3, 4), (4, 5))
def test_matmul_transposed_weight(): check(lambda x, w: x @ w.T, (3, 4), (5, 4))
def test_matmul_vec_mat(): check(lambda a, b: a @ b, (4,), (4, 5))
def test_matmul_mat_vec(): check(lambda a, b: a @ b, (3, 4), (4,))
def test_matmul_vec_vec(): check(lambda a, b: a @ b, (4,), (4,))
def test_matmul_batched(): check(lambda a, b: a @ b, (2, 3, 4), (2, 4, 5))
def test_matmul_broadcast_batch(): check(lambda a, b: a @ b, (2, 1, 3, 4), (3, 4, 2))
def test_matmul_batch_times_matrix(): check(lambda a, b: a @ b, (2, 3, 4), (4, 5))


# ---------------------------------------------------------------- the fused linear (F.linear), and its reference
def _torch_linear(x, w, b=None): return torch.nn.functional.linear(x, w, b)
def test_linear(): check(F.linear, (3, 4), (5, 4), (5,), torch_fn=_torch_linear)
def test_linear_no_bias(): check(F.linear, (3, 4), (5, 4), torch_fn=_torch_linear)
def test_linear_batched_input(): check(F.linear, (2, 3, 4), (5, 4), (5,), torch_fn=_torch_linear)
def test_linear_vector_input(): check(F.linear, (4,), (5, 4), (5,), torch_fn=_torch_linear)


def test_linear_equals_its_composite_reference():
    """F.linear is x @ W.T + b as one node: the same values and gradients (float32, the engine's default)."""
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((6, 7)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    got, want = [[Tensor(a, requires_grad=True) for a in (x, w, b)] for _ in range(2)]
    (F.linear(*got) ** 2).sum().backward()
    ((want[0] @ want[1].T + want[2]) ** 2).sum().backward()
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g.grad, r.grad, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"linear: input \(6, 7\), weight \(7, 3\)"):
        F.linear(Tensor(x), Tensor(w.T.copy()))


# ---------------------------------------------------------------- reductions
def test_sum_all(): check(lambda a: a.sum(), (3, 4))
def test_sum_axis(): check(lambda a: a.sum(axis=1), (3, 4), torch_fn=lambda a: a.sum(dim=1))
def test_sum_axes_keepdims(): check(lambda a: a.sum(axis=(0, 2), keepdims=True), (2, 3, 4),
                                    torch_fn=lambda a: a.sum(dim=(0, 2), keepdim=True))
def test_sum_negative_axis(): check(lambda a: a.sum(axis=-1), (2, 3, 4), torch_fn=lambda a: a.sum(dim=-1))
def test_mean_all(): check(lambda a: a.mean(), (3, 4))
def test_mean_axis_keepdims(): check(lambda a: a.mean(axis=0, keepdims=True), (3, 4),
                                     torch_fn=lambda a: a.mean(dim=0, keepdim=True))
def test_max_all(): check(lambda a: a.max(), (3, 4), torch_fn=lambda a: a.amax())
def test_max_axis(): check(lambda a: a.max(axis=1), (3, 4), torch_fn=lambda a: a.amax(dim=1))
def test_max_axis_keepdims(): check(lambda a: a.max(axis=0, keepdims=True), (3, 4),
                                    torch_fn=lambda a: a.amax(dim=0, keepdim=True))


# ---------------------------------------------------------------- shape ops and indexing
MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, False, True]])


def test_reshape(): check(lambda a: a.reshape(4, 3) * a.reshape((4, 3)), (3, 4))
def test_transpose_2d(): check(lambda a: a.T, (3, 4))
def test_transpose_axes(): check(lambda a: a.transpose(1, 2, 0), (2, 3, 4), torch_fn=lambda a: a.permute(1, 2, 0))
def test_index_int(): check(lambda a: a[1], (3, 4))
def test_slice(): check(lambda a: a[:, 1:3], (3, 4))
def test_slice_step(): check(lambda a: a[..., ::2], (2, 3, 5))
def test_fancy_index_repeats(): check(lambda a: a[[0, 2, 0, 0]], (3, 4))  # row 0 picked 3 times: 3 gradients
def test_index_pairs(): check(lambda a: a[[0, 1, 1], [2, 0, 2]], (2, 3))
def test_index_mask(): check(lambda a: a[MASK], (3, 4), torch_fn=lambda a: a[torch.from_numpy(MASK)])
def test_index_newaxis(): check(lambda a: a[:, None, 1:], (3, 4))
def test_concatenate_axis0(): check(lambda a, b: concatenate([a, b, a], axis=0), (2, 3), (4, 3),
                                   torch_fn=lambda a, b: torch.cat([a, b, a], dim=0))
def test_concatenate_axis1(): check(lambda a, b: concatenate([a, b], axis=1), (2, 3), (2, 1),
                                   torch_fn=lambda a, b: torch.cat([a, b], dim=1))


# ---------------------------------------------------------------- functional
TARGETS = np.array([2, 0, 4, 4])


def test_log_softmax(): check(lambda a: F.log_softmax(a), (4, 5), torch_fn=lambda a: torch.log_softmax(a, -1))
def test_log_softmax_axis0(): check(lambda a: F.log_softmax(a, axis=0), (4, 5),
                                    torch_fn=lambda a: torch.log_softmax(a, 0))
def test_softmax(): check(lambda a: F.softmax(a), (4, 5), torch_fn=lambda a: torch.softmax(a, -1))
def test_logsumexp(): check(lambda a: F.logsumexp(a), (4, 5), torch_fn=lambda a: torch.logsumexp(a, -1, keepdim=True))
def test_cross_entropy(): check(lambda a: F.cross_entropy(a, TARGETS), (4, 5),
                                torch_fn=lambda a: torch.nn.functional.cross_entropy(a, torch.from_numpy(TARGETS)))
def test_cross_entropy_sum(): check(lambda a: F.cross_entropy(a, TARGETS, reduction="sum"), (4, 5),
                                    torch_fn=lambda a: torch.nn.functional.cross_entropy(
                                        a, torch.from_numpy(TARGETS), reduction="sum"))
def test_cross_entropy_equals_composite(): check(lambda a: F.cross_entropy(a, TARGETS), (4, 5),
                                                 torch_fn=lambda a: -torch.log_softmax(a, -1)[range(4), TARGETS].mean())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_finite_for_huge_logits(dtype):
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0], [1000.0, 1000.0, -1000.0]])
    targets = np.array([1, 2, 0])
    x = Tensor(logits, requires_grad=True, dtype=dtype)
    loss = F.cross_entropy(x, targets)
    loss.backward()
    t = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(t, torch.from_numpy(targets))
    ref.backward()
    assert np.isfinite(loss.item()) and np.isfinite(x.grad).all()
    np.testing.assert_allclose(loss.item(), ref.item(), rtol=1e-6)  # (2000 + 0 + log 2) / 3
    np.testing.assert_allclose(x.grad, t.grad.numpy(), atol=1e-6)
    lsm = F.log_softmax(Tensor(logits, dtype=dtype))
    np.testing.assert_allclose(lsm.data, torch.log_softmax(torch.tensor(logits), -1).numpy(), rtol=1e-6)


def test_cross_entropy_rejects_bad_targets():
    x = Tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"targets must lie in 0..2, found 0..3"):
        F.cross_entropy(x, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"targets must be integers of shape \(2,\)"):
        F.cross_entropy(x, np.array([0.0, 1.0]))
