// The step loops of one LSTM layer-direction (scratchlab.rnn.fast), compiled. Loaded by scratchlab/rnn/_cext.py;
// the math and the layouts are fast.py's (docs/design.md, speed plan, says what each part bought):
//
//   G   (T, B, 4H)  gates in (o, i, f, g) order with the g block scaled by 2 (tanh(a) = 2 sigmoid(2a) - 1): the
//                   activated gates after the forward (with the library kernel, x_t W_ih^T + b on entry)
//   Hs, Cs, TC (T+1, B, H)  states h, c and tanh(c); a forward step reads slot t and writes t+1, a reverse step
//                   reads t+1 and writes t
//
// Two kernels. The packed kernel (float32 on an AVX-512 CPU, any H; `forward_packed`, `backward` with kernel 2)
// computes the step products itself in register tiles, with the input projection, the gate math and the weight
// gradients inside the step loops and each step's tiles split over torch's threads: no library call per step.
// The library kernel (everything else; `forward`, `backward` with kernel 0 or 1) makes each step's product with
// oneDNN's matmul (torch.ops.mkldnn._linear_pointwise, found once through the dispatcher) or at::mm, followed by
// ONE fused pass over the step's (B, 4H) gates. The pointwise loops are plain C++ that gcc vectorises (-O3).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <utility>
#include <vector>
#include <bit>
#include <type_traits>
#include <cmath>
#include <optional>
#include <string_view>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

// Forward of a block of cells: `rows` batch rows by `units` hidden units of one step. g: the step's gates at the
// block's first cell (row stride 4H, gate stride H; pre-activations in, activations out if Keep); y: the recurrent
// product h_{t-1} W_hh^T for the same cells (row stride ys, gate stride yg); c0 = c_{t-1}, c1 = c_t, tc = tanh(c_t)
// and h = h_t at the block's first cell (row stride H). Keep = false (inference) skips the stores only the
// backward reads. AddG = false: the pre-activations are all in y and g is only written. The whole step is one block (y from a library product); the packed kernel below calls it per tile.
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
// ka = 1) against pack16 panels (ps = K 16, pk = 16); the weight gradients read a matrix's columns against rows
// of dG (ra = 1, ka = row stride; ps = 16, pk = dG's row stride).
struct Operand {
  const float* a;
  int64_t ra, ka;
  const float* p;
  int64_t ps, pk, K;
};

// acc[r][c] += sum_k a(r, k) panel_c(k)
template <int MR, int NV>
inline void fma_operand(__m512 (&acc)[MR][NV], const Operand& o) {
  const float *a = o.a, *p = o.p;
  for (int64_t k = 0; k < o.K; ++k, a += o.ka, p += o.pk) {
    __m512 w[NV];
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) w[c] = _mm512_loadu_ps(p + c * o.ps);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 v = _mm512_set1_ps(a[r * o.ra]);
#pragma GCC unroll 4
      for (int c = 0; c < NV; ++c) acc[r][c] = _mm512_fmadd_ps(v, w[c], acc[r][c]);
    }
  }
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

template <int... MR>
constexpr std::array<AccumulateFn, sizeof...(MR)> accumulate_tiles(std::integer_sequence<int, MR...>) {
  return {&tile_accumulate<MR + 1, kNV>...};
}

using TileFn = void (*)(const Operand&, const Operand&, const float*, int64_t, float*);

template <int NV, int... MR>
constexpr std::array<TileFn, sizeof...(MR)> tile_row(std::integer_sequence<int, MR...>) {
  return {&tile_product<MR + 1, NV>...};
}

// tile(mr, nv): the kernel for mr rows (1..kMR) and nv panels (1..kNV).
TileFn tile(int64_t mr, int64_t nv) {
  using Rows = std::make_integer_sequence<int, kMR>;
  static const std::array<std::array<TileFn, kMR>, kNV> table = {tile_row<1>(Rows{}), tile_row<2>(Rows{}),
                                                                 tile_row<3>(Rows{}), tile_row<4>(Rows{})};
  return table[nv - 1][mr - 1];
}

