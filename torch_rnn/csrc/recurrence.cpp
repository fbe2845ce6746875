// The two time loops of torch_rnn (torch_rnn/kernels.py documents them; torch_rnn/functional.py holds the
// reference equations), as a C++ extension for CPU tensors. Python runs each loop step as 2-4 torch ops at
// 2-5 us of interpreter and dispatch overhead each; here a step is one BLAS call and one fused elementwise
// pass over its (n, H) block, and tiny steps (N*H*H below SMALL_STEP) skip BLAS for a plain loop.
//
//   forward   a_t = p_t + b + h_{t-1} W_h^T,   h_t = f(a_t)          (p_t = x_t W_x^T, one matmul beforehand)
//   backward  da_t = (dh_t + da_{t+1} W_h) * f'(h_t),   f'(h) = 1 - h^2 (tanh) or 1[h > 0] (relu),
//             db = sum of da_t over steps and rows; dW_x, dW_h and dx are one matmul each afterwards
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
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

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

// h = f(h + bias) over count elements (bias: count values, or nullptr for none).
#define DEFINE_ACTIVATE(scalar_t)                                                                   \
  TORCH_RNN_CLONES void activate(scalar_t* h, const scalar_t* bias, int64_t count, bool relu) {    \
    if (bias != nullptr) {                                                                          \
      if (relu) {                                                                                   \
        for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i] + bias[i], true);               \
      } else {                                                                                      \
        for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i] + bias[i], false);              \
      }                                                                                             \
    } else if (relu) {                                                                              \
      for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i], true);                           \
    } else {                                                                                        \
      for (int64_t i = 0; i < count; ++i) h[i] = activation(h[i], false);                          \
    }                                                                                               \
  }

