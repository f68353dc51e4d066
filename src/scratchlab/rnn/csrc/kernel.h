// The packed kernel's core, free of torch (so that it can be compiled and tested on its own, for another CPU too):
// a thin vector layer, the inline exp, the operands' layout and the register-tile products, each written once over
// the vector type and preceded by its scalar reference. packed.h adds the threads and the step order (ATen).
//
// The vector layer: V16, 16 floats (one 16-column panel of a tile), with load, store, set1, zero and fmadd, as
//   AVX-512   one __m512                 (SCRATCHLAB_ISA_AVX512)
//   AVX2+FMA  two __m256                 (SCRATCHLAB_ISA_AVX2)
//   NEON      four float32x4_t           (SCRATCHLAB_ISA_NEON, aarch64)
//   scalar    float[16], std::fma        (SCRATCHLAB_ISA_SCALAR: the reference, for the tests)
// SCRATCHLAB_ISA_GENERIC builds no packed kernel (the library and Python paths run instead). With none defined the
// compiler's target decides (AVX-512, else AVX2 with FMA, else NEON, else generic). _cext.py passes one per build.
//
// Each variant adds, for every output element, the bias, then x's products for k ascending, then h's, each product
// with one fused multiply-add: the same operations in the same order as the scalar reference, so every variant
// gives the reference's bits (tests/csrc/kernel_test.cpp checks this for each ISA it can run).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#if !defined(SCRATCHLAB_ISA_AVX512) && !defined(SCRATCHLAB_ISA_AVX2) && !defined(SCRATCHLAB_ISA_NEON) && \
    !defined(SCRATCHLAB_ISA_SCALAR) && !defined(SCRATCHLAB_ISA_GENERIC)
#if defined(__AVX512F__)
#define SCRATCHLAB_ISA_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#define SCRATCHLAB_ISA_AVX2 1
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define SCRATCHLAB_ISA_NEON 1
#else
#define SCRATCHLAB_ISA_GENERIC 1
#endif
#endif

#if defined(SCRATCHLAB_ISA_AVX512)
#if !defined(__AVX512F__)
#error "SCRATCHLAB_ISA_AVX512 needs a compiler target with AVX-512F (-march=native on such a CPU)"
#endif
#include <immintrin.h>
#define SCRATCHLAB_PACKED 1
#define SCRATCHLAB_ISA_NAME "avx512"
#elif defined(SCRATCHLAB_ISA_AVX2)
#if !defined(__AVX2__) || !defined(__FMA__)
#error "SCRATCHLAB_ISA_AVX2 needs a compiler target with AVX2 and FMA"
#endif
#include <immintrin.h>
#define SCRATCHLAB_PACKED 1
#define SCRATCHLAB_ISA_NAME "avx2"
#elif defined(SCRATCHLAB_ISA_NEON)
#if !defined(__aarch64__) || !defined(__ARM_NEON)
#error "SCRATCHLAB_ISA_NEON needs an aarch64 target"
#endif
#include <arm_neon.h>
#define SCRATCHLAB_PACKED 1
#define SCRATCHLAB_ISA_NAME "neon"
#elif defined(SCRATCHLAB_ISA_SCALAR)
#define SCRATCHLAB_PACKED 1
#define SCRATCHLAB_ISA_NAME "scalar"
#else
#define SCRATCHLAB_ISA_NAME "generic"
#endif

