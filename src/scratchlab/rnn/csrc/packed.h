// The packed kernel's threads and step order over kernel.h's tiles (kernel.h: the vector layer, the tile products
// and their scalar reference, free of torch), shared by the compiled recurrent step loops (lstm.cpp, gru.cpp,
// rnn.cpp): the step shapes, the parallel loops, the weight-gradient accumulator and the Steps layout.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <optional>
#include <string>
#include <array>
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "kernel.h"

namespace scratchlab {

using at::Tensor;

// ---------------------------------------------------------------------------------------------- packed kernel
// The step products without a library call: where the build has a vector variant of kernel.h (AVX-512, AVX2+FMA,
// NEON; float32), each step's product is computed in register tiles and the gate math runs on each tile while it
// is in L1, so a step pays neither the library's per-call cost nor a second pass over (B, 4H). Tiles are kMR rows
// by up to kNV = 4 panels of 16 columns (64 columns: the unit of work the threads share).
#ifdef SCRATCHLAB_PACKED
// One step of a gated cell (LSTM, GRU) over tiles of kMR rows by one group of 16 hidden units: x (B, I) = x_t,
// h (B, H) = h_{t-1}, wx, wh = pack_gates of W_ih, W_hh (gate blocks padded to Hp = groups * 16 rows, so a group's
// gate panels lie `groups` panels apart). `product(rows, xo, ho, u, out)` fills out (rows, row stride 64; rows up to
// kRowBlock, a rows_product) from the two operands; `cells(r, mr, u, units, out)` finishes the cells of each tile
// of kMR rows from row r (units = the group's unpadded count). Threads take groups: a group's cells depend on
// nothing else of the step.
template <typename Product, typename Cells>
void gated_step(const float* x, int64_t I, const float* wx, const float* h, const float* wh, int64_t B, int64_t H,
                Product product, Cells cells) {
  const int64_t groups = (H + 15) / 16;
  at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
    alignas(64) float out[kRowBlock * 64];
    for (int64_t u = begin * 16; u < end * 16; u += 16) {
      const int64_t units = std::min<int64_t>(16, H - u);
      for (int64_t r0 = 0; r0 < B; r0 += kRowBlock) {
        const int64_t rows = std::min<int64_t>(kRowBlock, B - r0);
        const Operand xo{x + r0 * I, I, 1, wx + (u / 16) * I * 16, groups * I * 16, 16, I};
        const Operand ho{h + r0 * H, H, 1, wh + (u / 16) * H * 16, groups * H * 16, 16, H};
        product(rows, xo, ho, u, out);
        for (int64_t r = r0; r < r0 + rows; r += kMR) {
          cells(r, std::min<int64_t>(kMR, B - r), u, units, static_cast<const float*>(out + (r - r0) * 64));
        }
      }
    }
  });
}

// a (M, K) w^T with w = pack16 of an (N, K) matrix (N padded with zero rows to a multiple of 16), tile by tile:
// `fin(r, mr, u, cols, tile)` takes each (mr rows of `cols` columns from row r, column u; row stride 64);
// `pre(r, mr, u, cols)` runs for each tile before the product of its block of kRowBlock rows (one rows_product), to
// prefetch what fin will read while the product runs. Threads take column panels of 16 kNV, so pre and fin must only
// touch their tile's columns.
template <typename Pre, typename Fin>
void packed_product(const float* a, int64_t M, int64_t K, const float* w, int64_t N, Pre pre, Fin fin) {
  const int64_t panel = 16 * kNV;
  at::parallel_for(0, (N + panel - 1) / panel, 1, [&](int64_t begin, int64_t end) {
    alignas(64) float out[kRowBlock * 64];
    const Operand none{nullptr, 0, 0, nullptr, 0, 0, 0};
    for (int64_t u = begin * panel; u < std::min(N, end * panel); u += panel) {
      const int64_t nv = std::min<int64_t>(kNV, (N - u + 15) / 16), cols = std::min<int64_t>(16 * nv, N - u);
      for (int64_t r0 = 0; r0 < M; r0 += kRowBlock) {
        const int64_t rows = std::min<int64_t>(kRowBlock, M - r0);
        for (int64_t r = r0; r < r0 + rows; r += kMR) pre(r, std::min<int64_t>(kMR, M - r), u, cols);
        plain_rows(nv)(rows, Operand{a + r0 * K, K, 1, w + (u / 16) * K * 16, K * 16, 16, K}, none, nullptr, 0, out);
        for (int64_t r = r0; r < r0 + rows; r += kMR) {
          fin(r, std::min<int64_t>(kMR, M - r), u, cols, static_cast<const float*>(out + (r - r0) * 64));
        }
      }
    }
  });
}


