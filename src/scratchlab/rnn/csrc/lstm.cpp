// The step loops of one LSTM layer-direction (scratchlab.rnn.fast), compiled: per step one matrix product and ONE
// fused pass over the (B, 4H) gates, instead of a Python loop paying ~12 us per product call and ~12 small
// pointwise ops per step. Loaded by scratchlab/rnn/_cext.py; the math and the layouts are fast.py's:
//
//   G   (T, B, 4H)  on entry x_t W_ih^T + b for every t, gates in (o, i, f, g) order with the g block scaled by 2
//                   (tanh(a) = 2 sigmoid(2a) - 1); on exit the activated gates (o, i, f, g)
//   Hs, Cs, TC (T+1, B, H)  states h, c and tanh(c); a forward step reads slot t and writes t+1, a reverse step
//                   reads t+1 and writes t
//   w   the recurrent weight (4H, H) as fast.py's `pack` returns it (oneDNN's blocked layout for float32 on CPU)
//
// The products go through oneDNN's matmul (the operator torch.ops.mkldnn._linear_pointwise, found once through the
// dispatcher) when `onednn` is true, else at::mm. The pointwise loops are plain C++ that gcc vectorises (-O3).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <type_traits>
#include <cmath>
#include <optional>
#include <string_view>

namespace {

using at::Tensor;

// y = a w^T, a (M, K), w (N, K) or oneDNN's packed form of it.
Tensor linear(const Tensor& a, const Tensor& w, bool onednn) {
  if (!onednn) return at::mm(a, w.t());
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, std::string_view,
                                     c10::List<std::optional<at::Scalar>>, std::optional<std::string_view>)>();
  return op.call(a, w, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), "");
}

// exp(x) = 2^n e^r with n = round(x / ln 2) and r = x - n ln 2 in [-ln2/2, ln2/2]; e^r by its Taylor series to
// degree 7 (float: truncation error 5e-9, below float's 6e-8 rounding) or 13 (double: 4e-18), 2^n from the bits.
// Written out rather than calling std::exp: gcc vectorises this inline, while it vectorises std::exp (into glibc's
// libmvec) only when NaN and inf are assumed away, and even then a step took 14.6 us against 11.7 with this.
// x is clamped to the range where 2^n stays a normal number (a NaN stays NaN).
template <typename T>
inline T fast_exp(T x) {
  using I = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  constexpr bool f32 = sizeof(T) == 4;
  constexpr int degree = f32 ? 7 : 13, mantissa = f32 ? 23 : 52, bias = f32 ? 127 : 1023;
  constexpr T lo = f32 ? T(-87) : T(-708), hi = f32 ? T(88) : T(709);
  constexpr T ln2_hi = T(0.693145751953125), ln2_lo = T(1.42860682030941723212e-6);  // ln 2 = hi + lo
  x = std::min(std::max(x, lo), hi);
  const T n = std::floor(x * T(1.44269504088896340736) + T(0.5));
  const T r = (x - n * ln2_hi) - n * ln2_lo;
  T p = T(1);
  for (int k = degree; k >= 1; --k) p = T(1) + p * r * (T(1) / T(k));  // Horner: 1 + r (1 + r/2 (1 + r/3 (...)))
  return p * std::bit_cast<T>(static_cast<I>(static_cast<I>(n) + bias) << mantissa);
}

// sigmoid(a) = 1 / (1 + exp(-a))
template <typename T>
inline T sigmoid(T a) { return T(1) / (T(1) + fast_exp(-a)); }

// One forward step on n = B*H cells. g: the step's (B, 4H) gates (pre-activations in, activations out if Keep),
// y: the step's product h_{t-1} W_hh^T (B, 4H), c0: c_{t-1}; writes c_t, h_t and, if Keep, tanh(c_t) (B, H).
// Keep = false (inference) skips the stores only the backward reads.
template <typename T, bool Keep>
void forward_step(T* g, const T* y, const T* c0, T* c1, T* tc, T* h, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    T* gb = g + b * 4 * H;
    const T* yb = y + b * 4 * H;
    const int64_t s = b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      // (o, i, f) = sigmoid(pre), g = tanh(pre_g) = 2 sigmoid(2 pre_g) - 1 (the 2 is in the weights)
      const T o = sigmoid(gb[j] + yb[j]);
      const T i = sigmoid(gb[H + j] + yb[H + j]);
      const T f = sigmoid(gb[2 * H + j] + yb[2 * H + j]);
      const T gg = T(2) * sigmoid(gb[3 * H + j] + yb[3 * H + j]) - T(1);
      // c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
      const T c = f * c0[s + j] + i * gg;
      const T t = T(2) * sigmoid(T(2) * c) - T(1);
      if constexpr (Keep) gb[j] = o, gb[H + j] = i, gb[2 * H + j] = f, gb[3 * H + j] = gg, tc[s + j] = t;
      c1[s + j] = c, h[s + j] = o * t;
    }
  }
}

