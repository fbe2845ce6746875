// The AVX-512 products of a step (panels.cpp): a weight packed once per loop into panels of 32 columns, each
// step's product read straight from those panels in register tiles. float32 only, on CPUs with AVX-512
// (panels_available); elsewhere the loops take BLAS (step_product.h).
#pragma once

#include "common.h"

#include <type_traits>

namespace torch_rnn_native {

// Whether this CPU runs the AVX-512 kernels (checked once).
bool cpu_has_avx512();

// Whether StepProduct packs panels for this dtype on this CPU (float32 on AVX-512).
template <typename scalar_t>
bool panels_available() {
#ifdef TORCH_RNN_X86_GCC
  if constexpr (std::is_same_v<scalar_t, float>) return cpu_has_avx512();
#endif
  return false;
}

// Whether a layer's packed W_x (D inputs) and W_h (H hidden) together stay in a core's cache from step to step,
// so the loops can take the input's products step by step: x_t W_x^T in the forward loop and dx_t = da_t W_x in
// the backward loop, each while the step's rows are in cache; and whether every core can hold them, so a loop
// can split its rows between threads (split_by_rows, step_product.h). Beyond that
// (H = 1024 and D = 1024: 8 MB), every step would stream both weights from memory, twice the traffic of W_h
// alone; those products are then one large matmul each outside the loop.
constexpr int64_t PANEL_CACHE_BYTES = 2 << 20;  // 2 MiB: a core's L2 on current x86 server CPUs
inline bool panels_fit_in_cache(int64_t D, int64_t H) {
  return (D + H) * H * int64_t(sizeof(float)) <= PANEL_CACHE_BYTES;
}

#ifdef TORCH_RNN_X86_GCC
// out[:n, 32 p0 : 32 p1] (+)= a[:n] @ w[:, 32 p0 : 32 p1] (+ a2[:n] @ w2[...] when K2 > 0), for weights packed
// into panels (ceil(C / 32), K, 32) of their C columns (64-byte aligned); a (n, K) rows lda apart, a2 (n, K2)
// rows lda2 apart, out (n, C) rows ldo apart. Only on CPUs with AVX-512.
void panel_matmul(const float* a, int64_t lda, const float* panels, int64_t K, const float* a2, int64_t lda2,
                  const float* panels2, int64_t K2, int64_t C, float* out, int64_t ldo, int64_t n, int64_t p0,
                  int64_t p1, bool accumulate);

#endif

}  // namespace torch_rnn_native
