// The step loops of one GRU layer-direction (scratchlab.rnn.fast) on the packed kernel (packed.h; float32 on an
// AVX-512 CPU). torch's variant and gate order (r, z, n):
//
//   r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)    z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
//   n = tanh(x W_in + b_in + r (h W_hn + b_hn))   h' = n + z (h - n)
//
// Layouts are fast.py's: G (T, B, 3H) the activated (r, z, n), HN (T, B, H) = h W_hn + b_hn of every step (what dr
// needs), Hs (T+1, B, H) the states; dGx, dGh (T, B, 3H) the gradients of the input- and hidden-side
// pre-activations (equal except in the n block, where dGh_n = dGx_n r).
//
// A forward tile holds four accumulator panels for 16 units, [r, z, n_x, n_h]: the input's r, z, n panels go into
// 0, 1, 2 and the hidden state's into 0, 1, 3, so that r can scale h W_hn + b_hn alone and no product is spent on
// zeros. The backward computes dGh_{t+1} W_hh per tile and finishes the tile's cells on it, with the z path
// dh_{t+1} z_{t+1}; bias and (H a multiple of 16) weight gradients are summed in the loop.
#include <torch/library.h>

#include <optional>

#include "packed.h"

namespace scratchlab {
namespace {

#ifdef SCRATCHLAB_PACKED
// out (MR, 64) <- [r, z, n_x, n_h] for 16 units: bias (4 vectors at bias + c bs, or null) + x's (r, z, n) panels
// into accumulators 0, 1, 2 + h's (r, z, n) panels into 0, 1, 3.
template <int MR>
void gru_tile(const Operand& x, const Operand& h, const float* bias, int64_t bs, float* out) {
  __m512 acc[MR][4];
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512 b = bias ? _mm512_loadu_ps(bias + c * bs) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[r][c] = b;
  }
  fma_to<MR, 4, 0, 1, 2>(acc, x);
  fma_to<MR, 4, 0, 1, 3>(acc, h);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) _mm512_storeu_ps(out + r * 64 + c * 16, acc[r][c]);
}

using GruTileFn = void (*)(const Operand&, const Operand&, const float*, int64_t, float*);

template <int... MR>
constexpr std::array<GruTileFn, sizeof...(MR)> gru_tiles(std::integer_sequence<int, MR...>) {
  return {&gru_tile<MR + 1>...};
}

// The cells of one tile, rows x units: y the tile ([r, z, n_x, n_h] at 0, 16, 32, 48; row stride 64); hp = h_{t-1}
// and h1 = h_t (row stride H); g (row stride 3H, gate stride H) and hn (row stride H) receive (r, z, n) and
// h W_hn + b_hn when Keep. tanh(a) = 2 sigmoid(2a) - 1.
template <bool Keep>
void forward_cells(const float* y, int64_t rows, int64_t units, const float* hp, float* h1, float* g, float* hn,
                   int64_t H) {
  for (int64_t b = 0; b < rows; ++b) {
    const float* yb = y + b * 64;
    const int64_t s = b * H;
#pragma omp simd
    for (int64_t j = 0; j < units; ++j) {
      const float r = sigmoid(yb[j]), z = sigmoid(yb[16 + j]), nh = yb[48 + j];
      const float n = 2.f * sigmoid(2.f * (yb[32 + j] + r * nh)) - 1.f;
      const float prev = hp[s + j];
      h1[s + j] = n + z * (prev - n);
      if constexpr (Keep) {
        float* gb = g + b * 3 * H;
        gb[j] = r, gb[H + j] = z, gb[2 * H + j] = n, hn[s + j] = nh;
      }
    }
  }
}

// One forward step: x (B, I) = x_t, h (B, H) = h_{t-1}; wx, wh = pack_gates of W_ih, W_hh (3Hp/16, K, 16); bias =
// the packed [b_ir + b_hr, b_iz + b_hz, b_in, b_hn] (4Hp) or null; writes h1 and, when Keep, g and hn. Threads take
// groups of 16 units.
template <bool Keep>
void forward_step(const float* x, int64_t I, const float* wx, const float* bias, const float* h, const float* wh,
                  float* h1, float* g, float* hn, int64_t B, int64_t H) {
  static const auto tiles = gru_tiles(std::make_integer_sequence<int, kMR>{});
  const int64_t Hp = (H + 15) / 16 * 16;
  gated_step(x, I, wx, h, wh, B, H, [&](int64_t mr, const Operand& xo, const Operand& ho, int64_t u, float* out) {
    tiles[mr - 1](xo, ho, bias ? bias + u : nullptr, Hp, out);
  }, [&](int64_t r, int64_t mr, int64_t u, int64_t units, const float* out) {
    const int64_t s = r * H + u;
    forward_cells<Keep>(out, mr, units, h + s, h1 + s, Keep ? g + r * 3 * H + u : nullptr, Keep ? hn + s : nullptr,
                        H);
  });
}