namespace scratchlab {

// exp(x) = 2^n e^r with n = round(x / ln 2) and r = x - n ln 2 in [-ln2/2, ln2/2]; e^r by its Taylor series to
// degree 7 (float: truncation error 5e-9, below float's 6e-8 rounding) or 13 (double: 4e-18), 2^n from the bits.
// Written out rather than calling std::exp: gcc vectorises this inline, while it vectorises std::exp (into glibc's
// libmvec) only when NaN and inf are assumed away, and even then it was slower (docs/design.md, speed plan).
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

// Prefetch rows x bytes from p (row stride in floats) into L2, a cache line at a time.
inline void prefetch_rows(const float* p, int64_t rows, int64_t stride, int64_t bytes) {
  for (int64_t r = 0; r < rows; ++r) {
    const char* row = reinterpret_cast<const char*>(p + r * stride);
    for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(row + b, 0, 2);  // 2: L2 and outward (prefetcht1)
  }
}

// ---------------------------------------------------------------------------------------------- the layout
// Weights come as `pack_gates(w)` (fast.pack16 is its definition): w (N, K) padded with zero rows to a multiple of
// 16 and cut into panels of 16 rows, each stored transposed, (N/16, K, 16), so that a tile reads 16 consecutive
// output columns of one k as one V16. A tile is MR rows of the left operand by NV panels (16 NV columns); the NV
// panels of a tile may lie anywhere in the packed weight (a base and a stride), so the LSTM forward takes the o, i,
// f, g panels of the same 16 hidden units as one tile and finishes those cells at once.
//
// One operand of a tile product, rows by K times panels of 16 columns: a(r, k) = a[r ra + k ka] and panel c's 16
// values at k from p + c ps + k pk. The step products read rows of a matrix (ra = its row stride, ka = 1) against
// pack_gates panels (ps = K 16, pk = 16); the weight gradients read a matrix's columns against rows of dG (ra = 1,
// ka = row stride; ps = 16, pk = dG's row stride). K = 0: no operand.
struct Operand {
  const float* a;
  int64_t ra, ka;
  const float* p;
  int64_t ps, pk, K;
};

// Which of an operand's panels each accumulator panel of a tile takes: From[j] (or -1: none). Map<0, 1, 2, 3> is
// the plain product; the GRU's [r, z, n_x, n_h] tile takes x's (r, z, n) panels as Map<0, 1, 2, -1> and h's as
// Map<0, 1, -1, 2>, so that its n gate keeps the two products apart.
template <int... From>
struct Map {
  static constexpr int size = sizeof...(From);
  static constexpr std::array<int, sizeof...(From)> from = {From...};
};

template <int... C>
Map<C...> identity_map(std::integer_sequence<int, C...>);
template <int NV>
using Identity = decltype(identity_map(std::make_integer_sequence<int, NV>{}));

// The reader's definition of a tile product, plain scalar code: for rows r < mr and accumulator panels j < na,
//   out[r 64 + 16 j + l] = bias_j[l] + sum_k x.a(r, k) x.panel_{fx[j]}(k)[l] + sum_k h.a(r, k) h.panel_{fh[j]}(k)[l]
// bias_j = bias + j bs (zero where bias is null), fx[j] or fh[j] = -1 leaves that sum out; each sum in k order,
// each term one fused multiply-add into the running value.
inline void tile_product_reference(int mr, int na, const int* fx, const int* fh, const Operand& x, const Operand& h,
                                   const float* bias, int64_t bs, float* out) {
  for (int r = 0; r < mr; ++r) {
    for (int j = 0; j < na; ++j) {
      for (int l = 0; l < 16; ++l) {
        float acc = bias ? bias[j * bs + l] : 0.f;
        for (const auto& [o, from] : {std::pair{&x, fx[j]}, std::pair{&h, fh[j]}}) {
          if (from < 0) continue;
          for (int64_t k = 0; k < o->K; ++k) acc = std::fma(o->a[r * o->ra + k * o->ka], o->p[from * o->ps + k * o->pk + l], acc);
        }
        out[r * 64 + j * 16 + l] = acc;
      }
    }
  }
}

// The reader's definition of tile_accumulate: C[r ldc + 16 j + l] += sum_k x.a(r, k) x.panel_j(k)[l] for r < mr,
// j < nv, in k order, one fused multiply-add per term.
inline void tile_accumulate_reference(int mr, int nv, const Operand& x, float* C, int64_t ldc) {
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < nv; ++j)
      for (int l = 0; l < 16; ++l) {
        float& acc = C[r * ldc + j * 16 + l];
        for (int64_t k = 0; k < x.K; ++k) acc = std::fma(x.a[r * x.ra + k * x.ka], x.p[j * x.ps + k * x.pk + l], acc);
      }
}

