// The two time loops of torch_rnn (torch_rnn/kernels.py documents them; torch_rnn/functional.py holds the
// reference equations), as a C++ extension for CPU tensors. Python runs each loop step as 2-4 torch ops at
// 2-5 us of interpreter and dispatch overhead each; here a step is one product and one fused elementwise
// pass over its (n, H) block.
//
//   forward   a_t = x_t W_x^T + b + h_{t-1} W_h^T,   h_t = f(a_t)
//   backward  da_t = (dh_t + da_{t+1} W_h) * f'(h_t),   f'(h) = 1 - h^2 (tanh) or 1[h > 0] (relu),
//             db = sum_t da_t,  dx_t = da_t W_x,  dW_x = sum_t da_t^T x_t,  dW_h = sum_t da_t^T h_{t-1}
//
// float32 on AVX-512 CPUs (StepProduct with panels): W_h and W_x are packed once per call into panels of 32
// columns and each step's products run in register-tiled kernels that read them straight from cache (BLAS
// repacks its operand on every call, most of the cost at N = 16). Each step is split between the intra-op
// threads by panels (PanelQueue: a thread's own share first, then what is left of the others'): a thread
// computes its panels' columns of every product, of the nonlinearity and of the gradient, and those rows of
// the weight gradients, and the threads meet once per step (Team::sync, a barrier that shrinks the team to one
// thread when the machine is busy), since the next step needs all columns. So the forward loop also computes x_t W_x^T, and the backward loop dx_t and,
// with 32 rows or more per step, dW_x and dW_h, all while the step's rows are in cache; dp is then never
// stored whole. Otherwise (float64, other CPUs) a step is one BLAS call (a plain loop below SMALL_STEP
// multiply-adds) and the input projection, dx and the weight gradients are one matmul each outside the loop.
//
// Rows are sorted by length (PackedSequence's convention): batch_sizes[s] rows run at step s, the rest are
// finished; empty batch_sizes means every row runs at every step. reverse runs each row backwards in time
// from its own last step (a bidirectional RNN's second direction): row i takes time len_i - 1 - s at step s,
// so no reversed copy of the input or the output is ever made.
//
// Sequences are (T, N, H) tensors of any strides whose last dimension is contiguous (time-major memory, or the
// transposed view of batch-first memory, both without copies), or packed: (R, H) with the n_t rows of step t
// at rows offset_t .. offset_t + n_t, R = sum of batch_sizes (PackedSequence.data's layout), so that padding
// is neither stored nor computed.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <thread>
#include <tuple>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

namespace {

using at::Tensor;

// Below this many multiply-adds per step a plain loop beats a BLAS call's fixed cost (about 1-2 us).
constexpr int64_t SMALL_STEP = 1 << 15;

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

// The three elementwise/small loops, each compiled for AVX-512, AVX2 and plain x86-64 and picked at load time
// by the CPU (GCC's target_clones), so one build runs on any x86-64 machine at its widest vectors.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TORCH_RNN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TORCH_RNN_CLONES
#endif

// h = f(h + bias) over n rows of count elements, ld apart (bias: count values, or nullptr for none).
#define DEFINE_ACTIVATE(scalar_t)                                                                              \
  TORCH_RNN_CLONES void activate(scalar_t* h, int64_t ld, const scalar_t* bias, int64_t n, int64_t count,    \
                                 bool relu) {                                                                \
    for (int64_t r = 0; r < n; ++r, h += ld) {                                                               \
      if (bias != nullptr) {                                                                                 \
        if (relu) {                                                                                          \
          for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i] + bias[i], true);                      \
        } else {                                                                                             \
          for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i] + bias[i], false);                     \
        }                                                                                                    \
      } else if (relu) {                                                                                     \
        for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i], true);                                  \
      } else {                                                                                               \
        for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i], false);                                 \
      }                                                                                                      \
    }                                                                                                        \
  }

// n rows of the backward step, in place: da holds the carry (the gradient from the step above) and becomes
// da = (dh + carry) * f'(h) over H elements per row, f'(h) = 1 - h^2 (tanh) or 1[h > 0] (relu); db += da,
// row after row (db accumulates in double). Rows lie dh_ld / h_ld / da_ld elements apart, and dh's elements
// dh_stride apart: 1, or 0 for the expanded gradient of `output.sum()` (read in place rather than copied).
// One branch per case and no aliasing (__restrict), so each loop vectorises; an out-of-place da would make
// GCC's overlap check fail and run the scalar loop.
#define DEFINE_STEP_GRADIENT(scalar_t)                                                                        \
  TORCH_RNN_CLONES void step_gradient(const scalar_t* __restrict dh, int64_t dh_ld, int64_t dh_stride,       \
                                      const scalar_t* __restrict h, int64_t h_ld, scalar_t* __restrict da,   \
                                      int64_t da_ld, double* __restrict db, int64_t n, int64_t H, bool relu) { \
    for (int64_t r = 0; r < n; ++r, dh += dh_ld, h += h_ld, da += da_ld) {                                  \
      if (dh_stride == 0) {                                                                                  \
        const scalar_t upstream = dh[0];                                                                     \
        if (relu) {                                                                                          \
          for (int64_t j = 0; j < H; ++j) da[j] = h[j] > scalar_t(0) ? upstream + da[j] : scalar_t(0);       \
        } else {                                                                                             \
          for (int64_t j = 0; j < H; ++j) da[j] = (upstream + da[j]) * (scalar_t(1) - h[j] * h[j]);          \
        }                                                                                                    \
      } else if (dh_stride == 1) {                                                                           \
        if (relu) {                                                                                          \
          for (int64_t j = 0; j < H; ++j) da[j] = h[j] > scalar_t(0) ? dh[j] + da[j] : scalar_t(0);          \
        } else {                                                                                             \
          for (int64_t j = 0; j < H; ++j) da[j] = (dh[j] + da[j]) * (scalar_t(1) - h[j] * h[j]);             \
        }                                                                                                    \
      } else {                                                                                               \
        for (int64_t j = 0; j < H; ++j) {                                                                    \
          const scalar_t upstream = dh[j * dh_stride] + da[j];                                               \
          da[j] = relu ? (h[j] > scalar_t(0) ? upstream : scalar_t(0)) : upstream * (scalar_t(1) - h[j] * h[j]); \
        }                                                                                                    \
      }                                                                                                      \
      for (int64_t j = 0; j < H; ++j) db[j] += da[j];                                                        \
    }                                                                                                        \
  }

// out (n, H) += a (n, K) @ b (K, H), row-major; a's rows lda apart, out's ldo apart, b contiguous. For steps
// too small for BLAS.
#define DEFINE_SMALL_MATMUL_ADD(scalar_t)                                                                   \
  TORCH_RNN_CLONES void small_matmul_add(const scalar_t* a, int64_t lda, const scalar_t* b, scalar_t* out, \
                                         int64_t ldo, int64_t n, int64_t K, int64_t H) {                    \
    for (int64_t i = 0; i < n; ++i) {                                                                    \
      scalar_t* out_row = out + i * ldo;                                                                 \
      for (int64_t k = 0; k < K; ++k) {                                                                  \
        const scalar_t a_ik = a[i * lda + k];                                                            \
        const scalar_t* b_row = b + k * H;                                                               \
        for (int64_t j = 0; j < H; ++j) out_row[j] += a_ik * b_row[j];                                   \
      }                                                                                                  \
    }                                                                                                    \
  }