// out (M, N) = a (M, K) w^T with w = pack_gates of an (N, K) matrix: a product with no cell math on its tiles (the
// backward's last one, dL/dh0 = dG_0 W_hh, with w = pack_gates(W_hh, transposed)).
inline void packed_linear(const float* a, int64_t M, int64_t K, const float* w, int64_t N, float* out) {
  packed_product(a, M, K, w, N, [](int64_t, int64_t, int64_t, int64_t) {},
                 [&](int64_t r, int64_t mr, int64_t u, int64_t cols, const float* y) {
    for (int64_t i = 0; i < mr; ++i) std::copy(y + i * 64, y + i * 64 + cols, out + (r + i) * N + u);
  });
}

// One step's weight gradients: dWT (I + H, N) += [x_t^T dGx_t; h_{t-1}^T dGh_t], rows of dWT being input features
// (x's, then h's) and columns the N pre-activations (N a multiple of 16); x (B, I), h (B, H), dgx, dgh (B, N): the
// gradients of the input-side and hidden-side pre-activations (the same for LSTM and RNN; the GRU's n gate differs),
// all with unit column stride. Columns in panels of 64 outside (dG_t's panel, B x 256 bytes, stays in L1 across the
// row tiles; threads take panels), rows of 6 inside.
inline void accumulate_dw(const float* x, int64_t I, const float* h, int64_t H, const float* dgx, const float* dgh,
                          int64_t N, int64_t B, float* dwt) {
  const int64_t panel = 16 * kNV;
  at::parallel_for(0, (N + panel - 1) / panel, 1, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin * panel; m < std::min(N, end * panel); m += panel) {
      const int64_t nv = std::min<int64_t>(kNV, (N - m) / 16);
      int64_t row = 0;
      for (const auto& [src, K, dg] : {std::tuple{x, I, dgx}, std::tuple{h, H, dgh}}) {
        for (int64_t n = 0; n < K; n += kMR) {
          const int64_t mr = std::min<int64_t>(kMR, K - n);
          accumulate_tile(mr, nv)(Operand{src + n, 1, K, dg + m, 16, N, B}, dwt + (row + n) * N + m, N);
        }
        row += K;
      }
    }
  });
}

// The weight gradients dW^T (I + H, N) of a whole sequence, step by step while each dG_t is in cache: kFlush steps
// summed in float32, each such block then added to the float64 total (all T steps in one float32 accumulator made
// the relative error ~10x torch's one GEMM at T = 400; this is as accurate as it). Needs N a multiple of 16. `rows`
// is the step's row count (bs[t] of a variable-length batch, see Steps).
class StepWeightGradient {
 public:
  StepWeightGradient(double* total, int64_t I, int64_t H, int64_t N)
      : total_(total), I_(I), H_(H), N_(N), block_(total ? (I + H) * N : 0) {}
  void add(const float* x, const float* h, const float* dg, int64_t rows) { add(x, h, dg, dg, rows); }
  void add(const float* x, const float* h, const float* dgx, const float* dgh, int64_t rows) {
    if (!total_) return;
    accumulate_dw(x, I_, h, H_, dgx, dgh, N_, rows, block_.data());
    if (++pending_ == kFlush) flush();
  }
  void flush() {
    if (!total_ || !pending_) return;
    at::parallel_for(0, static_cast<int64_t>(block_.size()), 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) total_[j] += block_[j], block_[j] = 0;
    });
    pending_ = 0;
  }

 private:
  static constexpr int64_t kFlush = 16;
  double* total_;
  int64_t I_, H_, N_, pending_ = 0;
  std::vector<float> block_;
};

