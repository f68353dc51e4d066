"""Fast execution of one recurrent layer-direction over a whole sequence, with a hand-written backward through time.

The cell math is that of `rnn/functional.py` (the readable path; tests prove the two equal, and equal to
torch.nn's layers); what differs is how the work is laid out for the machine (docs/design.md, speed plan):

* the input projection of every step is one GEMM with the biases folded in, `G = X W_ih^T + b`, (T*B, G*H);
* each step is one GEMM that also adds the step's slice of G (`_gemm.gemms`: oneDNN on CPU), followed by the
  activations in place on slices of that step's gates; states go into a preallocated (T+1, B, H) buffer;
* the backward is written by hand (`torch.autograd.Function`) and saves the activated gates instead of a
  per-step graph: per step one GEMM, `dh_{t-1} = dG_t W_hh + dL/dh_{t-1}`, plus pointwise work into a
  preallocated dG (T, B, G*H); after the loop the gradients of all steps are one GEMM each:
  `dX = dG W_ih`, `dW_ih = dG^T X`, `dW_hh = dG^T H_prev`, `db = sum dG`.

Shapes: x (T, B, I) time-major; h0, c0 (B, H); weights and biases in torch.nn's layout and gate order
(`weight_ih_l0` etc.; biases may be None). `reverse=True` runs the steps from T-1 down to 0 (the second direction
of a bidirectional layer) with outputs aligned to the inputs. States live in one (T+1, B, H) buffer `Hs`: a
forward step reads slot t and writes slot t+1, a reverse step reads slot t+1 and writes slot t. Everything is
allocated from the input (`x.new_empty`), so the same code runs on CUDA (with cuBLAS products).
"""

from __future__ import annotations

import torch

from scratchlab.rnn._gemm import gemms

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


def _grads(linear, dG: Tensor, x: Tensor, h_prev: Tensor, w_ih: Tensor, need) -> tuple:
    """Gradients of all steps at once from dG (T, B, G*H): dX (T,B,I), dW_ih, dW_hh, db (each None if unneeded)."""
    dG2 = dG.reshape(-1, dG.shape[-1])

    def wgrad(a):                                            # dG^T A (G*H, K) as X^T dG, oneDNN's faster layout
        return linear(a.reshape(-1, a.shape[-1]).t(), dG2.t()).t()
    dx = linear(dG2, w_ih.t().contiguous()).view(x.shape) if need[0] else None
    return dx, wgrad(x) if need[1] else None, wgrad(h_prev) if need[2] else None, dG2.sum(0) if need[3] else None


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


# --------------------------------------------------------------------------------------------------------- LSTM
# Inside this module the gates are in the order (o, i, f, g), not torch's (i, f, g, o): the three sigmoid gates are
# then one slice and the three gates whose gradient is scaled by dc are another. tanh is computed as
# tanh(a) = 2 sigmoid(2 a) - 1: torch's CPU tanh goes through MKL's vector math, which runs a slow generic path on
# AMD processors (18 us for 64x128 values, against 2.5 us for sigmoid); the g rows of the weights are scaled by 2
# once per call, so all four gates take a single sigmoid_.
_TO_OIFG, _FROM_OIFG = [3, 0, 1, 2], [1, 2, 3, 0]


def _perm(w: Tensor | None, order: list[int], g_scale: float = 1.0, dim: int = 0) -> Tensor | None:
    """Reorder the four gate blocks of w along dim (a copy), multiplying torch's g block by g_scale."""
    if w is None:
        return None
    blocks = list(w.chunk(4, dim))
    if g_scale != 1.0:
        blocks[2] = blocks[2] * g_scale                      # torch's g is its third block
    return torch.cat([blocks[k] for k in order], dim)


def _lstm_run(x, h0, c0, w_ih, w_hh, b, reverse, save):
    """Forward of all steps, weights in (o,i,f,g) order with g scaled by 2.

    Returns per-step activated gates [(B, 4H)] in run order, Hs, Cs (T+1, B, H) and tanh(c) (T+1, B, H).
    """
    linear, linear_add, pack = gemms(x)
    B, H = h0.shape
    Gx = _proj(linear, x, w_ih, b).unbind(0)                 # x_t W_ih^T + b_ih + b_hh for every t
    w_hh = pack(w_hh, B)
    Hs, Cs = _states(x, h0, reverse), _states(x, c0, reverse)
    TC = x.new_empty(Hs.shape)
    Hl, Cl, TCl = Hs.unbind(0), Cs.unbind(0), TC.unbind(0)
    gates = []
    for t, rd, wr in _slots(x.shape[0], reverse):
        y = linear_add(Hl[rd], w_hh, Gx[t])                  # pre-activations (o, i, f, 2g) of step t
        y.sigmoid_()
        o, i, f, g = y.view(B, 4, H).unbind(1)
        g.mul_(2).sub_(1)                                    # g = tanh(pre_g) = 2 sigmoid(2 pre_g) - 1
        torch.mul(f, Cl[rd], out=Cl[wr])                     # c_t = f c_{t-1} + i g
        Cl[wr].addcmul_(i, g)
        torch.mul(Cl[wr], 2, out=TCl[wr]).sigmoid_().mul_(2).sub_(1)   # h_t = o tanh(c_t)
        torch.mul(TCl[wr], o, out=Hl[wr])
        if save:
            gates.append(y)
    return gates, Hs, Cs, TC


