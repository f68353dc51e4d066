"""The fast path as differentiable operations: each layer-direction of `rnn/fast.py` as a registered torch operator
(what torch.compile and torch.export see) and as an autograd Function (what eager mode runs).

    torch.ops.scratchlab.lstm(x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, keep)
        -> out (N, H), h_n, c_n (B, H), G (N, 4H), C (N, H), TC (N, H)
    torch.ops.scratchlab.gru(x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse, keep)
        -> out (N, H), h_n (B, H), G (N, 3H), HN (N, H)
    torch.ops.scratchlab.rnn(x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse) -> out (N, H), h_n (B, H)

x (N, I) has the rows of `steps.Steps` (batch_sizes None: a padded batch of N / B steps of B rows, else
PackedSequence's (T,) int64 CPU tensor); biases may be None. The forward operators return what their backward
reads (the activated gates and the cell states) as outputs, marked non-differentiable, because an operator's
backward may only see its inputs and outputs; keep=False (no backward follows) returns them empty. Each has a
backward operator (`lstm_backward`, ...) registered as its autograd formula, and both have fake implementations
that give the output shapes from the input shapes alone, so tracing never runs the kernels.

Eager calls go through `torch.autograd.Function`s that call the same two implementations directly, because a
registered Python operator adds its dispatch to every forward and backward (docs/design.md, "Operators"), a few
percent of a short sequence. `_traced` picks the operators whenever the call is being traced (torch.compile,
torch.export, FakeTensor or meta inputs); tests/test_rnn_compile.py proves the two routes equal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable
from torch.utils._python_dispatch import _get_current_dispatch_mode

from scratchlab.rnn import fast

Tensor = torch.Tensor


def _traced(x: Tensor) -> bool:
    """True when this call is traced rather than run: Dynamo (torch.compile, strict or non-strict torch.export),
    a FakeTensor or other tensor subclass, a dispatch mode (make_fx), the meta device. There the operators run,
    whose fake implementations give the shapes; the kernels read data pointers and could not."""
    return (torch.compiler.is_compiling() or type(x) is not torch.Tensor or x.is_meta
            or _get_current_dispatch_mode() is not None)


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _returns(grads: Sequence[Tensor | None], like: Sequence[Tensor | None]) -> tuple[Tensor, ...]:
    """An operator's tensors from a list with Nones (empty tensors in their place), contiguous as the fake
    implementations say, and no two the same tensor (an operator's outputs must not alias each other: a bias
    gradient serves b_ih and b_hh)."""
    out, seen = [], set()
    for g, t in zip(grads, like, strict=True):
        if g is None:
            g = (t if t is not None else torch.empty(0)).new_empty(0)
        elif id(g) in seen:
            g = g.clone(memory_format=torch.contiguous_format)
        else:
            g = g.contiguous()
        seen.add(id(g))
        out.append(g)
    return tuple(out)


def _fake_grads(like: Sequence[Tensor | None], need: Sequence[bool]) -> tuple[Tensor, ...]:
    """The backward operators' fake outputs: a tensor shaped like each input whose gradient is asked, else empty."""
    return tuple((t.new_empty(t.shape) if n else t.new_empty(0)) if t is not None else torch.empty(0)
                 for t, n in zip(like, need, strict=True))


def _optional(grads: Sequence[Tensor], need: Sequence[bool]) -> list[Tensor | None]:
    return [g if n else None for g, n in zip(grads, need, strict=True)]