#endif

// fn(u, cols) over the columns [0, N) in panels of 64, the panels split over torch's threads: for per-column work
// outside a product (a backward's last step, which has no product to hide behind).
template <typename Fn>
void column_panels(int64_t N, Fn fn) {
  at::parallel_for(0, (N + 63) / 64, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin * 64; u < std::min(N, end * 64); u += 64) fn(u, std::min<int64_t>(64, N - u));
  });
}

// ------------------------------------------------------------------------------------------------ the steps
// Which rows each step has, the one layout every loop here reads. Every per-step buffer (x, the outputs h_t, the
// gates, c_t, tanh(c_t), their gradients) is 2-D, (N, width), and holds step t's rows at off[t] .. off[t] + bs[t]:
// the first bs[t] sequences of the batch, those still running at step t. That is a PackedSequence's `data`
// (sequences sorted by falling length, so bs is non-increasing, bs[0] = B); a padded batch (T, B, width) is the case
// bs[t] = B, off[t] = t B. Step products and cell passes run on a step's bs[t] rows only, never on padding.
//
// A forward run takes t = 0 .. T-1; a reverse one T-1 .. 0, in which each sequence starts at its own last step: step
// t's rows [bs[t+1], bs[t]) start from h0 there, as torch.nn's reverse direction does. A sequence's final state is
// at its last step run: forward, the step len_b - 1; reverse, step 0 (`last_row`). The state it starts from is
// read at its first step run (`first_row`). The initial states h0, c0 are (B, H) and the final ones are gathered
// by the caller (fast.py) from the outputs.
struct Steps {
  int64_t T = 0, B = 0, N = 0;          // steps, batch (bs[0]), rows (sum of bs)
  bool reverse = false;
  std::vector<int64_t> bs, off;         // each step's rows and first row

