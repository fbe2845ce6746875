// activations.h's loops. Each is one always-inline template, instantiated inside a non-template function per
// dtype that GCC compiles once per target (target_clones): always_inline lets every clone vectorise the body
// for its own instruction set.
#include "activations.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#ifdef TORCH_RNN_X86_GCC
#define TORCH_RNN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TORCH_RNN_CLONES
#endif

namespace torch_rnn_native {
namespace {

// tanh in float32 as a rational function (Eigen's generic_fast_tanh_float: odd degree-13 numerator over even
// degree-6 denominator, inputs clamped to +-7.9053, where tanh rounds to +-1 in float32). Branch-free, so the
// compiler vectorises the loop; NaN propagates through min/max and the division.
__attribute__((always_inline)) inline float tanh_float(float a) {
  const float x = std::max(std::min(a, 7.90531110763549805f), -7.90531110763549805f);
  const float x2 = x * x;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p + -8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  p = x * p;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  return std::fabs(a) < 0.0004f ? a : p / q;  // tanh(a) = a to float32 precision near 0
}

// always_inline: the loops below are compiled per target (target_clones), and GCC would otherwise keep this
// call out of line, unvectorised.
template <typename scalar_t>
__attribute__((always_inline)) inline scalar_t activation(scalar_t a, bool relu) {
  if (relu) return a > scalar_t(0) ? a : (a == a ? scalar_t(0) : a);  // NaN stays NaN, like torch.relu
  if constexpr (std::is_same_v<scalar_t, float>) return tanh_float(a);
  return std::tanh(a);
}

template <typename scalar_t>
__attribute__((always_inline)) inline void activate_rows(scalar_t* h, int64_t ld, const scalar_t* bias, int64_t n,
                                                         int64_t count, bool relu) {
  for (int64_t r = 0; r < n; ++r, h += ld) {
    if (bias != nullptr) {
      if (relu) {
        for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i] + bias[i], true);
      } else {
        for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i] + bias[i], false);
      }
    } else if (relu) {
      for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i], true);
    } else {
      for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i], false);
    }
  }
}

// One branch per case and no aliasing (__restrict), so each loop vectorises; an out-of-place da would make
// GCC's overlap check fail and run the scalar loop.
template <typename scalar_t>
__attribute__((always_inline)) inline void step_gradient_rows(const scalar_t* __restrict dh, int64_t dh_ld,
                                                              int64_t dh_stride, const scalar_t* __restrict h,
                                                              int64_t h_ld, scalar_t* __restrict da, int64_t da_ld,
                                                              double* __restrict db, int64_t n, int64_t H, bool relu) {
  for (int64_t r = 0; r < n; ++r, dh += dh_ld, h += h_ld, da += da_ld) {
    if (dh_stride == 0) {
      const scalar_t upstream = dh[0];
      if (relu) {
        for (int64_t j = 0; j < H; ++j) da[j] = h[j] > scalar_t(0) ? upstream + da[j] : scalar_t(0);
      } else {
        for (int64_t j = 0; j < H; ++j) da[j] = (upstream + da[j]) * (scalar_t(1) - h[j] * h[j]);
      }
    } else if (dh_stride == 1) {
      if (relu) {
        for (int64_t j = 0; j < H; ++j) da[j] = h[j] > scalar_t(0) ? dh[j] + da[j] : scalar_t(0);
      } else {
        for (int64_t j = 0; j < H; ++j) da[j] = (dh[j] + da[j]) * (scalar_t(1) - h[j] * h[j]);
      }
    } else {
      for (int64_t j = 0; j < H; ++j) {
        const scalar_t upstream = dh[j * dh_stride] + da[j];
        da[j] = relu ? (h[j] > scalar_t(0) ? upstream : scalar_t(0)) : upstream * (scalar_t(1) - h[j] * h[j]);
      }
    }
    for (int64_t j = 0; j < H; ++j) db[j] += da[j];
  }
}

template <typename scalar_t>
__attribute__((always_inline)) inline void small_matmul_add_rows(const scalar_t* a, int64_t lda, const scalar_t* b,
                                                                 scalar_t* out, int64_t ldo, int64_t n, int64_t K,
                                                                 int64_t H) {
  for (int64_t i = 0; i < n; ++i) {
    scalar_t* out_row = out + i * ldo;
    for (int64_t k = 0; k < K; ++k) {
      const scalar_t a_ik = a[i * lda + k];
      const scalar_t* b_row = b + k * H;
      for (int64_t j = 0; j < H; ++j) out_row[j] += a_ik * b_row[j];
    }
  }
}

}  // namespace

TORCH_RNN_CLONES void activate(float* h, int64_t ld, const float* bias, int64_t n, int64_t count, bool relu) {
  activate_rows(h, ld, bias, n, count, relu);
}
TORCH_RNN_CLONES void activate(double* h, int64_t ld, const double* bias, int64_t n, int64_t count, bool relu) {
  activate_rows(h, ld, bias, n, count, relu);
}

TORCH_RNN_CLONES void step_gradient(const float* dh, int64_t dh_ld, int64_t dh_stride, const float* h, int64_t h_ld,
                                    float* da, int64_t da_ld, double* db, int64_t n, int64_t H, bool relu) {
  step_gradient_rows(dh, dh_ld, dh_stride, h, h_ld, da, da_ld, db, n, H, relu);
}
TORCH_RNN_CLONES void step_gradient(const double* dh, int64_t dh_ld, int64_t dh_stride, const double* h,
                                    int64_t h_ld, double* da, int64_t da_ld, double* db, int64_t n, int64_t H,
                                    bool relu) {
  step_gradient_rows(dh, dh_ld, dh_stride, h, h_ld, da, da_ld, db, n, H, relu);
}

TORCH_RNN_CLONES void small_matmul_add(const float* a, int64_t lda, const float* b, float* out, int64_t ldo,
                                       int64_t n, int64_t K, int64_t H) {
  small_matmul_add_rows(a, lda, b, out, ldo, n, K, H);
}
TORCH_RNN_CLONES void small_matmul_add(const double* a, int64_t lda, const double* b, double* out, int64_t ldo,
                                       int64_t n, int64_t K, int64_t H) {
  small_matmul_add_rows(a, lda, b, out, ldo, n, K, H);
}

}  // namespace torch_rnn_native
