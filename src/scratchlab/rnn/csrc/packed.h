// The packed kernel shared by the compiled recurrent step loops (lstm.cpp, gru.cpp, rnn.cpp): register-tile
// products that the steps call instead of a library, their operands' layout, the step order, and the pointwise
// helpers.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace scratchlab {

using at::Tensor;

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

// ---------------------------------------------------------------------------------------------- packed kernel
// The step products without a library call: on a float32 CPU with AVX-512, each step's product is computed here in
// register tiles and the gate math runs on each tile while it is in L1, so a step pays neither the library's
// per-call cost (~9 us through the dispatcher) nor a second pass over (B, 4H).
//
// Weights come as `pack_gates(w)` (fast.pack16 is its definition): w (N, K) padded with zero rows to a multiple of
// 16 and cut into panels of 16 rows, each stored transposed, (N/16, K, 16), so that a tile reads 16 consecutive
// output columns of one k as one 64-byte vector. A tile is MR
// rows of the left operand by NV panels (16 NV columns), MR x NV accumulators (at most 6 x 4 = 24 of AVX-512's 32
// vector registers); the NV panels of a tile may lie anywhere in the packed weight (a base and a stride), so the
// forward takes the o, i, f, g panels of the same 16 hidden units as one tile and finishes those cells at once.
#if defined(__AVX512F__)
#define SCRATCHLAB_PACKED 1
constexpr int kMR = 6, kNV = 4;

// One operand of a tile product, MR rows by K times NV panels of 16 columns: a(r, k) = a[r ra + k ka] and
// panel c's 16 values at k from p + c ps + k pk. The step products read rows of a matrix (ra = its row stride,
// ka = 1) against pack_gates panels (ps = K 16, pk = 16); the weight gradients read a matrix's columns against rows
// of dG (ra = 1, ka = row stride; ps = 16, pk = dG's row stride).
struct Operand {
  const float* a;
  int64_t ra, ka;
  const float* p;
  int64_t ps, pk, K;
};

// acc[r][to[c]] += sum_k a(r, k) panel_c(k) for the panels c < sizeof...(To): with To = 0, 1, ..., NA - 1 the
// plain tile product; another map lets two operands share some accumulators and not others (the GRU's n gate keeps
// its input and hidden products apart).
template <int MR, int NA, int... To>
inline void fma_to(__m512 (&acc)[MR][NA], const Operand& o) {
  constexpr int NV = sizeof...(To);
  constexpr int to[NV] = {To...};
  const float *a = o.a, *p = o.p;
  for (int64_t k = 0; k < o.K; ++k, a += o.ka, p += o.pk) {
    __m512 w[NV];
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) w[c] = _mm512_loadu_ps(p + c * o.ps);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 v = _mm512_set1_ps(a[r * o.ra]);
#pragma GCC unroll 4
      for (int c = 0; c < NV; ++c) acc[r][to[c]] = _mm512_fmadd_ps(v, w[c], acc[r][to[c]]);
    }
  }
}

// acc[r][c] += sum_k a(r, k) panel_c(k)
template <int MR, int NV, int... C>
inline void fma_operand_seq(__m512 (&acc)[MR][NV], const Operand& o, std::integer_sequence<int, C...>) {
  fma_to<MR, NV, C...>(acc, o);
}
template <int MR, int NV>
inline void fma_operand(__m512 (&acc)[MR][NV], const Operand& o) {
  fma_operand_seq<MR, NV>(acc, o, std::make_integer_sequence<int, NV>{});
}

// out (MR, 64, row stride 64) <- bias + x's product + y's, for NV panels; bias: NV vectors at bias + c bs, or null
// for zero; y.K = 0 for a single operand.
template <int MR, int NV>
void tile_product(const Operand& x, const Operand& y, const float* bias, int64_t bs, float* out) {
  __m512 acc[MR][NV];
#pragma GCC unroll 4
  for (int c = 0; c < NV; ++c) {
    const __m512 b = bias ? _mm512_loadu_ps(bias + c * bs) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[r][c] = b;
  }
  fma_operand<MR, NV>(acc, x);
  fma_operand<MR, NV>(acc, y);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) _mm512_storeu_ps(out + r * 64 + c * 16, acc[r][c]);
}

