// The step loops of one LSTM layer-direction (scratchlab.rnn.fast), compiled. Loaded by scratchlab/rnn/_cext.py;
// the math and the layouts are fast.py's (docs/design.md, speed plan, says what each part bought). Every per-step
// buffer has the rows of packed.h's `Steps` (N rows: a padded (T, B) batch or a PackedSequence's data):
//
//   G    (N, 4H)  gates in (o, i, f, g) order with the g block scaled by 2 (tanh(a) = 2 sigmoid(2a) - 1): the
//                 activated gates after the forward (with the library kernel, x_t W_ih^T + b on entry)
//   out, C, TC (N, H)  h_t, c_t and tanh(c_t) of every step; h0, c0 (B, H) the initial states
//
// Two kernels. The packed kernel (packed.h over kernel.h; float32 where the build has kernel.h's AVX-512, AVX2 or
// NEON variant, any H; `lstm_forward_packed`, `lstm_backward` with kernel 2) computes the step products itself in
// register tiles, with the input projection, the gate math and the weight gradients inside the step loops and each
// step's tiles split over torch's threads: no library call per step. The library kernel (everything else;
// `lstm_forward`, `lstm_backward` with kernel 0 or 1) makes each step's product with oneDNN's matmul
// (torch.ops.mkldnn._linear_pointwise, found once through the dispatcher) or at::mm, followed by ONE fused pass
// over the step's (rows, 4H) gates. The pointwise loops are plain
// C++ that gcc vectorises (-O3). A step's products and cells cover its bs[t] rows only.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <string_view>

#include "packed.h"

namespace scratchlab {
namespace {

// y = a w^T, a (M, K), w (N, K) or oneDNN's packed form of it.
Tensor linear(const Tensor& a, const Tensor& w, bool onednn) {
  if (!onednn) return at::mm(a, w.t());
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, std::string_view,
                                     c10::List<std::optional<at::Scalar>>, std::optional<std::string_view>)>();
  return op.call(a, w, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), "");
}

// Forward of a block of cells: `rows` batch rows by `units` hidden units of one step. g: the step's gates at the
// block's first cell (row stride 4H, gate stride H; pre-activations in, activations out if Keep); y: the recurrent
// product h_{t-1} W_hh^T for the same cells (row stride ys, gate stride yg); c0 = c_{t-1}, c1 = c_t, tc = tanh(c_t)
// and h = h_t at the block's first cell (row stride H). Keep = false (inference) skips the stores only the
// backward reads. AddG = false: the pre-activations are all in y and g is only written. The library kernel makes
// the whole step one block (y from its product); the packed kernel calls it per tile.
template <typename T, bool Keep, bool AddG = true>
inline void forward_block(T* g, const T* y, int64_t ys, int64_t yg, const T* c0, T* c1, T* tc, T* h, int64_t rows,
                          int64_t units, int64_t H) {
  const auto pre = [](T gv, T yv) { if constexpr (AddG) return gv + yv; else return yv; };
  for (int64_t b = 0; b < rows; ++b) {
    T* gb = g + b * 4 * H;
    const T* yb = y + b * ys;
    const int64_t s = b * H;
#pragma omp simd
    for (int64_t j = 0; j < units; ++j) {
      // (o, i, f) = sigmoid(pre), g = tanh(pre_g) = 2 sigmoid(2 pre_g) - 1 (the 2 is in the weights)
      const T o = sigmoid(pre(gb[j], yb[j]));
      const T i = sigmoid(pre(gb[H + j], yb[yg + j]));
      const T f = sigmoid(pre(gb[2 * H + j], yb[2 * yg + j]));
      const T gg = T(2) * sigmoid(pre(gb[3 * H + j], yb[3 * yg + j])) - T(1);
      // c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
      const T c = f * c0[s + j] + i * gg;
      const T t = T(2) * sigmoid(T(2) * c) - T(1);
      if constexpr (Keep) gb[j] = o, gb[H + j] = i, gb[2 * H + j] = f, gb[3 * H + j] = gg, tc[s + j] = t;
      c1[s + j] = c, h[s + j] = o * t;
    }
  }
}