DEFINE_ACTIVATE(float)
DEFINE_ACTIVATE(double)
DEFINE_STEP_GRADIENT(float)
DEFINE_STEP_GRADIENT(double)
DEFINE_SMALL_MATMUL_ADD(float)
DEFINE_SMALL_MATMUL_ADD(double)

// The sequence's T, N, H, and whether it is packed; checks every argument against them.
struct Shape {
  int64_t T, N, H;
  bool packed;
};

Shape check_inputs(const char* who, const Tensor& sequence, const Tensor& state, const Tensor& weight,
                   at::IntArrayRef batch_sizes) {
  TORCH_CHECK(sequence.device().is_cpu() && state.device().is_cpu() && weight.device().is_cpu(), who,
              ": the C++ kernels take CPU tensors");
  const bool packed = sequence.dim() == 2;
  TORCH_CHECK(sequence.dim() == 3 || (packed && !batch_sizes.empty()), who,
              ": expected a (T, N, H) sequence, or a packed (R, H) one with batch_sizes, got shape ",
              sequence.sizes());
  const int64_t T = packed ? static_cast<int64_t>(batch_sizes.size()) : sequence.size(0);
  const int64_t N = packed ? batch_sizes[0] : sequence.size(1), H = sequence.size(-1);
  TORCH_CHECK(state.sizes() == at::IntArrayRef({N, H}), who, ": expected a state of shape (", N, ", ", H,
              "), got ", state.sizes());
  TORCH_CHECK(weight.sizes() == at::IntArrayRef({H, H}), who, ": expected W_h of shape (", H, ", ", H, "), got ",
              weight.sizes());
  TORCH_CHECK(state.scalar_type() == sequence.scalar_type() && weight.scalar_type() == sequence.scalar_type(),
              who, ": every tensor must have the sequence's dtype ", sequence.scalar_type());
  TORCH_CHECK(batch_sizes.empty() || static_cast<int64_t>(batch_sizes.size()) == T, who,
              ": batch_sizes must be empty or hold T = ", T, " counts, got ", batch_sizes.size());
  int64_t total = 0;
  for (size_t t = 0; t < batch_sizes.size(); ++t) {
    TORCH_CHECK(batch_sizes[t] >= 0 && batch_sizes[t] <= N && (t == 0 || batch_sizes[t] <= batch_sizes[t - 1]),
                who, ": batch_sizes must be non-increasing counts in 0..N = ", N, ", got ", batch_sizes);
    total += batch_sizes[t];
  }
  TORCH_CHECK(!packed || total == sequence.size(0), who, ": a packed sequence has sum(batch_sizes) = ", total,
              " rows, got ", sequence.size(0));
  return {T, N, H, packed};
}

// Which time step each row is at, step by step.
struct Schedule {
  int64_t T, N;
  at::IntArrayRef batch_sizes;
  bool reverse;
  std::vector<int64_t> lengths;  // per row; from batch_sizes (row i runs while batch_sizes[s] > i)

  Schedule(int64_t T_, int64_t N_, at::IntArrayRef batch_sizes_, bool reverse_)
      : T(T_), N(N_), batch_sizes(batch_sizes_), reverse(reverse_), lengths(N_, T_) {
    if (!batch_sizes.empty()) {
      std::fill(lengths.begin(), lengths.end(), 0);
      for (int64_t s = 0; s < T; ++s) {
        for (int64_t i = 0; i < batch_sizes[s]; ++i) lengths[i] = s + 1;
      }
    }
  }
  int64_t running(int64_t s) const { return batch_sizes.empty() ? N : batch_sizes[s]; }
  int64_t finishing_from(int64_t s) const { return s + 1 < T ? running(s + 1) : 0; }  // rows [this, n) end at s
  // Every running row at the same time step, so a step is one (n, H) block of rows; else rows are gathered.
  bool aligned() const { return !reverse || batch_sizes.empty() || batch_sizes.front() == batch_sizes.back(); }
  int64_t time(int64_t s, int64_t i) const { return reverse ? lengths[i] - 1 - s : s; }
};

// A sequence's rows by pointer: row (t, i) at data + t * st + i * sn for (T, N, H) tensors, at
// data + (offset_t + i) * H when packed. Its H values are contiguous, except an incoming gradient's, whose
// element stride the backward passes along (0 for an expanded one).
template <typename scalar_t>
struct Rows {
  scalar_t* data;
  int64_t st, sn;
  std::vector<int64_t> offsets;  // packed: the first row of every step

  Rows(const Tensor& x, const Shape& shape, at::IntArrayRef batch_sizes)
      : data(x.data_ptr<scalar_t>()), st(shape.packed ? 0 : x.stride(0)), sn(shape.packed ? x.stride(0) : x.stride(1)) {
    if (shape.packed) {
      offsets.resize(shape.T);
      for (int64_t t = 0, offset = 0; t < shape.T; offset += batch_sizes[t], ++t) offsets[t] = offset;
    }
  }
  scalar_t* operator()(int64_t t, int64_t i) const {
    return offsets.empty() ? data + t * st + i * sn : data + (offsets[t] + i) * sn;
  }
};

Tensor rows_last_contiguous(const Tensor& x) { return x.stride(-1) == 1 ? x : x.contiguous(); }

// out[:n] (+)= a[:n] @ w for (n, K) and (n, H) blocks whose rows lie lda / ldo elements apart: a plain loop for
// small steps, else BLAS through ATen (the row strides become its leading dimensions, so nothing is copied).
template <typename scalar_t>
void step_matmul(const scalar_t* a, int64_t lda, const Tensor& w, scalar_t* out, int64_t ldo, int64_t n,
                 bool accumulate) {
  const int64_t K = w.size(0), H = w.size(1);
  if (n * K * H < SMALL_STEP) {
    if (!accumulate) {
      for (int64_t i = 0; i < n; ++i) std::fill(out + i * ldo, out + i * ldo + H, scalar_t(0));
    }
    small_matmul_add(a, lda, w.data_ptr<scalar_t>(), out, ldo, n, K, H);
    return;
  }
  Tensor a_block = at::from_blob(const_cast<scalar_t*>(a), {n, K}, {lda, 1}, w.options());
  Tensor out_block = at::from_blob(out, {n, H}, {ldo, 1}, w.options());
  if (accumulate) {
    out_block.addmm_(a_block, w);
  } else {
    at::mm_out(out_block, a_block, w);
  }
}

// A thread's share of a step's product: columns [c0, c1) of its output, which are whole panels [p0, p1).
struct Slice {
  int64_t c0, c1, p0, p1;
  int64_t width() const { return c1 - c0; }
};

constexpr int64_t PANEL = 32;  // columns per panel of a packed weight: two 16-float AVX-512 registers

// A thread of the team that runs a loop: `id` of `count` threads.
struct TeamMember {
  int64_t id, count;
};

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TORCH_RNN_PANELS 1
typedef float float16_aligned __attribute__((vector_size(64), aligned(64)));

// 16 floats at any address (output rows need not be 64-byte aligned): memcpy compiles to one vmovups.
__attribute__((target("arch=x86-64-v4"), always_inline)) inline float16_aligned load16(const float* from) {
  float16_aligned v;
  __builtin_memcpy(&v, from, sizeof v);
  return v;
}
__attribute__((target("arch=x86-64-v4"), always_inline)) inline void store16(float* to, float16_aligned v) {
  __builtin_memcpy(to, &v, sizeof v);
}

// One operand pair of a panel product: rows a (R, K), lda apart, times one packed panel (K, 32).
struct PanelOperand {
  const float* a;
  int64_t lda;
  const float* panel;
  int64_t K;
};