// One row of the backward step: da = (dh + carry) * f'(h) over H elements, f'(h) = 1 - h^2 (tanh) or 1[h > 0]
// (relu), and db += da (db accumulates in double). dh's elements lie dh_stride apart: 1, or 0 for the expanded
// gradient of `output.sum()` (read in place rather than copied).
#define DEFINE_STEP_GRADIENT(scalar_t)                                                                      \
  TORCH_RNN_CLONES void step_gradient(const scalar_t* dh, int64_t dh_stride, const scalar_t* carry,        \
                                      const scalar_t* h, scalar_t* da, double* db, int64_t H, bool relu) {  \
    if (dh_stride == 1 && relu) {                                                                           \
      for (int64_t j = 0; j < H; ++j) {                                                                     \
        da[j] = h[j] > scalar_t(0) ? dh[j] + carry[j] : scalar_t(0);                                        \
        db[j] += da[j];                                                                                     \
      }                                                                                                     \
    } else if (dh_stride == 1) {                                                                            \
      for (int64_t j = 0; j < H; ++j) {                                                                     \
        da[j] = (dh[j] + carry[j]) * (scalar_t(1) - h[j] * h[j]);                                           \
        db[j] += da[j];                                                                                     \
      }                                                                                                     \
    } else {                                                                                                \
      for (int64_t j = 0; j < H; ++j) {                                                                     \
        const scalar_t upstream = dh[j * dh_stride] + carry[j];                                             \
        da[j] = relu ? (h[j] > scalar_t(0) ? upstream : scalar_t(0)) : upstream * (scalar_t(1) - h[j] * h[j]); \
        db[j] += da[j];                                                                                     \
      }                                                                                                     \
    }                                                                                                       \
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
      : data(x.data_ptr<scalar_t>()), st(shape.packed ? 0 : x.stride(0)), sn(shape.packed ? shape.H : x.stride(1)) {
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

// Forward loop, in place: p (T, N, H) holds the input projections W_x x_t (plus b when bias is None) and is
// overwritten with h (zero past each row's length); returns h_last (N, H), each row's state after its last
// step. wh_t is W_h^T (H, H); bias (H,) is added inside the loop, saving the projection a broadcast pass.
Tensor recurrence_forward_(Tensor p, const Tensor& h0_in, const Tensor& wh_t_in, const c10::optional<Tensor>& bias_in,
                           bool relu, at::IntArrayRef batch_sizes, bool reverse) {
  const Shape shape = check_inputs("recurrence_forward_", p, h0_in, wh_t_in, batch_sizes);
  TORCH_CHECK(p.stride(-1) == 1 && (!shape.packed || p.is_contiguous()),
              "recurrence_forward_: p's rows must be contiguous, got strides ", p.strides());
  const int64_t T = shape.T, N = shape.N, H = shape.H;
  const Tensor h0 = h0_in.contiguous(), wh_t = wh_t_in.contiguous();
  const Tensor bias = bias_in.has_value() && bias_in->defined() ? bias_in->contiguous() : Tensor();
  TORCH_CHECK(!bias.defined() || (bias.sizes() == at::IntArrayRef({H}) && bias.scalar_type() == p.scalar_type()),
              "recurrence_forward_: expected a bias of shape (", H, ") and dtype ", p.scalar_type(), ", got ",
              bias.defined() ? bias.sizes() : at::IntArrayRef{}, " ", bias.defined() ? bias.scalar_type() : p.scalar_type());
  const Schedule schedule(T, N, batch_sizes, reverse);
  Tensor h_last = h0.clone();
  // Gathered steps run on two (N, H) buffers: the previous state and the step being computed.
  Tensor buffers = schedule.aligned() ? Tensor() : at::empty({2, N, H}, h0.options());
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "recurrence_forward_", [&] {
    const Rows<scalar_t> rows(p, shape, batch_sizes);
    scalar_t* last = h_last.data_ptr<scalar_t>();
    const scalar_t* b = bias.defined() ? bias.data_ptr<scalar_t>() : nullptr;
    const scalar_t* prev = h0.data_ptr<scalar_t>();  // the previous step's running rows, ld_prev apart
    int64_t ld_prev = H;
    scalar_t* gathered[2] = {nullptr, nullptr};
    if (!schedule.aligned()) gathered[0] = buffers[0].data_ptr<scalar_t>(), gathered[1] = buffers[1].data_ptr<scalar_t>();
    for (int64_t s = 0; s < T; ++s) {
      const int64_t n = schedule.running(s), n_next = schedule.finishing_from(s);
      if (!shape.packed) {
        for (int64_t i = n; i < N; ++i) std::fill(rows(s, i), rows(s, i) + H, scalar_t(0));  // padding: zero
      }
      scalar_t* out;  // this step's running rows, ld apart
      int64_t ld;
      if (schedule.aligned()) {
        out = rows(reverse ? T - 1 - s : s, 0), ld = rows.sn;
      } else {
        out = gathered[s % 2], ld = H;
        for (int64_t i = 0; i < n; ++i) std::copy(rows(schedule.time(s, i), i), rows(schedule.time(s, i), i) + H, out + i * H);
      }
      step_matmul(prev, ld_prev, wh_t, out, ld, n, /*accumulate=*/true);  // a_s = p_s + h_{s-1} W_h^T
      if (b == nullptr && ld == H) {
        activate(out, nullptr, n * H, relu);  // h_s = f(a_s)
      } else {
        for (int64_t i = 0; i < n; ++i) activate(out + i * ld, b, H, relu);  // h_s = f(a_s + b)
      }
      if (!schedule.aligned()) {
        for (int64_t i = 0; i < n; ++i) std::copy(out + i * H, out + (i + 1) * H, rows(schedule.time(s, i), i));
      }
      for (int64_t i = n_next; i < n; ++i) std::copy(out + i * ld, out + i * ld + H, last + i * H);  // rows ending at s
      prev = out, ld_prev = ld;
    }
  });
  return h_last;
}

// Backward loop: returns dp (T, N, H) with h's strides (the gradient of every step's pre-activation, zero past
// a row's length), dh0 (N, H) (an empty tensor unless need_dh0) and db (H,), the sum of dp over steps and rows
// (accumulated in double). dh (T, N, H) and dh_last (N, H) are the incoming gradients (not modified), h the
// forward's output, wh W_h (H, H).
std::tuple<Tensor, Tensor, Tensor> recurrence_backward(const Tensor& dh_in, const Tensor& dh_last_in,
                                                       const Tensor& wh_in, const Tensor& h_in, bool relu,
                                                       at::IntArrayRef batch_sizes, bool reverse, bool need_dh0) {
  const Shape shape = check_inputs("recurrence_backward", h_in, dh_last_in, wh_in, batch_sizes);
  TORCH_CHECK(dh_in.sizes() == h_in.sizes(), "recurrence_backward: dh must have h's shape ", h_in.sizes(),
              ", got ", dh_in.sizes());
  TORCH_CHECK(dh_in.scalar_type() == h_in.scalar_type() && dh_in.device().is_cpu(),
              "recurrence_backward: dh must be a CPU tensor of h's dtype ", h_in.scalar_type(), ", got ",
              dh_in.scalar_type(), " on ", dh_in.device());
  const Tensor h = shape.packed ? h_in.contiguous() : rows_last_contiguous(h_in), wh = wh_in.contiguous();
  const Tensor dh_last = dh_last_in.contiguous();
  const int64_t T = shape.T, N = shape.N, H = shape.H;
  const Schedule schedule(T, N, batch_sizes, reverse);
  // The incoming gradient is read with its own strides (the expanded one of `output.sum()` has strides 0), so
  // it is never copied; only a packed one must have contiguous rows.
  const Tensor dh = shape.packed ? dh_in.contiguous() : dh_in;
  const int64_t dh_stride = dh.stride(-1);
  Tensor dp = at::empty_like(h);  // h's memory layout, so dp and h flatten alike for the weight gradients
  Tensor dh0 = need_dh0 || !schedule.aligned() ? dh_last.clone() : at::empty({0}, dh_last.options());
  Tensor gathered = schedule.aligned() ? Tensor() : at::empty_like(dh_last);
  std::vector<double> db_sum(H, 0.0);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "recurrence_backward", [&] {
    const Rows<scalar_t> dh_rows(dh, shape, batch_sizes), h_rows(h, shape, batch_sizes), dp_rows(dp, shape, batch_sizes);
    const scalar_t* last = dh_last.data_ptr<scalar_t>();
    const scalar_t* da = nullptr;  // da_{s+1} of the running rows, ld apart
    int64_t ld = H;
    for (int64_t s = T - 1; s >= 0; --s) {
      const int64_t n = schedule.running(s), n_next = schedule.finishing_from(s);
      if (!shape.packed) {
        for (int64_t i = n; i < N; ++i) std::fill(dp_rows(s, i), dp_rows(s, i) + H, scalar_t(0));  // padding
      }
      if (schedule.aligned()) {
        // The gradient reaching step s from above (da_{s+1} W_h, or dh_last at a row's last step) is written
        // into dp's block of step s, which step_gradient then turns into da_s in place: no carry buffer.
        const int64_t t = reverse ? T - 1 - s : s;
        scalar_t* block = dp_rows(t, 0);
        const int64_t block_ld = dp_rows.sn;
        if (n_next > 0) step_matmul(da, ld, wh, block, block_ld, n_next, /*accumulate=*/false);
        for (int64_t i = n_next; i < n; ++i) std::copy(last + i * H, last + (i + 1) * H, block + i * block_ld);
        for (int64_t i = 0; i < n; ++i) {
          step_gradient(dh_rows(t, i), dh_stride, block + i * block_ld, h_rows(t, i), block + i * block_ld,
                        db_sum.data(), H, relu);
        }
        da = block, ld = block_ld;
      } else {  // rows at different time steps: gathered into a buffer, the carry kept in dh0
        scalar_t* c = dh0.data_ptr<scalar_t>();
        scalar_t* rows = gathered.data_ptr<scalar_t>();
        for (int64_t i = 0; i < n; ++i) {
          const int64_t t = schedule.time(s, i);
          step_gradient(dh_rows(t, i), dh_stride, c + i * H, h_rows(t, i), rows + i * H, db_sum.data(), H, relu);
          std::copy(rows + i * H, rows + (i + 1) * H, dp_rows(t, i));
        }
        step_matmul(rows, H, wh, c, H, n, /*accumulate=*/false);  // carry = da_s W_h
      }
    }
    if (schedule.aligned() && need_dh0 && T > 0) {  // dh0 = da_0 W_h for the rows that ran, dh_last for the rest
      step_matmul(da, ld, wh, dh0.data_ptr<scalar_t>(), H, schedule.running(0), /*accumulate=*/false);
    }
  });
  Tensor db = at::tensor(db_sum, at::TensorOptions().dtype(at::kDouble)).to(h.scalar_type());
  return {dp, dh0, db};
}

}  // namespace

TORCH_LIBRARY(torch_rnn, m) {
  m.def("recurrence_forward_(Tensor(a!) p, Tensor h0, Tensor wh_t, Tensor? bias, bool relu, int[] batch_sizes,"
        " bool reverse) -> Tensor",
        &recurrence_forward_);
  m.def("recurrence_backward(Tensor dh, Tensor dh_last, Tensor wh, Tensor h, bool relu, int[] batch_sizes,"
        " bool reverse, bool need_dh0) -> (Tensor, Tensor, Tensor)",
        &recurrence_backward);
}