// Backward of a block of cells (layouts as forward_block's). g: the step's activated gates, go: dL/dh_t from the
// output, y: dG_{t+1} W_hh for the block (row stride ys; zeros for the last step), dc: dL/dc_t on entry (the cell
// path from step t+1), dL/dc_{t-1} through the cell path on exit; writes dG_t, the gradient of the (unscaled)
// pre-activations, and adds its column sums to dbias (gate stride H, when not null): the step's part of the bias
// gradient sum_t sum_b dG_t, taken while dG_t is in cache rather than in a pass over dG (the caller adds each
// step's part to a float64 total: float32 sums over B rows, float64 over the steps).
template <typename T>
inline void backward_block(const T* g, const T* go, const T* y, int64_t ys, T* dc, const T* c0, const T* tc, T* dg,
                           T* dbias, int64_t rows, int64_t units, int64_t H) {
  for (int64_t b = 0; b < rows; ++b) {
    const T* gb = g + b * 4 * H;
    const T* yb = y + b * ys;
    T* db = dg + b * 4 * H;
    const int64_t s = b * H;
#pragma omp simd
    for (int64_t j = 0; j < units; ++j) {
      const T o = gb[j], i = gb[H + j], f = gb[2 * H + j], gg = gb[3 * H + j], t = tc[s + j];
      // dh_t = dL/dh_t (output) + dG_{t+1} W_hh;  dc_t += dh_t o (1 - tanh(c_t)^2)
      const T d = go[s + j] + yb[j];
      const T c = dc[s + j] + d * o * (T(1) - t * t);
      // s' = s (1 - s), tanh' = 1 - g^2: dG = (dh tanh(c) o', dc g i', dc c_{t-1} f', dc i g')
      db[j] = d * t * o * (T(1) - o);
      db[H + j] = c * gg * i * (T(1) - i);
      db[2 * H + j] = c * c0[s + j] * f * (T(1) - f);
      db[3 * H + j] = c * i * (T(1) - gg * gg);
      // dc_{t-1} = dc_t f
      dc[s + j] = c * f;
    }
    if (dbias) {
      for (int64_t q = 0; q < 4; ++q) {
#pragma omp simd
        for (int64_t j = 0; j < units; ++j) dbias[q * H + j] += db[q * H + j];
      }
    }
  }
}

#ifdef SCRATCHLAB_PACKED
// One forward step with the packed kernel, the input projection inside: x (B, I) = x_t, h (B, H) = h_{t-1};
// wx = pack_gates(W_ih) (4Hp/16, I, 16), wh = pack_gates(W_hh) (4Hp/16, H, 16), bias (4Hp) or null, each gate block
// padded with zeros to Hp = H rounded up to 16; g (B, 4H) receives the activated gates when Keep; c0, c1, tc, h1 as
// forward_block's for the whole step. Tiles (packed.h's gated_step): the o, i, f, g panels of 16 units by kMR rows;
// the last group's padding is computed and not stored.
template <bool Keep>
void packed_forward_step(const float* x, int64_t I, const float* wx, const float* bias, float* g, const float* h,
                         const float* wh, const float* c0, float* c1, float* tc, float* h1, int64_t B, int64_t H) {
  const int64_t Hp = (H + 15) / 16 * 16;
  gated_step(x, I, wx, h, wh, B, H, [&](int64_t rows, const Operand& xo, const Operand& ho, int64_t u, float* out) {
    // the o, i, f, g panels of units u..u+15
    rows_product<Identity<4>, Identity<4>>(rows, xo, ho, bias ? bias + u : nullptr, Hp, out);
  }, [&](int64_t r, int64_t mr, int64_t u, int64_t units, const float* out) {
    const int64_t s = r * H + u;
    forward_block<float, Keep, false>(Keep ? g + r * 4 * H + u : nullptr, out, 64, 16, c0 + s, c1 + s, tc + s, h1 + s,
                                      mr, units, H);
  });
}
#endif

// The weight-gradient accumulator of the packed kernel (float32); the double instance is never used (check_packed
// refuses double), it only lets the dispatch over float types compile.
template <typename T>
struct PackedWeightGradient {
  PackedWeightGradient(double*, int64_t, int64_t, int64_t) {}
  void add(const T*, const T*, const T*, int64_t) {}
  void flush() {}
};
#ifdef SCRATCHLAB_PACKED
template <>
struct PackedWeightGradient<float> : StepWeightGradient {
  using StepWeightGradient::StepWeightGradient;
};
#endif

// rows x cols values at p as a tensor for the library's products (a view, not owned, no copy).
template <typename T>
Tensor rows_of(const T* p, int64_t rows, int64_t cols, const Tensor& like) {
  return at::from_blob(const_cast<T*>(p), {rows, cols}, like.options());
}

// h0, c0: contiguous (B, H) of the buffers' type.
void check_states(const Tensor& h0, const Tensor& c0, const Tensor& like, const char* fn) {
  TORCH_CHECK(h0.dim() == 2 && h0.is_contiguous() && c0.is_contiguous() && c0.sizes() == h0.sizes() &&
              h0.scalar_type() == like.scalar_type() && c0.scalar_type() == like.scalar_type(),
              fn, ": h0 and c0 must be contiguous (B, H) tensors of the buffers' type, got ", h0.sizes(), " and ",
              c0.sizes());
}

