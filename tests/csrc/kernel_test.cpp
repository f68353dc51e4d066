// The packed kernel's torch-free core (src/scratchlab/rnn/csrc/kernel.h) against its scalar reference, for the
// vector variant this file is compiled for (-DSCRATCHLAB_ISA_AVX512 / AVX2 / NEON / SCALAR): every tile product
// (plain, the GRU's mapped one, with and without bias, all row and panel counts, several K, both operand layouts)
// and every accumulate must give the reference's bits; fast_exp and sigmoid must agree with std::exp to float
// precision and keep NaN. tests/test_rnn_kernel.py compiles it for each ISA it can run (aarch64 under qemu-user).
// Prints "ok <isa> <checks> <hash>" (hash: FNV-1a over the reference's outputs, equal on every ISA) or the first
// mismatch, exit status 1.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "kernel.h"

using namespace scratchlab;

namespace {

uint64_t state = 88172645463325252ull;
float uniform() {  // [-1, 1), the same sequence on every platform
  state ^= state << 13, state ^= state >> 7, state ^= state << 17;
  return static_cast<float>(state >> 40) / static_cast<float>(1 << 23) - 1.f;
}
std::vector<float> random(size_t n) {
  std::vector<float> v(n);
  for (auto& x : v) x = uniform();
  return v;
}

uint64_t hash = 1469598103934665603ull;
void mix(const float* p, size_t n) {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  for (size_t i = 0; i < 4 * n; ++i) hash = (hash ^ b[i]) * 1099511628211ull;
}

int checks = 0, failures = 0;
void same(const float* got, const float* want, size_t n, const char* what, int mr, int nv, int64_t K) {
  ++checks;
  if (std::memcmp(got, want, 4 * n) == 0) return;
  for (size_t i = 0; i < n; ++i) {
    if (std::memcmp(got + i, want + i, 4) != 0) {
      if (failures++ < 5) std::printf("mismatch %s mr=%d nv=%d K=%" PRId64 " at %zu: %.9g != %.9g\n", what, mr, nv, K, i,
                                      got[i], want[i]);
      return;
    }
  }
}

// x (rows of a matrix, ka = 1) against pack16 panels, as the step products read them
void step_products() {
  const int identity[4] = {0, 1, 2, 3}, gru_x[4] = {0, 1, 2, -1}, gru_h[4] = {0, 1, -1, 2};
  // K + KH past kKC = 256: the variants that cut k into blocks (AVX2, NEON) resume a tile inside x and inside h
  for (int64_t K : {0, 1, 5, 16, 37, 300}) {
    for (int64_t KH : {0, 3, 24, 230}) {
      const auto a = random(kMR * 301), ah = random(kMR * 231);
      const auto p = random(4 * (K * 16 + 7) + 16), ph = random(4 * (KH * 16 + 3) + 16), bias = random(4 * 20);
      const Operand x{a.data(), 301, 1, p.data(), K * 16 + 7, 16, K};      // panels K 16 + 7 apart: any stride
      const Operand h{ah.data(), 231, 1, ph.data(), KH * 16 + 3, 16, KH};
      for (int mr = 1; mr <= kMR; ++mr) {
        for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
          std::vector<float> got(kMR * 64, -7.f), want(kMR * 64, -7.f);
          for (int nv = 1; nv <= kNV; ++nv) {
#ifdef SCRATCHLAB_PACKED
            tile(mr, nv)(x, h, b, 20, got.data());
#endif
            tile_product_reference(mr, nv, identity, identity, x, h, b, 20, want.data());
            mix(want.data(), want.size());
#ifdef SCRATCHLAB_PACKED
            same(got.data(), want.data(), got.size(), "tile", mr, nv, K);
#endif
          }
#ifdef SCRATCHLAB_PACKED
          tiles<Map<0, 1, 2, -1>, Map<0, 1, -1, 2>>()[mr - 1](x, h, b, 20, got.data());
#endif
          tile_product_reference(mr, 4, gru_x, gru_h, x, h, b, 20, want.data());
          mix(want.data(), want.size());
#ifdef SCRATCHLAB_PACKED
          same(got.data(), want.data(), got.size(), "gru tile", mr, 4, K + KH);
#endif
        }
      }
    }
  }
}