// acc_lo/hi[i] += a[i] @ panel for R rows: R times 32 columns held in 2R AVX-512 registers while k runs, so
// each panel row loaded from cache feeds 2R fused multiply-adds.
template <int R>
__attribute__((target("arch=x86-64-v4"), always_inline)) inline void panel_accumulate(
    const PanelOperand& x, float16_aligned* lo, float16_aligned* hi) {
  for (int64_t k = 0; k < x.K; ++k) {
    const float16_aligned b_lo = *reinterpret_cast<const float16_aligned*>(x.panel + k * PANEL);
    const float16_aligned b_hi = *reinterpret_cast<const float16_aligned*>(x.panel + k * PANEL + 16);
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const float a_ik = x.a[i * x.lda + k];
      lo[i] += a_ik * b_lo;
      hi[i] += a_ik * b_hi;
    }
  }
}

// out[:R, :width] (+)= first[:R] @ first.panel + second[:R] @ second.panel (second.K may be 0).
template <int R, bool FULL>
__attribute__((target("arch=x86-64-v4"), always_inline)) inline void panel_tile(
    const PanelOperand& first, const PanelOperand& second, float* out, int64_t ldo, int64_t width, bool accumulate) {
  float16_aligned lo[R], hi[R];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) lo[i] = hi[i] = float16_aligned{};
  panel_accumulate<R>(first, lo, hi);
  panel_accumulate<R>(second, lo, hi);
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    float* row = out + i * ldo;
    if constexpr (FULL) {
      store16(row, accumulate ? load16(row) + lo[i] : lo[i]);
      store16(row + 16, accumulate ? load16(row + 16) + hi[i] : hi[i]);
    } else {  // the last panel of a width that is not a multiple of 32: only `width` columns exist
      alignas(64) float sums[PANEL];
      *reinterpret_cast<float16_aligned*>(sums) = lo[i];
      *reinterpret_cast<float16_aligned*>(sums + 16) = hi[i];
      for (int64_t j = 0; j < width; ++j) row[j] = accumulate ? row[j] + sums[j] : sums[j];
    }
  }
}

// Rows 0..n of one panel's columns, in tiles of 8 rows and one smaller tile for the rest.
template <bool FULL>
__attribute__((target("arch=x86-64-v4"), always_inline)) inline void panel_rows(
    PanelOperand first, PanelOperand second, float* out, int64_t ldo, int64_t n, int64_t width, bool accumulate) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    panel_tile<8, FULL>(first, second, out, ldo, width, accumulate);
    first.a += 8 * first.lda, second.a += 8 * second.lda, out += 8 * ldo;
  }
  switch (n - i) {
    case 7: panel_tile<7, FULL>(first, second, out, ldo, width, accumulate); break;
    case 6: panel_tile<6, FULL>(first, second, out, ldo, width, accumulate); break;
    case 5: panel_tile<5, FULL>(first, second, out, ldo, width, accumulate); break;
    case 4: panel_tile<4, FULL>(first, second, out, ldo, width, accumulate); break;
    case 3: panel_tile<3, FULL>(first, second, out, ldo, width, accumulate); break;
    case 2: panel_tile<2, FULL>(first, second, out, ldo, width, accumulate); break;
    case 1: panel_tile<1, FULL>(first, second, out, ldo, width, accumulate); break;
    default: break;
  }
}

// out[:n, 32 p0 : 32 p1] (+)= a[:n] @ w[:, 32 p0 : 32 p1] (+ a2[:n] @ w2[...] when K2 > 0), for weights packed
// into panels (ceil(C / 32), K, 32) of their C columns; out's row has C columns.
__attribute__((target("arch=x86-64-v4"))) void panel_matmul(const float* a, int64_t lda, const float* panels,
                                                            int64_t K, const float* a2, int64_t lda2,
                                                            const float* panels2, int64_t K2, int64_t C,
                                                            float* out, int64_t ldo, int64_t n, int64_t p0,
                                                            int64_t p1, bool accumulate) {
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t width = std::min(PANEL, C - p * PANEL);
    const PanelOperand first{a, lda, panels + p * K * PANEL, K};
    const PanelOperand second{a2, lda2, K2 > 0 ? panels2 + p * K2 * PANEL : nullptr, K2};
    if (width == PANEL) {
      panel_rows<true>(first, second, out + p * PANEL, ldo, n, width, accumulate);
    } else {
      panel_rows<false>(first, second, out + p * PANEL, ldo, n, width, accumulate);
    }
  }
}