// The forward with the library kernel. G (N, 4H) holds x_t W_ih^T + b for every row on entry, the activated gates
// on exit (unfinished when !keep, inference); out (N, H) receives h_t; w is W_hh (4H, H) as fast.py's `pack`
// returns it (oneDNN's blocked layout for float32 on CPU when onednn, else plain). keep (a backward follows): C, TC
// (N, H) receive c_t and tanh(c_t). Otherwise C is (B, H), holds c0 on entry and each sequence's last c on exit
// (a cell's c is read by that cell alone, so it is updated in place), and TC is not touched.
void lstm_forward(Tensor G, const std::optional<Tensor>& batch_sizes, const Tensor& h0, const Tensor& c0, Tensor out,
                  Tensor C, Tensor TC, const Tensor& w, bool reverse, bool onednn, bool keep) {
  check_states(h0, c0, G, "lstm_forward");
  const int64_t B = h0.size(0), H = h0.size(1);
  const Steps s(batch_sizes, out.numel() / H, B, reverse);
  check_rows(s, G, 4 * H, "lstm_forward: G");
  check_rows(s, out, H, "lstm_forward: out");
  if (keep) {
    check_rows(s, C, H, "lstm_forward: C");
    check_rows(s, TC, H, "lstm_forward: TC");
  } else {
    TORCH_CHECK(C.is_contiguous() && C.numel() == B * H, "lstm_forward: without keep, C is the (B, H) running c");
  }
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "lstm_forward", [&] {
    scalar_t *g = G.data_ptr<scalar_t>(), *h = out.data_ptr<scalar_t>(), *c = C.data_ptr<scalar_t>();
    scalar_t* tc = keep ? TC.data_ptr<scalar_t>() : nullptr;
    const scalar_t *hi = h0.data_ptr<scalar_t>(), *ci = c0.data_ptr<scalar_t>();
    std::vector<scalar_t> hs(B * H), cs(keep ? B * H : 0);  // rows gathered where sequences start (`previous`)
    for (int64_t k = 0; k < s.T; ++k) {
      const int64_t t = s.step(k), rows = s.bs[t], o = s.off[t];
      const scalar_t* hp = previous(s, t, static_cast<const scalar_t*>(h), hi, hs.data(), H);
      const Tensor y = linear(rows_of(hp, rows, H, G), w, onednn).contiguous();  // h_{t-1} W_hh^T, (rows, 4H)
      if (keep) {
        const scalar_t* cp = previous(s, t, static_cast<const scalar_t*>(c), ci, cs.data(), H);
        forward_block<scalar_t, true>(g + o * 4 * H, y.data_ptr<scalar_t>(), 4 * H, H, cp, c + o * H, tc + o * H,
                                      h + o * H, rows, H, H);
      } else {
        forward_block<scalar_t, false>(g + o * 4 * H, y.data_ptr<scalar_t>(), 4 * H, H, c, c, nullptr, h + o * H,
                                       rows, H, H);
      }
    }
  });
}

