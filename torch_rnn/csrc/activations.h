// The elementwise work of a step: the nonlinearity forward and the local derivative backward, and the plain
// matmul of steps too small for BLAS. Each is compiled for AVX-512, AVX2 and plain x86-64 and picked at load
// time by the CPU (activations.cpp), so one build runs on any x86-64 machine at its widest vectors.
#pragma once

#include "common.h"

namespace torch_rnn_native {

// h = f(h + bias) over n rows of count elements, ld apart (bias: count values, or nullptr for none);
// f = tanh, or relu when relu is set.
void activate(float* h, int64_t ld, const float* bias, int64_t n, int64_t count, bool relu);
void activate(double* h, int64_t ld, const double* bias, int64_t n, int64_t count, bool relu);

// n rows of the backward step, in place: da holds the carry (the gradient from the step above) and becomes
// da = (dh + carry) * f'(h) over H elements per row, f'(h) = 1 - h^2 (tanh) or 1[h > 0] (relu); db += da,
// row after row (db accumulates in double). Rows lie dh_ld / h_ld / da_ld elements apart, and dh's elements
// dh_stride apart: 1, or 0 for the expanded gradient of `output.sum()` (read in place rather than copied).
void step_gradient(const float* dh, int64_t dh_ld, int64_t dh_stride, const float* h, int64_t h_ld, float* da,
                   int64_t da_ld, double* db, int64_t n, int64_t H, bool relu);
void step_gradient(const double* dh, int64_t dh_ld, int64_t dh_stride, const double* h, int64_t h_ld, double* da,
                   int64_t da_ld, double* db, int64_t n, int64_t H, bool relu);

// out (n, H) += a (n, K) @ b (K, H), row-major; a's rows lda apart, out's ldo apart, b contiguous. For steps
// too small for BLAS.
void small_matmul_add(const float* a, int64_t lda, const float* b, float* out, int64_t ldo, int64_t n, int64_t K,
                      int64_t H);
void small_matmul_add(const double* a, int64_t lda, const double* b, double* out, int64_t ldo, int64_t n,
                      int64_t K, int64_t H);

}  // namespace torch_rnn_native