// out[r, :width] += sum_k a[k, r] * b[k, :width] for r < R: a weight gradient's rows are columns of the
// step's da, read a[k * lda + r]; b's rows (a step's inputs or previous states) are read in place, the columns
// past width masked off, so no packing is needed for operands that change every step.
template <int R>
__attribute__((target("arch=x86-64-v4"), always_inline)) inline void transposed_tile(
    const float* a, int64_t lda, const float* b, int64_t ldb, int64_t K, float* out, int64_t ldo, __mmask16 mask_lo,
    __mmask16 mask_hi) {
  __m512 lo[R], hi[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m512 b_lo = _mm512_maskz_loadu_ps(mask_lo, b + k * ldb);
    const __m512 b_hi = _mm512_maskz_loadu_ps(mask_hi, b + k * ldb + 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a_kr = _mm512_set1_ps(a[k * lda + r]);
      lo[r] = _mm512_fmadd_ps(a_kr, b_lo, lo[r]);
      hi[r] = _mm512_fmadd_ps(a_kr, b_hi, hi[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    float* row = out + r * ldo;
    _mm512_mask_storeu_ps(row, mask_lo, _mm512_add_ps(_mm512_maskz_loadu_ps(mask_lo, row), lo[r]));
    _mm512_mask_storeu_ps(row + 16, mask_hi, _mm512_add_ps(_mm512_maskz_loadu_ps(mask_hi, row + 16), hi[r]));
  }
}

// out[j0:j1, :C] += a[:K, j0:j1]^T @ b[:K, :C]: a (K, *) rows lda apart, b (K, C) rows ldb apart, out rows ldo
// apart. Rows j0..j1 of the weight gradient are one panel's columns of da, computed by one thread per step, so
// nothing is shared within a step (and steps are a barrier apart).
__attribute__((target("arch=x86-64-v4"))) void transposed_matmul_add(const float* a, int64_t lda, int64_t j0,
                                                                     int64_t j1, const float* b, int64_t ldb,
                                                                     int64_t C, float* out, int64_t ldo, int64_t K) {
  for (int64_t c = 0; c < C; c += PANEL) {
    const int64_t width = std::min(PANEL, C - c);
    const __mmask16 mask_lo = width >= 16 ? 0xFFFF : (1u << width) - 1;
    const __mmask16 mask_hi = width >= 32 ? 0xFFFF : width > 16 ? (1u << (width - 16)) - 1 : 0;
    int64_t j = j0;
    for (; j + 8 <= j1; j += 8) transposed_tile<8>(a + j, lda, b + c, ldb, K, out + j * ldo + c, ldo, mask_lo, mask_hi);
    float* o = out + j * ldo + c;
    switch (j1 - j) {
      case 7: transposed_tile<7>(a + j, lda, b + c, ldb, K, o, ldo, mask_lo, mask_hi); break;
      case 6: transposed_tile<6>(a + j, lda, b + c, ldb, K, o, ldo, mask_lo, mask_hi); break;
      case 5: transposed_tile<5>(a + j, lda, b + c, ldb, K, o, ldo, mask_lo, mask_hi); break;
      case 4: transposed_tile<4>(a + j, lda, b + c, ldb, K, o, ldo, mask_lo, mask_hi); break;
      case 3: transposed_tile<3>(a + j, lda, b + c, ldb, K, o, ldo, mask_lo, mask_hi); break;
      case 2: transposed_tile<2>(a + j, lda, b + c, ldb, K, o, ldo, mask_lo, mask_hi); break;
      case 1: transposed_tile<1>(a + j, lda, b + c, ldb, K, o, ldo, mask_lo, mask_hi); break;
      default: break;
    }
  }
}

bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  return has;
}
#endif

// Whether StepProduct packs panels for this dtype on this CPU (float32 on AVX-512).
template <typename scalar_t>
bool panels_available() {
#ifdef TORCH_RNN_PANELS
  if constexpr (std::is_same_v<scalar_t, float>) return cpu_has_avx512();
#endif
  return false;
}

// Whether a layer's packed W_x (D inputs) and W_h (H hidden) together stay in a core's cache from step to step,
// so the loops can take the input's products step by step: x_t W_x^T in the forward loop, dx_t = da_t W_x and
// the in-loop weight gradients in the backward loop, each while the step's rows are in cache. Beyond that
// (H = 1024 and D = 1024: 8 MB), every step would stream both weights from memory, twice the traffic of W_h
// alone; those products are then one large matmul each outside the loop.
constexpr int64_t PANEL_CACHE_BYTES = 2 << 20;  // 2 MiB: a core's L2 on current x86 server CPUs
bool panels_fit_in_cache(int64_t D, int64_t H) { return (D + H) * H * int64_t(sizeof(float)) <= PANEL_CACHE_BYTES; }

// The per-step product out[:n, slice] (+)= a[:n] @ w[:, slice] of a loop, w (K, C) fixed for the whole loop.
// float32 on AVX-512 packs w once into panels (ceil(C / 32), K, 32), zero past column C, and a team of
// threads splits the panels; otherwise it is step_matmul on all columns, in one thread (BLAS threads itself).
template <typename scalar_t>
class StepProduct {
 public:
  StepProduct(const Tensor& w, int64_t max_rows) : w_(w), K_(w.size(0)), C_(w.size(1)) {
    if (panels_available<scalar_t>()) {
      const int64_t count = (C_ + PANEL - 1) / PANEL, full = C_ / PANEL;
      panels_ = at::zeros({count, K_, PANEL}, w.options());  // 64-byte aligned, like every CPU tensor
      panels_.narrow(0, 0, full).copy_(w.narrow(1, 0, full * PANEL).view({K_, full, PANEL}).permute({1, 0, 2}));
      if (full < count) panels_[full].narrow(1, 0, C_ - full * PANEL).copy_(w.narrow(1, full * PANEL, C_ - full * PANEL));
      // Threads pay off once a step is more than a few microseconds of work and each gets a panel.
      threads_ = max_rows * K_ * C_ >= SMALL_STEP ? std::min<int64_t>(at::get_num_threads(), count) : 1;
    }
  }
  int64_t threads() const { return threads_; }
  // The columns this member computes: its share of the panels (all of them for a one-thread team).
  Slice slice(const TeamMember& member) const {
    if (!panels_.defined()) return Slice{0, C_, 0, 1};  // one thread, every column (see threads())
    const int64_t panels = panels_.size(0);
    const int64_t p0 = member.id * panels / member.count, p1 = (member.id + 1) * panels / member.count;
    return Slice{std::min(C_, p0 * PANEL), std::min(C_, p1 * PANEL), p0, p1};
  }
  // Panel p's columns alone.
  Slice panel(int64_t p) const { return Slice{p * PANEL, std::min(C_, (p + 1) * PANEL), p, p + 1}; }
  void operator()(const scalar_t* a, int64_t lda, scalar_t* out, int64_t ldo, int64_t n, const Slice& slice,
                  bool accumulate) const {
    if (n == 0 || slice.width() == 0) return;
#ifdef TORCH_RNN_PANELS
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (panels_.defined()) {
        panel_matmul(a, lda, panels_.data_ptr<float>(), K_, nullptr, 0, nullptr, 0, C_, out, ldo, n, slice.p0,
                     slice.p1, accumulate);
        return;
      }
    }
#endif
    step_matmul(a, lda, w_, out, ldo, n, accumulate);
  }
  // out[:n, slice] (+)= a[:n] @ w[:, slice] + a2[:n] @ second's w2[:, slice] (w2 has this product's columns):
  // one pass over out with panels, else the two products one after the other.
  void operator()(const scalar_t* a, int64_t lda, const StepProduct& second, const scalar_t* a2, int64_t lda2,
                  scalar_t* out, int64_t ldo, int64_t n, const Slice& slice, bool accumulate) const {
    if (n == 0 || slice.width() == 0) return;
#ifdef TORCH_RNN_PANELS
    if constexpr (std::is_same_v<scalar_t, float>) {
      if (panels_.defined() && second.panels_.defined()) {
        panel_matmul(a, lda, panels_.data_ptr<float>(), K_, a2, lda2, second.panels_.data_ptr<float>(), second.K_,
                     C_, out, ldo, n, slice.p0, slice.p1, accumulate);
        return;
      }
    }
#endif
    (*this)(a, lda, out, ldo, n, slice, accumulate);
    second(a2, lda2, out, ldo, n, slice, /*accumulate=*/true);
  }

 private:
  Tensor w_, panels_;
  int64_t K_, C_, threads_ = 1;
};

// Hands out a product's panels to the team, anew at every step: each member first takes the panels of its own
// share (slice(): the same ones at every step, so their weights stay in its cache), one at a time, then helps
// with what is left of the others' shares. A member that runs slower for a while then no longer holds up every
// step: on a shared machine one vCPU often runs at two thirds of the other's speed for seconds, and a fixed
// split waits for it at every barrier. A panel's columns are computed by the same code whichever member takes
// them, so the results do not depend on who did.
//
// Step s claims from the counters of parity s % 2; reset(s) refills them for step s + 2 and must come after a
// barrier that every member passes only once it is done claiming at step s.
template <typename scalar_t>
class PanelQueue {
 public:
  PanelQueue(const StepProduct<scalar_t>& product, int64_t members)
      : product_(product), members_(members), next_(2 * members) {
    for (int64_t m = 0; m < members; ++m) {
      shares_.push_back(product.slice(TeamMember{m, members}));
      next_[m].panel.store(shares_[m].p0, std::memory_order_relaxed);
      next_[members + m].panel.store(shares_[m].p0, std::memory_order_relaxed);
    }
  }
  // Calls work(slice) on the columns of every panel this member claims at step s (its whole share at once in a
  // team of one).
  template <typename Work>
  void run(const TeamMember& member, int64_t s, const Work& work) {
    if (members_ == 1) {
      work(shares_[0]);
      return;
    }
    for (int64_t k = 0; k < members_; ++k) {
      const int64_t owner = (member.id + k) % members_;
      std::atomic<int64_t>& next = next_[(s % 2) * members_ + owner].panel;
      const int64_t end = shares_[owner].p1;
      if (owner != member.id && next.load(std::memory_order_relaxed) >= end) continue;  // a read, not a write
      for (int64_t p; (p = next.fetch_add(1, std::memory_order_relaxed)) < end;) work(product_.panel(p));
    }
  }
  void reset(const TeamMember& member, int64_t s) {  // a team smaller than asked for resets every share
    for (int64_t owner = member.id; owner < members_; owner += member.count) {
      next_[(s % 2) * members_ + owner].panel.store(shares_[owner].p0, std::memory_order_relaxed);
    }
  }

 private:
  struct alignas(64) Counter {  // one cache line each: members claim their own without contention
    std::atomic<int64_t> panel;
  };
  const StepProduct<scalar_t>& product_;
  int64_t members_;
  std::vector<Slice> shares_;
  std::vector<Counter> next_;  // [parity][member]: the next unclaimed panel of member's share
};

// out[j0:j1, :C] += a[:n, j0:j1]^T @ b[:n, :C] (out rows C apart): the in-loop weight gradients, float32 panels
// only (recurrence_backward takes that path for nothing else).
template <typename scalar_t>
void add_transposed_product(const scalar_t* a, int64_t lda, int64_t j0, int64_t j1, const scalar_t* b, int64_t ldb,
                            int64_t C, scalar_t* out, int64_t n) {
#ifdef TORCH_RNN_PANELS
  if constexpr (std::is_same_v<scalar_t, float>) {
    transposed_matmul_add(a, lda, j0, j1, b, ldb, C, out, C, n);
    return;
  }
#endif
  for (int64_t k = 0; k < n; ++k) {  // unused (see above), but correct: out[j] += a[k, j] b[k]
    for (int64_t j = j0; j < j1; ++j) {
      for (int64_t c = 0; c < C; ++c) out[j * C + c] += a[k * lda + j] * b[k * ldb + c];
    }
  }
}

// Rows per step from which the backward loop sums the weight gradients itself (each step reads and writes
// every gradient row once, which fewer rows do not amortise).
constexpr int64_t MIN_ROWS_FOR_WEIGHTS_IN_LOOP = 32;

// ---------------------------------------------------------------------------------------------------------
// Teams on a busy machine. The members of a team meet at every step, so a member the scheduler takes off its
// core (another process wants it) holds up every other member until it runs again, a scheduler time slice of
// milliseconds per step: with a second process busy on the same cores, a team's loop ran 27 times slower than
// one thread's. So the members meet at a barrier of their own (Team::sync) that measures how long the first
// member waited for the last: at the second wait over STRAGGLE_NS in a loop the team shrinks to its first
// member, which finishes the loop alone, and the loops of the next PROBE_NS run in one thread; then a team
// tries again. On an idle machine no member waits that long (a step's panels are shared out as they are
// claimed), so the team stays.
// STRAGGLE_NS and PROBE_NS are settings (team_settings below; torch_rnn.native.team_settings in Python).
std::atomic<int64_t> STRAGGLE_NS{1'000'000};  // 1 ms: a time slice lost, not a slower member
std::atomic<int64_t> PROBE_NS{1'000'000'000};  // 1 s of one-thread loops before a team tries again
constexpr int STRAGGLES_TO_SHRINK = 2;        // one wait that long can be an interrupt; two are contention
constexpr int SPINS_BEFORE_YIELD = 4000;      // about 20-40 us of pause instructions, then sched_yield

std::atomic<int64_t> one_thread_until_ns{0};  // process-wide: the loops run in one thread until then

// Sets the two settings (a negative value keeps one) and returns the previous ones, [straggle_ns, probe_ns].
// A new probe_ns also ends the current one-thread period.
std::vector<int64_t> team_settings(int64_t straggle_ns, int64_t probe_ns) {
  std::vector<int64_t> previous{STRAGGLE_NS.load(), PROBE_NS.load()};
  if (straggle_ns >= 0) STRAGGLE_NS.store(straggle_ns);
  if (probe_ns >= 0) {
    PROBE_NS.store(probe_ns);
    one_thread_until_ns.store(0);
  }
  return previous;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Whether a team saw contention in the last PROBE_NS (the loops then run in one thread).
bool machine_busy() { return now_ns() < one_thread_until_ns.load(std::memory_order_relaxed); }

// The team size for a loop that would use `threads`: 1 while contention was seen in the last PROBE_NS.
int64_t team_size(int64_t threads) {
  return threads > 1 && machine_busy() ? 1 : threads;
}

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// The barrier of a team's members (see above). sync() returns false to a member that must leave the loop (the
// team has shrunk); the first member then continues as a team of one (TeamMember{0, 1}), claiming every panel.
class Team {
 public:
  explicit Team(int64_t members) : arrivals_(std::max<int64_t>(members, 1)) {}

  bool sync(TeamMember& member) {
    if (member.count == 1) return true;
    const int64_t generation = generation_.load(std::memory_order_acquire);
    const int64_t arrival = now_ns();
    arrivals_[member.id].ns = arrival;
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == member.count) {  // the last to arrive
      int64_t first = arrival;
      for (int64_t m = 0; m < member.count; ++m) first = std::min(first, arrivals_[m].ns);
      if (arrival - first >= STRAGGLE_NS.load(std::memory_order_relaxed) && ++straggles_ >= STRAGGLES_TO_SHRINK) {
        shrink_ = true;
        one_thread_until_ns.store(arrival + PROBE_NS.load(std::memory_order_relaxed), std::memory_order_relaxed);
      }
      arrived_.store(0, std::memory_order_relaxed);
      generation_.store(generation + 1, std::memory_order_release);
    } else {
      for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
        if (spins < SPINS_BEFORE_YIELD) {
          cpu_relax();
        } else {
          std::this_thread::yield();  // let a descheduled member of this team (or anyone) have the core
        }
      }
    }
    if (!shrink_) return true;
    if (member.id != 0) return false;
    member = TeamMember{0, 1};
    return true;
  }

 private:
  struct alignas(64) Arrival {  // one cache line each
    int64_t ns = 0;
  };
  std::vector<Arrival> arrivals_;
  alignas(64) std::atomic<int64_t> arrived_{0};
  alignas(64) std::atomic<int64_t> generation_{0};
  int straggles_ = 0;   // written by the last member to arrive only, read by it only
  bool shrink_ = false;  // written before generation_'s release, read after its acquire
};

// Runs body(member, team) on `threads` threads (OpenMP, the pool torch's intra-op ops use; fewer while the
// machine is busy, team_size); each member computes its slice of every product, and team.sync(member)
// inside body waits for all of them. One thread does everything when threads is 1, when OpenMP is missing,
// or inside another parallel region. body must not throw while other threads wait at a barrier, so the loops
// check everything before they start.
template <typename Body>
void in_team(int64_t threads, const Body& body) {
  threads = team_size(threads);
#ifdef _OPENMP
  if (threads > 1) {
    Team team(threads);
#pragma omp parallel num_threads(threads)
    {
      TeamMember member{omp_get_thread_num(), omp_get_num_threads()};
      body(member, team);
    }
    return;
  }
#endif
  Team team(1);
  TeamMember member{0, 1};
  body(member, team);
}

// out = a @ w for sequences out (T, N, C) / packed (R, C) and a (T, N, K) / (R, K) that lie alike in memory:
// one matmul over their rows in memory order (a copy only when they do not lie alike).
void project_into(Tensor out, const Tensor& a, const Tensor& w) {
  if (out.dim() == 2) {
    at::mm_out(out, a, w);
    return;
  }
  for (const bool batch_major : {false, true}) {
    Tensor o = batch_major ? out.transpose(0, 1) : out, i = batch_major ? a.transpose(0, 1) : a;
    if (o.is_contiguous() && i.is_contiguous()) {
      Tensor flat_out = o.view({-1, o.size(-1)});
      at::mm_out(flat_out, i.view({-1, i.size(-1)}), w);
      return;
    }
  }
  out.copy_(at::matmul(a, w));
}

// Forward loop, in place: p (T, N, H) holds the input projections W_x x_t (plus b when bias is None) and is
// overwritten with h (zero past each row's length); returns h_last (N, H), each row's state after its last
// step. wh_t is W_h^T (H, H); bias (H,) is added inside the loop, saving the projection a broadcast pass.
// Given x (T, N, D) (or packed (R, D)) lying like p in memory and wx_t = W_x^T (D, H), p's contents are not
// read: the loop computes p_t = x_t W_x^T itself (with W_h's product, in one pass, when the panels run).
Tensor recurrence_forward_(Tensor p, const Tensor& h0_in, const Tensor& wh_t_in, const c10::optional<Tensor>& bias_in,
                           bool relu, at::IntArrayRef batch_sizes, bool reverse, const c10::optional<Tensor>& x_in,
                           const c10::optional<Tensor>& wx_t_in) {
  const Shape shape = check_inputs("recurrence_forward_", p, h0_in, wh_t_in, batch_sizes);
  TORCH_CHECK(p.stride(-1) == 1 && (!shape.packed || p.is_contiguous()),
              "recurrence_forward_: p's rows must be contiguous, got strides ", p.strides());
  const int64_t T = shape.T, N = shape.N, H = shape.H;
  const Tensor h0 = h0_in.contiguous(), wh_t = wh_t_in.contiguous();
  const Tensor bias = bias_in.has_value() && bias_in->defined() ? bias_in->contiguous() : Tensor();
  TORCH_CHECK(!bias.defined() || (bias.sizes() == at::IntArrayRef({H}) && bias.scalar_type() == p.scalar_type()),
              "recurrence_forward_: expected a bias of shape (", H, ") and dtype ", p.scalar_type(), ", got ",
              bias.defined() ? bias.sizes() : at::IntArrayRef{}, " ", bias.defined() ? bias.scalar_type() : p.scalar_type());
  const bool project = x_in.has_value() && x_in->defined();
  TORCH_CHECK(project == (wx_t_in.has_value() && wx_t_in->defined()),
              "recurrence_forward_: x and wx_t come together");
  Tensor x, wx_t;
  if (project) {
    x = rows_last_contiguous(*x_in), wx_t = wx_t_in->contiguous();
    TORCH_CHECK(x.dim() == p.dim() && x.sizes().slice(0, x.dim() - 1) == p.sizes().slice(0, p.dim() - 1) &&
                    x.scalar_type() == p.scalar_type() && x.device().is_cpu(),
                "recurrence_forward_: x must be a CPU tensor of p's dtype and leading shape ",
                p.sizes().slice(0, p.dim() - 1), ", got ", x.sizes(), " ", x.scalar_type());
    TORCH_CHECK(wx_t.dim() == 2 && wx_t.size(0) == x.size(-1) && wx_t.size(1) == H && wx_t.scalar_type() == p.scalar_type(),
                "recurrence_forward_: expected wx_t of shape (", x.size(-1), ", ", H, "), got ", wx_t.sizes());
    TORCH_CHECK(!shape.packed || x.is_contiguous(), "recurrence_forward_: a packed x must be contiguous");
  }
  const Schedule schedule(T, N, batch_sizes, reverse);
  Tensor h_last = h0.clone();
  // Gathered steps run on two (N, H) buffers: the previous state and the step being computed.
  Tensor buffers = schedule.aligned() ? Tensor() : at::empty({2, N, H}, h0.options());
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "recurrence_forward_", [&] {
    // The loop projects x itself when the panels run and each step is one block of rows; else one matmul now.
    const bool project_in_loop =
        project && schedule.aligned() && panels_available<scalar_t>() && panels_fit_in_cache(x.size(-1), H);
    if (project && !project_in_loop) project_into(p, x, wx_t);
    const Rows<scalar_t> rows(p, shape, batch_sizes);
    const StepProduct<scalar_t> product(wh_t, N);  // a_s += h_{s-1} W_h^T
    const c10::optional<StepProduct<scalar_t>> input_product =
        project_in_loop ? c10::make_optional(StepProduct<scalar_t>(wx_t, N)) : c10::nullopt;  // x_s W_x^T
    const c10::optional<Rows<scalar_t>> x_rows =
        project_in_loop ? c10::make_optional(Rows<scalar_t>(x, shape, batch_sizes)) : c10::nullopt;
    scalar_t* last = h_last.data_ptr<scalar_t>();
    const scalar_t* b = bias.defined() ? bias.data_ptr<scalar_t>() : nullptr;
    scalar_t* gathered[2] = {nullptr, nullptr};
    if (!schedule.aligned()) gathered[0] = buffers[0].data_ptr<scalar_t>(), gathered[1] = buffers[1].data_ptr<scalar_t>();
    PanelQueue<scalar_t> queue(product, product.threads());
    in_team(product.threads(), [&](TeamMember& member, Team& team) {
      const scalar_t* prev = h0.data_ptr<scalar_t>();  // the previous step's running rows, ld_prev apart
      int64_t ld_prev = H;
      for (int64_t s = 0; s < T; ++s) {
        const int64_t n = schedule.running(s), n_next = schedule.finishing_from(s);
        const int64_t t = reverse ? T - 1 - s : s;  // the step's time when it is one block of rows
        // This step's running rows, ld apart: in place in the output, or gathered from each row's own time.
        scalar_t* const out = schedule.aligned() ? rows(t, 0) : gathered[s % 2];
        const int64_t ld = schedule.aligned() ? rows.sn : H;
        queue.run(member, s, [&](const Slice& cols) {  // columns c0 .. c0 + width of every row
          const int64_t c0 = cols.c0, width = cols.width();
          if (!shape.packed) {
            for (int64_t i = n; i < N; ++i) std::fill_n(rows(s, i) + c0, width, scalar_t(0));  // padding: zero
          }
          if (!schedule.aligned()) {
            for (int64_t i = 0; i < n; ++i) std::copy_n(rows(schedule.time(s, i), i) + c0, width, out + i * H + c0);
            product(prev, ld_prev, out, ld, n, cols, /*accumulate=*/true);  // a_s = p_s + h_{s-1} W_h^T
          } else if (project_in_loop) {  // a_s = x_s W_x^T + h_{s-1} W_h^T
            (*input_product)((*x_rows)(t, 0), x_rows->sn, product, prev, ld_prev, out, ld, n, cols, /*accumulate=*/false);
          } else {  // a_s = p_s + h_{s-1} W_h^T
            product(prev, ld_prev, out, ld, n, cols, /*accumulate=*/true);
          }
          if (b == nullptr && ld == H && width == H) {
            activate(out, 0, nullptr, 1, n * H, relu);  // h_s = f(a_s), one contiguous block
          } else {
            activate(out + c0, ld, b == nullptr ? nullptr : b + c0, n, width, relu);
          }
          if (!schedule.aligned()) {
            for (int64_t i = 0; i < n; ++i) std::copy_n(out + i * H + c0, width, rows(schedule.time(s, i), i) + c0);
          }
          for (int64_t i = n_next; i < n; ++i) std::copy_n(out + i * ld + c0, width, last + i * H + c0);  // rows ending at s
        });
        prev = out, ld_prev = ld;
        if (!team.sync(member)) return;  // the next step's product reads every column of this one
        queue.reset(member, s);
      }
    });
  });
  return h_last;
}

