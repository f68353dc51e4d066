"""Fast execution of one recurrent layer-direction over a whole sequence, with a hand-written backward through time.

The cell math is that of `rnn/functional.py` (the readable path; tests prove the two equal, and equal to
torch.nn's layers); what differs is how the work is laid out for the machine (docs/design.md, speed plan). Each
layer-direction is one `torch.autograd.Function` that saves the activated gates instead of a per-step graph, and
its steps run on one of three kernels, picked per call:

* the packed kernel (`rnn/csrc/`, compiled by `_cext`; float32 on a CPU with AVX-512, any hidden size, where the
  extension builds): the weights packed once into register-tile panels (`pack16` is the layout's definition),
  each step one tile product `b + x_t W_ih^T + h_{t-1} W_hh^T` with the cell math on the tile; the backward the
  same with `dG_{t+1} W_hh`, the bias and (blocks up to `_DW_IN_LOOP_BYTES`) weight gradients summed in the loop;
* for the LSTM, its library kernel (`rnn/csrc/lstm.cpp`; float64, CPUs without AVX-512): per step one oneDNN or
  at::mm product and one fused pass over the gates;
* the Python loops here (CUDA, no compiler, or SCRATCHLAB_NO_CEXT=1): the input projection of every step as one
  GEMM with the biases folded in, `G = X W_ih^T + b`; per step one GEMM (`_gemm.gemms`: oneDNN on CPU, cuBLAS on
  CUDA) added into the step's slice of G and the activations in place; the backward per step one GEMM,
  `dh_{t-1} = dG_t W_hh + dL/dh_{t-1}`, and pointwise work into a preallocated dG (T, B, G*H).

Where the weight gradients are not summed in the loop, they are one GEMM each over all steps after it:
`dX = dG W_ih`, `dW_ih = dG^T X`, `dW_hh = dG^T H_prev`, `db = sum dG`.

Shapes: x (T, B, I) time-major; h0, c0 (B, H); weights and biases in torch.nn's layout and gate order
(`weight_ih_l0` etc.; biases may be None). `reverse=True` runs the steps from T-1 down to 0 (the second direction
of a bidirectional layer) with outputs aligned to the inputs. States live in one (T+1, B, H) buffer `Hs`: a
forward step reads slot t and writes slot t+1, a reverse step reads slot t+1 and writes slot t. Everything is
allocated from the input (`x.new_empty`), so the same code runs on CUDA (with cuBLAS products).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from scratchlab.rnn import _cext
from scratchlab.rnn._gemm import gemms, use_onednn

Tensor = torch.Tensor


def _slots(T: int, reverse: bool) -> list[tuple[int, int, int]]:
    """(step t, slot read, slot written) in the order the steps run."""
    return [(t, t + 1, t) for t in range(T - 1, -1, -1)] if reverse else [(t, t, t + 1) for t in range(T)]


def _out_prev(Hs: Tensor, reverse: bool) -> tuple[Tensor, Tensor]:
    """Views of the state buffer: every step's output h_t and the state it read, each (T, B, H)."""
    return (Hs[:-1], Hs[1:]) if reverse else (Hs[1:], Hs[:-1])


def _states(x: Tensor, h0: Tensor, reverse: bool) -> Tensor:
    Hs = x.new_empty(x.shape[0] + 1, *h0.shape)
    Hs[-1 if reverse else 0] = h0
    return Hs