// The forward with the packed kernel, the input projection inside each step: x (N, I), wx = pack_gates(W_ih), bias
// (4Hp) or undefined, wh = pack_gates(W_hh) (gate blocks in (o, i, f, g) order, g scaled by 2); out, G, C, TC and
// keep as lstm_forward's.
void lstm_forward_packed(const Tensor& x, const std::optional<Tensor>& batch_sizes, const Tensor& h0,
                         const Tensor& c0, const Tensor& wx, const std::optional<Tensor>& bias, const Tensor& wh,
                         Tensor G, Tensor out, Tensor C, Tensor TC, bool reverse, bool keep) {
  check_packed(out, wh);
  check_packed(out, wx);
  check_states(h0, c0, out, "lstm_forward_packed");
  const int64_t I = x.size(-1), B = h0.size(0), H = h0.size(1), Hp = (H + 15) / 16 * 16;
  TORCH_CHECK(I > 0 && x.scalar_type() == at::kFloat, "lstm_forward_packed: x must be float32 (N, I), got ",
              x.scalar_type(), " ", x.sizes());
  const Steps s(batch_sizes, x.numel() / I, B, reverse);
  check_rows(s, x, I, "lstm_forward_packed: x");
  check_rows(s, out, H, "lstm_forward_packed: out");
  if (keep) {
    check_rows(s, G, 4 * H, "lstm_forward_packed: G");
    check_rows(s, C, H, "lstm_forward_packed: C");
    check_rows(s, TC, H, "lstm_forward_packed: TC");
  } else {
    TORCH_CHECK(C.is_contiguous() && C.numel() == B * H, "lstm_forward_packed: without keep, C is the (B, H) "
                "running c");
  }
  TORCH_CHECK(wh.size(0) == Hp / 4 && wh.size(1) == H && wx.size(0) == Hp / 4 && wx.size(1) == I,
              "lstm_forward_packed: weights ", wx.sizes(), ", ", wh.sizes(), " are not pack_gates of (4H, I), (4H, H)",
              " for H = ", H);
  TORCH_CHECK(!bias || (bias->is_contiguous() && bias->numel() == 4 * Hp && bias->scalar_type() == at::kFloat),
              "lstm_forward_packed: bias must be a contiguous float32 (4Hp,) tensor (pack_gates of (4H, 1))");
#ifdef SCRATCHLAB_PACKED
  float *h = out.data_ptr<float>(), *c = C.data_ptr<float>();
  float *g = keep ? G.data_ptr<float>() : nullptr, *tc = keep ? TC.data_ptr<float>() : nullptr;
  const float *xp = x.data_ptr<float>(), *wxp = wx.data_ptr<float>(), *whp = wh.data_ptr<float>();
  const float *hi = h0.data_ptr<float>(), *ci = c0.data_ptr<float>();
  const float* b = bias ? bias->data_ptr<float>() : nullptr;
  std::vector<float> hs(B * H), cs(keep ? B * H : 0);
  for (int64_t k = 0; k < s.T; ++k) {
    const int64_t t = s.step(k), rows = s.bs[t], o = s.off[t];
    const float* hp = previous(s, t, static_cast<const float*>(h), hi, hs.data(), H);
    if (keep) {
      const float* cp = previous(s, t, static_cast<const float*>(c), ci, cs.data(), H);
      packed_forward_step<true>(xp + o * I, I, wxp, b, g + o * 4 * H, hp, whp, cp, c + o * H, tc + o * H, h + o * H,
                                rows, H);
    } else {
      packed_forward_step<false>(xp + o * I, I, wxp, b, nullptr, hp, whp, c, c, nullptr, h + o * H, rows, H);
    }
  }
#endif
}

// One backward step with the packed kernel (float32 only; the double overloads are never called, check_packed
// refuses them): dG_next W_hh tile by tile for the step's first B rows, each tile followed by backward_block on its
// cells, whose data is prefetched before the tile's product so that the product hides the memory latency.
// Arguments as backward_block's for those rows; dg_next = dG of the step run after this one (row stride 4H),
// w_t = pack_gates(W_hh, transposed).
void packed_backward_step(const double*, const Tensor&, const double*, const double*, const double*, const double*,
                          double*, double*, double*, int64_t, int64_t) {}
void packed_linear(const double*, const Tensor&, double*, int64_t, int64_t) {}
#ifdef SCRATCHLAB_PACKED
void packed_backward_step(const float* dg_next, const Tensor& w_t, const float* g, const float* go, const float* c0,
                          const float* tc, float* dc, float* dg, float* dbias, int64_t B, int64_t H) {
  packed_product(dg_next, B, 4 * H, w_t.data_ptr<float>(), H, [&](int64_t r, int64_t mr, int64_t u, int64_t cols) {
    const int64_t o = r * H + u, bytes = 4 * cols;
    for (int64_t q = 0; q < 4; ++q) prefetch_rows(g + r * 4 * H + q * H + u, mr, 4 * H, bytes);
    for (const float* p : {go, c0, tc, static_cast<const float*>(dc)}) prefetch_rows(p + o, mr, H, bytes);
  }, [&](int64_t r, int64_t mr, int64_t u, int64_t cols, const float* y) {
    const int64_t o = r * H + u;
    backward_block<float>(g + r * 4 * H + u, go + o, y, 64, dc + o, c0 + o, tc + o, dg + r * 4 * H + u,
                          dbias ? dbias + u : nullptr, mr, cols, H);
  });
}

// out (B, H) = a (B, 4H) W with w_t = pack_gates(W, transposed).
void packed_linear(const float* a, const Tensor& w_t, float* out, int64_t B, int64_t H) {
  scratchlab::packed_linear(a, B, 4 * H, w_t.data_ptr<float>(), H, out);
}
#else
void packed_backward_step(const float*, const Tensor&, const float*, const float*, const float*, const float*,
                          float*, float*, float*, int64_t, int64_t) {}
void packed_linear(const float*, const Tensor&, float*, int64_t, int64_t) {}
#endif