#ifdef SCRATCHLAB_PACKED
// ------------------------------------------------------------------------------------------- the vector layer
// kNG: accumulator panels held in registers at once, MR x kNG V16s plus kNG for the weights and one broadcast:
// AVX-512 4 (24 + 4 + 1 of its 32 zmm); AVX2 1 (12 + 2 + 1 of 16 ymm, BLIS's Haswell 6x16 tile); NEON 1 (24 + 4 +
// 1 of 32 q); scalar 2 (any number is right; 2 makes the tests cover a group that is neither 1 nor the tile).
// A tile of more panels is computed group after group, each element's sum in the same order.
constexpr int kMR = 6, kNV = 4;

#if defined(SCRATCHLAB_ISA_AVX512)
constexpr int kNG = 4;
struct V16 { __m512 v; };
inline V16 load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void store(float* p, V16 a) { _mm512_storeu_ps(p, a.v); }
inline V16 set1(float x) { return {_mm512_set1_ps(x)}; }
inline V16 zero() { return {_mm512_setzero_ps()}; }
inline V16 fmadd(V16 a, V16 b, V16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }  // a b + c, one rounding
#elif defined(SCRATCHLAB_ISA_AVX2)
constexpr int kNG = 1;
struct V16 { __m256 lo, hi; };
inline V16 load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline void store(float* p, V16 a) { _mm256_storeu_ps(p, a.lo), _mm256_storeu_ps(p + 8, a.hi); }
inline V16 set1(float x) { const __m256 v = _mm256_set1_ps(x); return {v, v}; }
inline V16 zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline V16 fmadd(V16 a, V16 b, V16 c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
#elif defined(SCRATCHLAB_ISA_NEON)
constexpr int kNG = 1;
struct V16 { float32x4_t q0, q1, q2, q3; };
inline V16 load(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4), vld1q_f32(p + 8), vld1q_f32(p + 12)}; }
inline void store(float* p, V16 a) { vst1q_f32(p, a.q0), vst1q_f32(p + 4, a.q1), vst1q_f32(p + 8, a.q2), vst1q_f32(p + 12, a.q3); }
inline V16 set1(float x) { const float32x4_t v = vdupq_n_f32(x); return {v, v, v, v}; }
inline V16 zero() { return set1(0.f); }
inline V16 fmadd(V16 a, V16 b, V16 c) {  // vfmaq_f32(c, a, b) = c + a b, fused
  return {vfmaq_f32(c.q0, a.q0, b.q0), vfmaq_f32(c.q1, a.q1, b.q1), vfmaq_f32(c.q2, a.q2, b.q2),
          vfmaq_f32(c.q3, a.q3, b.q3)};
}
#else  // SCRATCHLAB_ISA_SCALAR
constexpr int kNG = 2;
struct V16 { float f[16]; };
inline V16 load(const float* p) { V16 v; std::copy(p, p + 16, v.f); return v; }
inline void store(float* p, V16 a) { std::copy(a.f, a.f + 16, p); }
inline V16 set1(float x) { V16 v; std::fill(v.f, v.f + 16, x); return v; }
inline V16 zero() { return set1(0.f); }
inline V16 fmadd(V16 a, V16 b, V16 c) { for (int l = 0; l < 16; ++l) c.f[l] = std::fma(a.f[l], b.f[l], c.f[l]); return c; }
#endif

