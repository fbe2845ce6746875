// A loop's per-step product and how its columns are shared out among a team (team.h): StepProduct runs
// out[:n, slice] (+)= a[:n] @ w[:, slice], from AVX-512 panels (panels.h) or BLAS; PanelQueue hands the panels
// to the team's members step by step.
#pragma once

#include "activations.h"
#include "common.h"
#include "panels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <vector>

namespace torch_rnn_native {

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

// The per-step product out[:n, slice] (+)= a[:n] @ w[:, slice] of a loop, w (K, C) fixed for the whole loop, of
// any strides (the forward loop's W^T is the transposed view of W). float32 on AVX-512 packs w once into
// panels (ceil(C / 32), K, 32), zero past column C, and a team of threads splits the panels; otherwise it is
// step_matmul on all columns of a contiguous w, in one thread (BLAS threads itself).
template <typename scalar_t>
class StepProduct {
 public:
  StepProduct(const Tensor& w, int64_t max_rows) : K_(w.size(0)), C_(w.size(1)) {
    if (!panels_available<scalar_t>()) {
      w_ = w.contiguous();
      return;
    }
    const int64_t count = (C_ + PANEL - 1) / PANEL;
    panels_ = at::empty({count, K_, PANEL}, w.options());  // 64-byte aligned, like every CPU tensor
    // One pass, not a chain of tensor ops: packing runs on every call, and each op costs microseconds. The reads
    // follow w's contiguous dimension: rows of w (K, C), or columns of a transposed view.
    const scalar_t* from = w.data_ptr<scalar_t>();
    const int64_t sk = w.stride(0), sc = w.stride(1);
    scalar_t* const to = panels_.data_ptr<scalar_t>();
    for (int64_t p = 0; p < count; ++p) {
      const int64_t width = std::min(PANEL, C_ - p * PANEL);
      scalar_t* const panel = to + p * K_ * PANEL;  // (K, 32)
      if (sc == 1) {
        for (int64_t k = 0; k < K_; ++k) std::copy_n(from + k * sk + p * PANEL, width, panel + k * PANEL);
      } else {  // in blocks of 16 rows of the panel, so that the reads and the writes both stay in cache
        for (int64_t k0 = 0; k0 < K_; k0 += 16) {
          const int64_t k1 = std::min(K_, k0 + 16);
          for (int64_t j = 0; j < width; ++j) {
            const scalar_t* column = from + (p * PANEL + j) * sc;
            for (int64_t k = k0; k < k1; ++k) panel[k * PANEL + j] = column[k * sk];
          }
        }
      }
      if (width < PANEL) {  // zero past column C
        for (int64_t k = 0; k < K_; ++k) std::fill(panel + k * PANEL + width, panel + (k + 1) * PANEL, scalar_t(0));
      }
    }
    // Threads pay off once a step is more than a few microseconds of work and each gets a panel.
    threads_ = max_rows * K_ * C_ >= SMALL_STEP ? std::min<int64_t>(at::get_num_threads(), count) : 1;
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
#ifdef TORCH_RNN_X86_GCC
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
#ifdef TORCH_RNN_X86_GCC
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

// Whether a loop over N rows of D inputs (0: none in the loop) and H hidden features splits its work by rows
// (for_row_chunks, team.h) rather than each step's columns (PanelQueue): when every member can keep all the
// packed weights in its own cache from step to step (each then reads all of them at every step) and there are
// at least 32 rows, so that two threads get two 8-row register tiles each: with one tile a thread reads
// every weight from the second-level cache for just 8 rows at every step (at (16, 200, 300, 512), 10-20%
// slower than splitting the columns). The members then meet once per loop instead of once per step: no
// barrier, and no step's state crossing between cores. float32 panels only (a BLAS call inside a team would
// nest threads). The choice does not depend on the number of threads, so neither do the results' bits.
template <typename scalar_t>
bool split_by_rows(int64_t N, int64_t D, int64_t H) {
  return panels_available<scalar_t>() && panels_fit_in_cache(D, H) && N >= 32;
}

// The threads of a loop split by rows: all of torch's intra-op threads once the whole loop (T steps of N rows,
// K inputs to each of H columns) is worth a fork and a join (about 10 us of one core's multiply-adds), else one.
inline int64_t row_split_threads(int64_t T, int64_t N, int64_t K, int64_t H) {
  return T * N * K * H >= (int64_t(1) << 20) ? at::get_num_threads() : 1;
}

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

}  // namespace torch_rnn_native