// One backward step. g: the step's activated gates, go: dL/dh_t from the output, y: dG_{t+1} W_hh (zeros for
// the last step), dc: dL/dc_t on entry (the cell path from step t+1), dL/dc_{t-1} through the cell path on exit;
// writes dG_t, the gradient of the (unscaled) pre-activations, and adds its column sums to dbias (4H, in double,
// when not null): the bias gradient sum_t sum_b dG_t, taken while dG_t is in cache rather than in a pass over dG.
template <typename T>
void backward_step(const T* g, const T* go, const T* y, T* dc, const T* c0, const T* tc, T* dg, double* dbias,
                   int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    const T* gb = g + b * 4 * H;
    T* db = dg + b * 4 * H;
    const int64_t s = b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      const T o = gb[j], i = gb[H + j], f = gb[2 * H + j], gg = gb[3 * H + j], t = tc[s + j];
      // dh_t = dL/dh_t (output) + dG_{t+1} W_hh;  dc_t += dh_t o (1 - tanh(c_t)^2)
      const T d = go[s + j] + y[s + j];
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
#pragma omp simd
      for (int64_t j = 0; j < 4 * H; ++j) dbias[j] += db[j];
    }
  }
}

// The steps in the order the forward runs them: (t, slot read, slot written).
struct Slot { int64_t t, rd, wr; };
Slot slot(int64_t k, int64_t T, bool reverse) {
  return reverse ? Slot{T - 1 - k, T - k, T - 1 - k} : Slot{k, k, k + 1};
}

void lstm_forward(Tensor G, Tensor Hs, Tensor Cs, Tensor TC, const Tensor& w, bool reverse, bool onednn,
                  bool keep) {
  const int64_t T = G.size(0), B = G.size(1), H = G.size(2) / 4, n = B * H;
  TORCH_CHECK(G.is_contiguous() && Hs.is_contiguous() && Cs.is_contiguous() && TC.is_contiguous(),
              "lstm_forward: buffers must be contiguous");
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "lstm_forward", [&] {
    scalar_t *g = G.data_ptr<scalar_t>(), *h = Hs.data_ptr<scalar_t>(), *c = Cs.data_ptr<scalar_t>(),
             *tc = TC.data_ptr<scalar_t>();
    for (int64_t k = 0; k < T; ++k) {
      const Slot s = slot(k, T, reverse);
      const Tensor y = linear(Hs[s.rd], w, onednn).contiguous();  // h_{t-1} W_hh^T, (B, 4H)
      auto step = keep ? forward_step<scalar_t, true> : forward_step<scalar_t, false>;
      step(g + s.t * 4 * n, y.data_ptr<scalar_t>(), c + s.rd * n, c + s.wr * n, tc + s.wr * n, h + s.wr * n, B, H);
    }
  });
}

// Backward through time. gout (T, B, H) contiguous with dL/dh_n already added to the last step's slice, dc (B, H)
// = dL/dc_n (becomes dL/dc0), w_t the packed W_hh^T; fills dG (T, B, 4H), adds sum_t,b dG to db (float64 (4H,),
// or empty to skip) and returns dL/dh0 = dG_0 W_hh.
Tensor lstm_backward(const Tensor& gout, Tensor dc, const Tensor& G, const Tensor& Cs, const Tensor& TC,
                     const Tensor& w_t, Tensor dG, Tensor db, bool reverse, bool onednn) {
  const int64_t T = G.size(0), B = G.size(1), H = G.size(2) / 4, n = B * H;
  TORCH_CHECK(gout.is_contiguous() && dc.is_contiguous() && dG.is_contiguous() && G.is_contiguous() &&
              Cs.is_contiguous() && TC.is_contiguous(), "lstm_backward: tensors must be contiguous");
  return AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "lstm_backward", [&] {
    const scalar_t *g = G.data_ptr<scalar_t>(), *go = gout.data_ptr<scalar_t>(), *c = Cs.data_ptr<scalar_t>(),
                   *tc = TC.data_ptr<scalar_t>();
    scalar_t *d = dG.data_ptr<scalar_t>(), *dcp = dc.data_ptr<scalar_t>();
    TORCH_CHECK(db.numel() == 0 || (db.numel() == 4 * H && db.scalar_type() == at::kDouble && db.is_contiguous()),
                "lstm_backward: db must be empty or a contiguous float64 (4H,) tensor");
    double* dbias = db.numel() ? db.data_ptr<double>() : nullptr;
    Tensor y = at::zeros_like(dc);                                   // nothing flows in from after the last step
    for (int64_t k = T - 1; k >= 0; --k) {
      const Slot s = slot(k, T, reverse);
      backward_step<scalar_t>(g + s.t * 4 * n, go + s.t * n, y.data_ptr<scalar_t>(), dcp, c + s.rd * n,
                              tc + s.wr * n, d + s.t * 4 * n, dbias, B, H);
      y = linear(dG[s.t], w_t, onednn).contiguous();                 // dG_t W_hh, (B, H)
    }
    return y;
  });
}

}  // namespace

TORCH_LIBRARY(scratchlab_lstm, m) {
  m.def("forward(Tensor(a!) G, Tensor(b!) Hs, Tensor(c!) Cs, Tensor(d!) TC, Tensor w, bool reverse, bool onednn,"
        " bool keep) -> ()", &lstm_forward);
  m.def("backward(Tensor gout, Tensor(a!) dc, Tensor G, Tensor Cs, Tensor TC, Tensor w_t, Tensor(b!) dG,"
        " Tensor(c!) db, bool reverse, bool onednn) -> Tensor", &lstm_backward);
}
