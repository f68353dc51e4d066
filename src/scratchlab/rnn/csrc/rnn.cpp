// The step loops of one Elman RNN layer-direction (scratchlab.rnn.fast), h_t = act(x_t W_ih^T + b + h_{t-1} W_hh^T)
// with act = tanh or relu, on the packed kernel (packed.h; float32 where kernel.h has a vector variant). Layouts are fast.py's, every
// per-step buffer with the rows of packed.h's `Steps` (N rows: a padded batch or a PackedSequence's data):
//
//   out (N, H)  the states h_t; h0 (B, H) the initial state
//   dP  (N, H)  the backward's gradient of the pre-activations
//
// Per step one register-tile product over 64 consecutive hidden units, b + x_t W_ih^T + h_{t-1} W_hh^T, and the
// activation applied to the tile while it is in L1; the backward likewise computes dP_{t+1} W_hh per tile and
// finishes dP_t = (dL/dh_t + dP_{t+1} W_hh) act'(h_t) on it, summing the bias and (for H a multiple of 16) the
// weight gradients inside the loop. Everything else (float64, CUDA, a generic build) runs fast.py's Python loops.
#include <torch/library.h>

#include <optional>

#include "packed.h"

namespace scratchlab {
namespace {

#ifdef SCRATCHLAB_PACKED
// act on rows x cols values of a tile (row stride 64) into h (row stride H). tanh(a) = 2 sigmoid(2a) - 1 (the
// LSTM's reason: one vectorised exp); relu written as a < 0 ? 0 : a so that NaN stays NaN, as torch's.
template <bool Relu>
void activate(const float* y, int64_t rows, int64_t cols, float* h, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* yr = y + r * 64;
    float* hr = h + r * H;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      const float a = yr[j];
      if constexpr (Relu) {
        hr[j] = a < 0.f ? 0.f : a;
      } else {
        hr[j] = 2.f * sigmoid(2.f * a) - 1.f;
      }
    }
  }
}

// dP = (go + y) act'(h) for rows x cols values, act' from the output: tanh' = 1 - h^2, relu' = [h > 0] (torch's
// threshold_backward); y (row stride 64) is dP_{t+1} W_hh, or null on the last step; adds the columns' sums to
// dbias when not null. go, h, dp: row stride H.
template <bool Relu>
void backward_block(const float* go, const float* y, const float* h, float* dp, float* dbias, int64_t rows,
                    int64_t cols, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    const float *gr = go + r * H, *hr = h + r * H, *yr = y ? y + r * 64 : nullptr;
    float* dr = dp + r * H;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      const float d = gr[j] + (yr ? yr[j] : 0.f), v = hr[j];
      if constexpr (Relu) {
        dr[j] = v > 0.f ? d : 0.f;
      } else {
        dr[j] = d * (1.f - v * v);
      }
    }
    if (dbias) {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) dbias[j] += dr[j];
    }
  }
}

// One forward step: x (B, I) = x_t, h (B, H) = h_{t-1}, wx = pack_gates(W_ih) (Hp/16, I, 16), wh = pack_gates(W_hh)
// (Hp/16, H, 16), bias (Hp) or null; writes h1 = h_t. Threads take panels of 64 units.
template <bool Relu>
void forward_step(const float* x, int64_t I, const float* wx, const float* bias, const float* h, const float* wh,
                  float* h1, int64_t B, int64_t H) {
  const int64_t panel = 16 * kNV;
  at::parallel_for(0, (H + panel - 1) / panel, 1, [&](int64_t begin, int64_t end) {
    alignas(64) float out[kRowBlock * 64];
    for (int64_t u = begin * panel; u < std::min(H, end * panel); u += panel) {
      const int64_t nv = std::min<int64_t>(kNV, (H - u + 15) / 16), cols = std::min(panel, H - u);
      for (int64_t r0 = 0; r0 < B; r0 += kRowBlock) {
        const int64_t rows = std::min<int64_t>(kRowBlock, B - r0);
        const Operand xo{x + r0 * I, I, 1, wx + (u / 16) * I * 16, I * 16, 16, I};
        const Operand ho{h + r0 * H, H, 1, wh + (u / 16) * H * 16, H * 16, 16, H};
        plain_rows(nv)(rows, xo, ho, bias ? bias + u : nullptr, 16, out);
        activate<Relu>(out, rows, cols, h1 + r0 * H + u, H);
      }
    }
  });
}
#endif