// The FMA peak of this variant: a tile's kMR x kNG accumulators updated `rounds` times by fused multiply-adds of
// register operands, no loads or stores: what a tile product would reach if nothing but its FMAs cost (the "%
// peak" of benchmarks/rnn_speed.py). kPeakFlops per round (16 lanes, 2 FLOPs an FMA); returns the sum of every
// lane of the accumulators, so that the compiler keeps every FMA.
constexpr int64_t kPeakFlops = 32 * kMR * kNG;
__attribute__((noinline)) inline float fma_peak_loop(int64_t rounds) {
  V16 acc[kMR][kNG];
  for (int r = 0; r < kMR; ++r)
    for (int c = 0; c < kNG; ++c) acc[r][c] = set1(1e-3f * static_cast<float>(r * kNG + c));
  const V16 a = set1(0.9999f), b = set1(1e-4f);
  for (int64_t k = 0; k < rounds; ++k) {
#pragma GCC unroll 8
    for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < kNG; ++c) acc[r][c] = fmadd(acc[r][c], a, b);
  }
  V16 total = zero();
  for (int r = 0; r < kMR; ++r)
    for (int c = 0; c < kNG; ++c) total = fmadd(acc[r][c], set1(1.f), total);
  alignas(64) float lanes[16];
  store(lanes, total);
  float sum = 0.f;
  for (int l = 0; l < 16; ++l) sum += lanes[l];             // every lane, so that no part of the loop is dead
  return sum;
}

// ----------------------------------------------------------------------------------------- the tile products
// acc[r][c] += sum_k a(r, k) panel_{M::from[G0 + c]}(k) for the accumulator panels c < NG of the group starting at
// G0 whose map entry is not -1 (the maps are compile-time, so the skipped ones cost nothing).
template <int MR, int NG, int G0, typename M>
inline void fma_group(V16 (&acc)[MR][NG], const Operand& o) {
  constexpr auto src = [] {
    std::array<int, NG> s{};
    for (int c = 0; c < NG; ++c) s[c] = M::from[G0 + c];
    return s;
  }();
  if constexpr (std::all_of(src.begin(), src.end(), [](int s) { return s < 0; })) {
    return;
  } else {
    const float *a = o.a, *p = o.p;
    for (int64_t k = 0; k < o.K; ++k, a += o.ka, p += o.pk) {
      V16 w[NG];
#pragma GCC unroll 4
      for (int c = 0; c < NG; ++c) if (src[c] >= 0) w[c] = load(p + src[c] * o.ps);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const V16 v = set1(a[r * o.ra]);
#pragma GCC unroll 4
        for (int c = 0; c < NG; ++c) if (src[c] >= 0) acc[r][c] = fmadd(v, w[c], acc[r][c]);
      }
    }
  }
}

// out (MR rows, row stride 64) <- bias + x's product (map XM) + y's (map YM), for NV accumulator panels, in groups
// of kNG panels from G0 on; bias: NV vectors at bias + c bs, or null for zero; y.K = 0 for a single operand.
// resume: start from out's values instead of the bias (a later block of k, see tile_product).
template <int MR, int NV, typename XM, typename YM, int G0 = 0>
inline void tile_groups(const Operand& x, const Operand& y, const float* bias, int64_t bs, float* out, bool resume) {
  if constexpr (G0 < NV) {
    constexpr int NG = std::min(kNG, NV - G0);
    V16 acc[MR][NG];
#pragma GCC unroll 4
    for (int c = 0; c < NG; ++c) {
      const V16 b = bias ? load(bias + (G0 + c) * bs) : zero();
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) acc[r][c] = resume ? load(out + r * 64 + (G0 + c) * 16) : b;
    }
    fma_group<MR, NG, G0, XM>(acc, x);
    fma_group<MR, NG, G0, YM>(acc, y);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NG; ++c) store(out + r * 64 + (G0 + c) * 16, acc[r][c]);
    tile_groups<MR, NV, XM, YM, G0 + NG>(x, y, bias, bs, out, resume);
  }
}

