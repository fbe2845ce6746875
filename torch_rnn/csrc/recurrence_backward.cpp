// The backward loop (recurrence.h): backpropagation through time, step by step from the last, in named pieces.
#include "recurrence.h"

#include "activations.h"
#include "panels.h"
#include "sequence.h"
#include "step_product.h"
#include "team.h"

#include <algorithm>
#include <cstdint>
#include <utility>

namespace torch_rnn_native {
namespace {

// One backward loop: its tensors as row pointers, and its steps. A step's da_s is computed by columns (queue: a
// member of the team takes whole panels of columns, and the members meet once per step) or, split by rows, by
// chunks of rows that each go through every step on one member (run_rows).
template <typename scalar_t>
struct BackwardLoop {
  const Shape& shape;
  const Schedule& schedule;
  bool relu, dx_in_loop, need_dh0;
  Rows<scalar_t> dh_rows, h_rows, dp_rows;
  int64_t dh_stride;                        // dh's element stride: 1, or 0 when expanded
  const scalar_t* last;                     // dh_last (N, H), elements last_row / last_col apart
  int64_t last_row, last_col;
  scalar_t* carry;                          // dh0 (N, H): the gradient carried between gathered steps, then dh0
  scalar_t* gathered[2];                    // (N, H) each: gathered steps alternate between them
  double* db;                               // (H,), 64-byte aligned
  c10::optional<Rows<scalar_t>> dx_rows;    // dx (T, N, D), when dx_in_loop
  const StepProduct<scalar_t>& product;   // da_s W_h
  const StepProduct<scalar_t>* input_product;  // da_s W_x, when dx_in_loop
  PanelQueue<scalar_t>& queue;
  PanelQueue<scalar_t>* dx_queue;  // when dx_in_loop

  int64_t N() const { return schedule.N; }
  int64_t H() const { return shape.H; }

  // How many of rows [r0, r1) run at step s (rows sorted by length), and how many of them also ran at s + 1.
  int64_t running(int64_t s, int64_t r0, int64_t r1) const {
    return std::clamp<int64_t>(schedule.running(s) - r0, 0, r1 - r0);
  }
  int64_t running_above(int64_t s, int64_t r0, int64_t r1) const {
    return std::clamp<int64_t>(schedule.finishing_from(s) - r0, 0, r1 - r0);
  }
  int64_t time(int64_t s) const { return schedule.reverse ? schedule.T - 1 - s : s; }  // a one-block step's time

  // Where rows r0.. of step s's da_s lie, and how far apart: dp's block of the step when it is one block of rows,
  // else (rows at different times) rows r0.. of a gathered buffer.
  std::pair<scalar_t*, int64_t> step_rows(int64_t s, int64_t r0) const {
    if (schedule.aligned()) return {dp_rows(time(s), r0), dp_rows.sn};
    return {gathered[s % 2] + r0 * H(), H()};
  }

  // dp (and dx, in the loop) past each row's length is zero: rows [r0 + m, r1) of step s, columns cols.
  void zero_padding(int64_t s, int64_t r0, int64_t m, int64_t r1, const Slice& cols) const {
    if (shape.packed) return;
    for (int64_t i = r0 + m; i < r1; ++i) std::fill_n(dp_rows(s, i) + cols.c0, cols.width(), scalar_t(0));
  }

  // Step s on rows [r0, r1) and the columns cols, from da_above (rows r0.. of da_{s+1}, ld_above apart); db
  // accumulates per group of ROW_GROUP rows, into db_groups + (row / ROW_GROUP) * ld_db (ld_db = 0: one sum).
  //
  // A step whose running rows lie at one time, one block of rows: the gradient reaching it from above
  // (da_{s+1} W_h, or dh_last at a row's last step) is written into the step's block of dp, which step_gradient
  // then turns into da_s in place (no carry buffer). A step whose rows lie at different times (reverse with
  // unequal lengths) is gathered into a buffer: carry = da_{s+1} W_h for the rows that ran at s + 1 (the others
  // hold dh_last, dh0's initial value), then each row's da_s, copied to dp.
  void run_step(int64_t s, int64_t r0, int64_t r1, const scalar_t* da_above, int64_t ld_above, const Slice& cols,
                double* db_groups, int64_t ld_db) const {
    const int64_t m = running(s, r0, r1), m_above = running_above(s, r0, r1);
    const int64_t c0 = cols.c0, width = cols.width();
    const auto [block, block_ld] = step_rows(s, r0);
    zero_padding(s, r0, m, r1, cols);
    if (!schedule.aligned()) {
      product(da_above, ld_above, carry + r0 * H(), H(), m_above, cols, /*accumulate=*/false);
      for (int64_t i = r0; i < r0 + m; ++i) {
        const int64_t t_i = schedule.time(s, i);
        scalar_t* const row = block + (i - r0) * H() + c0;
        std::copy_n(carry + i * H() + c0, width, row);
        step_gradient(dh_rows(t_i, i) + c0 * dh_stride, 0, dh_stride, h_rows(t_i, i) + c0, 0, row, 0,
                      db_groups + i / ROW_GROUP * ld_db + c0, 1, width, relu);
        std::copy_n(row, width, dp_rows(t_i, i) + c0);
      }
      return;
    }
    const int64_t t = time(s);
    product(da_above, ld_above, block, block_ld, m_above, cols, /*accumulate=*/false);  // da_{s+1} W_h
    for (int64_t i = m_above; i < m; ++i) {  // rows whose last step is s start from dh_last
      for (int64_t j = c0; j < c0 + width; ++j) block[i * block_ld + j] = last[(r0 + i) * last_row + j * last_col];
    }
    for (int64_t g = 0; g < m; g += ROW_GROUP) {  // da_s = (dh_s + da_{s+1} W_h) * f'(h_s), db += da_s
      step_gradient(dh_rows(t, r0 + g) + c0 * dh_stride, dh_rows.sn, dh_stride, h_rows(t, r0 + g) + c0, h_rows.sn,
                    block + g * block_ld + c0, block_ld, db_groups + (r0 + g) / ROW_GROUP * ld_db + c0,
                    std::min(ROW_GROUP, m - g), width, relu);
    }
  }