// x (N, I), h0 (B, H), out (N, H) float32 and the packed weights of an (H, I), (H, H) pair; returns the steps.
Steps check_rnn(const Tensor& x, const std::optional<Tensor>& batch_sizes, const Tensor& h0, const Tensor& out,
                const Tensor& wx, const Tensor& wh, bool reverse) {
  check_packed(out, wh);
  check_packed(out, wx);
  TORCH_CHECK(h0.dim() == 2 && h0.is_contiguous() && h0.scalar_type() == at::kFloat && x.scalar_type() == at::kFloat,
              "rnn: x and h0 must be float32, h0 a contiguous (B, H), got ", h0.sizes());
  const int64_t I = x.size(-1), B = h0.size(0), H = h0.size(1), Hp = (H + 15) / 16 * 16;
  Steps s(batch_sizes, x.numel() / std::max<int64_t>(I, 1), B, reverse);
  check_rows(s, x, I, "rnn: x");
  check_rows(s, out, H, "rnn: out");
  TORCH_CHECK(wx.size(0) == Hp / 16 && wx.size(1) == I && wh.size(0) == Hp / 16 && wh.size(1) == H, "rnn: weights ",
              wx.sizes(), ", ", wh.sizes(), " are not pack_gates of (H, I), (H, H) for H = ", H);
  return s;
}

// The forward: x (N, I), wx, wh = pack_gates of W_ih, W_hh (one gate, scale 1), bias = pack_gates of b_ih + b_hh
// as (H, 1) or undefined, h0 (B, H); fills out (N, H) with h_t.
void rnn_forward_packed(const Tensor& x, const std::optional<Tensor>& batch_sizes, const Tensor& h0, const Tensor& wx,
                        const std::optional<Tensor>& bias, const Tensor& wh, Tensor out, bool reverse, bool relu) {
  const Steps s = check_rnn(x, batch_sizes, h0, out, wx, wh, reverse);
  const int64_t I = x.size(-1), B = h0.size(0), H = h0.size(1);
  TORCH_CHECK(!bias || (bias->is_contiguous() && bias->numel() == (H + 15) / 16 * 16 &&
                        bias->scalar_type() == at::kFloat),
              "rnn_forward_packed: bias must be a contiguous float32 (Hp,) tensor (pack_gates of (H, 1))");
#ifdef SCRATCHLAB_PACKED
  float* h = out.data_ptr<float>();
  const float *xp = x.data_ptr<float>(), *wxp = wx.data_ptr<float>(), *whp = wh.data_ptr<float>();
  const float *hi = h0.data_ptr<float>(), *b = bias ? bias->data_ptr<float>() : nullptr;
  std::vector<float> hs(B * H);
  auto step = relu ? forward_step<true> : forward_step<false>;
  for (int64_t k = 0; k < s.T; ++k) {
    const int64_t t = s.step(k), o = s.off[t];
    step(xp + o * I, I, wxp, b, previous(s, t, static_cast<const float*>(h), hi, hs.data(), H), whp, h + o * H,
         s.bs[t], H);
  }
#endif
}