// One forward step with the input projection inside: x (B, I) = x_t, h (B, H) = h_{t-1}; wx = pack_gates(W_ih)
// (4Hp/16, I, 16), wh = pack_gates(W_hh) (4Hp/16, H, 16), bias (4Hp) or null, each gate block padded with zeros to
// Hp = H rounded up to 16; g (B, 4H) receives the activated gates when Keep; c0, c1, tc, h1 as forward_block's for
// the whole step. Tiles: the o, i, f, g panels of 16 units by kMR rows; the last group's padding is computed and
// not stored.
template <bool Keep>
void packed_forward_step(const float* x, int64_t I, const float* wx, const float* bias, float* g, const float* h,
                         const float* wh, const float* c0, float* c1, float* tc, float* h1, int64_t B, int64_t H) {
  const int64_t groups = (H + 15) / 16, Hp = groups * 16;
  // threads take groups of 16 units (each group's cells depend on nothing else of this step)
  at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
    alignas(64) float out[kMR * 64];
    for (int64_t u = begin * 16; u < end * 16; u += 16) {
      const int64_t units = std::min<int64_t>(16, H - u);
      for (int64_t r = 0; r < B; r += kMR) {
        const int64_t mr = std::min<int64_t>(kMR, B - r), s = r * H + u;
        // the o, i, f, g panels of units u..u+15 lie Hp/16 panels apart
        const Operand xo{x + r * I, I, 1, wx + (u / 16) * I * 16, groups * I * 16, 16, I};
        const Operand ho{h + r * H, H, 1, wh + (u / 16) * H * 16, groups * H * 16, 16, H};
        tile(mr, 4)(xo, ho, bias ? bias + u : nullptr, Hp, out);
        forward_block<float, Keep, false>(Keep ? g + r * 4 * H + u : nullptr, out, 64, 16, c0 + s, c1 + s, tc + s,
                                          h1 + s, mr, units, H);
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


// The step's weight gradients: dWT (I + H, 4H) += [x_t, h_{t-1}]^T dG_t, rows of dWT being input features (x's,
// then h's) and columns the gates; x (B, I), h (B, H), dg = dG_t (B, 4H), all with unit column stride. Columns in
// panels of 64 outside (dG_t's panel, B x 256 bytes, stays in L1 across the row tiles), rows of 6 inside.
void accumulate_dw(const float* x, int64_t I, const float* h, int64_t H, const float* dg, int64_t B, float* dwt) {
  static const auto tiles = accumulate_tiles(std::make_integer_sequence<int, kMR>{});
  const int64_t N = 4 * H, panel = 16 * kNV;           // threads take column panels (N is a multiple of 64)
  at::parallel_for(0, N / panel, 1, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin * panel; m < end * panel; m += panel) {
      int64_t row = 0;
      for (const auto& [src, K] : {std::pair{x, I}, std::pair{h, H}}) {
        for (int64_t n = 0; n < K; n += kMR) {
          const int64_t mr = std::min<int64_t>(kMR, K - n);
          tiles[mr - 1](Operand{src + n, 1, K, dg + m, 16, N, B}, dwt + (row + n) * N + m, N);
        }
        row += K;
      }
    }
  });
}

// Prefetch rows x bytes from p (row stride in floats) into L2, a cache line at a time.
inline void prefetch_rows(const float* p, int64_t rows, int64_t stride, int64_t bytes) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < bytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(p + r * stride) + b, _MM_HINT_T1);
}
#endif

// The steps in the order the forward runs them: (t, slot read, slot written).
struct Slot { int64_t t, rd, wr; };
Slot slot(int64_t k, int64_t T, bool reverse) {
  return reverse ? Slot{T - 1 - k, T - k, T - 1 - k} : Slot{k, k, k + 1};
}

// How the step products are made: at::mm, oneDNN's matmul (w in its packed layout), or the packed kernel above
// (w = pack16(...)). fast.py picks; `packed_available` says whether this build has the packed kernel.
enum Kernel : int64_t { kAtMm = 0, kOneDnn = 1, kPacked = 2 };