// o's terms k0 <= k < k1 (clamped to 0 .. K).
inline Operand slice(const Operand& o, int64_t k0, int64_t k1) {
  k0 = std::clamp<int64_t>(k0, 0, o.K), k1 = std::clamp<int64_t>(k1, 0, o.K);
  return {o.a + k0 * o.ka, o.ra, o.ka, o.p + k0 * o.pk, o.ps, o.pk, k1 - k0};
}

// kKC: where a tile's panels take several groups (kNG < NV: AVX2, NEON), its terms are cut into blocks of kKC k
// (x's, then y's), the partial sums waiting in `out` between blocks, so that the left operand's block (MR kKC
// floats, 6 KB) stays in L1 while each group reads it again; every element still adds its terms in the same order.
constexpr int64_t kKC = 256;

// out (MR rows, row stride 64) <- bias + x's product (map XM) + y's (map YM): tile_product_reference's values.
template <int MR, int NV, typename XM, typename YM>
inline void tile_product(const Operand& x, const Operand& y, const float* bias, int64_t bs, float* out) {
  if constexpr (kNG >= NV) {
    tile_groups<MR, NV, XM, YM>(x, y, bias, bs, out, false);
  } else {
    const int64_t K = x.K + y.K;
    for (int64_t k0 = 0; k0 == 0 || k0 < K; k0 += kKC) {
      tile_groups<MR, NV, XM, YM>(slice(x, k0, k0 + kKC), slice(y, k0 - x.K, k0 + kKC - x.K), bias, bs, out, k0 > 0);
    }
  }
}

// The plain product of NV panels: accumulator c takes x's and y's panel c.
template <int MR, int NV>
void tile_plain(const Operand& x, const Operand& y, const float* bias, int64_t bs, float* out) {
  tile_product<MR, NV, Identity<NV>, Identity<NV>>(x, y, bias, bs, out);
}

// C (MR rows of 16 NV columns, row stride ldc) += x's product.
template <int MR, int NV, int G0 = 0>
void tile_accumulate(const Operand& x, float* C, int64_t ldc) {
  if constexpr (G0 < NV) {
    constexpr int NG = std::min(kNG, NV - G0);
    V16 acc[MR][NG];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NG; ++c) acc[r][c] = load(C + r * ldc + (G0 + c) * 16);
    fma_group<MR, NG, G0, Identity<NV>>(acc, x);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NG; ++c) store(C + r * ldc + (G0 + c) * 16, acc[r][c]);
    tile_accumulate<MR, NV, G0 + NG>(x, C, ldc);
  }
}

using TileFn = void (*)(const Operand&, const Operand&, const float*, int64_t, float*);
using AccumulateFn = void (*)(const Operand&, float*, int64_t);

template <typename XM, typename YM, int... MR>
constexpr std::array<TileFn, sizeof...(MR)> mapped_tiles(std::integer_sequence<int, MR...>) {
  return {&tile_product<MR + 1, XM::size, XM, YM>...};
}

// tiles<XM, YM>()[mr - 1]: the mapped tile product for mr rows (1..kMR).
template <typename XM, typename YM>
inline const std::array<TileFn, kMR>& tiles() {
  static const auto table = mapped_tiles<XM, YM>(std::make_integer_sequence<int, kMR>{});
  return table;
}

// One panel of a tile with its partial sums resumable (rows_product's pieces): tile_groups of a single panel.
using PanelFn = void (*)(const Operand&, const Operand&, const float*, int64_t, float*, bool);
template <int... MR>
constexpr std::array<PanelFn, sizeof...(MR)> panel_row(std::integer_sequence<int, MR...>) {
  return {&tile_groups<MR + 1, 1, Identity<1>, Identity<1>>...};
}

// o from its row r on (a K = 0 operand stays as it is).
inline Operand at_row(const Operand& o, int64_t r) {
  return o.K ? Operand{o.a + r * o.ra, o.ra, o.ka, o.p, o.ps, o.pk, o.K} : o;
}