// Backward through time: gout (N, H) contiguous, each sequence's dL/dh_n already added at its last row (fast.py);
// out, h0 from the forward, w_t = pack_gates(W_hh, transposed) (Hp/16, H, 16); fills dP (N, H), adds its column
// sums to db (float64 (H,), or empty), and, when dwt (I + H, H) float64 is given (H a multiple of 16, x (N, I)), adds
// [x_t, h_{t-1}]^T dP_t of every step to it; returns dL/dh0 = dP W_hh at each sequence's first row (B, H).
Tensor rnn_backward_packed(const Tensor& gout, const std::optional<Tensor>& batch_sizes, const Tensor& out,
                           const Tensor& h0, const Tensor& w_t, Tensor dP, Tensor db, bool reverse, bool relu,
                           const std::optional<Tensor>& x, std::optional<Tensor> dwt) {
  check_packed(out, w_t);
  TORCH_CHECK(h0.dim() == 2 && h0.is_contiguous() && h0.scalar_type() == at::kFloat,
              "rnn_backward_packed: h0 must be a contiguous float32 (B, H), got ", h0.sizes());
  const int64_t B = h0.size(0), H = h0.size(1), I = x ? x->size(-1) : 0;
  const Steps s(batch_sizes, gout.numel() / H, B, reverse);
  check_rows(s, gout, H, "rnn_backward_packed: gout");
  check_rows(s, out, H, "rnn_backward_packed: out");
  check_rows(s, dP, H, "rnn_backward_packed: dP");
  TORCH_CHECK(w_t.size(0) == (H + 15) / 16 && w_t.size(1) == H, "rnn_backward_packed: weight ", w_t.sizes(),
              " is not pack_gates(W_hh, transposed) for H = ", H);
  TORCH_CHECK(db.numel() == 0 || (db.numel() == H && db.scalar_type() == at::kDouble && db.is_contiguous()),
              "rnn_backward_packed: db must be empty or a contiguous float64 (H,) tensor");
  TORCH_CHECK(!dwt || (x && I > 0 && H % 16 == 0 && dwt->is_contiguous() && dwt->scalar_type() == at::kDouble &&
                       dwt->size(0) == I + H && dwt->size(1) == H),
              "rnn_backward_packed: dWT (I + H, H, float64) is accumulated from x (N, I), for H a multiple of 16");
  if (dwt) check_rows(s, *x, I, "rnn_backward_packed: x");
  Tensor dh0 = at::empty({B, H}, gout.options());
#ifdef SCRATCHLAB_PACKED
  const float *go = gout.data_ptr<float>(), *h = out.data_ptr<float>(), *hi = h0.data_ptr<float>(),
              *wt = w_t.data_ptr<float>();
  const float* xp = dwt ? x->data_ptr<float>() : nullptr;
  float* d = dP.data_ptr<float>();
  double* dbias = db.numel() ? db.data_ptr<double>() : nullptr;
  std::vector<float> part(dbias ? H : 0), hs(dwt ? B * H : 0);  // one step's bias gradient (float32 over rows)
  auto add_part = [&] {
    for (int64_t j = 0; j < static_cast<int64_t>(part.size()); ++j) dbias[j] += part[j], part[j] = 0;
  };
  float* db_step = dbias ? part.data() : nullptr;
  StepWeightGradient weights(dwt ? dwt->data_ptr<double>() : nullptr, I, H, H);
  auto block = relu ? backward_block<true> : backward_block<false>;
  for (int64_t k = s.T - 1; k >= 0; --k) {
    const int64_t t = s.step(k), rows = s.bs[t], o = s.off[t], cont = s.continued(t);
    const float *got = go + o * H, *ht = h + o * H;
    float* dpt = d + o * H;
    if (cont > 0) {                                       // dh_t = dL/dh_t + dP_next W_hh for the rows that go on
      packed_product(d + s.off[s.step(k + 1)] * H, cont, H, wt, H, [&](int64_t r, int64_t mr, int64_t u,
                                                                      int64_t cols) {
        prefetch_rows(got + r * H + u, mr, H, 4 * cols);
        prefetch_rows(ht + r * H + u, mr, H, 4 * cols);
      }, [&](int64_t r, int64_t mr, int64_t u, int64_t cols, const float* y) {
        block(got + r * H + u, y, ht + r * H + u, dpt + r * H + u, db_step ? db_step + u : nullptr, mr, cols, H);
      });
    }
    if (cont < rows) {                                    // rows whose sequence ends here
      column_panels(H, [&](int64_t u, int64_t cols) {
        const int64_t q = cont * H + u;
        block(got + q, nullptr, ht + q, dpt + q, db_step ? db_step + u : nullptr, rows - cont, cols, H);
      });
    }
    add_part();
    if (dwt) weights.add(xp + o * I, previous(s, t, h, hi, hs.data(), H), dpt, rows);
  }
  weights.flush();
  std::vector<float> gathered(s.reverse && !s.uniform() ? B * H : 0);
  packed_linear(first_rows(s, static_cast<const float*>(d), gathered.data(), H), B, H, wt, H,
                dh0.data_ptr<float>());   // dL/dh0 = dP W_hh at each sequence's first row
#endif
  return dh0;
}

}  // namespace
}  // namespace scratchlab

TORCH_LIBRARY_FRAGMENT(scratchlab_rnn, m) {
  using namespace scratchlab;
  m.def("rnn_forward_packed(Tensor x, Tensor? batch_sizes, Tensor h0, Tensor wx, Tensor? bias, Tensor wh,"
        " Tensor(a!) out, bool reverse, bool relu) -> ()", &rnn_forward_packed);
  m.def("rnn_backward_packed(Tensor gout, Tensor? batch_sizes, Tensor out, Tensor h0, Tensor w_t, Tensor(a!) dP,"
        " Tensor(b!) db, bool reverse, bool relu, Tensor? x=None, Tensor(c!)? dwt=None) -> Tensor",
        &rnn_backward_packed);
}