bool packed_available() {
#ifdef SCRATCHLAB_PACKED
  return true;
#else
  return false;
#endif
}

void check_packed(const Tensor& G, const Tensor& w) {
  TORCH_CHECK(packed_available(), "lstm: this build has no packed kernel (needs AVX-512)");
  TORCH_CHECK(G.scalar_type() == at::kFloat && w.is_contiguous() && w.dim() == 3 && w.size(2) == 16,
              "lstm: the packed kernel needs float32 and a pack_gates weight, got ", G.scalar_type(), ", weight ",
              w.sizes());
}

// The forward with the library kernel: G holds x_t W_ih^T + b for every t on entry, the activated gates on exit
// (unfinished when !keep, inference); w is W_hh (4H, H) as fast.py's `pack` returns it (oneDNN's blocked layout for
// float32 on CPU when onednn, else plain).
void lstm_forward(Tensor G, Tensor Hs, Tensor Cs, Tensor TC, const Tensor& w, bool reverse, bool onednn, bool keep) {
  const int64_t T = G.size(0), B = G.size(1), H = G.size(2) / 4, n = B * H;
  TORCH_CHECK(G.is_contiguous() && Hs.is_contiguous() && Cs.is_contiguous() && TC.is_contiguous(),
              "lstm_forward: buffers must be contiguous");
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "lstm_forward", [&] {
    scalar_t *g = G.data_ptr<scalar_t>(), *h = Hs.data_ptr<scalar_t>(), *c = Cs.data_ptr<scalar_t>(),
             *tc = TC.data_ptr<scalar_t>();
    for (int64_t k = 0; k < T; ++k) {
      const Slot s = slot(k, T, reverse);
      const Tensor y = linear(Hs[s.rd], w, onednn).contiguous();  // h_{t-1} W_hh^T, (B, 4H)
      auto step = keep ? forward_block<scalar_t, true> : forward_block<scalar_t, false>;
      step(g + s.t * 4 * n, y.data_ptr<scalar_t>(), 4 * H, H, c + s.rd * n, c + s.wr * n, tc + s.wr * n,
           h + s.wr * n, B, H, H);
    }
  });
}

// The forward with the packed kernel, the input projection inside each step: x (T, B, I), wx = pack16(W_ih),
// bias (4H) or undefined, wh = pack16(W_hh) (weights in fast.py's (o, i, f, g) order with g scaled by 2); Hs
// (T+1, B, H) as lstm_forward's. keep (a backward follows): Cs, TC (T+1, B, H) as lstm_forward's and G (T, B, 4H)
// receives the activated gates. Otherwise only the last c is wanted: Cs is (2, B, H) with c0 in slot 0, the steps
// alternate between its slots (the last c ends in slot T % 2), and G and TC are not touched (may be empty).
void lstm_forward_packed(const Tensor& x, const Tensor& wx, const std::optional<Tensor>& bias, const Tensor& wh,
                         Tensor G, Tensor Hs, Tensor Cs, Tensor TC, bool reverse, bool keep) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), H = Hs.size(2), n = B * H;
  TORCH_CHECK(T > 0, "lstm_forward_packed: expected at least one step, got x ", x.sizes());
  check_packed(Hs, wh);
  check_packed(Hs, wx);
  TORCH_CHECK(x.is_contiguous() && Hs.is_contiguous() && Cs.is_contiguous() && x.scalar_type() == at::kFloat &&
              (!keep || (G.is_contiguous() && TC.is_contiguous())), "lstm_forward_packed: buffers must be "
              "contiguous float32");
  const int64_t Hp = (H + 15) / 16 * 16;
  TORCH_CHECK(wh.size(0) == Hp / 4 && wh.size(1) == H && wx.size(0) == Hp / 4 && wx.size(1) == I,
              "lstm_forward_packed: weights ", wx.sizes(), ", ", wh.sizes(), " are not pack_gates of (4H, I), (4H, H)",
              " for H = ", H);
  const int64_t c_slots = keep ? T + 1 : 2;
  TORCH_CHECK(Hs.size(0) == T + 1 && Hs.size(1) == B && Cs.numel() == c_slots * n &&
              (!keep || (G.numel() == T * 4 * n && TC.numel() == (T + 1) * n)),
              "lstm_forward_packed: buffer shapes do not match x ", x.sizes());
  TORCH_CHECK(!bias || (bias->is_contiguous() && bias->numel() == 4 * Hp && bias->scalar_type() == at::kFloat),
              "lstm_forward_packed: bias must be a contiguous float32 (4Hp,) tensor (pack_gates of (4H, 1))");