  // dx_t = da_s W_x for rows [r0, r1) and the columns cols of dx_t, zero past each row's length (dx_in_loop).
  void dx_step(int64_t s, int64_t r0, int64_t r1, const Slice& cols) const {
    const int64_t m = running(s, r0, r1);
    const auto [da, ld] = step_rows(s, r0);
    scalar_t* const dx_block = (*dx_rows)(time(s), r0);
    (*input_product)(da, ld, dx_block, dx_rows->sn, m, cols, /*accumulate=*/false);
    for (int64_t i = m; i < r1 - r0 && !shape.packed; ++i) {
      std::fill_n(dx_block + i * dx_rows->sn + cols.c0, cols.width(), scalar_t(0));
    }
  }

  // da_{s+1} of rows r0.., and how far apart (nothing above the last step: no row takes it).
  std::pair<const scalar_t*, int64_t> above(int64_t s, int64_t r0) const {
    if (s + 1 == schedule.T) return {nullptr, H()};
    return step_rows(s + 1, r0);
  }

  // The loop on rows [r0, r1) alone (whole ROW_GROUPs) and all columns, from the last step to the first
  // (for_row_chunks); db summed per group of rows, into db_groups + (row / ROW_GROUP) * ld_db.
  void run_rows(int64_t r0, int64_t r1, double* db_groups, int64_t ld_db) const {
    const Slice all = product.slice(TeamMember{0, 1});
    for (int64_t s = schedule.T - 1; s >= 0; --s) {
      const auto [da_above, ld_above] = above(s, r0);
      run_step(s, r0, r1, da_above, ld_above, all, db_groups, ld_db);
      if (dx_in_loop) dx_step(s, r0, r1, input_product->slice(TeamMember{0, 1}));
    }
    if (need_dh0 && schedule.T > 0) {  // dh0 = da_0 W_h for the rows that ran, dh_last for the rest
      const auto [da, ld] = step_rows(0, r0);
      product(da, ld, carry + r0 * H(), H(), running(0, r0, r1), all, /*accumulate=*/false);
    }
  }