// Backward through time. gout (N, H) contiguous, each sequence's dL/dh_n already added at its last row (fast.py);
// dc (B, H) = dL/dc_n on entry, dL/dc0 on exit; G, C, TC from the forward, c0 (B, H); w_t: W_hh^T (H, 4H) in the
// kernel's layout. Fills dG (N, 4H), adds its column sums to db (float64 (4H,), or empty to skip) and returns
// dL/dh0 = dG W_hh at each sequence's first row (B, H). With the packed kernel and dwt ((I + H, 4H) float64; x (N, I),
// out (N, H) and h0 (B, H) given) it adds [x_t, h_{t-1}]^T dG_t of every step to dwt.
Tensor lstm_backward(const Tensor& gout, const std::optional<Tensor>& batch_sizes, Tensor dc, const Tensor& G,
                     const Tensor& C, const Tensor& c0, const Tensor& TC, const Tensor& w_t, Tensor dG, Tensor db,
                     bool reverse, int64_t kernel, const std::optional<Tensor>& x, const std::optional<Tensor>& out,
                     const std::optional<Tensor>& h0, std::optional<Tensor> dwt) {
  check_states(dc, c0, G, "lstm_backward");
  const int64_t B = c0.size(0), H = c0.size(1), I = x ? x->size(-1) : 0;
  const Steps s(batch_sizes, gout.numel() / H, B, reverse);
  for (const auto& [t, w, what] : {std::tuple{&gout, H, "gout"}, std::tuple{&G, 4 * H, "G"}, std::tuple{&C, H, "C"},
                                   std::tuple{&TC, H, "TC"},
                                   std::tuple{static_cast<const Tensor*>(&dG), 4 * H, "dG"}}) {
    check_rows(s, *t, w, what);
  }
  TORCH_CHECK(!dwt || (kernel == kPacked && x && out && h0 && I > 0 && dwt->is_contiguous() &&
                       dwt->size(0) == I + H && dwt->size(1) == 4 * H && dwt->scalar_type() == at::kDouble),
              "lstm_backward: dWT (I + H, 4H, float64) is accumulated by the packed kernel only, from x, out and h0");
  if (dwt) {
    check_rows(s, *x, I, "lstm_backward: x");
    check_rows(s, *out, H, "lstm_backward: out");
    check_states(*h0, c0, G, "lstm_backward");
  }
  TORCH_CHECK(db.numel() == 0 || (db.numel() == 4 * H && db.scalar_type() == at::kDouble && db.is_contiguous()),
              "lstm_backward: db must be empty or a contiguous float64 (4H,) tensor");
  double* dbias = db.numel() ? db.data_ptr<double>() : nullptr;
  if (kernel == kPacked) {
    check_packed(G, w_t);
    TORCH_CHECK(w_t.size(0) == (H + 15) / 16 && w_t.size(1) == 4 * H, "lstm_backward: weight ", w_t.sizes(),
                " is not pack_gates(W_hh, transposed) for H = ", H);
    TORCH_CHECK(!dwt || H % 16 == 0, "lstm_backward: the weight gradients are accumulated in the loop only for H a "
                "multiple of 16, got ", H);
  }
  return AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "lstm_backward", [&] {
    const scalar_t *g = G.data_ptr<scalar_t>(), *go = gout.data_ptr<scalar_t>(), *c = C.data_ptr<scalar_t>(),
                   *ci = c0.data_ptr<scalar_t>(), *tc = TC.data_ptr<scalar_t>();
    scalar_t *d = dG.data_ptr<scalar_t>(), *dcp = dc.data_ptr<scalar_t>();
    std::vector<scalar_t> part(dbias ? 4 * H : 0);        // one step's bias gradient
    auto add_part = [&] {
      for (int64_t j = 0; j < static_cast<int64_t>(part.size()); ++j) dbias[j] += part[j], part[j] = 0;
    };
    scalar_t* db_step = dbias ? part.data() : nullptr;
    std::vector<scalar_t> cs(B * H), hs(dwt ? B * H : 0), zero(B * H, scalar_t(0));
    // the packed kernel's weight gradients, step by step while dG_t is in cache (packed.h)
    const scalar_t *xp = dwt ? x->data_ptr<scalar_t>() : nullptr, *hp = dwt ? out->data_ptr<scalar_t>() : nullptr,
                   *hi = dwt ? h0->data_ptr<scalar_t>() : nullptr;
    PackedWeightGradient<scalar_t> weights(dwt ? dwt->data_ptr<double>() : nullptr, I, H, 4 * H);
    for (int64_t k = s.T - 1; k >= 0; --k) {
      const int64_t t = s.step(k), rows = s.bs[t], o = s.off[t], cont = s.continued(t);
      const scalar_t *gt = g + o * 4 * H, *got = go + o * H, *tct = tc + o * H;
      const scalar_t* cp = previous(s, t, c, ci, cs.data(), H);
      scalar_t* dgt = d + o * 4 * H;
      if (cont > 0) {                                     // rows that feed the step run after t: dh += dG_next W_hh
        const scalar_t* dg_next = d + s.off[s.step(k + 1)] * 4 * H;
        if (kernel == kPacked) {
          packed_backward_step(dg_next, w_t, gt, got, cp, tct, dcp, dgt, db_step, cont, H);
        } else {
          const Tensor y = linear(rows_of(dg_next, cont, 4 * H, G), w_t, kernel == kOneDnn).contiguous();  // (cont, H)
          backward_block<scalar_t>(gt, got, y.data_ptr<scalar_t>(), H, dcp, cp, tct, dgt, db_step, cont, H, H);
        }
      }
      if (cont < rows) {                                  // rows whose sequence ends here: dh is the output's alone
        column_panels(H, [&](int64_t u, int64_t cols) {
          const int64_t r = cont * H + u, q = cont * 4 * H + u;
          backward_block<scalar_t>(gt + q, got + r, zero.data() + u, H, dcp + r, cp + r, tct + r, dgt + q,
                                   db_step ? db_step + u : nullptr, rows - cont, cols, H);
        });
      }
      add_part();
      if (dwt) weights.add(xp + o * I, previous(s, t, hp, hi, hs.data(), H), dgt, rows);
    }
    weights.flush();
    std::vector<scalar_t> gathered(s.reverse && !s.uniform() ? B * 4 * H : 0);
    const scalar_t* first = first_rows(s, static_cast<const scalar_t*>(d), gathered.data(), 4 * H);
    if (kernel == kPacked) {                              // dL/dh0 = dG W_hh at each sequence's first row
      Tensor dh0 = at::empty({B, H}, gout.options());
      packed_linear(first, w_t, dh0.data_ptr<scalar_t>(), B, H);
      return dh0;
    }
    return linear(rows_of(first, B, 4 * H, G), w_t, kernel == kOneDnn).contiguous();
  });
}


