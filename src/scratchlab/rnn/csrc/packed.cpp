// The operator library `scratchlab_rnn` (lstm.cpp and rnn.cpp add their step loops to it) and what they share:
// packing weights for the packed kernel (packed.h).
#include <torch/library.h>

#include "packed.h"

namespace scratchlab {

// w (G H, K), G gate blocks of H rows, as the packed kernel reads it: block q of the result is w's block order[q]
// times scale[q], each block padded with zero rows to Hp = H rounded up to 16, then pack16 (fast.py's definition):
// (G Hp / 16, K, 16). Transposed (for the backward's dG W_hh, where the hidden units are w's columns, K = H): pack16
// of the reordered, scaled, unpadded matrix's transpose, its rows (w's columns) padded instead: (Kp / 16, G H, 16).
// One pass, where reordering, scaling and packing with tensor ops took six (a sizeable part of a short sequence).
Tensor pack_gates(const Tensor& w, at::IntArrayRef order, at::ArrayRef<double> scale, bool transposed) {
  const int64_t G = static_cast<int64_t>(order.size());
  TORCH_CHECK(G > 0 && static_cast<int64_t>(scale.size()) == G, "pack_gates: order and scale must name the same gates, "
              "got ", order, " and ", scale.size(), " scales");
  TORCH_CHECK(w.dim() == 2 && w.size(0) % G == 0 && w.size(0) > 0 && w.scalar_type() == at::kFloat,
              "pack_gates: expected a float32 (", G, "H, K) weight, got ", w.scalar_type(), " ", w.sizes());
  for (const int64_t q : order) TORCH_CHECK(0 <= q && q < G, "pack_gates: order ", order, " is not a permutation");
  const Tensor src = w.contiguous();
  const int64_t N = w.size(0), K = w.size(1), H = N / G;
  const int64_t Hp = (H + 15) / 16 * 16, Kp = (K + 15) / 16 * 16;
  Tensor out = transposed ? at::zeros({Kp / 16, N, 16}, w.options()) : at::zeros({G * Hp / 16, K, 16}, w.options());
  const float* ws = src.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t m = 0; m < N; ++m) {                       // row m of the reordered matrix (unpadded)
    const int64_t q = m / H, j = m % H;
    const float s = static_cast<float>(scale[q]);
    const float* row = ws + (order[q] * H + j) * K;
    if (transposed) {                                     // out[k / 16][m][k % 16] = row[k]
      for (int64_t k = 0; k < K; ++k) o[((k / 16) * N + m) * 16 + k % 16] = row[k] * s;
    } else {                                              // padded row mp: out[mp / 16][k][mp % 16] = row[k]
      const int64_t mp = q * Hp + j;
      float* dst = o + (mp / 16) * K * 16 + mp % 16;
      for (int64_t k = 0; k < K; ++k) dst[k * 16] = row[k] * s;
    }
  }
  return out;
}

// kernel.h's fma_peak_loop on each of torch's threads at once, `rounds` rounds each; returns the FLOPs done (0 for a
// build without a vector variant). The caller times it.
double fma_peak(int64_t rounds) {
#ifdef SCRATCHLAB_PACKED
  const int64_t threads = at::get_num_threads();
  std::vector<float> sums(threads);
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) sums[i] = fma_peak_loop(rounds);
  });
  volatile float keep = sums[0];
  (void)keep;
  return static_cast<double>(kPeakFlops) * static_cast<double>(rounds) * static_cast<double>(threads);
#else
  (void)rounds;
  return 0.0;
#endif
}

}  // namespace scratchlab

TORCH_LIBRARY(scratchlab_rnn, m) {
  m.def("packed_available() -> bool", &scratchlab::packed_available);
  m.def("kernel_isa() -> str", &scratchlab::kernel_isa);
  m.def("fma_peak(int rounds) -> float", &scratchlab::fma_peak);
  m.def("pack_gates(Tensor w, int[] order, float[] scale, bool transposed) -> Tensor", &scratchlab::pack_gates);
}
