"""Functions of tensors: activations, log_softmax, and the fused softmax cross-entropy.

`log_softmax` is a composite of primitives (its gradient comes from theirs). `cross_entropy` is one primitive
with a hand-written backward, because it is the hot end of every classifier and its gradient is short:

    loss = mean_i [ logsumexp(x_i) - x_i[t_i] ]
    dloss/dx_i = (softmax(x_i) - onehot(t_i)) / N

Both subtract the row maximum first (logsumexp(x) = m + log sum exp(x - m)), so logits of +-1000 stay finite.

`linear(x, W, b)` = x W^T + b is the other fused primitive (torch's addmm), for the same reason: every MLP layer
is one, and as three primitives (transpose, matmul, add) its graph has three nodes and a transposed weight
gradient to turn back. Its reference is that composite, `x @ W.T + b`, proven equal in tests:

    dL/dx = G W,   dL/dW = G^T x,   dL/db = sum_rows G
"""

from __future__ import annotations

import numpy as np

from scratchlab.autograd.tensor import Tensor, concatenate, no_grad

__all__ = ["concatenate", "cross_entropy", "linear", "log_softmax", "logsumexp", "no_grad", "relu", "sigmoid",
           "softmax", "tanh"]


def relu(x: Tensor) -> Tensor:
    return x.relu()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def logsumexp(x: Tensor, axis: int = -1) -> Tensor:
    """log sum_j exp(x_j) = m + log sum_j exp(x_j - m), m = max_j x_j; keeps the reduced axis."""
    m = Tensor(x.data.max(axis=axis, keepdims=True), dtype=x.dtype)
    return (x - m).exp().sum(axis=axis, keepdims=True).log() + m


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """log softmax(x)_j = z_j - log sum_k exp(z_k), z = x - max(x) (not x - logsumexp(x): with |x| ~ 1000 in
    float32, x and logsumexp(x) are too close to subtract without losing the last digits)."""
    z = x - Tensor(x.data.max(axis=axis, keepdims=True), dtype=x.dtype)  # the max is a constant: its gradient cancels
    return z - z.exp().sum(axis=axis, keepdims=True).log()


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return log_softmax(x, axis=axis).exp()


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x (..., in) W^T + b with W (out, in), b (out,): torch's F.linear, one node of the graph."""
    xd, wd = x.data, weight.data
    if xd.shape[-1:] != wd.shape[1:] or (bias is not None and bias.shape != wd.shape[:1]):
        raise ValueError(f"linear: input {xd.shape}, weight {wd.shape}, bias {None if bias is None else bias.shape}:"
                         " expected (..., in), (out, in), (out,)")
    y = xd @ wd.T
    if bias is not None:
        y += bias.data  # y is this op's own array
    out = Tensor._make(y, (x, weight) if bias is None else (x, weight, bias), "linear")

    def _backward(g):
        g2, x2 = g.reshape(-1, g.shape[-1]), xd.reshape(-1, xd.shape[-1])
        if weight.requires_grad:
            weight._accumulate(g2.T @ x2, fresh=True)  # (out, in), C-contiguous like W
        if bias is not None and bias.requires_grad:
            bias._accumulate(g2.sum(axis=0), fresh=True)
        if x.requires_grad:
            x._accumulate(g @ wd, fresh=True)

    out._backward = _backward
    return out


def cross_entropy(logits: Tensor, targets, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of `logits` (N, C) against integer class `targets` (N,); torch's F.cross_entropy.

    reduction: "mean" (default) or "sum".
    """
    t = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    x = logits.data
    if x.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {x.shape}")
    if t.shape != (x.shape[0],) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"cross_entropy: targets must be integers of shape ({x.shape[0]},), got {t.dtype} {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= x.shape[1]):
        raise ValueError(f"cross_entropy: targets must lie in 0..{x.shape[1] - 1}, found {t.min()}..{t.max()}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"cross_entropy: reduction must be 'mean' or 'sum', got {reduction!r}")
    rows = np.arange(x.shape[0])
    z = x - x.max(axis=1, keepdims=True)          # (N, C), every row's maximum is 0
    p = np.exp(z)
    s = p.sum(axis=1, keepdims=True)              # (N, 1), >= 1
    losses = np.log(s[:, 0]) - z[rows, t]         # (N,) logsumexp(x_i) - x_i[t_i]
    scale = 1.0 / x.shape[0] if reduction == "mean" else 1.0
    out = Tensor._make(np.asarray(losses.sum() * scale, dtype=x.dtype), (logits,), "cross_entropy")
    p /= s                                        # softmax, kept for the backward

    def _backward(g):
        coef = (g * scale).astype(x.dtype)
        grad = p * coef                           # (softmax - onehot) * g / N
        grad[rows, t] -= coef
        logits._accumulate(grad, fresh=True)

    out._backward = _backward
    return out
