// torch_rnn's two time loops for CPU tensors (torch_rnn/kernels.py documents them; torch_rnn/functional.py holds
// the reference equations). Python runs each loop step as 2-4 torch ops at 2-5 us of interpreter and dispatch
// overhead each; here a step is one product and one fused elementwise pass over its (n, H) block.
//
//   forward   a_t = x_t W_x^T + b + h_{t-1} W_h^T,   h_t = f(a_t)
//   backward  da_t = (dh_t + da_{t+1} W_h) * f'(h_t),   f'(h) = 1 - h^2 (tanh) or 1[h > 0] (relu),
//             db = sum_t da_t,  dx_t = da_t W_x,  dW_x = sum_t da_t^T x_t,  dW_h = sum_t da_t^T h_{t-1}
//
// float32 on AVX-512 CPUs (StepProduct with panels): W_h and W_x are packed once per call into panels of 32
// columns and each step's products run in register-tiled kernels that read them straight from cache (BLAS
// repacks its operand on every call, most of the cost at N = 16). So the forward loop also computes x_t W_x^T
// and the backward loop dx_t while the step's rows are in cache (when the weights fit in cache,
// panels_fit_in_cache). The loops share their work among the intra-op threads in one of two ways
// (step_product.h, team.h): with 32 rows or more and weights that fit in every core's cache, by
// rows (for_row_chunks: each thread takes a chunk of rows through every step, and the threads meet once per
// loop); otherwise by columns (PanelQueue: each step's panels are shared out, and the threads meet once per
// step, Team::sync, since the next step needs all its columns). Otherwise (float64, other CPUs) a step is one
// BLAS call (a plain loop below SMALL_STEP multiply-adds) and the input projection and dx are one matmul each
// outside the loop. The weight gradients are always one matmul each over dp, after the loop.
//
// reverse runs each row backwards in time from its own last step (a bidirectional RNN's second direction): row
// i takes time len_i - 1 - s at step s, so no reversed copy of the input or the output is ever made. The
// sequences' layouts: sequence.h.
#pragma once

#include "common.h"

#include <c10/util/Optional.h>

#include <tuple>

namespace torch_rnn_native {

// Forward loop, in place: p (T, N, H) holds the input projections W_x x_t (plus b when bias is None) and is
// overwritten with h (zero past each row's length); returns h_last (N, H), each row's state after its last
// step. wh_t is W_h^T (H, H), of any strides (the transposed view of W_h is packed as it lies); bias (H,) is
// added inside the loop, saving the projection a broadcast pass. Given x (T, N, D) (or packed (R, D)) lying like
// p in memory and wx_t = W_x^T (D, H) (any strides), p's contents are not read: the loop computes
// p_t = x_t W_x^T itself (with W_h's product, in one pass, when the panels run).
Tensor recurrence_forward_(Tensor p, const Tensor& h0, const Tensor& wh_t, const c10::optional<Tensor>& bias,
                           bool relu, at::IntArrayRef batch_sizes, bool reverse, const c10::optional<Tensor>& x,
                           const c10::optional<Tensor>& wx_t);

// Backward loop. dh (T, N, H) and dh_last (N, H) are the incoming gradients (not modified), wh W_h (H, H), h the
// forward's output. Returns, each None when not computed:
//   dp (T, N, H) with h's strides, the gradient of every step's pre-activation (zero past a row's length), from
//       which the caller takes dW_x and dW_h as one matmul each;
//   dh0 (N, H), when need_dh0;
//   db (H,), the sum of dp over steps and rows (accumulated in double), always;
//   dx = dp W_x (T, N, D) lying like h in memory, given wx = W_x (H, D).
std::tuple<Tensor, c10::optional<Tensor>, Tensor, c10::optional<Tensor>> recurrence_backward(
    const Tensor& dh, const Tensor& dh_last, const Tensor& wh, const Tensor& h, bool relu,
    at::IntArrayRef batch_sizes, bool reverse, bool need_dh0, const c10::optional<Tensor>& wx);

}  // namespace torch_rnn_native
