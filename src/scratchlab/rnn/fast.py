"""Fast execution of one recurrent layer-direction over a whole sequence, with a hand-written backward through time.

The cell math is that of `rnn/functional.py` (the readable path; tests prove the two equal, and equal to
torch.nn's layers); what differs is how the work is laid out for the machine (docs/design.md, speed plan). This
module holds the forward and backward of each cell as plain functions, `lstm_forward` / `lstm_backward` and the
GRU's and RNN's; `rnn/ops.py` makes them autograd Functions and registered operators (what torch.compile and
torch.export see). The backward saves the activated gates instead of a per-step graph. Steps run on one of three
kernels, picked per call:

* the packed kernel (`rnn/csrc/`, compiled by `_cext`; float32, any hidden size, where the extension builds with
  one of kernel.h's vector variants: AVX-512, AVX2+FMA or NEON, chosen from the CPU or by SCRATCHLAB_ISA): the
  weights packed once into register-tile panels (`pack16` is the layout's definition), each step one tile product
  `b + x_t W_ih^T + h_{t-1} W_hh^T` with the cell math on the tile; the backward the same with `dG_{t+1} W_hh`, the
  bias and (blocks up to `_DW_IN_LOOP_BYTES`) weight gradients summed in the loop;
* for the LSTM, its library kernel (`rnn/csrc/lstm.cpp`; float64, the generic variant): per step one oneDNN or
  at::mm product and one fused pass over the gates;
* the Python loops here (CUDA, no compiler, or SCRATCHLAB_NO_CEXT=1): the input projection of every step as one
  GEMM with the biases folded in, `G = X W_ih^T + b`; per step one GEMM (`_gemm.gemms`: oneDNN on CPU, cuBLAS on
  CUDA) added into the step's rows of G and the activations in place; the backward per step one GEMM,
  `dh_{t-1} = dG_t W_hh + dL/dh_{t-1}`, and pointwise work into a preallocated dG.

Where the weight gradients are not summed in the loop, they are one GEMM each over all steps after it:
`dX = dG W_ih`, `dW_ih = dG^T X`, `dW_hh = dG^T H_prev`, `db = sum dG`.

Shapes: every per-step buffer has the rows of `steps.Steps` (a padded (T, B) batch, or a PackedSequence's data,
where step t has the first bs[t] sequences): x (N, I), outputs (N, H); h0, c0, h_n, c_n (B, H); weights and biases
in torch.nn's layout and gate order (`weight_ih_l0` etc.; biases may be None). `reverse=True` runs the steps from
T-1 down to 0 (the second direction of a bidirectional layer), each sequence from its own last step. Everything is
allocated from the input (`x.new_empty`), so the same code runs on CUDA (with cuBLAS products).
"""

from __future__ import annotations

import weakref

import torch

from scratchlab.rnn import _cext
from scratchlab.rnn._gemm import gemms, sequence_linear, use_onednn
from scratchlab.rnn.steps import Steps

Tensor = torch.Tensor