// o's panel f alone (f < 0: no operand).
inline Operand panel(const Operand& o, int f) {
  return f < 0 || !o.K ? Operand{nullptr, 0, 0, nullptr, 0, 0, 0} : Operand{o.a, o.ra, o.ka, o.p + f * o.ps, o.ps, o.pk, o.K};
}

// out (rows, row stride 64) <- the tile products of `rows` rows (tiles of kMR from x's and y's row 0 on), mapped as
// tile_product's: tile_product_reference's values for any rows. Where a tile's panels take several register groups
// (kNG < NV: AVX2, NEON) the loops run k-block, then panel, then row tile, so that one k-block of one weight panel
// (kKC x 16 floats, 16 KB) stays in L1 for all the row tiles instead of being read from L2 again by each (the left
// operand's 6-row blocks, a quarter of the bytes, come from L2 instead); with kNG >= NV (AVX-512) each tile is one
// pass with every panel in registers. Callers keep `rows` to a few dozen (out, rows x 256 bytes, stays in L1).
template <typename XM, typename YM>
inline void rows_product(int64_t rows, const Operand& x, const Operand& y, const float* bias, int64_t bs, float* out) {
  constexpr int NV = XM::size;
  if constexpr (kNG >= NV) {
    for (int64_t r = 0; r < rows; r += kMR) {
      tiles<XM, YM>()[std::min<int64_t>(kMR, rows - r) - 1](at_row(x, r), at_row(y, r), bias, bs, out + r * 64);
    }
  } else {
    static const auto table = panel_row(std::make_integer_sequence<int, kMR>{});
    const int64_t K = x.K + y.K;
    for (int64_t k0 = 0; k0 == 0 || k0 < K; k0 += kKC) {
      const Operand xs = slice(x, k0, k0 + kKC), ys = slice(y, k0 - x.K, k0 + kKC - x.K);
      for (int j = 0; j < NV; ++j) {
        const Operand xj = panel(xs, XM::from[j]), yj = panel(ys, YM::from[j]);
        const float* bj = bias ? bias + j * bs : nullptr;
        for (int64_t r = 0; r < rows; r += kMR) {
          table[std::min<int64_t>(kMR, rows - r) - 1](at_row(xj, r), at_row(yj, r), bj, 0, out + r * 64 + j * 16,
                                                       k0 > 0);
        }
      }
    }
  }
}

// Rows per rows_product call: kMR where each tile is one pass (kNG >= 4), else 12 tiles (72 rows: out is 18 KB).
constexpr int64_t kRowBlock = kNG >= 4 ? kMR : 12 * kMR;

using RowsFn = void (*)(int64_t, const Operand&, const Operand&, const float*, int64_t, float*);

// plain_rows(nv): the plain rows_product of nv panels (1..kNV).
inline RowsFn plain_rows(int64_t nv) {
  static const std::array<RowsFn, kNV> table = {&rows_product<Identity<1>, Identity<1>>, &rows_product<Identity<2>, Identity<2>>,
                                                &rows_product<Identity<3>, Identity<3>>, &rows_product<Identity<4>, Identity<4>>};
  return table[nv - 1];
}

template <int NV, int... MR>
constexpr std::array<TileFn, sizeof...(MR)> tile_row(std::integer_sequence<int, MR...>) {
  return {&tile_plain<MR + 1, NV>...};
}

// tile(mr, nv): the plain kernel for mr rows (1..kMR) and nv panels (1..kNV).
inline TileFn tile(int64_t mr, int64_t nv) {
  using Rows = std::make_integer_sequence<int, kMR>;
  static const std::array<std::array<TileFn, kMR>, kNV> table = {tile_row<1>(Rows{}), tile_row<2>(Rows{}),
                                                                 tile_row<3>(Rows{}), tile_row<4>(Rows{})};
  return table[nv - 1][mr - 1];
}

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
#endif  // SCRATCHLAB_PACKED

}  // namespace scratchlab