def _lstm_bptt(gout, dh_n, dc_n, gates, Hs, Cs, TC, w_hh, reverse):
    """Backward through time. Returns dG (T,B,4H) in (o,i,f,g) order, dh0, dc0."""
    linear, linear_add, pack = gemms(Hs)
    T, B, H = gout.shape
    w_hh_t = pack(w_hh.t(), B)                               # (H, 4H): a w^T = dG_t W_hh
    dG = Hs.new_empty(T, B, 4 * H)
    P = Hs.new_empty(B, 4 * H)                               # one step's local derivatives, (o, i, f, g)
    Po, Pi, Pf, Pg = P.view(B, 4, H).unbind(1)
    Psig, Pifg = P[:, :3 * H], P[:, H:].view(B, 3, H)
    ones, tcd = Hs.new_ones(B, H), Hs.new_empty(B, H)
    dc = dc_n.clone() if dc_n is not None else Hs.new_zeros(B, H)
    Cl, TCl = Cs.unbind(0), TC.unbind(0)
    t_next = None
    for k, (t, rd, wr) in reversed(list(enumerate(_slots(T, reverse)))):
        y = gates[k]
        o, i, f, g = y.view(B, 4, H).unbind(1)
        tc = TCl[wr]
        if t_next is None:                                   # dh_t: from the output and from step t+1
            dh = gout[t] + dh_n if dh_n is not None else gout[t]
        else:
            dh = linear_add(dG[t_next], w_hh_t, gout[t])
        torch.addcmul(ones, tc, tc, value=-1, out=tcd)       # dc_t += dh o (1 - tanh^2 c_t)
        tcd.mul_(o)
        dc.addcmul_(tcd, dh)
        torch.addcmul(y[:, :3 * H], y[:, :3 * H], y[:, :3 * H], value=-1, out=Psig)   # s (1 - s) for o, i, f
        torch.addcmul(ones, g, g, value=-1, out=Pg)          # 1 - g^2
        Po.mul_(tc)                                          # do = dh tanh(c_t) o'
        Pi.mul_(g)                                           # di = dc g i'
        Pf.mul_(Cl[rd])                                      # df = dc c_{t-1} f'
        Pg.mul_(i)                                           # dg = dc i g'
        torch.mul(Po, dh, out=dG[t, :, :H])
        torch.mul(Pifg, dc.unsqueeze(1), out=dG[t, :, H:].view(B, 3, H))
        dc.mul_(f)                                           # dc_{t-1} through the cell path
        t_next = t
    return dG, linear(dG[t_next], w_hh_t), dc


class _LSTMSeq(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
        w_ih_p, w_hh_p = _perm(w_ih, _TO_OIFG, 2.0), _perm(w_hh, _TO_OIFG, 2.0)
        b = None if b_ih is None else _perm(b_ih + b_hh, _TO_OIFG, 2.0)
        gates, Hs, Cs, TC = _lstm_run(x, h0, c0, w_ih_p, w_hh_p, b, reverse, save=True)
        ctx.reverse = reverse
        ctx.save_for_backward(x, w_ih, w_hh, Hs, Cs, TC, *gates)
        last = 0 if reverse else -1
        return _out_prev(Hs, reverse)[0], Hs[last].clone(), Cs[last].clone()

    @staticmethod
    def backward(ctx, gout, dh_n, dc_n):
        x, w_ih, w_hh, Hs, Cs, TC, *gates = ctx.saved_tensors
        gout = Hs.new_zeros(Hs.shape[0] - 1, *Hs.shape[1:]) if gout is None else gout.contiguous()
        dG, dh0, dc0 = _lstm_bptt(gout, dh_n, dc_n, gates, Hs, Cs, TC, _perm(w_hh, _TO_OIFG), ctx.reverse)
        n = ctx.needs_input_grad
        dx, dw_ih, dw_hh, db = _grads(gemms(x)[0], dG, x, _out_prev(Hs, ctx.reverse)[1], _perm(w_ih, _TO_OIFG),
                                      (n[0], n[3], n[4], n[5] or n[6]))
        dw_ih, dw_hh, db = (_perm(v, _FROM_OIFG) for v in (dw_ih, dw_hh, db))
        return dx, dh0, dc0, dw_ih, dw_hh, db, db, None


def lstm_direction(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
                   b_hh: Tensor | None = None, reverse: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer-direction: x (T, B, I), h0/c0 (B, H) -> outputs (T, B, H), h_T, c_T (B, H)."""
    if _needs_grad(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        return _LSTMSeq.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)
    b = None if b_ih is None else _perm(b_ih + b_hh, _TO_OIFG, 2.0)
    _, Hs, Cs, _ = _lstm_run(x, h0, c0, _perm(w_ih, _TO_OIFG, 2.0), _perm(w_hh, _TO_OIFG, 2.0), b, reverse, False)
    last = 0 if reverse else -1
    return _out_prev(Hs, reverse)[0], Hs[last], Cs[last]