// ---------------------------------------------------------------------------------------- bfloat16 inference
// The forward of an LSTM layer-direction with bf16 products (fast.lstm_forward_bf16 is the caller, and its
// docstring the readable definition): x_t, h_{t-1} and the weights rounded to bf16 (round to nearest even), each
// product of a bf16 pair exact in float32 and summed in float32 by vdpbf16ps (AVX512-BF16), the bias and the cell in
// float32 (forward_block, as the float32 kernels). Inference only: nothing is kept for a backward. Built where the
// compiler targets AVX512-BF16 (SCRATCHLAB_BF16); `bf16_available` says so.
//
// Operands: x (N, Ie) and h rows (., He) bf16 with I, H padded to even widths Ie, He with zeros; weights as
// pack_gates panels regrouped in k pairs, (4Hp/16, K/2, 16, 2) bf16 with K = Ie or He: one 64-byte vector holds 16
// output columns at k = 2kk and 2kk + 1, which vdpbf16ps multiplies by a broadcast (x[2kk], x[2kk + 1]) pair.
#if defined(SCRATCHLAB_ISA_AVX512) && defined(__AVX512BF16__)
#define SCRATCHLAB_BF16 1
// out[r 64 + 16 j + l] = bias_j[l] + sum_kk (xa[r][2kk] xp_j[kk][l][0] + xa[r][2kk+1] xp_j[kk][l][1]) + the same for
// h, for rows r < MR and the four gate panels j of one group of 16 units (panel j at xp + j xps, bias_j = bias + j bs).
template <int MR>
inline void bf16_tile(const uint16_t* xa, int64_t xs, int64_t kx, const uint16_t* xp, const uint16_t* ha,
                      int64_t hs, int64_t kh, const uint16_t* hp, int64_t ps_x, int64_t ps_h, const float* bias,
                      int64_t bs, float* out) {
  __m512 acc[MR][4];
  for (int j = 0; j < 4; ++j) {
    const __m512 b = bias ? _mm512_loadu_ps(bias + j * bs) : _mm512_setzero_ps();
    for (int r = 0; r < MR; ++r) acc[r][j] = b;
  }
  const auto run = [&](const uint16_t* a, int64_t as, int64_t kk_n, const uint16_t* p, int64_t ps) {
    for (int64_t kk = 0; kk < kk_n; ++kk) {
      __m512bh w[4];
      for (int j = 0; j < 4; ++j) w[j] = (__m512bh)_mm512_loadu_si512(p + j * ps + kk * 32);
      for (int r = 0; r < MR; ++r) {
        uint32_t pair;
        std::memcpy(&pair, a + r * as + 2 * kk, 4);
        const __m512bh v = (__m512bh)_mm512_set1_epi32(static_cast<int>(pair));
        for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], v, w[j]);
      }
    }
  };
  run(xa, xs, kx, xp, ps_x);
  run(ha, hs, kh, hp, ps_h);
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) _mm512_storeu_ps(out + r * 64 + j * 16, acc[r][j]);
}