// C (MR rows of 16 NV columns, row stride ldc) += x's product.
template <int MR, int NV>
void tile_accumulate(const Operand& x, float* C, int64_t ldc) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) acc[r][c] = _mm512_loadu_ps(C + r * ldc + c * 16);
  fma_operand<MR, NV>(acc, x);
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) _mm512_storeu_ps(C + r * ldc + c * 16, acc[r][c]);
}

using AccumulateFn = void (*)(const Operand&, float*, int64_t);

template <int NV, int... MR>
constexpr std::array<AccumulateFn, sizeof...(MR)> accumulate_row(std::integer_sequence<int, MR...>) {
  return {&tile_accumulate<MR + 1, NV>...};
}

// accumulate_tile(mr, nv): tile_accumulate for mr rows (1..kMR) and nv panels (1..kNV).
inline AccumulateFn accumulate_tile(int64_t mr, int64_t nv) {
  using Rows = std::make_integer_sequence<int, kMR>;
  static const std::array<std::array<AccumulateFn, kMR>, kNV> table = {
      accumulate_row<1>(Rows{}), accumulate_row<2>(Rows{}), accumulate_row<3>(Rows{}), accumulate_row<4>(Rows{})};
  return table[nv - 1][mr - 1];
}

using TileFn = void (*)(const Operand&, const Operand&, const float*, int64_t, float*);

template <int NV, int... MR>
constexpr std::array<TileFn, sizeof...(MR)> tile_row(std::integer_sequence<int, MR...>) {
  return {&tile_product<MR + 1, NV>...};
}

// tile(mr, nv): the kernel for mr rows (1..kMR) and nv panels (1..kNV).
inline TileFn tile(int64_t mr, int64_t nv) {
  using Rows = std::make_integer_sequence<int, kMR>;
  static const std::array<std::array<TileFn, kMR>, kNV> table = {tile_row<1>(Rows{}), tile_row<2>(Rows{}),
                                                                 tile_row<3>(Rows{}), tile_row<4>(Rows{})};
  return table[nv - 1][mr - 1];
}

// One step of a gated cell (LSTM, GRU) over tiles of kMR rows by one group of 16 hidden units: x (B, I) = x_t,
// h (B, H) = h_{t-1}, wx, wh = pack_gates of W_ih, W_hh (gate blocks padded to Hp = groups * 16 rows, so a group's
// gate panels lie `groups` panels apart). `product(mr, xo, ho, u, out)` fills the tile out (mr rows, row stride 64)
// from the two operands; `cells(r, mr, u, units, out)` finishes its cells (units = the group's unpadded count).
// Threads take groups: a group's cells depend on nothing else of the step.
template <typename Product, typename Cells>
void gated_step(const float* x, int64_t I, const float* wx, const float* h, const float* wh, int64_t B, int64_t H,
                Product product, Cells cells) {
  const int64_t groups = (H + 15) / 16;
  at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
    alignas(64) float out[kMR * 64];
    for (int64_t u = begin * 16; u < end * 16; u += 16) {
      const int64_t units = std::min<int64_t>(16, H - u);
      for (int64_t r = 0; r < B; r += kMR) {
        const int64_t mr = std::min<int64_t>(kMR, B - r);
        const Operand xo{x + r * I, I, 1, wx + (u / 16) * I * 16, groups * I * 16, 16, I};
        const Operand ho{h + r * H, H, 1, wh + (u / 16) * H * 16, groups * H * 16, 16, H};
        product(mr, xo, ho, u, out);
        cells(r, mr, u, units, static_cast<const float*>(out));
      }
    }
  });
}