// The backward of a block of cells, rows x cols (row stride H; g, dgx, dgh row stride 3H, gate stride H):
//   dh  = dL/dh_t + dGh_{t+1} W_hh (y, row stride 64; null on the last step) + dh_{t+1} z_{t+1} (zn: z_{t+1}, null
//         on the last step; dh holds dh_{t+1} on entry and dh_t on exit)
//   dn  = dh (1 - z)(1 - n^2),  dz = dh (h_{t-1} - n) z (1 - z),  dr = dn hn r (1 - r)
//   dGx = (dr, dz, dn), dGh = (dr, dz, dn r); their column sums added to dbx, dbh (gate stride H) when not null.
void backward_cells(const float* go, const float* y, const float* zn, float* dh, const float* g, const float* hn,
                    const float* hp, float* dgx, float* dgh, float* dbx, float* dbh, int64_t rows, int64_t cols,
                    int64_t H) {
  for (int64_t b = 0; b < rows; ++b) {
    const int64_t s = b * H, q = b * 3 * H;
    const float* yb = y ? y + b * 64 : nullptr;
    const float* znb = zn ? zn + q : nullptr;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      const float d = go[s + j] + (yb ? yb[j] : 0.f) + (znb ? dh[s + j] * znb[j] : 0.f);
      const float r = g[q + j], z = g[q + H + j], n = g[q + 2 * H + j];
      const float dn = d * (1.f - z) * (1.f - n * n);
      const float dz = d * (hp[s + j] - n) * z * (1.f - z);
      const float dr = dn * hn[s + j] * r * (1.f - r);
      dgx[q + j] = dr, dgx[q + H + j] = dz, dgx[q + 2 * H + j] = dn;
      dgh[q + j] = dr, dgh[q + H + j] = dz, dgh[q + 2 * H + j] = dn * r;
      dh[s + j] = d;
    }
    if (dbx) {
      for (int64_t k = 0; k < 3; ++k) {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) dbx[k * H + j] += dgx[q + k * H + j], dbh[k * H + j] += dgh[q + k * H + j];
      }
    }
  }
}
#endif

// The forward: x (T, B, I); wx, wh = pack_gates of W_ih, W_hh (order (r, z, n), scales 1); bias = pack_gates of
// [b_ir + b_hr, b_iz + b_hz, b_in, b_hn] as (4H, 1) (four blocks) or undefined; Hs (T+1, B, H) with h0 in slot 0
// (reverse: T). keep (a backward follows): G (T, B, 3H) and HN (T, B, H) receive the activated gates and
// h W_hn + b_hn; otherwise they are not touched (may be empty).
void gru_forward_packed(const Tensor& x, const Tensor& wx, const std::optional<Tensor>& bias, const Tensor& wh,
                        Tensor G, Tensor HN, Tensor Hs, bool reverse, bool keep) {
  check_packed(Hs, wh);
  check_packed(Hs, wx);
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = Hs.size(2), n = B * H, Hp = (H + 15) / 16 * 16;
  TORCH_CHECK(T > 0, "gru_forward_packed: expected at least one step, got x ", x.sizes());
  TORCH_CHECK(x.is_contiguous() && Hs.is_contiguous() && x.scalar_type() == at::kFloat && Hs.size(0) == T + 1 &&
              Hs.size(1) == B, "gru_forward_packed: x (T, B, I) and Hs (T+1, B, H) must be contiguous float32, got ",
              x.sizes(), " and ", Hs.sizes());
  TORCH_CHECK(wx.size(0) == 3 * Hp / 16 && wx.size(1) == I && wh.size(0) == 3 * Hp / 16 && wh.size(1) == H,
              "gru_forward_packed: weights ", wx.sizes(), ", ", wh.sizes(), " are not pack_gates of (3H, I), (3H, H)",
              " for H = ", H);
  TORCH_CHECK(!keep || (G.is_contiguous() && HN.is_contiguous() && G.numel() == 3 * T * n && HN.numel() == T * n),
              "gru_forward_packed: G (T, B, 3H) and HN (T, B, H) must be contiguous, got ", G.sizes(), ", ",
              HN.sizes());
  TORCH_CHECK(!bias || (bias->is_contiguous() && bias->numel() == 4 * Hp && bias->scalar_type() == at::kFloat),
              "gru_forward_packed: bias must be a contiguous float32 (4Hp,) tensor (pack_gates of (4H, 1))");
#ifdef SCRATCHLAB_PACKED
  float* h = Hs.data_ptr<float>();
  float *g = keep ? G.data_ptr<float>() : nullptr, *hn = keep ? HN.data_ptr<float>() : nullptr;
  const float *xp = x.data_ptr<float>(), *wxp = wx.data_ptr<float>(), *whp = wh.data_ptr<float>();
  const float* b = bias ? bias->data_ptr<float>() : nullptr;
  for (int64_t k = 0; k < T; ++k) {
    const Slot s = slot(k, T, reverse);
    if (keep) {
      forward_step<true>(xp + s.t * B * I, I, wxp, b, h + s.rd * n, whp, h + s.wr * n, g + s.t * 3 * n,
                         hn + s.t * n, B, H);
    } else {
      forward_step<false>(xp + s.t * B * I, I, wxp, b, h + s.rd * n, whp, h + s.wr * n, nullptr, nullptr, B, H);
    }
  }
#endif
}