  // batch_sizes: None for a padded batch of N / B steps, else (T,) int64 on the CPU, as PackedSequence's.
  Steps(const std::optional<Tensor>& batch_sizes, int64_t rows, int64_t batch, bool rev) : B(batch), N(rows),
                                                                                       reverse(rev) {
    TORCH_CHECK(B > 0 && N > 0, "scratchlab: expected at least one step and one sequence, got ", N, " rows for a ",
                "batch of ", B);
    if (!batch_sizes) {
      TORCH_CHECK(N % B == 0, "scratchlab: ", N, " rows are not whole steps of ", B, " (padded batch)");
      T = N / B;
      bs.assign(T, B);
    } else {
      const Tensor& s = *batch_sizes;
      TORCH_CHECK(s.dim() == 1 && s.numel() > 0 && s.scalar_type() == at::kLong && s.device().is_cpu(),
                  "scratchlab: batch_sizes must be a 1-D int64 CPU tensor (PackedSequence's), got ", s.scalar_type(),
                  " ", s.sizes(), " on ", s.device());
      const Tensor c = s.contiguous();
      bs.assign(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
      T = static_cast<int64_t>(bs.size());
      int64_t total = 0;
      for (int64_t t = 0; t < T; ++t) {
        TORCH_CHECK(bs[t] > 0 && bs[t] <= (t ? bs[t - 1] : B) && (t || bs[0] == B), "scratchlab: batch_sizes must ",
                    "start at the batch size ", B, " and not increase, got ", s);
        total += bs[t];
      }
      TORCH_CHECK(total == N, "scratchlab: batch_sizes sum to ", total, ", the buffers have ", N, " rows");
    }
    off.resize(T + 1);
    off[0] = 0;
    for (int64_t t = 0; t < T; ++t) off[t + 1] = off[t] + bs[t];
  }
  int64_t step(int64_t k) const { return reverse ? T - 1 - k : k; }       // the k-th step run
  int64_t before(int64_t t) const { return reverse ? t + 1 : t - 1; }     // the step run before t
  // rows of step t whose state comes from the step run before it; the others (all when t is run first) start
  // from the initial state
  int64_t carried(int64_t t) const { return reverse ? (t + 1 < T ? bs[t + 1] : 0) : (t > 0 ? bs[t] : 0); }
  // rows of step t that take part in the product with the gradient of the step run after it (backward)
  int64_t continued(int64_t t) const { return reverse ? (t > 0 ? bs[t] : 0) : (t + 1 < T ? bs[t + 1] : 0); }
  bool uniform() const { return bs.front() == bs.back(); }
  // the row of sequence b at the first / last step of its run
  int64_t length(int64_t b) const {                                       // steps sequence b runs (binary search)
    return std::partition_point(bs.begin(), bs.end(), [b](int64_t s) { return s > b; }) - bs.begin();
  }
  int64_t first_row(int64_t b) const { return reverse ? off[length(b) - 1] + b : b; }
  int64_t last_row(int64_t b) const { return reverse ? b : off[length(b) - 1] + b; }
};

// Rows [0, bs[t]) of the state step t starts from, row stride w: the previous step's rows of `states` (N, w), or
// `init` (B, w) where the step is run first. A reverse step where sequences start (bs[t] > bs[t+1]) takes the
// carried rows from `states` and the starting ones from `init`: gathered into `scratch` (at least B w values).
template <typename T>
const T* previous(const Steps& s, int64_t t, const T* states, const T* init, T* scratch, int64_t w) {
  const int64_t carried = s.carried(t);
  if (carried == 0) return init;
  const T* prev = states + s.off[s.before(t)] * w;
  if (carried == s.bs[t]) return prev;
  std::copy(prev, prev + carried * w, scratch);
  std::copy(init + carried * w, init + s.bs[t] * w, scratch + carried * w);
  return scratch;
}

// (B, w): row b is row first_row(b) of buf (N, w), the rows at which each sequence read the initial state; a
// pointer into buf when they are one step's rows (forward runs, equal lengths), else gathered into scratch.
template <typename T>
const T* first_rows(const Steps& s, const T* buf, T* scratch, int64_t w) {
  if (!s.reverse) return buf;
  if (s.uniform()) return buf + s.off[s.T - 1] * w;
  for (int64_t b = 0; b < s.B; ++b) std::copy(buf + s.first_row(b) * w, buf + (s.first_row(b) + 1) * w, scratch + b * w);
  return scratch;
}

// The per-step buffers of a kernel call: each must be contiguous with the step layout's N rows of `width` values.
inline void check_rows(const Steps& s, const Tensor& t, int64_t width, const char* what) {
  TORCH_CHECK(t.is_contiguous() && t.numel() == s.N * width, "scratchlab: ", what, " must be a contiguous buffer of ",
              s.N, " rows of ", width, ", got ", t.sizes());
}

// How the step products are made: at::mm, oneDNN's matmul (w in its packed layout), or the packed kernel above
// (w = pack16(...)). fast.py picks; `packed_available` says whether this build has the packed kernel.
enum Kernel : int64_t { kAtMm = 0, kOneDnn = 1, kPacked = 2 };

// The vector variant this build was compiled for: avx512, avx2, neon or generic (kernel.h).
inline std::string kernel_isa() { return SCRATCHLAB_ISA_NAME; }

inline bool packed_available() {
#ifdef SCRATCHLAB_PACKED
  return true;
#else
  return false;
#endif
}

inline void check_packed(const Tensor& G, const Tensor& w) {
  TORCH_CHECK(packed_available(), "scratchlab: this build (", SCRATCHLAB_ISA_NAME, ") has no packed kernel");
  TORCH_CHECK(G.scalar_type() == at::kFloat && w.is_contiguous() && w.dim() == 3 && w.size(2) == 16,
              "scratchlab: the packed kernel needs float32 and a pack_gates weight, got ", G.scalar_type(), ", weight ",
              w.sizes());
}

// pack_gates (packed.cpp): a (G H, K) weight of G gate blocks as the packed kernel reads it.
Tensor pack_gates(const Tensor& w, at::IntArrayRef order, at::ArrayRef<double> scale, bool transposed);

}  // namespace scratchlab