// float32 -> bf16, round to nearest even (as torch's .to(torch.bfloat16) for finite values)
inline void to_bf16(const float* src, uint16_t* dst, int64_t n) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + j), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + j)));
  for (; j < n; ++j) {
    uint32_t u;
    std::memcpy(&u, src + j, 4);
    dst[j] = static_cast<uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
  }
}
#endif

bool bf16_available() {
#ifdef SCRATCHLAB_BF16
  return true;
#else
  return false;
#endif
}

// pack_gates panels (P, K, 16) float32 as bf16 k pairs (P, Ke / 2, 16, 2), Ke = K + K % 2: [p][kk][l][q] = panel p's
// column l at k = 2 kk + q, zero at the pad k (fast._bf16_panels is its readable definition).
Tensor bf16_pairs(const Tensor& panels) {
  TORCH_CHECK(panels.dim() == 3 && panels.size(2) == 16 && panels.scalar_type() == at::kFloat,
              "bf16_pairs: expected pack_gates panels (P, K, 16) float32, got ", panels.sizes());
  const Tensor p = panels.contiguous();
  const int64_t P = p.size(0), K = p.size(1), Ke = K + K % 2;
  Tensor out = at::zeros({P, Ke / 2, 16, 2}, p.options().dtype(at::kBFloat16));
  const float* src = p.data_ptr<float>();
  at::BFloat16* dst = out.data_ptr<at::BFloat16>();
  at::parallel_for(0, P, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t i = p0; i < p1; ++i)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t l = 0; l < 16; ++l)
          dst[((i * (Ke / 2) + k / 2) * 16 + l) * 2 + k % 2] = at::BFloat16(src[(i * K + k) * 16 + l]);
  });
  return out;
}

// x (N, I) and h0 (B, H) float32 (rounded to bf16 here, a step's rows at a time, into even widths Ie, He with a zero
// pad column); wx, wh = bf16_pairs of pack_gates(W_ih), pack_gates(W_hh); bias (4Hp) float32 or undefined; out (N, H)
// float32 receives h_t; C (B, H) float32 holds c0 on entry and each sequence's last c on exit (lstm_forward's
// inference layout).
void lstm_forward_bf16(const Tensor& x, const std::optional<Tensor>& batch_sizes, const Tensor& h0, const Tensor& wx,
                       const std::optional<Tensor>& bias, const Tensor& wh, Tensor out, Tensor C, bool reverse) {
  TORCH_CHECK(bf16_available(), "lstm_forward_bf16: this build (", SCRATCHLAB_ISA_NAME, ") has no AVX512-BF16 kernel");
  const int64_t I = x.size(-1), B = h0.size(0), H = h0.size(1), Hp = (H + 15) / 16 * 16;
  const int64_t Ie = I + I % 2, He = H + H % 2;
  TORCH_CHECK(x.scalar_type() == at::kFloat && h0.scalar_type() == at::kFloat && x.is_contiguous() &&
              h0.is_contiguous() && I > 0, "lstm_forward_bf16: x (N, I) and h0 (B, H) must be contiguous float32, got ",
              x.sizes(), " ", h0.sizes());
  TORCH_CHECK(wx.scalar_type() == at::kBFloat16 && wh.scalar_type() == at::kBFloat16 && wx.is_contiguous() &&
              wh.is_contiguous() && wx.dim() == 4 && wh.dim() == 4 && wx.size(0) == Hp / 4 && wh.size(0) == Hp / 4 &&
              wx.size(1) == Ie / 2 && wh.size(1) == He / 2 && wx.size(2) == 16 && wx.size(3) == 2,
              "lstm_forward_bf16: weights ", wx.sizes(), ", ", wh.sizes(), " are not bf16_pairs panels for I = ", I,
              ", H = ", H);
  TORCH_CHECK(!bias || (bias->is_contiguous() && bias->numel() == 4 * Hp && bias->scalar_type() == at::kFloat),
              "lstm_forward_bf16: bias must be a contiguous float32 (4Hp,) tensor");
  TORCH_CHECK(out.scalar_type() == at::kFloat && C.scalar_type() == at::kFloat && C.is_contiguous() &&
              C.numel() == B * H, "lstm_forward_bf16: out (N, H) and C (B, H) must be float32");
  const Steps s(batch_sizes, x.numel() / I, B, reverse);
  check_rows(s, out, H, "lstm_forward_bf16: out");
#ifdef SCRATCHLAB_BF16
  const float* xf = x.data_ptr<float>();
  const auto* wxp = reinterpret_cast<const uint16_t*>(wx.data_ptr<at::BFloat16>());
  const auto* whp = reinterpret_cast<const uint16_t*>(wh.data_ptr<at::BFloat16>());
  const float* b = bias ? bias->data_ptr<float>() : nullptr;
  float *h = out.data_ptr<float>(), *c = C.data_ptr<float>();
  // h_t of every row in bf16, h0 and the step's x rows in bf16 (the pad columns stay 0)
  std::vector<uint16_t> hb(s.N * He, 0), hi(B * He, 0), scratch(B * He), xs(B * Ie, 0);
  const float* h0f = h0.data_ptr<float>();
  for (int64_t q = 0; q < B; ++q) to_bf16(h0f + q * H, hi.data() + q * He, H);
  const int64_t ps_x = (Hp / 16) * Ie * 16, ps_h = (Hp / 16) * He * 16;  // gate block to gate block
  for (int64_t k = 0; k < s.T; ++k) {
    const int64_t t = s.step(k), rows = s.bs[t], o = s.off[t];
    const uint16_t* hp = previous(s, t, static_cast<const uint16_t*>(hb.data()), hi.data(), scratch.data(), He);
    for (int64_t q = 0; q < rows; ++q) to_bf16(xf + (o + q) * I, xs.data() + q * Ie, I);
    const uint16_t* xt = xs.data();
    at::parallel_for(0, Hp / 16, 1, [&](int64_t g0, int64_t g1) {
      alignas(64) float tile[6 * 64];
      for (int64_t grp = g0; grp < g1; ++grp) {
        const int64_t u = grp * 16, units = std::min<int64_t>(16, H - u);
        const uint16_t *px = wxp + grp * Ie * 16, *ph = whp + grp * He * 16;
        for (int64_t r = 0; r < rows; r += 6) {
          const int64_t mr = std::min<int64_t>(6, rows - r);
          const uint16_t *xa = xt + r * Ie, *ha = hp + r * He;
          const float* bu = b ? b + u : nullptr;
          switch (mr) {
            case 6: bf16_tile<6>(xa, Ie, Ie / 2, px, ha, He, He / 2, ph, ps_x, ps_h, bu, Hp, tile); break;
            case 5: bf16_tile<5>(xa, Ie, Ie / 2, px, ha, He, He / 2, ph, ps_x, ps_h, bu, Hp, tile); break;
            case 4: bf16_tile<4>(xa, Ie, Ie / 2, px, ha, He, He / 2, ph, ps_x, ps_h, bu, Hp, tile); break;
            case 3: bf16_tile<3>(xa, Ie, Ie / 2, px, ha, He, He / 2, ph, ps_x, ps_h, bu, Hp, tile); break;
            case 2: bf16_tile<2>(xa, Ie, Ie / 2, px, ha, He, He / 2, ph, ps_x, ps_h, bu, Hp, tile); break;
            default: bf16_tile<1>(xa, Ie, Ie / 2, px, ha, He, He / 2, ph, ps_x, ps_h, bu, Hp, tile); break;
          }
          const int64_t cs = r * H + u;
          float* hrow = h + o * H + cs;
          forward_block<float, false, false>(nullptr, tile, 64, 16, c + cs, c + cs, nullptr, hrow, mr, units, H);
          for (int64_t q = 0; q < mr; ++q) to_bf16(hrow + q * H, hb.data() + (o + r + q) * He + u, units);
        }
      }
    });
  }
#endif
}

}  // namespace
}  // namespace scratchlab

