"""The two matrix products the fast recurrent path is made of, on the fastest kernel the input's device offers.

On CPU in float32, torch.mm goes to MKL, which on the AMD (Zen 5) machines this project is measured on runs its
AVX2 code at about 100 GFLOP/s per core; oneDNN, the library behind torch.nn.LSTM on CPU, runs AVX-512 there and
reaches 150-230 GFLOP/s on the same products (docs/design.md, speed plan). torch exposes oneDNN's matmul as the
operator `mkldnn::_linear_pointwise` (what torch.compile emits for linear layers on CPU). It returns a new tensor
(no `out=`) and is used here for float32 only, so everything else (float64, CUDA, a build without oneDNN) takes
torch.addmm, which on CUDA is cuBLAS. On a CPU without AVX-512 MKL is the faster one for the large products after
the step loops (Zen 3: `sequence_linear`), so those take it there.
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

    def pack(w, m):
        return w
    return _addmm, pack


def _addmm(a: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """a w^T + b through torch.mm / torch.addmm (MKL on CPU, cuBLAS on CUDA)."""
    return torch.mm(a, w.t()) if b is None else torch.addmm(b, a, w.t())


def sequence_linear(x: Tensor) -> Callable:
    """linear (as gemms') for the products over all steps at once after the step loops: the weight gradients
    dG^T [X, H_prev] and dX = dG W_ih, thousands of rows by hundreds of columns. Which library is faster there
    depends on the CPU, and the rule is fixed per machine (so a run's numbers do not depend on a timing): oneDNN
    where torch's CPU capability is AVX-512 (Zen 5: dW 150 GFLOP/s against MKL's 95), torch.mm (MKL) everywhere
    else (Zen 3, AVX2, one core, shape c's dW^T (768 x 6400 x 2048) and dX (6400 x 2048 x 256): 85-88 against
    70-74 GFLOP/s and 77 against 64; docs/design.md, speed plan)."""
    if use_onednn(x) and torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return gemms(x)[0]
    return _addmm