#ifdef SCRATCHLAB_PACKED
  float *h = Hs.data_ptr<float>(), *c = Cs.data_ptr<float>();
  float *g = keep ? G.data_ptr<float>() : nullptr, *tc = keep ? TC.data_ptr<float>() : nullptr;
  const float *xp = x.data_ptr<float>(), *wxp = wx.data_ptr<float>(), *whp = wh.data_ptr<float>();
  const float* b = bias ? bias->data_ptr<float>() : nullptr;
  for (int64_t k = 0; k < T; ++k) {
    const Slot s = slot(k, T, reverse);
    if (keep) {
      packed_forward_step<true>(xp + s.t * B * I, I, wxp, b, g + s.t * 4 * n, h + s.rd * n, whp, c + s.rd * n,
                                c + s.wr * n, tc + s.wr * n, h + s.wr * n, B, H);
    } else {
      packed_forward_step<false>(xp + s.t * B * I, I, wxp, b, nullptr, h + s.rd * n, whp, c + (k % 2) * n,
                                 c + ((k + 1) % 2) * n, nullptr, h + s.wr * n, B, H);
    }
  }
#endif
}

// w (4H, K) in torch's gate order (i, f, g, o) as the packed kernel reads it: the gate blocks in (o, i, f, g) order,
// the g block times g_scale, each block padded with zero rows to Hp = H rounded up to 16, then pack16:
// (4Hp/16, K, 16). Transposed (the backward's dG W_hh, K = H): pack16 of that matrix's transpose without the
// padding, its K (= H) rows padded instead: (Hp/16, 4H, 16). One pass, where permuting, scaling and packing with
// tensor ops took six (a sizeable part of a short sequence's time).
Tensor pack_gates(const Tensor& w, double g_scale, bool transposed) {
  TORCH_CHECK(w.dim() == 2 && w.size(0) % 4 == 0 && w.size(0) > 0 && w.scalar_type() == at::kFloat,
              "pack_gates: expected a float32 (4H, K) weight, got ", w.scalar_type(), " ", w.sizes());
  const Tensor src = w.contiguous();
  const int64_t N = w.size(0), K = w.size(1), H = N / 4;
  constexpr int64_t from_torch[4] = {3, 0, 1, 2};         // (o, i, f, g) <- torch's blocks (i, f, g, o)
  const int64_t Hp = (H + 15) / 16 * 16, Kp = (K + 15) / 16 * 16;
  Tensor out = transposed ? at::zeros({Kp / 16, N, 16}, w.options()) : at::zeros({4 * Hp / 16, K, 16}, w.options());
  const float* ws = src.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t m = 0; m < N; ++m) {                       // row m of the reordered matrix (unpadded)
    const int64_t q = m / H, j = m % H;
    const float scale = q == 3 ? static_cast<float>(g_scale) : 1.f;
    const float* row = ws + (from_torch[q] * H + j) * K;
    if (transposed) {                                     // out[p][m][l] = row[16 p + l]
      for (int64_t k = 0; k < K; ++k) o[((k / 16) * N + m) * 16 + k % 16] = row[k] * scale;
    } else {                                              // padded row mp: out[mp / 16][k][mp % 16] = row[k]
      const int64_t mp = q * Hp + j;
      float* dst = o + (mp / 16) * K * 16 + mp % 16;
      for (int64_t k = 0; k < K; ++k) dst[k * 16] = row[k] * scale;
    }
  }
  return out;
}

