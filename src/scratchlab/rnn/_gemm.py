"""The two matrix products the fast recurrent path is made of, on the fastest kernel the input's device offers.

On CPU in float32, torch.mm goes to MKL, which on the AMD (Zen 5) machines this project is measured on runs its
AVX2 code at about 100 GFLOP/s per core; oneDNN, the library behind torch.nn.LSTM on CPU, runs AVX-512 there and
reaches 150-230 GFLOP/s on the same products (docs/design.md, speed plan). torch exposes oneDNN's matmul as the
operator `mkldnn::_linear_pointwise` (what torch.compile emits for linear layers on CPU). It returns a new tensor
(no `out=`) and is used here for float32 only, so everything else (float64, CUDA, a build without oneDNN) takes
torch.addmm, which on CUDA is cuBLAS.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor
_ONEDNN = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
_ONEDNN_DTYPES = (torch.float32,)  # the measured and tested case; others take torch.addmm


def use_onednn(x: Tensor) -> bool:
    """True where the fast path uses oneDNN's matmul for x: float32 CPU tensors, oneDNN built and enabled."""
    return (_ONEDNN is not None and x.is_cpu and x.dtype in _ONEDNN_DTYPES
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def gemms(x: Tensor) -> tuple[Callable, Callable]:
    """(linear, pack) for x's device and dtype.

    linear(a, w, b) = a w^T + b (b may be None), a (M, K), w (N, K): a new (M, N) tensor. pack(w, M) returns w in
    the layout the kernel reads fastest for M-row products (oneDNN's blocked weight layout: 10-15% faster per step
    product), or w itself. The callers add a step's input projection with a separate `add_`: measured faster than
    oneDNN's fused "add" variant (`_linear_pointwise.binary`).
    """
    if use_onednn(x):
        plain = _ONEDNN.default

        def linear(a, w, b=None):
            return plain(a, w, b, "none", [], "")

        def pack(w, m):
            return torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), m)
        return linear, pack

    def linear(a, w, b=None):
        return torch.mm(a, w.t()) if b is None else torch.addmm(b, a, w.t())

    def pack(w, m):
        return w
    return linear, pack