// rows_product (several tiles of rows, its loop order on AVX2 and NEON differs from one tile's) against the reference
// tile by tile: plain with 1..kNV panels and the GRU's map, K past kKC in x and in h
void rows_products() {
  const int identity[4] = {0, 1, 2, 3}, gru_x[4] = {0, 1, 2, -1}, gru_h[4] = {0, 1, -1, 2};
  for (int64_t rows : {1, 7, 13, 75}) {
    for (const auto& [K, KH] : {std::pair<int64_t, int64_t>{300, 230}, {5, 24}, {0, 260}}) {
      const auto a = random(rows * 301), ah = random(rows * 271), bias = random(4 * 20);
      const auto p = random(4 * (K * 16 + 7) + 16), ph = random(4 * (KH * 16 + 3) + 16);
      const Operand x{a.data(), 301, 1, p.data(), K * 16 + 7, 16, K};
      const Operand h{ah.data(), 271, 1, ph.data(), KH * 16 + 3, 16, KH};
      for (int nv = 0; nv <= kNV; ++nv) {                 // nv = 0: the GRU's mapped 4 panels
        std::vector<float> got(rows * 64, -7.f), want(rows * 64, -7.f);
#ifdef SCRATCHLAB_PACKED
        if (nv) plain_rows(nv)(rows, x, h, bias.data(), 20, got.data());
        else rows_product<Map<0, 1, 2, -1>, Map<0, 1, -1, 2>>(rows, x, h, bias.data(), 20, got.data());
#endif
        for (int64_t r = 0; r < rows; r += kMR) {
          const Operand xr{x.a + r * 301, 301, 1, x.p, x.ps, 16, K}, hr{h.a + r * 271, 271, 1, h.p, h.ps, 16, KH};
          tile_product_reference(static_cast<int>(std::min<int64_t>(kMR, rows - r)), nv ? nv : 4,
                                 nv ? identity : gru_x, nv ? identity : gru_h, xr, hr, bias.data(), 20,
                                 want.data() + r * 64);
        }
        mix(want.data(), want.size());
#ifdef SCRATCHLAB_PACKED
        same(got.data(), want.data(), got.size(), "rows_product", static_cast<int>(rows), nv, K + KH);
#endif
      }
    }
  }
}

// columns of a matrix (ra = 1, ka = row stride) against rows of dG, as the weight gradients read them
void weight_gradients() {
  for (int64_t B : {1, 6, 13}) {
    const int64_t N = 80, rows = 11;  // dG (B, N); x (B, rows)
    const auto x = random(B * rows), dg = random(B * N), c0 = random(kMR * N);
    for (int mr = 1; mr <= kMR; ++mr) {
      for (int nv = 1; nv <= kNV; ++nv) {
        const Operand o{x.data() + 2, 1, rows, dg.data() + 16, 16, N, B};
        std::vector<float> got(c0), want(c0);
#ifdef SCRATCHLAB_PACKED
        accumulate_tile(mr, nv)(o, got.data(), N);
#endif
        tile_accumulate_reference(mr, nv, o, want.data(), N);
        mix(want.data(), want.size());
#ifdef SCRATCHLAB_PACKED
        same(got.data(), want.data(), got.size(), "accumulate", mr, nv, B);
#endif
      }
    }
  }
}

void pointwise() {
  for (int i = -1600; i <= 1600; ++i) {
    const float v = i * 0.05f;  // -80 .. 80
    const double e = std::exp(static_cast<double>(v));
    const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(v)));
    ++checks;
    if (std::fabs(fast_exp(v) - e) > 2e-6 * e || std::fabs(sigmoid(v) - s) > 2e-7) {
      if (failures++ < 5) std::printf("exp/sigmoid at %g: %.9g %.9g, want %.9g %.9g\n", v, fast_exp(v), sigmoid(v), e, s);
    }
  }
  ++checks;
  if (!std::isnan(fast_exp(std::numeric_limits<float>::quiet_NaN())) ||
      !std::isnan(sigmoid(std::numeric_limits<float>::quiet_NaN()))) {
    ++failures, std::printf("exp/sigmoid of NaN is not NaN\n");
  }
}

}  // namespace

int main() {
  step_products();
  rows_products();
  weight_gradients();
  pointwise();
  if (failures) {
    std::printf("FAILED %s: %d of %d checks\n", SCRATCHLAB_ISA_NAME, failures, checks);
    return 1;
  }
  std::printf("ok %s %d %016" PRIx64 "\n", SCRATCHLAB_ISA_NAME, checks, hash);
  return 0;
}
