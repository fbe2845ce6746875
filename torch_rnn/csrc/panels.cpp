// panels.h's AVX-512 kernels, in one SIMD style (the _mm512 intrinsics). Every function below the target pragma
// is compiled for AVX-512 and runs only after cpu_has_avx512() said yes.
#include "panels.h"

#ifdef TORCH_RNN_X86_GCC
#include <immintrin.h>

#include <algorithm>
#include <utility>

namespace torch_rnn_native {

bool cpu_has_avx512() {  // compiled for any x86-64: it runs before anything AVX-512 does
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  return has;
}

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")

namespace {

constexpr int TILE_ROWS = 8;  // rows of a register tile: 8 x 32 columns = 16 of the 32 AVX-512 registers

// tile(std::integral_constant<int, R>) for R = rows, 1 <= rows < TILE_ROWS: the tiles of fewer rows that end a
// block, each with its row count known at compile time (so its loops unroll into registers).
template <typename Tile, int... R>
__attribute__((always_inline)) inline void with_rows(int64_t rows, const Tile& tile,
                                                     std::integer_sequence<int, R...>) {
  ((rows == R + 1 ? (tile(std::integral_constant<int, R + 1>{}), true) : false) || ...);
}

// Rows 0..n in tiles of TILE_ROWS and one smaller tile for the rest; tile(rows_constant, first_row).
template <typename Tile>
__attribute__((always_inline)) inline void for_row_tiles(int64_t n, const Tile& tile) {
  int64_t i = 0;
  for (; i + TILE_ROWS <= n; i += TILE_ROWS) tile(std::integral_constant<int, TILE_ROWS>{}, i);
  with_rows(n - i, [&](auto rows) { tile(rows, i); }, std::make_integer_sequence<int, TILE_ROWS - 1>{});
}

// The masks of a 32-column strip whose first `width` columns exist: low and high 16 lanes.
struct StripMask {
  __mmask16 lo, hi;
  explicit StripMask(int64_t width)
      : lo(width >= 16 ? 0xFFFF : (1u << width) - 1),
        hi(width >= 32 ? 0xFFFF : width > 16 ? (1u << (width - 16)) - 1 : 0) {}
};

// One operand pair of a panel product: rows a (R, K), lda apart, times one packed panel (K, 32).
struct PanelOperand {
  const float* a;
  int64_t lda;
  const float* panel;
  int64_t K;
};

// lo/hi[i] += a[i] @ panel for R rows: R times 32 columns held in 2R registers while k runs, so each panel row
// loaded from cache feeds 2R fused multiply-adds.
template <int R>
__attribute__((always_inline)) inline void panel_accumulate(const PanelOperand& x, __m512* lo, __m512* hi) {
  for (int64_t k = 0; k < x.K; ++k) {
    const __m512 b_lo = _mm512_load_ps(x.panel + k * PANEL), b_hi = _mm512_load_ps(x.panel + k * PANEL + 16);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512 a_ik = _mm512_set1_ps(x.a[i * x.lda + k]);
      lo[i] = _mm512_fmadd_ps(a_ik, b_lo, lo[i]);
      hi[i] = _mm512_fmadd_ps(a_ik, b_hi, hi[i]);
    }
  }
}

// out[:R, :width] (+)= first[:R] @ first.panel + second[:R] @ second.panel (second.K may be 0).
template <int R>
__attribute__((always_inline)) inline void panel_tile(const PanelOperand& first, const PanelOperand& second,
                                                      float* out, int64_t ldo, StripMask mask, bool accumulate) {
  __m512 lo[R], hi[R];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) lo[i] = hi[i] = _mm512_setzero_ps();
  panel_accumulate<R>(first, lo, hi);
  panel_accumulate<R>(second, lo, hi);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* row = out + i * ldo;  // rows need not be 64-byte aligned
    if (accumulate) {
      lo[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(mask.lo, row), lo[i]);
      hi[i] = _mm512_add_ps(_mm512_maskz_loadu_ps(mask.hi, row + 16), hi[i]);
    }
    _mm512_mask_storeu_ps(row, mask.lo, lo[i]);
    _mm512_mask_storeu_ps(row + 16, mask.hi, hi[i]);
  }
}

}  // namespace

void panel_matmul(const float* a, int64_t lda, const float* panels, int64_t K, const float* a2, int64_t lda2,
                  const float* panels2, int64_t K2, int64_t C, float* out, int64_t ldo, int64_t n, int64_t p0,
                  int64_t p1, bool accumulate) {
  for (int64_t p = p0; p < p1; ++p) {
    const StripMask mask(std::min(PANEL, C - p * PANEL));
    const PanelOperand first{a, lda, panels + p * K * PANEL, K};
    const PanelOperand second{a2, lda2, K2 > 0 ? panels2 + p * K2 * PANEL : nullptr, K2};
    for_row_tiles(n, [&](auto rows, int64_t i) {
      constexpr int R = decltype(rows)::value;
      panel_tile<R>(PanelOperand{first.a + i * first.lda, first.lda, first.panel, first.K},
                    PanelOperand{second.a + i * second.lda, second.lda, second.panel, second.K},
                    out + i * ldo + p * PANEL, ldo, mask, accumulate);
    });
  }
}

#pragma GCC pop_options

}  // namespace torch_rnn_native
#endif