TORCH_LIBRARY_FRAGMENT(scratchlab_rnn, m) {
  using namespace scratchlab;
  m.def("lstm_forward(Tensor(a!) G, Tensor? batch_sizes, Tensor h0, Tensor c0, Tensor(b!) out, Tensor(c!) C,"
        " Tensor(d!) TC, Tensor w, bool reverse, bool onednn, bool keep) -> ()", &lstm_forward);
  m.def("lstm_forward_packed(Tensor x, Tensor? batch_sizes, Tensor h0, Tensor c0, Tensor wx, Tensor? bias, Tensor wh,"
        " Tensor(a!) G, Tensor(b!) out, Tensor(c!) C, Tensor(d!) TC, bool reverse, bool keep) -> ()",
        &lstm_forward_packed);
  m.def("lstm_backward(Tensor gout, Tensor? batch_sizes, Tensor(a!) dc, Tensor G, Tensor C, Tensor c0, Tensor TC,"
        " Tensor w_t, Tensor(b!) dG, Tensor(c!) db, bool reverse, int kernel, Tensor? x=None, Tensor? out=None,"
        " Tensor? h0=None, Tensor(e!)? dwt=None) -> Tensor", &lstm_backward);
  m.def("bf16_available() -> bool", &bf16_available);
  m.def("bf16_pairs(Tensor panels) -> Tensor", &bf16_pairs);
  m.def("lstm_forward_bf16(Tensor x, Tensor? batch_sizes, Tensor h0, Tensor wx, Tensor? bias, Tensor wh,"
        " Tensor(a!) out, Tensor(b!) C, bool reverse) -> ()", &lstm_forward_bf16);
}