def _proj(linear, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """All steps' input projection as one GEMM: (N, I) -> (N, G*H)."""
    return linear(x, w, b)


def _wgrad(linear, pairs: list[tuple[Tensor, Tensor]]) -> Tensor:
    """sum_k D_k^T A_k, (G*H, K), for pairs (A_k (M_k, K), D_k (M_k, G*H)); each as (A^T D)^T, oneDNN's faster form."""
    total = None
    for a, d in pairs:
        w = linear(a.t(), d.t()).t()
        total = w if total is None else total.add_(w)
    return total


def _grads(linear, dGx: Tensor, dGh: Tensor, x: Tensor, prev: list[tuple[Tensor, Tensor]], w_ih: Tensor, need,
           db: Tensor | None = None) -> list:
    """Gradients of all steps at once: dX = dGx W_ih, dW_ih = dGx^T X, dW_hh = dGh^T H_prev, db_ih, db_hh.

    dGx (N, G*H) is the gradient of the input-side pre-activations, dGh that of the hidden-side ones (the same
    tensor except for GRU's n gate); prev = steps.previous_pairs(out, h0, dGh), the states each row read paired with
    dGh's rows; need says which of (x, w_ih, w_hh, b_ih, b_hh) want a gradient. db, when given, is the bias gradient
    already summed (dGh is dGx then).
    """
    if db is None:
        db = dGx.sum(0) if need[3] or (need[4] and dGh is dGx) else None
    return [linear(dGx, w_ih.t().contiguous()) if need[0] else None,
            _wgrad(linear, [(x, dGx)]) if need[1] else None,
            _wgrad(linear, prev) if need[2] else None,
            db if need[3] else None,
            (db if dGh is dGx else dGh.sum(0)) if need[4] else None]


def _constants(x: Tensor) -> tuple[Tensor, Tensor]:
    """1 and 2 as 0-dim tensors: an op with a Python number wraps it into a tensor each call (2.3 us against
    1.2 us per op on 64x128 values), which adds up over thousands of small per-step ops."""
    return x.new_ones(()), x.new_full((), 2.0)


def _compiled(x: Tensor):
    """The compiled step loops (csrc/ via _cext) where they apply to x (CPU, float32/64), else None."""
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
    """The compiled loops' step products: 2 = the packed kernel (float32, a build with a vector variant), else
    1 = oneDNN's matmul or 0 = at::mm, as csrc/packed.h's `Kernel`."""
    if x.dtype == torch.float32 and ops.packed_available():
        return 2
    return int(use_onednn(x))


# The packed backward accumulates the weight gradients step by step, dW^T += [x_t, h_{t-1}]^T dG_t while dG_t is in
# cache, when H is a multiple of 16 (its tiles read dG_t in whole 64-column panels) and that (I+H, G H) float32 block
# (G gates) is at most this size (`_dw_block`); larger blocks leave cache on every step, and one oneDNN GEMM over all
# steps after the loop is faster. Measured (fwd+bwd, batch 64, 1 thread; in-loop vs GEMM):
# 0.5 MiB (I=H=128) 91 vs 99 ms, 0.94 MiB 86 vs 93, 2 MiB (I=H=256) 86 vs 88, 6 MiB (I=256, H=512) 296 vs 272.
# The GRU and the RNN follow the same rule: RNN 0.12 MiB 25.8 vs 32.8, 1.5 MiB 64.4 vs 66.5; GRU 0.38 MiB 69.2 vs 79.4,
# 1.5 MiB 65.1 vs 69.0, 4.5 MiB 202.0 vs 204.7 (block = (I+H) G H floats for G gates). Again on a Zen 5 (AVX-512,
# 2026-12-03; GEMM / in-loop, median of 9 interleaved pairs, shapes (B, T, I, H) (128, 20, 10, 128), (64, 400, 128,
# 128), (64, 100, 256, 256)): LSTM 1.10, 1.08, 1.00; GRU 1.05, 1.11, 1.05; RNN 1.14, 1.25, 1.14: the rule holds.
_DW_IN_LOOP_BYTES = 2 << 20


def _dw_block(x: Tensor | None, H: int, gates: int) -> Tensor | None:
    """A zeroed float64 dW^T (I+H, gates H) for the packed loops to sum the weight gradients into step by step, or
    None (the GEMM after the loop) when x is not given, H is not a multiple of 16 or the block is over
    _DW_IN_LOOP_BYTES."""
    if x is None or H % 16 or (x.shape[1] + H) * gates * H * 4 > _DW_IN_LOOP_BYTES:
        return None
    return x.new_zeros(x.shape[1] + H, gates * H, dtype=torch.float64)


def _gout_for_loops(steps: Steps, gout: Tensor | None, dh_n: Tensor | None, like: Tensor) -> Tensor:
    """The backward loops' output gradient: contiguous (N, H), zeros when the outputs got none, with dL/dh_n added
    at each sequence's last row (a copy when it has to be changed, so the caller's gradient stays as it was)."""
    if gout is None:
        gout = like.new_zeros(like.shape)
        return gout if dh_n is None else steps.add_at_ends(gout, dh_n)
    gout = gout.reshape(like.shape)
    return gout.contiguous() if dh_n is None else steps.add_at_ends(gout, dh_n)


def _add_rows(d: Tensor, y: Tensor) -> Tensor:
    """A copy of d (n, H) with y (m, H), m < n, added to its first m rows (the rows that go on to a later step)."""
    d = d.clone()
    d[:y.shape[0]].add_(y)
    return d


def _weight_grads(dwt: Tensor | None, I: int, need_ih: bool, need_hh: bool, dtype) -> tuple:  # noqa: N803
    """(dW_ih, dW_hh), contiguous, from the packed loops' dW^T = [X, H_prev]^T dG, (I+H, G H)."""
    def one(block):
        return block.t().to(dtype, memory_format=torch.contiguous_format)
    return (one(dwt[:I]) if need_ih else None), (one(dwt[I:]) if need_hh else None)


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


def lstm_forward(x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, keep=True):
    """Forward of all steps, weights in torch's layout: x (N, I) -> out (N, H), h_n, c_n (B, H), and what the
    backward reads: G (N, 4H) the activated gates in (o, i, f, g) order, C and TC (N, H) c_t and tanh(c_t). With
    keep=False (no backward follows) G, C and TC are empty."""
    (N, _), (B, H) = x.shape, h0.shape  # noqa: N806
    steps = Steps(batch_sizes, N, B, reverse)
    out = x.new_empty(N, H)
    # keep: C, TC (N, H) of every step; else C is the (B, H) running c (each cell reads its own c only). The empty
    # tensors returned in its place are distinct: an operator's outputs must not alias each other.
    if keep:
        C, TC = x.new_empty(N, H), x.new_empty(N, H)  # noqa: N806
    else:
        C, TC = c0.clone(memory_format=torch.contiguous_format), x.new_empty(0)  # noqa: N806
    ops = _compiled(x)
    if ops is not None and _step_kernel(ops, x, H) == 2:  # one register tile per step: b + x_t W_ih^T + h W_hh^T
        wx, wh = ops.pack_gates(w_ih, _TO_OIFG, _G2, False), ops.pack_gates(w_hh, _TO_OIFG, _G2, False)
        b = None if b_ih is None else ops.pack_gates((b_ih + b_hh).view(-1, 1), _TO_OIFG, _G2, False).view(-1)
        G = x.new_empty(N, 4 * H if keep else 0)  # noqa: N806
        ops.lstm_forward_packed(x, batch_sizes, h0, c0, wx, b, wh, G, out, C, TC, reverse, keep)
    else:
        linear, pack = gemms(x)
        b = None if b_ih is None else _perm(b_ih + b_hh, _TO_OIFG, 2.0)
        G = _proj(linear, x, _perm(w_ih, _TO_OIFG, 2.0), b)  # noqa: N806  (x_t W_ih^T + b_ih + b_hh for every row)
        w_hh = pack(_perm(w_hh, _TO_OIFG, 2.0), B)
        if ops is not None:                                  # the same steps, each one product + one fused loop
            ops.lstm_forward(G, batch_sizes, h0, c0, out, C, TC, w_hh, reverse, use_onednn(x), keep)
        else:
            _lstm_loops(steps, G, out, C, TC, h0, c0, w_hh, linear, keep)
        G = G if keep else x.new_empty(0)  # noqa: N806
    if keep:
        return out, steps.ends(out), steps.ends(C), G, C, TC
    return out, steps.ends(out), C, G, x.new_empty(0), TC


def bf16_available(x: Tensor) -> bool:
    """True where lstm_forward_bf16 runs for x: a CPU float32 tensor and a build of the kernels with AVX512-BF16."""
    ops = _compiled(x)
    return ops is not None and x.dtype == torch.float32 and ops.bf16_available()


def bf16_pairs_reference(p: Tensor) -> Tensor:
    """The extension's `bf16_pairs`, readable: pack_gates panels (P, K, 16) as bf16 k pairs (P, ceil(K/2), 16, 2),
    [p, kk, l, q] = panel p's column l at k = 2 kk + q (zero for the pad k), so that one 64-byte vector holds 16
    columns at two consecutive k."""
    if p.shape[1] % 2:
        p = torch.cat([p, p.new_zeros(p.shape[0], 1, 16)], 1)
    return p.view(p.shape[0], -1, 2, 16).transpose(2, 3).to(torch.bfloat16).contiguous()


# Inference calls the same weights again and again: their bf16 panels are kept per weight tensor and rebuilt when
# any of the four changes (another tensor, its storage, or `_version`, which every in-place write bumps: optimiser
# steps, load_state_dict). At shape c, packing is 4 ms of a 55 ms forward. The entry holds the four tensors (so an
# id cannot be reused under it) and goes with W_ih.
_BF16_PACKED: dict[int, tuple] = {}  # id(W_ih) -> (weakref to W_ih, (W_hh, b_ih, b_hh), stamps, packed)


def _bf16_weights(ops, w_ih, w_hh, b_ih, b_hh):
    """(wx, wh, bias): bf16_pairs(pack_gates(W)) of W_ih and W_hh and pack_gates of b_ih + b_hh (float32, or None)."""
    others = (w_hh, b_ih, b_hh)
    stamp = [None if t is None else (t._version, t.data_ptr()) for t in (w_ih, *others)]
    hit = _BF16_PACKED.get(id(w_ih))
    mine = hit is not None and hit[0]() is w_ih
    if mine and all(a is b for a, b in zip(hit[1], others, strict=True)) and hit[2] == stamp:
        return hit[3]
    packed = (ops.bf16_pairs(ops.pack_gates(w_ih, _TO_OIFG, _G2, False)),
              ops.bf16_pairs(ops.pack_gates(w_hh, _TO_OIFG, _G2, False)),
              None if b_ih is None else ops.pack_gates((b_ih + b_hh).view(-1, 1), _TO_OIFG, _G2, False).view(-1))
    if not mine:                                             # the entry leaves with W_ih
        weakref.finalize(w_ih, _BF16_PACKED.pop, id(w_ih), None)
    _BF16_PACKED[id(w_ih)] = (weakref.ref(w_ih), others, stamp, packed)
    return packed


def lstm_forward_bf16(x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    """Inference forward with bf16 products (csrc/lstm.cpp's bf16 kernel): x (N, I) -> out (N, H), h_n, c_n (B, H),
    float32. Its definition, step by step: gates_t = b_ih + b_hh + bf16(x_t) bf16(W_ih)^T + bf16(h_{t-1})
    bf16(W_hh)^T, with bf16() rounding to the nearest bf16 and the products and sums in float32; then the float32
    cell of lstm_forward (h_t = o tanh(c_t), c_t = f c_{t-1} + i g). `lstm_bf16_reference` is that, written with
    torch ops; tests check the kernel against it and against torch.nn.LSTM under autocast."""
    ops = _compiled(x)
    (N, _), (B, H) = x.shape, h0.shape  # noqa: N806
    steps = Steps(batch_sizes, N, B, reverse)
    wx, wh, b = _bf16_weights(ops, w_ih, w_hh, b_ih, b_hh)
    out, C = x.new_empty(N, H), c0.clone(memory_format=torch.contiguous_format)  # noqa: N806
    ops.lstm_forward_bf16(x, batch_sizes, h0.contiguous(), wx, b, wh, out, C, reverse)
    return out, steps.ends(out), C


def lstm_bf16_reference(x, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    """lstm_forward_bf16's readable definition (torch ops, one step at a time; padded batches only)."""
    N, B = x.shape[0], h0.shape[0]  # noqa: N806
    assert batch_sizes is None, "the reference takes padded batches"
    r = lambda a: a.to(torch.bfloat16).float()  # noqa: E731  (round to bf16, compute in float32)
    xs, wi, wh = r(x).view(N // B, B, -1), r(w_ih), r(w_hh)
    b = 0 if b_ih is None else b_ih + b_hh
    h, c, outs = h0, c0, [None] * (N // B)
    for t in (reversed(range(N // B)) if reverse else range(N // B)):
        i, f, g, o = (xs[t] @ wi.t() + r(h) @ wh.t() + b).chunk(4, 1)   # torch's gate order i, f, g, o
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = outs[t] = torch.sigmoid(o) * torch.tanh(c)
    return torch.cat(outs), h, c


def _lstm_loops(steps, G, out, C, TC, h0, c0, w_hh, linear, keep):  # noqa: N803
    """The forward's Python step loop (CUDA, no compiler): as csrc/lstm.cpp's library kernel."""
    H = h0.shape[1]  # noqa: N806
    one, two = _constants(out)
    Gs, Hs = steps.split(G), steps.split(out)  # noqa: N806
    Cs, TCs = (steps.split(C), steps.split(TC)) if keep else (None, None)  # noqa: N806
    scratch = None if keep else out.new_empty(C.shape)      # tanh(c) of a step in inference
    for t in steps.order():
        n = steps.sizes[t]
        g = Gs[t].add_(linear(steps.previous(Hs, h0, t), w_hh)).sigmoid_()   # (o, i, f, sigmoid(2 pre_g))
        o, i, f, gg = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        gg.mul_(two).sub_(one)                               # g = tanh(pre_g) = 2 sigmoid(2 pre_g) - 1
        c_prev, c, tc = (steps.previous(Cs, c0, t), Cs[t], TCs[t]) if keep else (C[:n], C[:n], scratch[:n])
        torch.mul(f, c_prev, out=c)                          # c_t = f c_{t-1} + i g
        c.addcmul_(i, gg)
        torch.mul(c, two, out=tc).sigmoid_().mul_(two).sub_(one)   # h_t = o tanh(c_t)
        torch.mul(tc, o, out=Hs[t])


def _lstm_local(dG, A, G, c_prev, TC, r0, r1):  # noqa: N803
    """Local derivatives of rows r0..r1-1 (a block of consecutive steps) at once, written into dG[r0:r1] (o, i, f, g
    order) and A[:r1-r0]: dG <- (tanh(c_t) o', g i', c_{t-1} f', i g'), A <- o (1 - tanh(c_t)^2); s' = s (1 - s),
    g' = 1 - g^2; c_prev (r1 - r0, H) the block's c_{t-1}. They depend on the forward only, so a block of steps takes
    a few large ops instead of a dozen small ones per step; the step loop then scales them by dh and dc."""
    H = G.shape[-1] // 4  # noqa: N806
    S, P, a, tc = G[r0:r1], dG[r0:r1], A[:r1 - r0], TC[r0:r1]  # noqa: N806
    one = G.new_ones(1)
    torch.addcmul(S[:, :3 * H], S[:, :3 * H], S[:, :3 * H], value=-1, out=P[:, :3 * H])
    torch.addcmul(one, S[:, 3 * H:], S[:, 3 * H:], value=-1, out=P[:, 3 * H:])
    P[:, :H].mul_(tc)
    P[:, H:2 * H].mul_(S[:, 3 * H:])
    P[:, 2 * H:3 * H].mul_(c_prev)
    P[:, 3 * H:].mul_(S[:, H:2 * H])
    torch.addcmul(one, tc, tc, value=-1, out=a).mul_(S[:, :H])


def _lstm_bptt(steps, gout, dc_n, G, C, c0, TC, w_hh, need_db=False, x=None, out=None, h0=None):  # noqa: N803
    """Backward through time, w_hh in torch's layout, gout (N, H) with dL/dh_n added. Returns dG (N, 4H) in
    (o, i, f, g) order, dh0, dc0, the bias gradient summed over all steps (4H,) when the compiled loops made it on
    the way (asked by need_db), else None, and dW^T = [X, H_prev]^T dG, (I+H, 4H), when the packed kernel
    accumulated it step by step (asked by passing x, out and h0), else None.

    Per step: dh_t = dL/dh_t (output) + dG_{t+1} W_hh; dc_t = dc_{t+1} f_{t+1} + dh_t A_t;
    dG_t = local_t * (dh_t, dc_t, dc_t, dc_t)."""
    linear, pack = gemms(G)
    B, H = c0.shape  # noqa: N806
    ops = _compiled(G)
    dc = dc_n.clone(memory_format=torch.contiguous_format) if dc_n is not None else G.new_zeros(B, H)
    dG = G.new_empty(G.shape)  # noqa: N806
    if ops is not None:                                      # the same steps, each one product + one fused loop
        kernel = _step_kernel(ops, G, H)
        # (H, 4H) with a w^T = dG_t W_hh
        w_hh_t = (ops.pack_gates(w_hh, _TO_OIFG, [1.0] * 4, True) if kernel == 2
                  else pack(_perm(w_hh, _TO_OIFG).t(), B))
        db = G.new_zeros(4 * H if need_db else 0, dtype=torch.float64)
        dwt = _dw_block(x, H, 4) if kernel == 2 else None
        dh0 = ops.lstm_backward(gout, steps.batch_sizes, dc, G, C, c0, TC, w_hh_t, dG, db, steps.reverse, kernel,
                                x if dwt is not None else None, out if dwt is not None else None,
                                h0 if dwt is not None else None, dwt)
        return dG, dh0, dc, (db.to(G.dtype) if need_db else None), dwt
    w_hh_t = pack(_perm(w_hh, _TO_OIFG).t(), B)              # (H, 4H): a w^T = dG_t W_hh
    order = steps.order()[::-1]                              # steps in the order the backward takes them
    Cs, dGs, gouts = steps.split(C), steps.split(dG), steps.split(gout)  # noqa: N806
    block = max(1, min(steps.T, (1 << 19) // (B * 4 * H)))   # steps per block of local derivatives (~2 MB)
    A = G.new_empty(block * B, H)  # noqa: N806
    r0 = 0
    for k, t in enumerate(order):
        if k % block == 0:                                   # a new block: its steps' local derivatives
            ts = sorted(order[k:k + block])
            r0 = steps.offsets[ts[0]]
            c_prev = torch.cat([steps.previous(Cs, c0, s) for s in ts])
            _lstm_local(dG, A, G, c_prev, TC, r0, steps.offsets[ts[-1] + 1])
        n, cont = steps.sizes[t], steps.continued(t)
        dh = gouts[t]                                        # dh_t: from the output and from the step run after t
        if cont:
            y = linear(dGs[order[k - 1]][:cont], w_hh_t)
            dh = y.add_(dh) if cont == n else _add_rows(dh, y)
        a, d = A[steps.offsets[t] - r0:][:n], dGs[t]
        dc[:n].addcmul_(a, dh)
        d[:, :H].mul_(dh)
        d[:, H:].view(n, 3, H).mul_(dc[:n].unsqueeze(1))
        dc[:n].mul_(G[steps.offsets[t]:steps.offsets[t] + n, 2 * H:3 * H])   # dc_{t-1} through the cell path
    return dG, linear(steps.starts(dG), w_hh_t), dc, None, None


def lstm_backward(gout, dh_n, dc_n, x, batch_sizes, h0, c0, w_ih, w_hh, out, G, C, TC, reverse, need):  # noqa: N803
    """Gradients of lstm_forward's inputs (x, h0, c0, w_ih, w_hh, b_ih, b_hh), None where `need` says no, from those
    of its outputs (gout (N, H), dh_n, dc_n (B, H); any may be None) and what it saved."""
    steps = Steps(batch_sizes, x.shape[0], h0.shape[0], reverse)
    gout = _gout_for_loops(steps, gout, dh_n, out)
    dG, dh0, dc0, db, dwt = _lstm_bptt(steps, gout, dc_n, G, C, c0, TC, w_hh, need_db=need[5] or need[6],  # noqa: N806
                                       x=x if need[3] or need[4] else None, out=out, h0=h0)
    wants = (need[0], dwt is None and need[3], dwt is None and need[4], need[5], need[6])
    prev = steps.previous_pairs(out, h0, dG) if wants[2] else []
    dx, *dw = _grads(sequence_linear(x), dG, dG, x, prev, _perm(w_ih, _TO_OIFG), wants, db)
    if dwt is not None:                                      # the weight gradients came with the steps
        dw[0:2] = _weight_grads(dwt, x.shape[1], need[3], need[4], x.dtype)
    dw = [_perm(v, _FROM_OIFG) for v in dw]
    return [dx, dh0 if need[1] else None, dc0 if need[2] else None, *dw]


# --------------------------------------------------------------------------------------------------------- GRU
# torch's variant: n = tanh(W_in x + b_in + r (W_hn h + b_hn)), so the hidden-side product (with b_hh) is kept per
# step (its n part is needed for dr) and the input side carries b_ih alone. Gate order (r, z, n) as torch's.
_RZN = ([0, 1, 2], [1.0, 1.0, 1.0])                         # pack_gates' order and scales for the GRU's weights


def gru_forward(x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse, keep=True):
    """Forward of all steps: x (N, I) -> out (N, H), h_n (B, H), and what the backward reads: G (N, 3H) the
    activated (r, z, n), HN (N, H) = W_hn h + b_hn of every step (what dr needs; keeping it alone rather than the
    whole hidden product saves 2H per step). With keep=False G and HN are empty."""
    (N, _), (B, H) = x.shape, h0.shape  # noqa: N806
    steps = Steps(batch_sizes, N, B, reverse)
    out = x.new_empty(N, H)
    ops = _compiled(x)
    if ops is not None and _step_kernel(ops, x, H) == 2:     # one register tile per step: [r, z, n_x, n_h]
        b = None
        if b_ih is not None:                                 # [b_ir + b_hr, b_iz + b_hz, b_in, b_hn]
            b4 = torch.cat([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:], b_hh[2 * H:]]).view(-1, 1)
            b = ops.pack_gates(b4, [0, 1, 2, 3], [1.0] * 4, False).view(-1)
        G, HN = (x.new_empty(N, 3 * H), x.new_empty(N, H)) if keep else (x.new_empty(0), x.new_empty(0))  # noqa: N806
        ops.gru_forward_packed(x, batch_sizes, h0, ops.pack_gates(w_ih, *_RZN, False), b,
                               ops.pack_gates(w_hh, *_RZN, False), G, HN, out, reverse, keep)
        return out, steps.ends(out), G, HN
    linear, pack = gemms(x)
    G = _proj(linear, x, w_ih, b_ih)  # noqa: N806        (x_t W_ih^T + b_ih for every row)
    w_hh = pack(w_hh, B)
    HN = x.new_empty(N, H)  # noqa: N806
    one, two = _constants(x)
    Hs, Gs, HNs = steps.split(out), steps.split(G), steps.split(HN)  # noqa: N806
    for t in steps.order():
        h_prev = steps.previous(Hs, h0, t)
        gh = linear(h_prev, w_hh, b_hh)                      # (n, 3H)
        Gs[t][:, :2 * H].add_(gh[:, :2 * H]).sigmoid_()      # r, z
        r, z, n = Gs[t][:, :H], Gs[t][:, H:2 * H], Gs[t][:, 2 * H:]
        HNs[t].copy_(gh[:, 2 * H:])
        n.addcmul_(r, HNs[t]).mul_(two).sigmoid_().mul_(two).sub_(one)   # n = tanh(.) = 2 sigmoid(2 .) - 1
        torch.sub(h_prev, n, out=Hs[t]).mul_(z).add_(n)      # h_t = n + z (h_{t-1} - n) = (1 - z) n + z h_{t-1}
    return out, steps.ends(out), (G if keep else x.new_empty(0)), (HN if keep else x.new_empty(0))


def _gru_bptt(steps, gout, G, HN, out, h0, w_hh, need_db=False, x=None):  # noqa: N803
    """Backward through time, gout (N, H) with dL/dh_n added. Returns dGx, dGh (N, 3H) (gradients of the input-
    and hidden-side pre-activations; they differ in the n block: dGh_n = dGx_n r), dh0, the bias gradients (db_ih,
    db_hh) when the packed loops summed them (asked by need_db), else None, and dW^T = [X^T dGx; H_prev^T dGh],
    (I+H, 3H), when they accumulated it step by step (asked by passing x; H a multiple of 16, see
    _DW_IN_LOOP_BYTES), else None."""
    B, H = h0.shape  # noqa: N806
    ops = _compiled(G)
    dGx, dGh = G.new_empty(G.shape), G.new_empty(G.shape)  # noqa: N806
    if ops is not None and _step_kernel(ops, G, H) == 2:
        dbx, dbh = (G.new_zeros(3 * H if need_db else 0, dtype=torch.float64) for _ in range(2))
        dwt = _dw_block(x, H, 3)
        dh0 = ops.gru_backward_packed(gout, steps.batch_sizes, G, HN, out, h0, ops.pack_gates(w_hh, *_RZN, True),
                                      dGx, dGh, dbx, dbh, steps.reverse, None if dwt is None else x, dwt)
        return dGx, dGh, dh0, ((dbx.to(G.dtype), dbh.to(G.dtype)) if need_db else None), dwt
    linear, pack = gemms(G)
    w_hh_t = pack(w_hh.t(), B)                               # (H, 3H)
    ones, tmp, sd = G.new_ones(B, H), G.new_empty(B, H), G.new_empty(B, 2 * H)
    dh = G.new_zeros(B, H)                                   # each row's dh at its latest step (the z path)
    Hs, Gs, HNs, gouts, dGxs, dGhs = (steps.split(v) for v in (out, G, HN, gout, dGx, dGh))  # noqa: N806
    order = steps.order()[::-1]
    for k, t in enumerate(order):
        n_rows, cont = steps.sizes[t], steps.continued(t)
        g = Gs[t]
        r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
        d = gouts[t].clone()                                 # dh_t: output, the next step's products, its z path
        if cont:
            t_next = order[k - 1]
            d[:cont].add_(linear(dGhs[t_next][:cont], w_hh_t)).addcmul_(dh[:cont], Gs[t_next][:cont, H:2 * H])
        dh[:n_rows] = d
        dGx_n, dGh_r, dGh_z, dGh_n = dGxs[t][:, 2 * H:], dGhs[t][:, :H], dGhs[t][:, H:2 * H], dGhs[t][:, 2 * H:]  # noqa: N806
        t1, s = tmp[:n_rows], sd[:n_rows]
        torch.addcmul(ones[:n_rows], n, n, value=-1, out=t1).mul_(d)   # dn_pre = dh (1 - z)(1 - n^2)
        torch.addcmul(t1, t1, z, value=-1, out=dGx_n)
        torch.mul(dGx_n, r, out=dGh_n)                       # the hidden side sees r (W_hn h + b_hn)
        torch.addcmul(g[:, :2 * H], g[:, :2 * H], g[:, :2 * H], value=-1, out=s)   # r', z'
        torch.sub(steps.previous(Hs, h0, t), n, out=dGh_z).mul_(d).mul_(s[:, H:])  # dz_pre = dh (h_{t-1} - n) z'
        torch.mul(dGx_n, HNs[t], out=dGh_r).mul_(s[:, :H])   # dr_pre = dn_pre (W_hn h + b_hn) r'
    dGx[:, :2 * H] = dGh[:, :2 * H]                          # r and z see the same gradient on both sides
    dh0 = linear(steps.starts(dGh), w_hh_t).addcmul_(dh, steps.starts(G)[:, H:2 * H])
    return dGx, dGh, dh0, None, None


def gru_backward(gout, dh_n, x, batch_sizes, h0, w_ih, w_hh, out, G, HN, reverse, need):  # noqa: N803
    """Gradients of gru_forward's inputs (x, h0, w_ih, w_hh, b_ih, b_hh), None where `need` says no."""
    steps = Steps(batch_sizes, x.shape[0], h0.shape[0], reverse)
    gout = _gout_for_loops(steps, gout, dh_n, out)
    dGx, dGh, dh0, db, dwt = _gru_bptt(steps, gout, G, HN, out, h0, w_hh, need_db=need[4] or need[5],  # noqa: N806
                                       x=x if need[2] or need[3] else None)
    wants = (need[0], dwt is None and need[2], dwt is None and need[3], db is None and need[4],
             db is None and need[5])
    prev = steps.previous_pairs(out, h0, dGh) if wants[2] else []
    dx, *dw = _grads(sequence_linear(x), dGx, dGh, x, prev, w_ih, wants)
    if dwt is not None:                                      # the weight gradients came with the steps
        dw[0:2] = _weight_grads(dwt, x.shape[1], need[2], need[3], x.dtype)
    if db is not None:
        dw[2:4] = [db[0] if need[4] else None, db[1] if need[5] else None]
    return [dx, dh0 if need[1] else None, *dw]


# -------------------------------------------------------------------------------------------- Elman RNN (tanh, relu)
_ONE_GATE = ([0], [1.0])                                     # pack_gates' order and scale for a single block


def rnn_forward(x, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse):
    """Forward of all steps, h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh): x (N, I) -> out (N, H), h_n
    (B, H). The backward reads the outputs alone."""
    (N, _), (B, H) = x.shape, h0.shape  # noqa: N806
    steps = Steps(batch_sizes, N, B, reverse)
    out = x.new_empty(N, H)
    ops = _compiled(x)
    if ops is not None and _step_kernel(ops, x, H) == 2:     # per step one register-tile product + act
        b = None if b_ih is None else ops.pack_gates((b_ih + b_hh).view(-1, 1), *_ONE_GATE, False).view(-1)
        ops.rnn_forward_packed(x, batch_sizes, h0, ops.pack_gates(w_ih, *_ONE_GATE, False), b,
                               ops.pack_gates(w_hh, *_ONE_GATE, False), out, reverse, relu)
        return out, steps.ends(out)
    s = 1.0 if relu else 2.0                                 # tanh(a) = 2 sigmoid(2a) - 1: weights scaled by 2
    linear, pack = gemms(x)
    b = None if b_ih is None else (b_ih + b_hh) * s
    P = steps.split(_proj(linear, x, w_ih * s, b))  # noqa: N806   (x_t W_ih^T + b_ih + b_hh for every row)
    w_hh = pack(w_hh * s, B)
    Hs = steps.split(out)  # noqa: N806
    one, two = _constants(x)
    for t in steps.order():
        y = linear(steps.previous(Hs, h0, t), w_hh).add_(P[t])
        if relu:
            torch.clamp_min(y, 0, out=Hs[t])
        else:
            torch.mul(y.sigmoid_(), two, out=Hs[t]).sub_(one)
    return out, steps.ends(out)


def _rnn_bptt(steps, gout, out, h0, w_hh, relu, need_db=False, x=None):
    """Backward through time, gout (N, H) with dL/dh_n added. Returns dP (N, H), the gradient of the
    pre-activations, dh0, the bias gradient (H,) when the packed loops summed it (asked by need_db), else None, and
    dW^T = [X, H_prev]^T dP, (I+H, H), when they accumulated it step by step (asked by passing x; H a multiple of
    16, see _DW_IN_LOOP_BYTES), else None."""
    B, H = h0.shape  # noqa: N806
    ops = _compiled(out)
    dP = out.new_empty(out.shape)  # noqa: N806
    if ops is not None and _step_kernel(ops, out, H) == 2:
        db = out.new_zeros(H if need_db else 0, dtype=torch.float64)
        dwt = _dw_block(x, H, 1)
        dh0 = ops.rnn_backward_packed(gout, steps.batch_sizes, out, h0, ops.pack_gates(w_hh, *_ONE_GATE, True), dP,
                                      db, steps.reverse, relu, None if dwt is None else x, dwt)
        return dP, dh0, (db.to(out.dtype) if need_db else None), dwt
    linear, pack = gemms(out)
    w_hh_t = pack(w_hh.t(), B)
    Hs, dPs, gouts = steps.split(out), steps.split(dP), steps.split(gout)  # noqa: N806
    order = steps.order()[::-1]
    for k, t in enumerate(order):
        n, cont = steps.sizes[t], steps.continued(t)
        dh = gouts[t]
        if cont:
            y = linear(dPs[order[k - 1]][:cont], w_hh_t)
            dh = y.add_(dh) if cont == n else _add_rows(dh, y)
        if relu:                                             # relu'(a) = [h > 0]
            torch.mul(dh, Hs[t] > 0, out=dPs[t])
        else:                                                # tanh'(a) = 1 - h^2
            torch.addcmul(dh, dh * Hs[t], Hs[t], value=-1, out=dPs[t])
    return dP, linear(steps.starts(dP), w_hh_t), None, None


def rnn_backward(gout, dh_n, x, batch_sizes, h0, w_ih, w_hh, out, relu, reverse, need):
    """Gradients of rnn_forward's inputs (x, h0, w_ih, w_hh, b_ih, b_hh), None where `need` says no."""
    steps = Steps(batch_sizes, x.shape[0], h0.shape[0], reverse)
    gout = _gout_for_loops(steps, gout, dh_n, out)
    dP, dh0, db, dwt = _rnn_bptt(steps, gout, out, h0, w_hh, relu, need_db=need[4] or need[5],  # noqa: N806
                                 x=x if need[2] or need[3] else None)
    wants = (need[0], dwt is None and need[2], dwt is None and need[3], need[4], need[5])
    prev = steps.previous_pairs(out, h0, dP) if wants[2] else []
    dx, *dw = _grads(sequence_linear(x), dP, dP, x, prev, w_ih, wants, db)
    if dwt is not None:                                      # the weight gradients came with the steps
        dw[0:2] = _weight_grads(dwt, x.shape[1], need[2], need[3], x.dtype)
    return [dx, dh0 if need[1] else None, *dw]


def saved_bytes(module: torch.nn.Module, x) -> int:
    """Bytes of the distinct storages autograd saves for backward in module(x), less the parameters and the input:
    how tests and benchmarks check that this path keeps no more activations than torch.nn's layers."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    data = x.data if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x
    skip = {p.untyped_storage().data_ptr() for p in module.parameters()} | {data.untyped_storage().data_ptr()}
    return sum(v for k, v in seen.items() if k not in skip)
