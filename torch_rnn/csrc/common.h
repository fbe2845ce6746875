// What every file of torch_rnn's C++ loops shares: the tensor type, the sizes that decide how a step runs, and
// the two small records a team of threads passes around. README.md ("The C++ loops") maps the files.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// GCC on x86-64: the AVX-512 panel kernels (panels.cpp) and per-CPU clones of the elementwise loops exist.
#define TORCH_RNN_X86_GCC 1
#endif

namespace torch_rnn_native {

using at::Tensor;

// Below this many multiply-adds per step a plain loop beats a BLAS call's fixed cost (about 1-2 us), and a
// team of threads does not pay off.
constexpr int64_t SMALL_STEP = 1 << 15;

constexpr int64_t PANEL = 32;  // columns per panel of a packed weight: two 16-float AVX-512 registers

// Rows per group of a loop split by rows (team.h, for_row_chunks): a member takes whole groups, and the
// backward loop sums db per group. Half a register tile of the panel kernels, so that the members' chunks differ
// by at most 4 rows (100 rows on two threads: 52 and 48).
constexpr int64_t ROW_GROUP = 4;

// A thread's share of a step's product: columns [c0, c1) of its output, which are whole panels [p0, p1).
struct Slice {
  int64_t c0, c1, p0, p1;
  int64_t width() const { return c1 - c0; }
};

// A thread of the team that runs a loop: `id` of `count` threads.
struct TeamMember {
  int64_t id, count;
};

}  // namespace torch_rnn_native