// Backward loop: returns dp (T, N, H) with h's strides (the gradient of every step's pre-activation, zero past
// a row's length), dh0 (N, H) (an empty tensor unless need_dh0), db (H,), the sum of dp over steps and rows
// (accumulated in double), and, given wx = W_x (H, D), dx = dp W_x (T, N, D) lying like h in memory (else an
// empty tensor). dh (T, N, H) and dh_last (N, H) are the incoming gradients (not modified), h the forward's
// output, wh W_h (H, H).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> recurrence_backward(
    const Tensor& dh_in, const Tensor& dh_last_in, const Tensor& wh_in, const Tensor& h_in, bool relu,
    at::IntArrayRef batch_sizes, bool reverse, bool need_dh0, const c10::optional<Tensor>& wx_in,
    const c10::optional<Tensor>& x_in, const c10::optional<Tensor>& h0_in) {
  const Shape shape = check_inputs("recurrence_backward", h_in, dh_last_in, wh_in, batch_sizes);
  TORCH_CHECK(dh_in.sizes() == h_in.sizes(), "recurrence_backward: dh must have h's shape ", h_in.sizes(),
              ", got ", dh_in.sizes());
  TORCH_CHECK(dh_in.scalar_type() == h_in.scalar_type() && dh_in.device().is_cpu(),
              "recurrence_backward: dh must be a CPU tensor of h's dtype ", h_in.scalar_type(), ", got ",
              dh_in.scalar_type(), " on ", dh_in.device());
  const Tensor h = shape.packed ? h_in.contiguous() : rows_last_contiguous(h_in), wh = wh_in.contiguous();
  // dh_last is read with its own strides too (h_n.sum()'s gradient is expanded): a copy would be the
  // largest allocation of a small layer's backward besides dp and dx.
  const Tensor& dh_last = dh_last_in;
  const int64_t T = shape.T, N = shape.N, H = shape.H;
  const Tensor wx = wx_in.has_value() && wx_in->defined() ? wx_in->contiguous() : Tensor();
  TORCH_CHECK(!wx.defined() || (wx.dim() == 2 && wx.size(0) == H && wx.scalar_type() == h.scalar_type()),
              "recurrence_backward: expected wx of shape (", H, ", D) and dtype ", h.scalar_type(), ", got ",
              wx.defined() ? wx.sizes() : at::IntArrayRef{});
  const Schedule schedule(T, N, batch_sizes, reverse);
  // The incoming gradient is read with its own strides (the expanded one of `output.sum()` has strides 0), so
  // it is never copied; only a packed one must have contiguous rows.
  const Tensor dh = shape.packed ? dh_in.contiguous() : dh_in;
  const int64_t dh_stride = dh.stride(-1);
  // Given x (laid out like h) and h0, the weight gradients dW_x = sum_t da_t^T x_t and dW_h = sum_t da_t^T
  // h_prev_t are summed inside the loop, a panel at a time (its rows are the panel's columns of da_t), while
  // da_t, x_t and h_prev_t are in cache; dp is then never stored whole (two step blocks suffice). That needs the panels,
  // one block of rows per step, and enough rows per step to amortise each step's pass over the gradients;
  // otherwise dp is returned and the caller takes one large matmul per weight afterwards.
  const Tensor x = x_in.has_value() && x_in->defined() ? rows_last_contiguous(*x_in) : Tensor();
  const Tensor h0 = h0_in.has_value() && h0_in->defined() ? h0_in->contiguous() : Tensor();
  TORCH_CHECK(x.defined() == h0.defined(), "recurrence_backward: x and h0 come together");
  TORCH_CHECK(!x.defined() || (x.dim() == h.dim() && x.sizes().slice(0, x.dim() - 1) == h.sizes().slice(0, h.dim() - 1) &&
                               x.scalar_type() == h.scalar_type() && x.device().is_cpu()),
              "recurrence_backward: x must be a CPU tensor of h's dtype and leading shape, got ",
              x.defined() ? x.sizes() : at::IntArrayRef{});
  TORCH_CHECK(!h0.defined() || h0.sizes() == at::IntArrayRef({N, H}), "recurrence_backward: expected h0 of shape (", N,
              ", ", H, "), got ", h0.defined() ? h0.sizes() : at::IntArrayRef{});
  const bool weights_in_loop = x.defined() && !shape.packed && schedule.aligned() && N >= MIN_ROWS_FOR_WEIGHTS_IN_LOOP &&
                               panels_fit_in_cache(x.size(-1), H) &&
                               h.scalar_type() == at::kFloat && panels_available<float>();
  Tensor dp = weights_in_loop ? at::empty({2, N, H}, h.options())  // step s in block s % 2
                              : at::empty_like(h);  // h's memory layout, so dp and h flatten alike afterwards
  Tensor dwh = weights_in_loop ? at::zeros({H, H}, h.options()) : at::empty({0}, h.options());
  Tensor dwx = weights_in_loop ? at::zeros({H, x.size(-1)}, h.options()) : at::empty({0}, h.options());
  Tensor dh0 = need_dh0 || !schedule.aligned() ? dh_last.clone(at::MemoryFormat::Contiguous)
                                                : at::empty({0}, dh_last.options());
  Tensor dx = at::empty({0}, h.options());
  if (wx.defined()) {  // in dp's memory order: time-major, the transposed view of batch-major, or packed
    const int64_t D = wx.size(1);
    const bool batch_major = !shape.packed && h.stride(0) < h.stride(1);
    dx = shape.packed ? at::empty({h.size(0), D}, h.options())
                      : batch_major ? at::empty({N, T, D}, h.options()).transpose(0, 1) : at::empty({T, N, D}, h.options());
  }
  // Gathered steps alternate between two (N, H) buffers, so a step can overwrite one while the other threads
  // still read the previous step's from the other.
  Tensor gathered = schedule.aligned() ? Tensor() : at::empty({2, N, H}, dh_last.options());
  // db in double, from a 64-byte boundary so that panels of 32 columns never share a cache line
  std::vector<double> db_storage(H + 7, 0.0);
  double* const db_data =
      reinterpret_cast<double*>((reinterpret_cast<std::uintptr_t>(db_storage.data()) + 63) & ~std::uintptr_t(63));
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "recurrence_backward", [&] {
    // dx_t = da_t W_x inside the loop when the panels run and each step is one block of rows; else afterwards.
    const bool dx_in_loop =
        wx.defined() && schedule.aligned() && panels_available<scalar_t>() && panels_fit_in_cache(wx.size(1), H);
    const Rows<scalar_t> dh_rows(dh, shape, batch_sizes), h_rows(h, shape, batch_sizes);
    const Rows<scalar_t> dp_rows(dp, shape, batch_sizes);  // unused when the weights are summed in the loop
    const c10::optional<Rows<scalar_t>> x_rows =
        weights_in_loop ? c10::make_optional(Rows<scalar_t>(x, shape, batch_sizes)) : c10::nullopt;
    const StepProduct<scalar_t> product(wh, N);  // da_s W_h
    const c10::optional<StepProduct<scalar_t>> input_product =
        dx_in_loop ? c10::make_optional(StepProduct<scalar_t>(wx, N)) : c10::nullopt;  // da_s W_x
    const c10::optional<Rows<scalar_t>> dx_rows =
        dx_in_loop ? c10::make_optional(Rows<scalar_t>(dx, shape, batch_sizes)) : c10::nullopt;
    const scalar_t* last = dh_last.data_ptr<scalar_t>();
    const int64_t last_row = dh_last.stride(0), last_col = dh_last.stride(1);
    scalar_t* carry = dh0.data_ptr<scalar_t>();
    scalar_t* gathered_rows[2] = {nullptr, nullptr};
    if (!schedule.aligned()) gathered_rows[0] = gathered[0].data_ptr<scalar_t>(), gathered_rows[1] = gathered[1].data_ptr<scalar_t>();
    // A step is computed by columns of da_s (queue); then, past the barrier, dx_t = da_s W_x by columns of dx_t
    // (dx_queue), while the next step starts on the other members.
    PanelQueue<scalar_t> queue(product, product.threads());
    c10::optional<PanelQueue<scalar_t>> dx_queue;
    if (dx_in_loop) dx_queue.emplace(*input_product, product.threads());
    in_team(product.threads(), [&](TeamMember& member, Team& team) {
      const scalar_t* da = nullptr;  // da_{s+1} of the running rows, ld apart
      int64_t ld = H;
      for (int64_t s = T - 1; s >= 0; --s) {
        const int64_t n = schedule.running(s), n_next = schedule.finishing_from(s);
        const int64_t t = reverse ? T - 1 - s : s;  // the step's time when it is one block of rows
        const auto zero_padding = [&](const Slice& cols) {  // dp past each row's length (unless never stored)
          if (shape.packed || weights_in_loop) return;
          for (int64_t i = n; i < N; ++i) std::fill_n(dp_rows(s, i) + cols.c0, cols.width(), scalar_t(0));
        };
        if (schedule.aligned()) {
          // The gradient reaching step s from above (da_{s+1} W_h, or dh_last at a row's last step) is written
          // into dp's block of step s, which step_gradient then turns into da_s in place: no carry buffer.
          scalar_t* const block = weights_in_loop ? dp.data_ptr<scalar_t>() + (s % 2) * N * H : dp_rows(t, 0);
          const int64_t block_ld = weights_in_loop ? H : dp_rows.sn;
          queue.run(member, s, [&](const Slice& cols) {  // columns c0 .. c0 + width of da_s
            const int64_t c0 = cols.c0, width = cols.width();
            zero_padding(cols);
            product(da, ld, block, block_ld, n_next, cols, /*accumulate=*/false);
            for (int64_t i = n_next; i < n; ++i) {  // rows whose last step is s start from dh_last
              for (int64_t j = c0; j < c0 + width; ++j) block[i * block_ld + j] = last[i * last_row + j * last_col];
            }
            step_gradient(dh_rows(t, 0) + c0 * dh_stride, dh_rows.sn, dh_stride, h_rows(t, 0) + c0, h_rows.sn,
                          block + c0, block_ld, db_data + c0, n, width, relu);
            if (weights_in_loop) {  // dW rows c0..c1 += da_s[:, c0:c1]^T [x_t | h_prev_t], h_prev = h0 at the first step
              const int64_t t_prev = reverse ? t + 1 : t - 1;
              const scalar_t* h_prev = s == 0 ? h0.data_ptr<scalar_t>() : h_rows(t_prev, 0);
              const int64_t h_prev_ld = s == 0 ? H : h_rows.sn;
              add_transposed_product(block, block_ld, c0, c0 + width, (*x_rows)(t, 0), x_rows->sn, x.size(-1),
                                     dwx.data_ptr<scalar_t>(), n);
              add_transposed_product(block, block_ld, c0, c0 + width, h_prev, h_prev_ld, H, dwh.data_ptr<scalar_t>(), n);
            }
          });
          da = block, ld = block_ld;
          if (!team.sync(member)) return;  // the products below and the next step's read every column of da_s
          queue.reset(member, s);
          if (dx_in_loop) {  // dx_t = da_s W_x, zero past each row's length
            dx_queue->reset(member, s + 1);  // every member is done with step s + 1's dx (it came before step s)
            scalar_t* dx_block = (*dx_rows)(t, 0);
            dx_queue->run(member, s, [&](const Slice& dx_cols) {
              (*input_product)(da, ld, dx_block, dx_rows->sn, n, dx_cols, /*accumulate=*/false);
              for (int64_t i = n; i < N && !shape.packed; ++i) {
                std::fill_n(dx_block + i * dx_rows->sn + dx_cols.c0, dx_cols.width(), scalar_t(0));
              }
            });
          }
        } else {  // rows at different time steps: gathered into a buffer, the carry kept in dh0
          scalar_t* rows = gathered_rows[s % 2];
          queue.run(member, s, [&](const Slice& cols) {
            const int64_t c0 = cols.c0, width = cols.width();
            zero_padding(cols);
            // carry = da_{s+1} W_h for the rows that ran at s + 1; the others hold dh_last (dh0's initial value)
            product(da, ld, carry, H, n_next, cols, /*accumulate=*/false);
            for (int64_t i = 0; i < n; ++i) {
              const int64_t t_i = schedule.time(s, i);
              std::copy_n(carry + i * H + c0, width, rows + i * H + c0);
              step_gradient(dh_rows(t_i, i) + c0 * dh_stride, 0, dh_stride, h_rows(t_i, i) + c0, 0, rows + i * H + c0, 0,
                            db_data + c0, 1, width, relu);
              std::copy_n(rows + i * H + c0, width, dp_rows(t_i, i) + c0);
            }
          });
          da = rows, ld = H;
          if (!team.sync(member)) return;  // the next step's product reads every column of da_s
          queue.reset(member, s);
        }
      }
      if (need_dh0 && T > 0) {  // dh0 = da_0 W_h for the rows that ran, dh_last for the rest
        product(da, ld, carry, H, schedule.running(0), product.slice(member), /*accumulate=*/false);
      }
    });
    if (wx.defined() && !dx_in_loop) project_into(dx, dp, wx);
  });
  Tensor db = at::from_blob(db_data, {H}, at::TensorOptions().dtype(at::kDouble))
                  .to(h.scalar_type(), /*non_blocking=*/false, /*copy=*/true);  // out of db_storage before it goes
  if (weights_in_loop) dp = at::empty({0}, h.options());
  if (!need_dh0) dh0 = at::empty({0}, dh_last.options());  // the gathered steps' carry buffer, not dh0
  return {dp, dh0, db, dx, dwx, dwh};
}

}  // namespace