// Backward through time: gout (T, B, H) contiguous with dL/dh_n already added to the last step's slice; G, HN, Hs
// from the forward; w_t = pack_gates(W_hh, transposed) (Hp/16, 3H, 16); fills dGx, dGh (T, B, 3H), adds their sums
// over steps and rows to dbx, dbh (float64 (3H,), or empty), and, when dwt (I + H, 3H) float64 is given (H a
// multiple of 16), adds [X^T dGx; H_prev^T dGh] to it; returns dL/dh0 = dGh_0 W_hh + dh_0 z_0.
Tensor gru_backward_packed(const Tensor& gout, const Tensor& G, const Tensor& HN, const Tensor& Hs, const Tensor& w_t,
                           Tensor dGx, Tensor dGh, Tensor dbx, Tensor dbh, bool reverse,
                           const std::optional<Tensor>& x, std::optional<Tensor> dwt) {
  const int64_t T = gout.size(0), B = gout.size(1), H = gout.size(2), n = B * H, I = x ? x->size(2) : 0;
  check_packed(Hs, w_t);
  TORCH_CHECK(T > 0 && gout.is_contiguous() && G.is_contiguous() && HN.is_contiguous() && Hs.is_contiguous() &&
              dGx.is_contiguous() && dGh.is_contiguous() && G.numel() == 3 * T * n && HN.numel() == T * n &&
              Hs.size(0) == T + 1 && dGx.numel() == 3 * T * n && dGh.numel() == 3 * T * n,
              "gru_backward_packed: gout, HN (T, B, H), G, dGx, dGh (T, B, 3H) and Hs (T+1, B, H) must be contiguous, "
              "got gout ", gout.sizes(), ", G ", G.sizes(), ", Hs ", Hs.sizes());
  TORCH_CHECK(w_t.size(0) == (H + 15) / 16 && w_t.size(1) == 3 * H, "gru_backward_packed: weight ", w_t.sizes(),
              " is not pack_gates(W_hh, transposed) for H = ", H);
  const bool biases = dbx.numel() > 0;
  TORCH_CHECK(dbx.numel() == dbh.numel() && (!biases || (dbx.numel() == 3 * H && dbx.scalar_type() == at::kDouble &&
                                                         dbh.scalar_type() == at::kDouble && dbx.is_contiguous() &&
                                                         dbh.is_contiguous())),
              "gru_backward_packed: dbx, dbh must both be empty or contiguous float64 (3H,) tensors");
  TORCH_CHECK(!dwt || (x && x->is_contiguous() && x->size(0) == T && x->size(1) == B && H % 16 == 0 &&
                       dwt->is_contiguous() && dwt->scalar_type() == at::kDouble && dwt->size(0) == I + H &&
                       dwt->size(1) == 3 * H),
              "gru_backward_packed: dWT (I + H, 3H, float64) is accumulated from a contiguous x (T, B, I), for H a "
              "multiple of 16");
  Tensor dh0 = at::empty({B, H}, gout.options());
#ifdef SCRATCHLAB_PACKED
  const float *go = gout.data_ptr<float>(), *g = G.data_ptr<float>(), *hnp = HN.data_ptr<float>(),
              *h = Hs.data_ptr<float>(), *wt = w_t.data_ptr<float>();
  const float* xp = x ? x->data_ptr<float>() : nullptr;
  float *dx = dGx.data_ptr<float>(), *dhh = dGh.data_ptr<float>();
  std::vector<float> dh(n), part(biases ? 6 * H : 0);   // dh_t; one step's bias gradients (float32 over B rows)
  double *tx = biases ? dbx.data_ptr<double>() : nullptr, *th = biases ? dbh.data_ptr<double>() : nullptr;
  float *px = biases ? part.data() : nullptr, *ph = biases ? part.data() + 3 * H : nullptr;
  auto add_part = [&] {
    for (int64_t j = 0; j < static_cast<int64_t>(part.size()) / 2; ++j) {
      tx[j] += px[j], th[j] += ph[j], px[j] = 0, ph[j] = 0;
    }
  };
  StepWeightGradient weights(dwt ? dwt->data_ptr<double>() : nullptr, I, H, 3 * H, B);
  auto finish_step = [&](const Slot& s) {
    if (biases) add_part();
    weights.add(xp ? xp + s.t * B * I : nullptr, h + s.rd * n, dx + s.t * 3 * n, dhh + s.t * 3 * n);
  };
  Slot s = slot(T - 1, T, reverse);                       // the last step: nothing flows in from after it
  column_panels(H, [&](int64_t u, int64_t cols) {
    backward_cells(go + s.t * n + u, nullptr, nullptr, dh.data() + u, g + s.t * 3 * n + u, hnp + s.t * n + u,
                   h + s.rd * n + u, dx + s.t * 3 * n + u, dhh + s.t * 3 * n + u, px ? px + u : nullptr,
                   ph ? ph + u : nullptr, B, cols, H);
  });
  finish_step(s);
  for (int64_t k = T - 2; k >= 0; --k) {
    const int64_t t_next = s.t;
    s = slot(k, T, reverse);
    const float *got = go + s.t * n, *gt = g + s.t * 3 * n, *hnt = hnp + s.t * n, *hpt = h + s.rd * n;
    const float* zn = g + t_next * 3 * n + H;            // z_{t+1}
    float *dxt = dx + s.t * 3 * n, *dht = dhh + s.t * 3 * n;
    packed_product(dhh + t_next * 3 * n, B, 3 * H, wt, H, [&](int64_t r, int64_t mr, int64_t u, int64_t cols) {
      const int64_t o = r * H + u, bytes = 4 * cols;
      for (int64_t q = 0; q < 3; ++q) prefetch_rows(gt + r * 3 * H + q * H + u, mr, 3 * H, bytes);
      prefetch_rows(zn + r * 3 * H + u, mr, 3 * H, bytes);
      for (const float* p : {got, hnt, hpt}) prefetch_rows(p + o, mr, H, bytes);
    }, [&](int64_t r, int64_t mr, int64_t u, int64_t cols, const float* y) {
      const int64_t o = r * H + u, q = r * 3 * H + u;
      backward_cells(got + o, y, zn + r * 3 * H + u, dh.data() + o, gt + q, hnt + o, hpt + o, dxt + q, dht + q,
                     px ? px + u : nullptr, ph ? ph + u : nullptr, mr, cols, H);
    });
    finish_step(s);
  }
  weights.flush();
  const float* z0 = g + s.t * 3 * n + H;                 // dL/dh0 = dGh_0 W_hh + dh_0 z_0
  float* out = dh0.data_ptr<float>();
  packed_product(dhh + s.t * 3 * n, B, 3 * H, wt, H, [](int64_t, int64_t, int64_t, int64_t) {},
                 [&](int64_t r, int64_t mr, int64_t u, int64_t cols, const float* y) {
    for (int64_t i = 0; i < mr; ++i) {
      const int64_t row = r + i;
      for (int64_t j = 0; j < cols; ++j) {
        out[row * H + u + j] = y[i * 64 + j] + dh[row * H + u + j] * z0[row * 3 * H + u + j];
      }
    }
  });
#endif
  return dh0;
}

}  // namespace
}  // namespace scratchlab

TORCH_LIBRARY_FRAGMENT(scratchlab_rnn, m) {
  using namespace scratchlab;
  m.def("gru_forward_packed(Tensor x, Tensor wx, Tensor? bias, Tensor wh, Tensor(a!) G, Tensor(b!) HN,"
        " Tensor(c!) Hs, bool reverse, bool keep) -> ()", &gru_forward_packed);
  m.def("gru_backward_packed(Tensor gout, Tensor G, Tensor HN, Tensor Hs, Tensor w_t, Tensor(a!) dGx,"
        " Tensor(b!) dGh, Tensor(c!) dbx, Tensor(d!) dbh, bool reverse, Tensor? x=None, Tensor(e!)? dwt=None)"
        " -> Tensor", &gru_backward_packed);
}
