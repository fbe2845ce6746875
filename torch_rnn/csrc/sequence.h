// How a sequence lies in memory for the loops: its shape, which rows run at each step and at what time, and a
// pointer to every row. Sequences are (T, N, H) tensors of any strides whose last dimension is contiguous
// (time-major memory, or the transposed view of batch-first memory, both without copies), or packed: (R, H)
// with the n_t rows of step t at rows offset_t .. offset_t + n_t, R = sum of batch_sizes (PackedSequence.data's
// layout), so that padding is neither stored nor computed. Rows are sorted by length (PackedSequence's
// convention): batch_sizes[s] rows run at step s; empty batch_sizes means every row runs at every step.
#pragma once

#include "common.h"

#include <algorithm>
#include <vector>

namespace torch_rnn_native {

// The sequence's T, N, H, and whether it is packed; checks every argument against them.
struct Shape {
  int64_t T, N, H;
  bool packed;
};

// Checks a loop's arguments: CPU tensors, a (T, N, H) or packed (R, H) sequence with batch_sizes, a state (N, H),
// a weight (H, H), one dtype; who names the loop in the error. Returns the sequence's Shape.
Shape check_inputs(const char* who, const Tensor& sequence, const Tensor& state, const Tensor& weight,
                   at::IntArrayRef batch_sizes);

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

// x itself when its rows are contiguous (last stride 1), else a contiguous copy.
inline Tensor rows_last_contiguous(const Tensor& x) { return x.stride(-1) == 1 ? x : x.contiguous(); }

// out = a @ w for sequences out (T, N, C) / packed (R, C) and a (T, N, K) / (R, K) that lie alike in memory:
// one matmul over their rows in memory order (a copy only when they do not lie alike).
void project_into(Tensor out, const Tensor& a, const Tensor& w);

}  // namespace torch_rnn_native