// One backward step with the packed kernel (float32 only; the double overloads are never called, check_packed
// refuses them): dG_{t+1} W_hh tile by tile, each followed by backward_block on its cells, whose data is
// prefetched before the tile's product so that the product hides the memory latency. Arguments as backward_block's
// for the whole step; dg_next = dG_{t+1} (B, 4H), w_t = pack16(W_hh^T).
void packed_backward_step(const double*, const Tensor&, const double*, const double*, const double*, const double*,
                          double*, double*, double*, int64_t, int64_t) {}
void packed_linear(const double*, const Tensor&, double*, int64_t, int64_t) {}
void accumulate_dw(const double*, int64_t, const double*, int64_t, const double*, int64_t, double*) {}
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

// out (B, H) = a (B, 4H) W with w_t = pack16(W^T).
void packed_linear(const float* a, const Tensor& w_t, float* out, int64_t B, int64_t H) {
  packed_product(a, B, 4 * H, w_t.data_ptr<float>(), H, [](int64_t, int64_t, int64_t, int64_t) {},
                 [&](int64_t r, int64_t mr, int64_t u, int64_t cols, const float* y) {
    for (int64_t i = 0; i < mr; ++i) std::copy(y + i * 64, y + i * 64 + cols, out + (r + i) * H + u);
  });
}
#else
void packed_backward_step(const float*, const Tensor&, const float*, const float*, const float*, const float*,
                          float*, float*, float*, int64_t, int64_t) {}
void packed_linear(const float*, const Tensor&, float*, int64_t, int64_t) {}
void accumulate_dw(const float*, int64_t, const float*, int64_t, const float*, int64_t, float*) {}
#endif