# --------------------------------------------------------------------------------------------------------- LSTM
@torch.library.custom_op("scratchlab::lstm", mutates_args=())
def lstm_op(x: Tensor, batch_sizes: Tensor | None, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
            b_ih: Tensor | None, b_hh: Tensor | None, reverse: bool, keep: bool
            ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return tuple(fast.lstm_forward(x.contiguous(), batch_sizes, h0.contiguous(), c0.contiguous(), w_ih, w_hh, b_ih,
                                   b_hh, reverse, keep))


@lstm_op.register_fake
def _(x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, keep):
    N, H = x.shape[0], h0.shape[1]  # noqa: N806

    def saved(width):                                        # what keep=False leaves empty
        return x.new_empty(N, width) if keep else x.new_empty(0)
    return x.new_empty(N, H), h0.new_empty(h0.shape), c0.new_empty(c0.shape), saved(4 * H), saved(H), saved(H)


@torch.library.custom_op("scratchlab::lstm_backward", mutates_args=())
def lstm_backward_op(gout: Tensor | None, dh_n: Tensor | None, dc_n: Tensor | None, x: Tensor,
                     batch_sizes: Tensor | None, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, out: Tensor,
                     G: Tensor, C: Tensor, TC: Tensor, reverse: bool, need: Sequence[bool]  # noqa: N803
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    grads = fast.lstm_backward(gout, dh_n, dc_n, x.contiguous(), batch_sizes, h0.contiguous(), c0.contiguous(), w_ih,
                               w_hh, out, G, C, TC, reverse, need)
    return _returns(grads, [x, h0, c0, w_ih, w_hh, w_hh[:, 0], w_hh[:, 0]])


@lstm_backward_op.register_fake
def _(gout, dh_n, dc_n, x, batch_sizes, h0, c0, w_ih, w_hh, out, G, C, TC, reverse, need):  # noqa: N803
    return _fake_grads([x, h0, c0, w_ih, w_hh, w_hh[:, 0], w_hh[:, 0]], need)


def _lstm_grads(ctx, gout, dh_n, dc_n, backward):
    """The gradients of (x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh) from `backward` (the operator or fast's)."""
    x, batch_sizes, h0, c0, w_ih, w_hh, out, G, C, TC = ctx.saved_tensors  # noqa: N806
    n = ctx.needs_input_grad
    need = [n[0], n[2], n[3], n[4], n[5], n[6], n[7]]
    g = _optional(backward(gout, dh_n, dc_n, x, batch_sizes, h0, c0, w_ih, w_hh, out, G, C, TC, ctx.reverse, need),
                  need)
    return g[0], None, *g[1:]


def _lstm_setup(ctx, inputs, output):
    x, batch_sizes, h0, c0, w_ih, w_hh, _, _, reverse, _ = inputs
    out, _, _, G, C, TC = output  # noqa: N806
    ctx.mark_non_differentiable(G, C, TC)
    ctx.set_materialize_grads(False)
    ctx.reverse = reverse
    ctx.save_for_backward(x, batch_sizes, h0, c0, w_ih, w_hh, out, G, C, TC)


def _lstm_op_backward(ctx, gout, dh_n, dc_n, *_):
    return *_lstm_grads(ctx, gout, dh_n, dc_n, lstm_backward_op), None, None


lstm_op.register_autograd(_lstm_op_backward, setup_context=_lstm_setup)


class _LSTM(torch.autograd.Function):
    """Eager: the operator's forward and backward without its dispatch."""

    @staticmethod
    def forward(ctx, x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
        out, h_n, c_n, G, C, TC = fast.lstm_forward(x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)  # noqa: N806
        ctx.set_materialize_grads(False)
        ctx.reverse = reverse
        ctx.save_for_backward(x, batch_sizes, h0, c0, w_ih, w_hh, out, G, C, TC)
        return out, h_n, c_n

    @staticmethod
    @once_differentiable                                     # double backward is not supported
    def backward(ctx, gout, dh_n, dc_n):
        return *_lstm_grads(ctx, gout, dh_n, dc_n, fast.lstm_backward), None


def lstm_direction(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
                   b_hh: Tensor | None = None, reverse: bool = False, batch_sizes: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer-direction: x (N, I) (or a padded (T, B, I)), h0/c0 (B, H) -> outputs (N, H) (or (T, B, H)),
    h_n, c_n (B, H)."""
    x2 = x.reshape(-1, x.shape[-1])
    grad = _needs_grad(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    if _traced(x):
        out, h_n, c_n = lstm_op(x2, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, grad)[:3]
    elif grad:
        out, h_n, c_n = _LSTM.apply(x2.contiguous(), batch_sizes, h0.contiguous(), c0.contiguous(), w_ih, w_hh, b_ih,
                                    b_hh, reverse)
    else:
        out, h_n, c_n = fast.lstm_forward(x2.contiguous(), batch_sizes, h0.contiguous(), c0.contiguous(), w_ih, w_hh,
                                          b_ih, b_hh, reverse, keep=False)[:3]
    return out.view(*x.shape[:-1], out.shape[-1]), h_n, c_n


# --------------------------------------------------------------------------------------------------------- GRU
@torch.library.custom_op("scratchlab::gru", mutates_args=())
def gru_op(x: Tensor, batch_sizes: Tensor | None, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
           b_hh: Tensor | None, reverse: bool, keep: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return tuple(fast.gru_forward(x.contiguous(), batch_sizes, h0.contiguous(), w_ih, w_hh, b_ih, b_hh, reverse, keep))


@gru_op.register_fake
def _(x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse, keep):
    N, H = x.shape[0], h0.shape[1]  # noqa: N806
    return (x.new_empty(N, H), h0.new_empty(h0.shape), x.new_empty(N, 3 * H) if keep else x.new_empty(0),
            x.new_empty(N, H) if keep else x.new_empty(0))


@torch.library.custom_op("scratchlab::gru_backward", mutates_args=())
def gru_backward_op(gout: Tensor | None, dh_n: Tensor | None, x: Tensor, batch_sizes: Tensor | None, h0: Tensor,
                    w_ih: Tensor, w_hh: Tensor, out: Tensor, G: Tensor, HN: Tensor, reverse: bool,  # noqa: N803
                    need: Sequence[bool]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    grads = fast.gru_backward(gout, dh_n, x.contiguous(), batch_sizes, h0.contiguous(), w_ih, w_hh, out, G, HN,
                              reverse, need)
    return _returns(grads, [x, h0, w_ih, w_hh, w_hh[:, 0], w_hh[:, 0]])


@gru_backward_op.register_fake
def _(gout, dh_n, x, batch_sizes, h0, w_ih, w_hh, out, G, HN, reverse, need):  # noqa: N803
    return _fake_grads([x, h0, w_ih, w_hh, w_hh[:, 0], w_hh[:, 0]], need)


def _gru_grads(ctx, gout, dh_n, backward):
    """The gradients of (x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh)."""
    x, batch_sizes, h0, w_ih, w_hh, out, G, HN = ctx.saved_tensors  # noqa: N806
    n = ctx.needs_input_grad
    need = [n[0], n[2], n[3], n[4], n[5], n[6]]
    g = _optional(backward(gout, dh_n, x, batch_sizes, h0, w_ih, w_hh, out, G, HN, ctx.reverse, need), need)
    return g[0], None, *g[1:]


def _gru_setup(ctx, inputs, output):
    x, batch_sizes, h0, w_ih, w_hh, _, _, reverse, _ = inputs
    out, _, G, HN = output  # noqa: N806
    ctx.mark_non_differentiable(G, HN)
    ctx.set_materialize_grads(False)
    ctx.reverse = reverse
    ctx.save_for_backward(x, batch_sizes, h0, w_ih, w_hh, out, G, HN)


def _gru_op_backward(ctx, gout, dh_n, *_):
    return *_gru_grads(ctx, gout, dh_n, gru_backward_op), None, None


gru_op.register_autograd(_gru_op_backward, setup_context=_gru_setup)


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse):
        out, h_n, G, HN = fast.gru_forward(x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse)  # noqa: N806
        ctx.set_materialize_grads(False)
        ctx.reverse = reverse
        ctx.save_for_backward(x, batch_sizes, h0, w_ih, w_hh, out, G, HN)
        return out, h_n

    @staticmethod
    @once_differentiable                                     # double backward is not supported
    def backward(ctx, gout, dh_n):
        return *_gru_grads(ctx, gout, dh_n, fast.gru_backward), None


def gru_direction(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
                  b_hh: Tensor | None = None, reverse: bool = False, batch_sizes: Tensor | None = None
                  ) -> tuple[Tensor, Tensor]:
    """One GRU layer-direction: x (N, I) (or a padded (T, B, I)), h0 (B, H) -> outputs (N, H) (or (T, B, H)),
    h_n (B, H)."""
    x2 = x.reshape(-1, x.shape[-1])
    grad = _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh)
    if _traced(x):
        out, h_n = gru_op(x2, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse, grad)[:2]
    elif grad:
        out, h_n = _GRU.apply(x2.contiguous(), batch_sizes, h0.contiguous(), w_ih, w_hh, b_ih, b_hh, reverse)
    else:
        out, h_n = fast.gru_forward(x2.contiguous(), batch_sizes, h0.contiguous(), w_ih, w_hh, b_ih, b_hh, reverse,
                                    keep=False)[:2]
    return out.view(*x.shape[:-1], out.shape[-1]), h_n


# -------------------------------------------------------------------------------------------- Elman RNN (tanh, relu)
@torch.library.custom_op("scratchlab::rnn", mutates_args=())
def rnn_op(x: Tensor, batch_sizes: Tensor | None, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
           b_hh: Tensor | None, relu: bool, reverse: bool) -> tuple[Tensor, Tensor]:
    return tuple(fast.rnn_forward(x.contiguous(), batch_sizes, h0.contiguous(), w_ih, w_hh, b_ih, b_hh, relu, reverse))


@rnn_op.register_fake
def _(x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse):
    return x.new_empty(x.shape[0], h0.shape[1]), h0.new_empty(h0.shape)


@torch.library.custom_op("scratchlab::rnn_backward", mutates_args=())
def rnn_backward_op(gout: Tensor | None, dh_n: Tensor | None, x: Tensor, batch_sizes: Tensor | None, h0: Tensor,
                    w_ih: Tensor, w_hh: Tensor, out: Tensor, relu: bool, reverse: bool, need: Sequence[bool]
                    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    grads = fast.rnn_backward(gout, dh_n, x.contiguous(), batch_sizes, h0.contiguous(), w_ih, w_hh, out, relu, reverse,
                              need)
    return _returns(grads, [x, h0, w_ih, w_hh, w_hh[:, 0], w_hh[:, 0]])


@rnn_backward_op.register_fake
def _(gout, dh_n, x, batch_sizes, h0, w_ih, w_hh, out, relu, reverse, need):
    return _fake_grads([x, h0, w_ih, w_hh, w_hh[:, 0], w_hh[:, 0]], need)


def _rnn_grads(ctx, gout, dh_n, backward):
    """The gradients of (x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh)."""
    x, batch_sizes, h0, w_ih, w_hh, out = ctx.saved_tensors
    n = ctx.needs_input_grad
    need = [n[0], n[2], n[3], n[4], n[5], n[6]]
    g = _optional(backward(gout, dh_n, x, batch_sizes, h0, w_ih, w_hh, out, ctx.relu, ctx.reverse, need), need)
    return g[0], None, *g[1:]


def _rnn_setup(ctx, inputs, output):
    x, batch_sizes, h0, w_ih, w_hh, _, _, relu, reverse = inputs
    ctx.set_materialize_grads(False)
    ctx.relu, ctx.reverse = relu, reverse
    ctx.save_for_backward(x, batch_sizes, h0, w_ih, w_hh, output[0])


def _rnn_op_backward(ctx, gout, dh_n):
    return *_rnn_grads(ctx, gout, dh_n, rnn_backward_op), None, None


rnn_op.register_autograd(_rnn_op_backward, setup_context=_rnn_setup)


class _RNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse):
        out, h_n = fast.rnn_forward(x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse)
        ctx.set_materialize_grads(False)
        ctx.relu, ctx.reverse = relu, reverse
        ctx.save_for_backward(x, batch_sizes, h0, w_ih, w_hh, out)
        return out, h_n

    @staticmethod
    @once_differentiable                                     # double backward is not supported
    def backward(ctx, gout, dh_n):
        return *_rnn_grads(ctx, gout, dh_n, fast.rnn_backward), None, None


def rnn_direction(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
                  b_hh: Tensor | None = None, nonlinearity: str = "tanh", reverse: bool = False,
                  batch_sizes: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One Elman RNN layer-direction, h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu:
    x (N, I) (or a padded (T, B, I)), h0 (B, H) -> outputs (N, H) (or (T, B, H)), h_n (B, H)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    relu = nonlinearity == "relu"
    x2 = x.reshape(-1, x.shape[-1])
    if _traced(x):
        out, h_n = rnn_op(x2, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse)
    elif _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh):
        out, h_n = _RNN.apply(x2.contiguous(), batch_sizes, h0.contiguous(), w_ih, w_hh, b_ih, b_hh, relu, reverse)
    else:
        out, h_n = fast.rnn_forward(x2.contiguous(), batch_sizes, h0.contiguous(), w_ih, w_hh, b_ih, b_hh, relu,
                                    reverse)
    return out.view(*x.shape[:-1], out.shape[-1]), h_n


# ------------------------------------------------------------------------------ the layers' per-direction seam
# layers.DIRECTIONS' signature: fn(x (N, I), batch_sizes, state, weights, reverse, nonlinearity)
#     -> (outputs (N, H), final state)
def _lstm_seam(x, batch_sizes, state, weights, reverse, nonlinearity):
    out, h, c = lstm_direction(x, state[0], state[1], *weights[:4], reverse=reverse, batch_sizes=batch_sizes)
    return out, (h, c)


def _gru_seam(x, batch_sizes, state, weights, reverse, nonlinearity):
    out, h = gru_direction(x, state[0], *weights[:4], reverse=reverse, batch_sizes=batch_sizes)
    return out, (h,)


def _rnn_seam(x, batch_sizes, state, weights, reverse, nonlinearity):
    out, h = rnn_direction(x, state[0], *weights[:4], nonlinearity=nonlinearity, reverse=reverse,
                           batch_sizes=batch_sizes)
    return out, (h,)


DIRECTIONS = {"RNN": _rnn_seam, "LSTM": _lstm_seam, "GRU": _gru_seam}


def lstm_bf16_seam(x, batch_sizes, state, weights, reverse, nonlinearity):
    """The seam for bf16 inference (layers' `_bf16_inference` says when): no graph, no backward."""
    out, h, c = fast.lstm_forward_bf16(x.contiguous(), batch_sizes, state[0], state[1], *weights[:4], reverse)
    return out, (h, c)


traced, needs_grad = _traced, _needs_grad  # for the layers' choice of the bf16 kernel
