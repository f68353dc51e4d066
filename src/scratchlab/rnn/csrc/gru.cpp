// The step loops of one GRU layer-direction (scratchlab.rnn.fast) on the packed kernel (packed.h; float32 on a
// CPU with a vector variant of kernel.h). torch's variant and gate order (r, z, n):
//
//   r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)    z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
//   n = tanh(x W_in + b_in + r (h W_hn + b_hn))   h' = n + z (h - n)
//
// Layouts are fast.py's, every per-step buffer with the rows of packed.h's `Steps` (N rows: a padded batch or a
// PackedSequence's data): G (N, 3H) the activated (r, z, n), HN (N, H) = h W_hn + b_hn of every step (what dr
// needs), out (N, H) the states h_t, h0 (B, H); dGx, dGh (N, 3H) the gradients of the input- and hidden-side
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
// The [r, z, n_x, n_h] tile of 16 units: x's (r, z, n) panels into accumulators 0, 1, 2 and h's into 0, 1, 3.
using GruX = Map<0, 1, 2, -1>;
using GruH = Map<0, 1, -1, 2>;

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
  const int64_t Hp = (H + 15) / 16 * 16;
  gated_step(x, I, wx, h, wh, B, H, [&](int64_t rows, const Operand& xo, const Operand& ho, int64_t u, float* out) {
    rows_product<GruX, GruH>(rows, xo, ho, bias ? bias + u : nullptr, Hp, out);
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

// The forward: x (N, I); wx, wh = pack_gates of W_ih, W_hh (order (r, z, n), scales 1); bias = pack_gates of
// [b_ir + b_hr, b_iz + b_hz, b_in, b_hn] as (4H, 1) (four blocks) or undefined; h0 (B, H); out (N, H) receives h_t.
// keep (a backward follows): G (N, 3H) and HN (N, H) receive the activated gates and h W_hn + b_hn; otherwise they
// are not touched (may be empty).
void gru_forward_packed(const Tensor& x, const std::optional<Tensor>& batch_sizes, const Tensor& h0, const Tensor& wx,
                        const std::optional<Tensor>& bias, const Tensor& wh, Tensor G, Tensor HN, Tensor out,
                        bool reverse, bool keep) {
  check_packed(out, wh);
  check_packed(out, wx);
  TORCH_CHECK(h0.dim() == 2 && h0.is_contiguous() && h0.scalar_type() == at::kFloat && x.scalar_type() == at::kFloat,
              "gru_forward_packed: x and h0 must be float32, h0 a contiguous (B, H), got ", h0.sizes());
  const int64_t I = x.size(-1), B = h0.size(0), H = h0.size(1), Hp = (H + 15) / 16 * 16;
  const Steps s(batch_sizes, x.numel() / std::max<int64_t>(I, 1), B, reverse);
  check_rows(s, x, I, "gru_forward_packed: x");
  check_rows(s, out, H, "gru_forward_packed: out");
  if (keep) {
    check_rows(s, G, 3 * H, "gru_forward_packed: G");
    check_rows(s, HN, H, "gru_forward_packed: HN");
  }
  TORCH_CHECK(wx.size(0) == 3 * Hp / 16 && wx.size(1) == I && wh.size(0) == 3 * Hp / 16 && wh.size(1) == H,
              "gru_forward_packed: weights ", wx.sizes(), ", ", wh.sizes(), " are not pack_gates of (3H, I), (3H, H)",
              " for H = ", H);
  TORCH_CHECK(!bias || (bias->is_contiguous() && bias->numel() == 4 * Hp && bias->scalar_type() == at::kFloat),
              "gru_forward_packed: bias must be a contiguous float32 (4Hp,) tensor (pack_gates of (4H, 1))");
#ifdef SCRATCHLAB_PACKED
  float* h = out.data_ptr<float>();
  float *g = keep ? G.data_ptr<float>() : nullptr, *hn = keep ? HN.data_ptr<float>() : nullptr;
  const float *xp = x.data_ptr<float>(), *wxp = wx.data_ptr<float>(), *whp = wh.data_ptr<float>();
  const float *hi = h0.data_ptr<float>(), *b = bias ? bias->data_ptr<float>() : nullptr;
  std::vector<float> hs(B * H);
  for (int64_t k = 0; k < s.T; ++k) {
    const int64_t t = s.step(k), rows = s.bs[t], o = s.off[t];
    const float* hp = previous(s, t, static_cast<const float*>(h), hi, hs.data(), H);
    if (keep) {
      forward_step<true>(xp + o * I, I, wxp, b, hp, whp, h + o * H, g + o * 3 * H, hn + o * H, rows, H);
    } else {
      forward_step<false>(xp + o * I, I, wxp, b, hp, whp, h + o * H, nullptr, nullptr, rows, H);
    }
  }
#endif
}

// Backward through time: gout (N, H) contiguous, each sequence's dL/dh_n already added at its last row (fast.py);
// G, HN, out from the forward, h0 (B, H); w_t = pack_gates(W_hh, transposed) (Hp/16, 3H, 16); fills dGx, dGh
// (N, 3H), adds their column sums to dbx, dbh (float64 (3H,), or empty), and, when dwt (I + H, 3H) float64 is given
// (H a multiple of 16, x (N, I)), adds [x_t^T dGx_t; h_{t-1}^T dGh_t] of every step to it; returns dL/dh0 =
// dGh W_hh + dh z at each sequence's first row (B, H).
Tensor gru_backward_packed(const Tensor& gout, const std::optional<Tensor>& batch_sizes, const Tensor& G,
                           const Tensor& HN, const Tensor& out, const Tensor& h0, const Tensor& w_t, Tensor dGx,
                           Tensor dGh, Tensor dbx, Tensor dbh, bool reverse, const std::optional<Tensor>& x,
                           std::optional<Tensor> dwt) {
  check_packed(out, w_t);
  TORCH_CHECK(h0.dim() == 2 && h0.is_contiguous() && h0.scalar_type() == at::kFloat,
              "gru_backward_packed: h0 must be a contiguous float32 (B, H), got ", h0.sizes());
  const int64_t B = h0.size(0), H = h0.size(1), I = x ? x->size(-1) : 0;
  const Steps s(batch_sizes, gout.numel() / H, B, reverse);
  check_rows(s, gout, H, "gru_backward_packed: gout");
  check_rows(s, HN, H, "gru_backward_packed: HN");
  check_rows(s, out, H, "gru_backward_packed: out");
  check_rows(s, G, 3 * H, "gru_backward_packed: G");
  check_rows(s, dGx, 3 * H, "gru_backward_packed: dGx");
  check_rows(s, dGh, 3 * H, "gru_backward_packed: dGh");
  TORCH_CHECK(w_t.size(0) == (H + 15) / 16 && w_t.size(1) == 3 * H, "gru_backward_packed: weight ", w_t.sizes(),
              " is not pack_gates(W_hh, transposed) for H = ", H);
  const bool biases = dbx.numel() > 0;
  TORCH_CHECK(dbx.numel() == dbh.numel() && (!biases || (dbx.numel() == 3 * H && dbx.scalar_type() == at::kDouble &&
                                                         dbh.scalar_type() == at::kDouble && dbx.is_contiguous() &&
                                                         dbh.is_contiguous())),
              "gru_backward_packed: dbx, dbh must both be empty or contiguous float64 (3H,) tensors");
  TORCH_CHECK(!dwt || (x && I > 0 && H % 16 == 0 && dwt->is_contiguous() && dwt->scalar_type() == at::kDouble &&
                       dwt->size(0) == I + H && dwt->size(1) == 3 * H),
              "gru_backward_packed: dWT (I + H, 3H, float64) is accumulated from x (N, I), for H a multiple of 16");
  if (dwt) check_rows(s, *x, I, "gru_backward_packed: x");
  Tensor dh0 = at::empty({B, H}, gout.options());
#ifdef SCRATCHLAB_PACKED
  const float *go = gout.data_ptr<float>(), *g = G.data_ptr<float>(), *hnp = HN.data_ptr<float>(),
              *h = out.data_ptr<float>(), *hi = h0.data_ptr<float>(), *wt = w_t.data_ptr<float>();
  const float* xp = dwt ? x->data_ptr<float>() : nullptr;
  float *dx = dGx.data_ptr<float>(), *dhh = dGh.data_ptr<float>();
  // dh: each row's dh at its latest step (the z path into the step before it); part: one step's bias gradients
  std::vector<float> dh(B * H), part(biases ? 6 * H : 0), hs(B * H);
  double *tx = biases ? dbx.data_ptr<double>() : nullptr, *th = biases ? dbh.data_ptr<double>() : nullptr;
  float *px = biases ? part.data() : nullptr, *ph = biases ? part.data() + 3 * H : nullptr;
  auto add_part = [&] {
    for (int64_t j = 0; j < static_cast<int64_t>(part.size()) / 2; ++j) {
      tx[j] += px[j], th[j] += ph[j], px[j] = 0, ph[j] = 0;
    }
  };
  StepWeightGradient weights(dwt ? dwt->data_ptr<double>() : nullptr, I, H, 3 * H);
  for (int64_t k = s.T - 1; k >= 0; --k) {
    const int64_t t = s.step(k), rows = s.bs[t], o = s.off[t], cont = s.continued(t);
    const float *got = go + o * H, *gt = g + o * 3 * H, *hnt = hnp + o * H;
    const float* hpt = previous(s, t, h, hi, hs.data(), H);
    float *dxt = dx + o * 3 * H, *dht = dhh + o * 3 * H;
    if (cont > 0) {                                       // dh_t gets dGh_next W_hh and the z path dh_next z_next
      const int64_t on = s.off[s.step(k + 1)];
      const float* zn = g + on * 3 * H + H;                // z of the step run after t
      packed_product(dhh + on * 3 * H, cont, 3 * H, wt, H, [&](int64_t r, int64_t mr, int64_t u, int64_t cols) {
        const int64_t q = r * H + u, bytes = 4 * cols;
        for (int64_t j = 0; j < 3; ++j) prefetch_rows(gt + r * 3 * H + j * H + u, mr, 3 * H, bytes);
        prefetch_rows(zn + r * 3 * H + u, mr, 3 * H, bytes);
        for (const float* p : {got, hnt, hpt}) prefetch_rows(p + q, mr, H, bytes);
      }, [&](int64_t r, int64_t mr, int64_t u, int64_t cols, const float* y) {
        const int64_t q = r * H + u, q3 = r * 3 * H + u;
        backward_cells(got + q, y, zn + r * 3 * H + u, dh.data() + q, gt + q3, hnt + q, hpt + q, dxt + q3, dht + q3,
                       px ? px + u : nullptr, ph ? ph + u : nullptr, mr, cols, H);
      });
    }
    if (cont < rows) {                                    // rows whose sequence ends here: nothing flows in
      column_panels(H, [&](int64_t u, int64_t cols) {
        const int64_t q = cont * H + u, q3 = cont * 3 * H + u;
        backward_cells(got + q, nullptr, nullptr, dh.data() + q, gt + q3, hnt + q, hpt + q, dxt + q3, dht + q3,
                       px ? px + u : nullptr, ph ? ph + u : nullptr, rows - cont, cols, H);
      });
    }
    if (biases) add_part();
    weights.add(xp ? xp + o * I : nullptr, hpt, dxt, dht, rows);
  }
  weights.flush();
  // dL/dh0 = dGh W_hh + dh z at each sequence's first row (dh holds each row's dh there: no later step touched it)
  std::vector<float> gathered_d(s.reverse && !s.uniform() ? B * 3 * H : 0), gathered_g(gathered_d.size());
  const float* d0 = first_rows(s, static_cast<const float*>(dhh), gathered_d.data(), 3 * H);
  const float* z0 = first_rows(s, g, gathered_g.data(), 3 * H) + H;
  float* dh0p = dh0.data_ptr<float>();
  packed_product(d0, B, 3 * H, wt, H, [](int64_t, int64_t, int64_t, int64_t) {},
                 [&](int64_t r, int64_t mr, int64_t u, int64_t cols, const float* y) {
    for (int64_t i = 0; i < mr; ++i) {
      const int64_t row = r + i;
      for (int64_t j = 0; j < cols; ++j) {
        dh0p[row * H + u + j] = y[i * 64 + j] + dh[row * H + u + j] * z0[row * 3 * H + u + j];
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
  m.def("gru_forward_packed(Tensor x, Tensor? batch_sizes, Tensor h0, Tensor wx, Tensor? bias, Tensor wh,"
        " Tensor(a!) G, Tensor(b!) HN, Tensor(c!) out, bool reverse, bool keep) -> ()", &gru_forward_packed);
  m.def("gru_backward_packed(Tensor gout, Tensor? batch_sizes, Tensor G, Tensor HN, Tensor out, Tensor h0,"
        " Tensor w_t, Tensor(a!) dGx, Tensor(b!) dGh, Tensor(c!) dbx, Tensor(d!) dbh, bool reverse, Tensor? x=None,"
        " Tensor(e!)? dwt=None) -> Tensor", &gru_backward_packed);
}