// Backward through time. gout (T, B, H) contiguous with dL/dh_n already added to the last step's slice, dc (B, H)
// = dL/dc_n (becomes dL/dc0), w_t: W_hh^T (H, 4H) in the kernel's layout; fills dG (T, B, 4H), adds sum_t,b dG to
// db (float64 (4H,), or empty to skip) and returns dL/dh0 = dG_0 W_hh.
Tensor lstm_backward(const Tensor& gout, Tensor dc, const Tensor& G, const Tensor& Cs, const Tensor& TC,
                     const Tensor& w_t, Tensor dG, Tensor db, bool reverse, int64_t kernel,
                     const std::optional<Tensor>& x, const std::optional<Tensor>& Hs, std::optional<Tensor> dwt) {
  const int64_t T = G.size(0), B = G.size(1), H = G.size(2) / 4, n = B * H;
  const int64_t I = x ? x->size(2) : 0;
  TORCH_CHECK(T > 0, "lstm_backward: expected at least one step, got G ", G.sizes());
  TORCH_CHECK(!dwt || (kernel == kPacked && x && Hs && x->is_contiguous() && Hs->is_contiguous() &&
                       dwt->is_contiguous() && x->size(0) == T && x->size(1) == B && Hs->size(0) == T + 1 &&
                       dwt->size(0) == I + H && dwt->size(1) == 4 * H && dwt->scalar_type() == at::kDouble),
              "lstm_backward: dWT (I + H, 4H, float64) is accumulated by the packed kernel only, from contiguous x "
              "(T, B, I) and Hs (T + 1, B, H)");
  TORCH_CHECK(gout.is_contiguous() && dc.is_contiguous() && dG.is_contiguous() && G.is_contiguous() &&
              Cs.is_contiguous() && TC.is_contiguous(), "lstm_backward: tensors must be contiguous");
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
    const scalar_t *g = G.data_ptr<scalar_t>(), *go = gout.data_ptr<scalar_t>(), *c = Cs.data_ptr<scalar_t>(),
                   *tc = TC.data_ptr<scalar_t>();
    scalar_t *d = dG.data_ptr<scalar_t>(), *dcp = dc.data_ptr<scalar_t>();
    std::vector<scalar_t> part(dbias ? 4 * H : 0);        // one step's bias gradient
    auto add_part = [&] {
      for (int64_t j = 0; j < static_cast<int64_t>(part.size()); ++j) dbias[j] += part[j], part[j] = 0;
    };
    scalar_t* db_step = dbias ? part.data() : nullptr;
    // the packed kernel's weight gradients, step by step while dG_t is in cache: kFlush steps summed in float32,
    // each such block then added to the float64 total (accumulating all T steps in float32 made the relative error
    // ~10x torch's at T = 400; this is as accurate as its one GEMM)
    constexpr int64_t kFlush = 16;
    const scalar_t *xp = dwt ? x->data_ptr<scalar_t>() : nullptr, *hp = dwt ? Hs->data_ptr<scalar_t>() : nullptr;
    std::vector<scalar_t> block(dwt ? (I + H) * 4 * H : 0);
    int64_t pending = 0;
    auto flush = [&] {
      double* total = dwt->data_ptr<double>();
      at::parallel_for(0, static_cast<int64_t>(block.size()), 1 << 14, [&](int64_t begin, int64_t end) {
        for (int64_t j = begin; j < end; ++j) total[j] += block[j], block[j] = 0;
      });
      pending = 0;
    };
    auto add_dw = [&](const Slot& s) {
      if (!dwt) return;
      accumulate_dw(xp + s.t * B * I, I, hp + s.rd * n, H, d + s.t * 4 * n, B, block.data());
      if (++pending == kFlush) flush();
    };
    Tensor y = at::zeros_like(dc);                        // nothing flows in from after the last step
    Slot s = slot(T - 1, T, reverse);
    backward_block<scalar_t>(g + s.t * 4 * n, go + s.t * n, y.data_ptr<scalar_t>(), H, dcp, c + s.rd * n,
                             tc + s.wr * n, d + s.t * 4 * n, db_step, B, H, H);
    add_part();
    add_dw(s);
    for (int64_t k = T - 2; k >= 0; --k) {
      const int64_t t_next = s.t;
      s = slot(k, T, reverse);
      const scalar_t *gt = g + s.t * 4 * n, *got = go + s.t * n, *c0 = c + s.rd * n, *tct = tc + s.wr * n;
      scalar_t* dgt = d + s.t * 4 * n;
      if (kernel == kPacked) {
        packed_backward_step(d + t_next * 4 * n, w_t, gt, got, c0, tct, dcp, dgt, db_step, B, H);
        add_part();
        add_dw(s);
        continue;
      }
      y = linear(dG[t_next], w_t, kernel == kOneDnn).contiguous();  // dG_{t+1} W_hh, (B, H)
      backward_block<scalar_t>(gt, got, y.data_ptr<scalar_t>(), H, dcp, c0, tct, dgt, db_step, B, H, H);
      add_part();
    }
    if (dwt && pending) flush();
    if (kernel == kPacked) {                              // dL/dh0 = dG_0 W_hh
      packed_linear(d + s.t * 4 * n, w_t, y.data_ptr<scalar_t>(), B, H);
      return y;
    }
    return linear(dG[s.t], w_t, kernel == kOneDnn).contiguous();
  });
}

}  // namespace

TORCH_LIBRARY(scratchlab_lstm, m) {
  m.def("forward(Tensor(a!) G, Tensor(b!) Hs, Tensor(c!) Cs, Tensor(d!) TC, Tensor w, bool reverse, bool onednn,"
        " bool keep) -> ()", &lstm_forward);
  m.def("forward_packed(Tensor x, Tensor wx, Tensor? bias, Tensor wh, Tensor(a!) G, Tensor(b!) Hs, Tensor(c!) Cs,"
        " Tensor(d!) TC, bool reverse, bool keep) -> ()", &lstm_forward_packed);
  m.def("backward(Tensor gout, Tensor(a!) dc, Tensor G, Tensor Cs, Tensor TC, Tensor w_t, Tensor(b!) dG,"
        " Tensor(c!) db, bool reverse, int kernel, Tensor? x=None, Tensor? Hs=None, Tensor(e!)? dwt=None) -> Tensor",
        &lstm_backward);
  m.def("packed_available() -> bool", &packed_available);
  m.def("pack_gates(Tensor w, float g_scale, bool transposed) -> Tensor", &pack_gates);
}