  // The loop, from the last step to the first, on one member of a team that shares out each step's columns.
  void run(TeamMember& member, Team& team) const {
    for (int64_t s = schedule.T - 1; s >= 0; --s) {
      const auto [da_above, ld_above] = above(s, 0);
      queue.run(member, s, [&](const Slice& cols) { run_step(s, 0, N(), da_above, ld_above, cols, db, 0); });
      if (!team.sync(member)) return;  // the products below and the next step's read every column of da_s
      queue.reset(member, s);
      if (dx_in_loop) {  // past the barrier, while the next step starts on the other members
        dx_queue->reset(member, s + 1);  // every member is done with step s + 1's dx (it came before step s)
        dx_queue->run(member, s, [&](const Slice& cols) { dx_step(s, 0, N(), cols); });
      }
    }
    if (need_dh0 && schedule.T > 0) {  // dh0 = da_0 W_h for the rows that ran, dh_last for the rest
      const auto [da, ld] = step_rows(0, 0);
      product(da, ld, carry, H(), schedule.running(0), product.slice(member), /*accumulate=*/false);
    }
  }
};

c10::optional<Tensor> computed(const Tensor& t) { return t.defined() ? c10::make_optional(t) : c10::nullopt; }

}  // namespace

std::tuple<Tensor, c10::optional<Tensor>, Tensor, c10::optional<Tensor>> recurrence_backward(
    const Tensor& dh_in, const Tensor& dh_last_in, const Tensor& wh_in, const Tensor& h_in, bool relu,
    at::IntArrayRef batch_sizes, bool reverse, bool need_dh0, const c10::optional<Tensor>& wx_in) {
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
  // dx_t = da_t W_x inside the loop when the panels run, each step is one block of rows and W_x fits in cache
  // beside W_h; else one matmul afterwards.
  const bool dx_in_loop = wx.defined() && schedule.aligned() && h.scalar_type() == at::kFloat &&
                          panels_available<float>() && panels_fit_in_cache(wx.size(1), H);
  const bool by_rows = h.scalar_type() == at::kFloat && split_by_rows<float>(N, dx_in_loop ? wx.size(1) : 0, H);
  Tensor dp = at::empty_like(h);  // h's memory layout, so dp and h flatten alike for the weight gradients
  // dh0's buffer also carries the gradient between gathered steps
  Tensor dh0 = need_dh0 || !schedule.aligned() ? dh_last.clone(at::MemoryFormat::Contiguous) : Tensor();
  Tensor dx;
  if (wx.defined()) {  // in dp's memory order: time-major, the transposed view of batch-major, or packed
    const int64_t D = wx.size(1);
    const bool batch_major = !shape.packed && h.stride(0) < h.stride(1);
    dx = shape.packed ? at::empty({h.size(0), D}, h.options())
                      : batch_major ? at::empty({N, T, D}, h.options()).transpose(0, 1) : at::empty({T, N, D}, h.options());
  }
  // db in double, 64-byte aligned like every CPU tensor, so that panels of 32 columns never share a cache line
  const at::TensorOptions in_double = at::TensorOptions().dtype(at::kDouble);
  Tensor db_sum = at::zeros({H}, in_double);
  double* const db_data = db_sum.data_ptr<double>();
  // Gathered steps alternate between two (N, H) buffers, so a step can overwrite one while the other threads
  // still read the previous step's from the other.
  Tensor gathered = schedule.aligned() ? Tensor() : at::empty({2, N, H}, dh_last.options());
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "recurrence_backward", [&] {
    const StepProduct<scalar_t> product(wh, N);
    const c10::optional<StepProduct<scalar_t>> input_product =
        dx_in_loop ? c10::make_optional(StepProduct<scalar_t>(wx, N)) : c10::nullopt;
    PanelQueue<scalar_t> queue(product, product.threads());
    c10::optional<PanelQueue<scalar_t>> dx_queue;
    if (dx_in_loop) dx_queue.emplace(*input_product, product.threads());
    const BackwardLoop<scalar_t> loop{
        shape, schedule, relu, dx_in_loop, need_dh0,
        Rows<scalar_t>(dh, shape, batch_sizes), Rows<scalar_t>(h, shape, batch_sizes),
        Rows<scalar_t>(dp, shape, batch_sizes), dh_stride,
        dh_last.data_ptr<scalar_t>(), dh_last.stride(0), dh_last.stride(1),
        dh0.defined() ? dh0.data_ptr<scalar_t>() : nullptr,
        {gathered.defined() ? gathered[0].data_ptr<scalar_t>() : nullptr,
         gathered.defined() ? gathered[1].data_ptr<scalar_t>() : nullptr},
        db_data,
        dx_in_loop ? c10::make_optional(Rows<scalar_t>(dx, shape, batch_sizes)) : c10::nullopt,
        product, input_product ? &*input_product : nullptr, queue, dx_queue ? &*dx_queue : nullptr};
    if (by_rows) {  // db per group of rows, then the groups' sums in group order: the same bits on any team
      const int64_t groups = (N + ROW_GROUP - 1) / ROW_GROUP, ld_db = (H + 7) / 8 * 8;  // whole cache lines
      Tensor db_group_sums = at::zeros({groups, ld_db}, in_double);
      double* const db_groups = db_group_sums.data_ptr<double>();
      for_row_chunks(N, row_split_threads(T, N, (dx_in_loop ? wx.size(1) : 0) + H, H),
                     [&](int64_t r0, int64_t r1) { loop.run_rows(r0, r1, db_groups, ld_db); });
      for (int64_t g = 0; g < groups; ++g) {
        for (int64_t j = 0; j < H; ++j) db_data[j] += db_groups[g * ld_db + j];
      }
    } else {
      in_team(product.threads(), [&](TeamMember& member, Team& team) { loop.run(member, team); });
    }
    if (wx.defined() && !dx_in_loop) project_into(dx, dp, wx);
  });
  return {dp, need_dh0 ? computed(dh0) : c10::nullopt, db_sum.to(h.scalar_type()), computed(dx)};
}

}  // namespace torch_rnn_native