// a (M, K) w^T with w = pack16 of an (N, K) matrix (N padded with zero rows to a multiple of 16), tile by tile:
// `fin(r, mr, u, cols, tile)` takes each (mr rows of `cols` columns from row r, column u; row stride 64);
// `pre(r, mr, u, cols)` runs before each tile's product (to prefetch what fin will read: the product hides the
// memory latency). Threads take column panels of 16 kNV, so pre and fin must only touch their tile's columns.
template <typename Pre, typename Fin>
void packed_product(const float* a, int64_t M, int64_t K, const float* w, int64_t N, Pre pre, Fin fin) {
  const int64_t panel = 16 * kNV;
  at::parallel_for(0, (N + panel - 1) / panel, 1, [&](int64_t begin, int64_t end) {
    alignas(64) float out[kMR * 64];
    const Operand none{nullptr, 0, 0, nullptr, 0, 0, 0};
    for (int64_t u = begin * panel; u < std::min(N, end * panel); u += panel) {
      const int64_t nv = std::min<int64_t>(kNV, (N - u + 15) / 16), cols = std::min<int64_t>(16 * nv, N - u);
      for (int64_t r = 0; r < M; r += kMR) {
        const int64_t mr = std::min<int64_t>(kMR, M - r);
        pre(r, mr, u, cols);
        tile(mr, nv)(Operand{a + r * K, K, 1, w + (u / 16) * K * 16, K * 16, 16, K}, none, nullptr, 0, out);
        fin(r, mr, u, cols, static_cast<const float*>(out));
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
// the relative error ~10x torch's one GEMM at T = 400; this is as accurate as it). Needs N a multiple of 16.
class StepWeightGradient {
 public:
  StepWeightGradient(double* total, int64_t I, int64_t H, int64_t N, int64_t B)
      : total_(total), I_(I), H_(H), N_(N), B_(B), block_(total ? (I + H) * N : 0) {}
  void add(const float* x, const float* h, const float* dg) { add(x, h, dg, dg); }
  void add(const float* x, const float* h, const float* dgx, const float* dgh) {
    if (!total_) return;
    accumulate_dw(x, I_, h, H_, dgx, dgh, N_, B_, block_.data());
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
  int64_t I_, H_, N_, B_, pending_ = 0;
  std::vector<float> block_;
};

// Prefetch rows x bytes from p (row stride in floats) into L2, a cache line at a time.
inline void prefetch_rows(const float* p, int64_t rows, int64_t stride, int64_t bytes) {
  for (int64_t r = 0; r < rows; ++r) {
    const char* row = reinterpret_cast<const char*>(p + r * stride);
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(row + b, _MM_HINT_T1);
  }
}
#endif

// fn(u, cols) over the columns [0, N) in panels of 64, the panels split over torch's threads: for per-column work
// outside a product (a backward's last step, which has no product to hide behind).
template <typename Fn>
void column_panels(int64_t N, Fn fn) {
  at::parallel_for(0, (N + 63) / 64, 1, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin * 64; u < std::min(N, end * 64); u += 64) fn(u, std::min<int64_t>(64, N - u));
  });
}

// The steps in the order the forward runs them: (t, slot read, slot written).
struct Slot { int64_t t, rd, wr; };
inline Slot slot(int64_t k, int64_t T, bool reverse) {
  return reverse ? Slot{T - 1 - k, T - k, T - 1 - k} : Slot{k, k, k + 1};
}

// How the step products are made: at::mm, oneDNN's matmul (w in its packed layout), or the packed kernel above
// (w = pack16(...)). fast.py picks; `packed_available` says whether this build has the packed kernel.
enum Kernel : int64_t { kAtMm = 0, kOneDnn = 1, kPacked = 2 };

inline bool packed_available() {
#ifdef SCRATCHLAB_PACKED
  return true;
#else
  return false;
#endif
}

inline void check_packed(const Tensor& G, const Tensor& w) {
  TORCH_CHECK(packed_available(), "scratchlab: this build has no packed kernel (needs AVX-512)");
  TORCH_CHECK(G.scalar_type() == at::kFloat && w.is_contiguous() && w.dim() == 3 && w.size(2) == 16,
              "scratchlab: the packed kernel needs float32 and a pack_gates weight, got ", G.scalar_type(), ", weight ",
              w.sizes());
}

// pack_gates (packed.cpp): a (G H, K) weight of G gate blocks as the packed kernel reads it.
Tensor pack_gates(const Tensor& w, at::IntArrayRef order, at::ArrayRef<double> scale, bool transposed);

}  // namespace scratchlab