// The schemas; the CPU kernels are registered for the CPU dispatch key below, and torch_rnn/ops.py registers a
// fake kernel for each (shapes, strides and dtypes without data), so FakeTensorMode, torch.compile and
// torch.library.opcheck can run them.
TORCH_LIBRARY(torch_rnn, m) {
  m.def("recurrence_forward_(Tensor(a!) p, Tensor h0, Tensor wh_t, Tensor? bias, bool relu, int[] batch_sizes,"
        " bool reverse, Tensor? x=None, Tensor? wx_t=None) -> Tensor");
  m.def("recurrence_backward(Tensor dh, Tensor dh_last, Tensor wh, Tensor h, bool relu, int[] batch_sizes,"
        " bool reverse, bool need_dh0, Tensor? wx=None, Tensor? x=None, Tensor? h0=None)"
        " -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // Whether float32 steps run on panels (this CPU has AVX-512): which outputs recurrence_backward leaves
  // empty depends on it, and its fake kernel asks. A query of the machine, not a kernel: no dispatch key.
  m.def("panels_available() -> bool", [] { return panels_available<float>(); });
  m.def("team_settings(int straggle_ns, int probe_ns) -> int[]", &team_settings);
  m.def("panels_fit_in_cache(int D, int H) -> bool", &panels_fit_in_cache);
  m.def("machine_busy() -> bool", &machine_busy);
}

TORCH_LIBRARY_IMPL(torch_rnn, CPU, m) {
  m.impl("recurrence_forward_", &recurrence_forward_);
  m.impl("recurrence_backward", &recurrence_backward);
}