def _proj(linear, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """All steps' input projection as one GEMM: (T, B, I) -> (T, B, G*H)."""
    return linear(x.reshape(-1, x.shape[-1]), w, b).view(x.shape[0], x.shape[1], w.shape[0])


def _grads(linear, dGx: Tensor, dGh: Tensor, x: Tensor, h_prev: Tensor, w_ih: Tensor, need,
           db: Tensor | None = None) -> list:
    """Gradients of all steps at once: dX = dGx W_ih, dW_ih = dGx^T X, dW_hh = dGh^T H_prev, db_ih, db_hh.

    dGx (T, B, G*H) is the gradient of the input-side pre-activations, dGh that of the hidden-side ones (the
    same tensor except for GRU's n gate); need says which of (x, w_ih, w_hh, b_ih, b_hh) want a gradient. db, when
    given, is the bias gradient already summed (dGh is dGx then).
    """
    dGx2, dGh2 = dGx.reshape(-1, dGx.shape[-1]), dGh.reshape(-1, dGh.shape[-1])

    def wgrad(dG2, a):                                       # dG^T A (G*H, K), as (A^T dG)^T: oneDNN's faster form
        return linear(a.reshape(-1, a.shape[-1]).t(), dG2.t()).t()
    if db is None:
        db = dGx2.sum(0) if need[3] or (need[4] and dGh is dGx) else None
    db_ih = db
    return [linear(dGx2, w_ih.t().contiguous()).view(x.shape) if need[0] else None,
            wgrad(dGx2, x) if need[1] else None,
            wgrad(dGh2, h_prev) if need[2] else None,
            db_ih if need[3] else None,
            (db_ih if dGh is dGx else dGh2.sum(0)) if need[4] else None]


def _constants(x: Tensor) -> tuple[Tensor, Tensor]:
    """1 and 2 as 0-dim tensors: an op with a Python number wraps it into a tensor each call (2.3 us against
    1.2 us per op on 64x128 values), which adds up over thousands of small per-step ops."""
    return x.new_ones(()), x.new_full((), 2.0)


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# --------------------------------------------------------------------------------------------------------- LSTM
# Inside this module the gates are in the order (o, i, f, g), not torch's (i, f, g, o): the three sigmoid gates are
# then one slice and the three gates whose gradient is scaled by dc are another. tanh is computed as
# tanh(a) = 2 sigmoid(2 a) - 1: torch's CPU tanh goes through MKL's vector math, which runs a slow generic path on
# AMD processors (18 us for 64x128 values, against 2.5 us for sigmoid); the g rows of the weights are scaled by 2
# once per call, so all four gates take a single sigmoid_.
_TO_OIFG, _FROM_OIFG = [3, 0, 1, 2], [1, 2, 3, 0]
_G2 = [1.0, 1.0, 1.0, 2.0]                                   # per-gate scales in (o, i, f, g) order: g doubled


def _perm(w: Tensor | None, order: list[int], g_scale: float = 1.0, dim: int = 0) -> Tensor | None:
    """Reorder the four gate blocks of w along dim (a copy), multiplying torch's g block by g_scale."""
    if w is None:
        return None
    blocks = list(w.chunk(4, dim))
    if g_scale != 1.0:
        blocks[2] = blocks[2] * g_scale                      # torch's g is its third block
    return torch.cat([blocks[k] for k in order], dim)


def _gate_views(G: Tensor, H: int) -> tuple[list[Tensor], ...]:
    """Per-step views (B, H) of the four gate blocks of G (T, B, 4H), in (o, i, f, g) order."""
    return tuple(G[..., k * H:(k + 1) * H].unbind(0) for k in range(4))


def _compiled(x: Tensor):
    """The compiled step loops (csrc/lstm.cpp via _cext) where they apply to x (CPU, float32/64), else None."""
    return _cext.ops() if x.is_cpu and x.dtype in (torch.float32, torch.float64) else None


def pack16(w: Tensor) -> Tensor:
    """w (N, K) in the layout the compiled packed kernel reads: its rows padded with zeros to a multiple of 16, cut
    into panels of 16 rows, each transposed, (ceil(N/16), K, 16), so that one k of 16 consecutive output columns is
    one 64-byte vector. The extension's `pack_gates` builds it in one pass, with the gate reordering, scaling and
    per-gate padding; this is its readable definition."""
    n, k = w.shape
    w = torch.cat([w, w.new_zeros(-n % 16, k)]) if n % 16 else w
    return w.reshape(-1, 16, k).transpose(1, 2).contiguous()


def _step_kernel(ops, x: Tensor, H: int) -> int:
    """The compiled loops' step products: 2 = the packed AVX-512 kernel (float32, a build with AVX-512), else
    1 = oneDNN's matmul or 0 = at::mm, as csrc/lstm.cpp's `Kernel`."""
    if x.dtype == torch.float32 and ops.packed_available():
        return 2
    return int(use_onednn(x))


def _lstm_run(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, keep=True):
    """Forward of all steps, weights in torch's layout.

    Returns G (T, B, 4H) holding the activated gates in (o, i, f, g) order, Hs, Cs (T+1, B, H), TC = tanh(c) in
    Cs's slots, and c_T. With keep=False (no backward follows) G, Cs and TC may be left unfinished or smaller.
    """
    B, H = h0.shape
    Hs = _states(x, h0, reverse)
    ops = _compiled(x)
    if ops is not None and _step_kernel(ops, x, H) == 2:  # one register tile per step: b + x_t W_ih^T + h W_hh^T
        T = x.shape[0]
        wx, wh = ops.pack_gates(w_ih, _TO_OIFG, _G2, False), ops.pack_gates(w_hh, _TO_OIFG, _G2, False)
        b = None if b_ih is None else ops.pack_gates((b_ih + b_hh).view(-1, 1), _TO_OIFG, _G2, False).view(-1)
        if keep:
            G, Cs, TC = x.new_empty(T, B, 4 * H), _states(x, c0, reverse), x.new_empty(T + 1, B, H)
        else:                                                # c in two alternating slots, no gates or tanh(c) kept
            G, Cs, TC = x.new_empty(0), x.new_empty(2, B, H), x.new_empty(0)
            Cs[0] = c0
        ops.lstm_forward_packed(x, wx, b, wh, G, Hs, Cs, TC, reverse, keep)
        return G, Hs, Cs, TC, Cs[(0 if reverse else T) if keep else T % 2]
    linear, pack = gemms(x)
    w_ih, w_hh = _perm(w_ih, _TO_OIFG, 2.0), _perm(w_hh, _TO_OIFG, 2.0)
    b = None if b_ih is None else _perm(b_ih + b_hh, _TO_OIFG, 2.0)
    G = _proj(linear, x, w_ih, b)                            # x_t W_ih^T + b_ih + b_hh for every t, (T, B, 4H)
    Cs, TC = _states(x, c0, reverse), x.new_empty(x.shape[0] + 1, B, H)
    last = 0 if reverse else -1
    if ops is not None:                                      # the same steps, each one product + one fused loop
        ops.lstm_forward(G, Hs, Cs, TC, pack(w_hh, B), reverse, use_onednn(x), keep)
        return G, Hs, Cs, TC, Cs[last]
    w_hh = pack(w_hh, B)
    one, two = _constants(x)
    Hl, Cl, TCl, Gl = Hs.unbind(0), Cs.unbind(0), TC.unbind(0), G.unbind(0)
    O, I, F, Gg = _gate_views(G, H)
    for t, rd, wr in _slots(x.shape[0], reverse):
        Gl[t].add_(linear(Hl[rd], w_hh)).sigmoid_()          # (o, i, f, sigmoid(2 pre_g)) of step t
        Gg[t].mul_(two).sub_(one)                            # g = tanh(pre_g) = 2 sigmoid(2 pre_g) - 1
        torch.mul(F[t], Cl[rd], out=Cl[wr])                  # c_t = f c_{t-1} + i g
        Cl[wr].addcmul_(I[t], Gg[t])
        torch.mul(Cl[wr], two, out=TCl[wr]).sigmoid_().mul_(two).sub_(one)   # h_t = o tanh(c_t)
        torch.mul(TCl[wr], O[t], out=Hl[wr])
    return G, Hs, Cs, TC, Cs[last]


def _lstm_local(dG, A, G, Cs, TC, t0, t1, reverse):
    """Local derivatives of steps t0..t1-1 at once, written into dG[t0:t1] (o, i, f, g order) and A[:t1-t0]:
    dG <- (tanh(c_t) o', g i', c_{t-1} f', i g'), A <- o (1 - tanh(c_t)^2); s' = s (1 - s), g' = 1 - g^2.
    They depend on the forward only, so a block of steps takes a few large ops instead of a dozen small ones per
    step; the step loop then scales them by dh and dc."""
    H = G.shape[-1] // 4
    wr = 0 if reverse else 1                                 # slot offset of c_t; c_{t-1} is at 1 - wr
    S, P, a = G[t0:t1], dG[t0:t1], A[:t1 - t0]
    tc, c_prev = TC[t0 + wr:t1 + wr], Cs[t0 + 1 - wr:t1 + 1 - wr]
    one = G.new_ones(1)
    torch.addcmul(S[..., :3 * H], S[..., :3 * H], S[..., :3 * H], value=-1, out=P[..., :3 * H])
    torch.addcmul(one, S[..., 3 * H:], S[..., 3 * H:], value=-1, out=P[..., 3 * H:])
    P[..., :H].mul_(tc)
    P[..., H:2 * H].mul_(S[..., 3 * H:])
    P[..., 2 * H:3 * H].mul_(c_prev)
    P[..., 3 * H:].mul_(S[..., H:2 * H])
    torch.addcmul(one, tc, tc, value=-1, out=a).mul_(S[..., :H])


# The packed backward accumulates the weight gradients step by step, dW^T += [x_t, h_{t-1}]^T dG_t while dG_t is in
# cache, when H is a multiple of 16 (its tiles read dG_t in whole 64-column panels) and that (I+H, G H) float32 block
# (G gates) is at most this size (`_dw_block`); larger blocks leave cache on every step, and one oneDNN GEMM over all
# steps after the loop is faster. Measured (fwd+bwd, batch 64, 1 thread; in-loop vs GEMM):
# 0.5 MiB (I=H=128) 91 vs 99 ms, 0.94 MiB 86 vs 93, 2 MiB (I=H=256) 86 vs 88, 6 MiB (I=256, H=512) 296 vs 272.
# The GRU and the RNN follow the same rule: RNN 0.12 MiB 25.8 vs 32.8, 1.5 MiB 64.4 vs 66.5; GRU 0.38 MiB 69.2 vs 79.4,
# 1.5 MiB 65.1 vs 69.0, 4.5 MiB 202.0 vs 204.7 (block = (I+H) G H floats for G gates).
_DW_IN_LOOP_BYTES = 2 << 20


def _gout_for_loops(gout: Tensor, dh_n: Tensor | None, reverse: bool) -> Tensor:
    """The compiled backward loops' output gradient: contiguous (T, B, H) with dL/dh_n added to the last step's
    slice (a copy when it has to be changed, so the caller's gradient stays as it was)."""
    if dh_n is None:
        return gout.contiguous()
    gout = gout.clone(memory_format=torch.contiguous_format)
    gout[0 if reverse else gout.shape[0] - 1] += dh_n
    return gout


def _dw_block(x: Tensor | None, Hs: Tensor, H: int, gates: int) -> Tensor | None:
    """A zeroed float64 dW^T (I+H, gates H) for the packed loops to sum the weight gradients into step by step, or
    None (the GEMM after the loop) when x is not given, H is not a multiple of 16 or the block is over
    _DW_IN_LOOP_BYTES."""
    if x is None or H % 16 or (x.shape[2] + H) * gates * H * 4 > _DW_IN_LOOP_BYTES:
        return None
    return Hs.new_zeros(x.shape[2] + H, gates * H, dtype=torch.float64)


def _lstm_bptt(gout, dh_n, dc_n, G, Hs, Cs, TC, w_hh, reverse, need_db=False, x=None):
    """Backward through time, w_hh in torch's layout. Returns dG (T,B,4H) in (o,i,f,g) order, dh0, dc0, the bias
    gradient summed over all steps (4H,) when the compiled loops made it on the way (asked by need_db), else None,
    and dW^T = [X, H_prev]^T dG, (I+H, 4H), when the packed kernel accumulated it step by step (asked by passing
    x), else None.

    Per step: dh_t = dL/dh_t (output) + dG_{t+1} W_hh; dc_t = dc_{t+1} f_{t+1} + dh_t A_t;
    dG_t = local_t * (dh_t, dc_t, dc_t, dc_t)."""
    linear, pack = gemms(Hs)
    T, B, H = gout.shape
    ops = _compiled(Hs)
    if ops is not None:                                      # the same steps, each one product + one fused loop
        kernel = _step_kernel(ops, Hs, H)
        # (H, 4H) with a w^T = dG_t W_hh
        w_hh_t = (ops.pack_gates(w_hh, _TO_OIFG, [1.0] * 4, True) if kernel == 2
                  else pack(_perm(w_hh, _TO_OIFG).t(), B))
        gout = _gout_for_loops(gout, dh_n, reverse)
        dc = dc_n.clone(memory_format=torch.contiguous_format) if dc_n is not None else Hs.new_zeros(B, H)
        dG, db = Hs.new_empty(T, B, 4 * H), Hs.new_zeros(4 * H if need_db else 0, dtype=torch.float64)
        dwt = _dw_block(x, Hs, H, 4) if kernel == 2 else None
        dh0 = ops.lstm_backward(gout, dc, G, Cs, TC, w_hh_t, dG, db, reverse, kernel, x, Hs, dwt)
        return dG, dh0, dc, (db.to(Hs.dtype) if need_db else None), (None if dwt is None else dwt.to(Hs.dtype))
    w_hh_t = pack(_perm(w_hh, _TO_OIFG).t(), B)              # (H, 4H): a w^T = dG_t W_hh
    block = max(1, min(T, (1 << 19) // (B * 4 * H)))         # steps per block of local derivatives (~2 MB)
    dG, A = Hs.new_empty(T, B, 4 * H), Hs.new_empty(block, B, H)
    dGo, dGifg = dG[..., :H].unbind(0), dG[..., H:].view(T, B, 3, H).unbind(0)
    F = _gate_views(G, H)[2]
    dc = dc_n.clone() if dc_n is not None else Hs.new_zeros(B, H)
    order = [t for t, _, _ in _slots(T, reverse)][::-1]      # steps in the order the backward takes them
    t_next = None
    for k, t in enumerate(order):
        if k % block == 0:                                   # a new block: its steps' local derivatives
            ts = order[k:k + block]
            t0 = min(ts)
            _lstm_local(dG, A, G, Cs, TC, t0, max(ts) + 1, reverse)
        if t_next is None:                                   # dh_t: from the output and from step t+1
            dh = gout[t] + dh_n if dh_n is not None else gout[t]
        else:
            dh = linear(dG[t_next], w_hh_t).add_(gout[t])
        dc.addcmul_(A[t - t0], dh)
        dGo[t].mul_(dh)
        dGifg[t].mul_(dc.unsqueeze(1))
        dc.mul_(F[t])                                        # dc_{t-1} through the cell path
        t_next = t
    return dG, linear(dG[t_next], w_hh_t), dc, None, None


class _LSTMSeq(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
        G, Hs, Cs, TC, c_n = _lstm_run(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)
        ctx.reverse = reverse
        ctx.save_for_backward(x, w_ih, w_hh, G, Hs, Cs, TC)
        return _out_prev(Hs, reverse)[0], Hs[0 if reverse else -1].clone(), c_n.clone()

    @staticmethod
    @once_differentiable                                     # double backward is not supported
    def backward(ctx, gout, dh_n, dc_n):
        x, w_ih, w_hh, G, Hs, Cs, TC = ctx.saved_tensors
        gout = Hs.new_zeros(Hs.shape[0] - 1, *Hs.shape[1:]) if gout is None else gout
        n = ctx.needs_input_grad
        dG, dh0, dc0, db, dwt = _lstm_bptt(gout, dh_n, dc_n, G, Hs, Cs, TC, w_hh, ctx.reverse, need_db=n[5] or n[6],
                                           x=x if n[3] or n[4] else None)
        need = n[0:1] + n[3:7]
        if dwt is not None:                                  # the weight gradients came with the steps
            need = (n[0], False, False, n[5], n[6])
        dx, *dw = _grads(gemms(x)[0], dG, dG, x, _out_prev(Hs, ctx.reverse)[1], _perm(w_ih, _TO_OIFG), need, db)
        if dwt is not None:
            I = x.shape[2]  # noqa: N806
            dw[0:2] = [dwt[:I].t() if n[3] else None, dwt[I:].t() if n[4] else None]
        return (dx, dh0, dc0, *(_perm(v, _FROM_OIFG) for v in dw), None)


def lstm_direction(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
                   b_hh: Tensor | None = None, reverse: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer-direction: x (T, B, I), h0/c0 (B, H) -> outputs (T, B, H), h_T, c_T (B, H)."""
    if _needs_grad(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        return _LSTMSeq.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)
    _, Hs, _, _, c_n = _lstm_run(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, keep=False)
    return _out_prev(Hs, reverse)[0], Hs[0 if reverse else -1], c_n


# --------------------------------------------------------------------------------------------------------- GRU
# torch's variant: n = tanh(W_in x + b_in + r (W_hn h + b_hn)), so the hidden-side product (with b_hh) is kept per
# step (its n part is needed for dr) and the input side carries b_ih alone. Gate order (r, z, n) as torch's.
_RZN = ([0, 1, 2], [1.0, 1.0, 1.0])                         # pack_gates' order and scales for the GRU's weights


def _gru_run(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, keep=True):
    """Forward of all steps. Returns Gx (T, B, 3H) holding activated (r, z, n), HN (T, B, H) = W_hn h + b_hn of
    every step (what dr needs; keeping it alone rather than the whole hidden product saves 2H per step), Hs. With
    keep=False (no backward follows) Gx and HN may be left unfinished or empty."""
    B, H = h0.shape
    ops = _compiled(x)
    if ops is not None and _step_kernel(ops, x, H) == 2:     # one register tile per step: [r, z, n_x, n_h]
        T, Hs = x.shape[0], _states(x, h0, reverse)
        b = None
        if b_ih is not None:                                 # [b_ir + b_hr, b_iz + b_hz, b_in, b_hn]
            b4 = torch.cat([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:], b_hh[2 * H:]]).view(-1, 1)
            b = ops.pack_gates(b4, [0, 1, 2, 3], [1.0] * 4, False).view(-1)
        Gx, HN = (x.new_empty(T, B, 3 * H), x.new_empty(T, B, H)) if keep else (x.new_empty(0), x.new_empty(0))
        ops.gru_forward_packed(x, ops.pack_gates(w_ih, *_RZN, False), b, ops.pack_gates(w_hh, *_RZN, False), Gx, HN,
                               Hs, reverse, keep)
        return Gx, HN, Hs
    linear, pack = gemms(x)
    Gx = _proj(linear, x, w_ih, b_ih)                        # x_t W_ih^T + b_ih for every t
    w_hh = pack(w_hh, B)
    Hs, HN = _states(x, h0, reverse), x.new_empty(x.shape[0], B, H)
    one, two = _constants(x)
    Hl, Gl, RZ, HNl = Hs.unbind(0), Gx.unbind(0), Gx[..., :2 * H].unbind(0), HN.unbind(0)
    for t, rd, wr in _slots(x.shape[0], reverse):
        gh = linear(Hl[rd], w_hh, b_hh)                      # (B, 3H)
        RZ[t].add_(gh[:, :2 * H]).sigmoid_()                 # r, z
        r, z, n = Gl[t].view(B, 3, H).unbind(1)
        HNl[t].copy_(gh[:, 2 * H:])
        n.addcmul_(r, HNl[t]).mul_(two).sigmoid_().mul_(two).sub_(one)   # n = tanh(.) = 2 sigmoid(2 .) - 1
        torch.sub(Hl[rd], n, out=Hl[wr]).mul_(z).add_(n)     # h_t = n + z (h_{t-1} - n) = (1 - z) n + z h_{t-1}
    return Gx, HN, Hs


def _gru_bptt(gout, dh_n, Gx, HN, Hs, w_hh, reverse, need_db=False, x=None):
    """Backward through time. Returns dGx, dGh (T, B, 3H) (gradients of the input- and hidden-side
    pre-activations; they differ in the n block: dGh_n = dGx_n r), dh0, the bias gradients (db_ih, db_hh) when the
    packed loops summed them (asked by need_db), else None, and dW^T = [X^T dGx; H_prev^T dGh], (I+H, 3H), when they
    accumulated it step by step (asked by passing x; H a multiple of 16, see _DW_IN_LOOP_BYTES), else None."""
    T, B, H = gout.shape
    ops = _compiled(Hs)
    if ops is not None and _step_kernel(ops, Hs, H) == 2:
        gout = _gout_for_loops(gout, dh_n, reverse)
        dGx, dGh = Hs.new_empty(T, B, 3 * H), Hs.new_empty(T, B, 3 * H)
        dbx, dbh = (Hs.new_zeros(3 * H if need_db else 0, dtype=torch.float64) for _ in range(2))
        dwt = _dw_block(x, Hs, H, 3)
        dh0 = ops.gru_backward_packed(gout, Gx, HN, Hs, ops.pack_gates(w_hh, *_RZN, True), dGx, dGh, dbx, dbh,
                                      reverse, None if dwt is None else x, dwt)
        db = (dbx.to(Hs.dtype), dbh.to(Hs.dtype)) if need_db else None
        return dGx, dGh, dh0, db, (None if dwt is None else dwt.to(Hs.dtype))
    linear, pack = gemms(Hs)
    w_hh_t = pack(w_hh.t(), B)                               # (H, 3H)
    dGx, dGh = Hs.new_empty(T, B, 3 * H), Hs.new_empty(T, B, 3 * H)
    ones, tmp, sd = Hs.new_ones(B, H), Hs.new_empty(B, H), Hs.new_empty(B, 2 * H)
    sd_r, sd_z = sd[:, :H], sd[:, H:]
    Hl, Gl = Hs.unbind(0), Gx.unbind(0)
    t_next = z_next = dh = None
    for t, rd, _ in reversed(_slots(T, reverse)):
        r, z, n = Gl[t].view(B, 3, H).unbind(1)
        dGx_n = dGx[t, :, 2 * H:]
        dGh_r, dGh_z, dGh_n = dGh[t].view(B, 3, H).unbind(1)
        if t_next is None:                                   # dh_t: output, step t+1's products, and its z path
            dh = gout[t] + dh_n if dh_n is not None else gout[t]
        else:
            dh = linear(dGh[t_next], w_hh_t).add_(gout[t]).addcmul_(dh, z_next)
        torch.addcmul(ones, n, n, value=-1, out=tmp).mul_(dh)          # dn_pre = dh (1 - z)(1 - n^2)
        torch.addcmul(tmp, tmp, z, value=-1, out=dGx_n)
        torch.mul(dGx_n, r, out=dGh_n)                       # the hidden side sees r (W_hn h + b_hn)
        torch.addcmul(Gl[t][:, :2 * H], Gl[t][:, :2 * H], Gl[t][:, :2 * H], value=-1, out=sd)   # r', z'
        torch.sub(Hl[rd], n, out=dGh_z).mul_(dh).mul_(sd_z)  # dz_pre = dh (h_{t-1} - n) z'
        torch.mul(dGx_n, HN[t], out=dGh_r).mul_(sd_r)         # dr_pre = dn_pre (W_hn h + b_hn) r'
        t_next, z_next = t, z
    dGx[..., :2 * H] = dGh[..., :2 * H]                      # r and z see the same gradient on both sides
    return dGx, dGh, linear(dGh[t_next], w_hh_t).addcmul_(dh, z_next), None, None


class _GRUSeq(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, reverse):
        Gx, HN, Hs = _gru_run(x, h0, w_ih, w_hh, b_ih, b_hh, reverse)
        ctx.reverse = reverse
        ctx.save_for_backward(x, w_ih, w_hh, Gx, HN, Hs)
        return _out_prev(Hs, reverse)[0], Hs[0 if reverse else -1].clone()

    @staticmethod
    @once_differentiable                                     # double backward is not supported
    def backward(ctx, gout, dh_n):
        x, w_ih, w_hh, Gx, HN, Hs = ctx.saved_tensors
        gout = Hs.new_zeros(Hs.shape[0] - 1, *Hs.shape[1:]) if gout is None else gout
        n = ctx.needs_input_grad
        dGx, dGh, dh0, db, dwt = _gru_bptt(gout, dh_n, Gx, HN, Hs, w_hh, ctx.reverse, need_db=n[4] or n[5],
                                           x=x if n[2] or n[3] else None)
        need = (n[0], dwt is None and n[2], dwt is None and n[3], db is None and n[4], db is None and n[5])
        dx, *dw = _grads(gemms(x)[0], dGx, dGh, x, _out_prev(Hs, ctx.reverse)[1], w_ih, need)
        if dwt is not None:                                  # the weight gradients came with the steps
            I = x.shape[2]  # noqa: N806
            dw[0:2] = [dwt[:I].t() if n[2] else None, dwt[I:].t() if n[3] else None]
        if db is not None:
            dw[2:4] = [db[0] if n[4] else None, db[1] if n[5] else None]
        return (dx, dh0, *dw, None)


def gru_direction(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
                  b_hh: Tensor | None = None, reverse: bool = False) -> tuple[Tensor, Tensor]:
    """One GRU layer-direction: x (T, B, I), h0 (B, H) -> outputs (T, B, H), h_T (B, H)."""
    if _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh):
        return _GRUSeq.apply(x, h0, w_ih, w_hh, b_ih, b_hh, reverse)
    _, _, Hs = _gru_run(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, keep=False)
    return _out_prev(Hs, reverse)[0], Hs[0 if reverse else -1]


# -------------------------------------------------------------------------------------------- Elman RNN (tanh, relu)
_ONE_GATE = ([0], [1.0])                                     # pack_gates' order and scale for a single block


def _rnn_run(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse):
    """Forward of all steps, straight into the state buffer Hs (weights in torch's layout)."""
    Hs = _states(x, h0, reverse)
    ops = _compiled(x)
    if ops is not None and _step_kernel(ops, x, h0.shape[1]) == 2:   # per step one register-tile product + act
        b = None if b_ih is None else ops.pack_gates((b_ih + b_hh).view(-1, 1), *_ONE_GATE, False).view(-1)
        ops.rnn_forward_packed(x, ops.pack_gates(w_ih, *_ONE_GATE, False), b,
                               ops.pack_gates(w_hh, *_ONE_GATE, False), Hs, reverse, relu)
        return Hs
    s = 1.0 if relu else 2.0                                 # tanh(a) = 2 sigmoid(2a) - 1: weights scaled by 2
    linear, pack = gemms(x)
    b = None if b_ih is None else (b_ih + b_hh) * s
    P = _proj(linear, x, w_ih * s, b).unbind(0)              # x_t W_ih^T + b_ih + b_hh for every t
    w_hh = pack(w_hh * s, h0.shape[0])
    Hl = Hs.unbind(0)
    one, two = _constants(x)
    for t, rd, wr in _slots(x.shape[0], reverse):
        y = linear(Hl[rd], w_hh).add_(P[t])
        if relu:
            torch.clamp_min(y, 0, out=Hl[wr])
        else:
            torch.mul(y.sigmoid_(), two, out=Hl[wr]).sub_(one)
    return Hs


def _rnn_bptt(gout, dh_n, Hs, w_hh, relu, reverse, need_db=False, x=None):
    """Backward through time. Returns dP (T, B, H), the gradient of the pre-activations, dh0, the bias gradient
    (H,) when the packed loops summed it (asked by need_db), else None, and dW^T = [X, H_prev]^T dP, (I+H, H), when
    they accumulated it step by step (asked by passing x; H a multiple of 16, see _DW_IN_LOOP_BYTES), else None."""
    T, B, H = gout.shape
    ops = _compiled(Hs)
    if ops is not None and _step_kernel(ops, Hs, H) == 2:
        gout = _gout_for_loops(gout, dh_n, reverse)
        dP, db = Hs.new_empty(T, B, H), Hs.new_zeros(H if need_db else 0, dtype=torch.float64)
        dwt = _dw_block(x, Hs, H, 1)
        dh0 = ops.rnn_backward_packed(gout, Hs, ops.pack_gates(w_hh, *_ONE_GATE, True), dP, db, reverse, relu,
                                      None if dwt is None else x, dwt)
        return dP, dh0, (db.to(Hs.dtype) if need_db else None), (None if dwt is None else dwt.to(Hs.dtype))
    linear, pack = gemms(Hs)
    w_hh_t = pack(w_hh.t(), B)
    dP = Hs.new_empty(T, B, H)
    Hl = Hs.unbind(0)
    t_next = None
    for t, _, wr in reversed(_slots(T, reverse)):
        if t_next is None:
            dh = gout[t] + dh_n if dh_n is not None else gout[t]
        else:
            dh = linear(dP[t_next], w_hh_t).add_(gout[t])
        if relu:                                             # relu'(a) = [h > 0]
            torch.mul(dh, Hl[wr] > 0, out=dP[t])
        else:                                                # tanh'(a) = 1 - h^2
            torch.addcmul(dh, dh * Hl[wr], Hl[wr], value=-1, out=dP[t])
        t_next = t
    return dP, linear(dP[t_next], w_hh_t), None, None


class _RNNSeq(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse):
        Hs = _rnn_run(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse)
        ctx.reverse, ctx.relu = reverse, relu
        ctx.save_for_backward(x, w_ih, w_hh, Hs)
        return _out_prev(Hs, reverse)[0], Hs[0 if reverse else -1].clone()

    @staticmethod
    @once_differentiable                                     # double backward is not supported
    def backward(ctx, gout, dh_n):
        x, w_ih, w_hh, Hs = ctx.saved_tensors
        gout = Hs.new_zeros(Hs.shape[0] - 1, *Hs.shape[1:]) if gout is None else gout
        n = ctx.needs_input_grad
        dP, dh0, db, dwt = _rnn_bptt(gout, dh_n, Hs, w_hh, ctx.relu, ctx.reverse, need_db=n[4] or n[5],
                                     x=x if n[2] or n[3] else None)
        need = (n[0], False, False, n[4], n[5]) if dwt is not None else n[0:1] + n[2:6]
        dx, *dw = _grads(gemms(x)[0], dP, dP, x, _out_prev(Hs, ctx.reverse)[1], w_ih, need, db)
        if dwt is not None:                                  # the weight gradients came with the steps
            I = x.shape[2]  # noqa: N806
            dw[0:2] = [dwt[:I].t() if n[2] else None, dwt[I:].t() if n[3] else None]
        return (dx, dh0, *dw, None, None)


def rnn_direction(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
                  b_hh: Tensor | None = None, nonlinearity: str = "tanh", reverse: bool = False
                  ) -> tuple[Tensor, Tensor]:
    """One Elman RNN layer-direction, h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu:
    x (T, B, I), h0 (B, H) -> outputs (T, B, H), h_T (B, H)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    relu = nonlinearity == "relu"
    if _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh):
        return _RNNSeq.apply(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse)
    Hs = _rnn_run(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse)
    return _out_prev(Hs, reverse)[0], Hs[0 if reverse else -1]


def saved_bytes(module: torch.nn.Module, x: Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward in module(x), less the parameters and the input:
    how tests and benchmarks check that this path keeps no more activations than torch.nn's layers."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    skip = {p.untyped_storage().data_ptr() for p in module.parameters()} | {x.untyped_storage().data_ptr()}
    return sum(v for k, v in seen.items() if k not in skip)


# ------------------------------------------------------------------------------ the layers' per-direction seam
# layers.DIRECTIONS' signature: fn(x (L, N, I), state, weights, reverse, nonlinearity) -> (outputs, final state).
def _lstm_seam(x, state, weights, reverse, nonlinearity):
    out, h, c = lstm_direction(x.contiguous(), state[0], state[1], *weights, reverse=reverse)
    return out, (h, c)


def _gru_seam(x, state, weights, reverse, nonlinearity):
    out, h = gru_direction(x.contiguous(), state[0], *weights, reverse=reverse)
    return out, (h,)


def _rnn_seam(x, state, weights, reverse, nonlinearity):
    out, h = rnn_direction(x.contiguous(), state[0], *weights, nonlinearity=nonlinearity, reverse=reverse)
    return out, (h,)


DIRECTIONS = {"RNN": _rnn_seam, "LSTM": _lstm_seam, "GRU": _gru_seam}
