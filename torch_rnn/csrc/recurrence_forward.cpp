// The forward loop (recurrence.h).
#include "recurrence.h"

#include "activations.h"
#include "panels.h"
#include "sequence.h"
#include "step_product.h"
#include "team.h"

#include <utility>

namespace torch_rnn_native {

Tensor recurrence_forward_(Tensor p, const Tensor& h0_in, const Tensor& wh_t_in, const c10::optional<Tensor>& bias_in,
                           bool relu, at::IntArrayRef batch_sizes, bool reverse, const c10::optional<Tensor>& x_in,
                           const c10::optional<Tensor>& wx_t_in) {
  const Shape shape = check_inputs("recurrence_forward_", p, h0_in, wh_t_in, batch_sizes);
  TORCH_CHECK(p.stride(-1) == 1 && (!shape.packed || p.is_contiguous()),
              "recurrence_forward_: p's rows must be contiguous, got strides ", p.strides());
  const int64_t T = shape.T, N = shape.N, H = shape.H;
  const Tensor h0 = h0_in.contiguous();
  const Tensor& wh_t = wh_t_in;  // any strides: StepProduct packs it as it lies
  const Tensor bias = bias_in.has_value() && bias_in->defined() ? bias_in->contiguous() : Tensor();
  TORCH_CHECK(!bias.defined() || (bias.sizes() == at::IntArrayRef({H}) && bias.scalar_type() == p.scalar_type()),
              "recurrence_forward_: expected a bias of shape (", H, ") and dtype ", p.scalar_type(), ", got ",
              bias.defined() ? bias.sizes() : at::IntArrayRef{}, " ", bias.defined() ? bias.scalar_type() : p.scalar_type());
  const bool project = x_in.has_value() && x_in->defined();
  TORCH_CHECK(project == (wx_t_in.has_value() && wx_t_in->defined()),
              "recurrence_forward_: x and wx_t come together");
  Tensor x, wx_t;
  if (project) {
    x = rows_last_contiguous(*x_in), wx_t = *wx_t_in;  // wx_t: any strides, as wh_t
    TORCH_CHECK(x.dim() == p.dim() && x.sizes().slice(0, x.dim() - 1) == p.sizes().slice(0, p.dim() - 1) &&
                    x.scalar_type() == p.scalar_type() && x.device().is_cpu(),
                "recurrence_forward_: x must be a CPU tensor of p's dtype and leading shape ",
                p.sizes().slice(0, p.dim() - 1), ", got ", x.sizes(), " ", x.scalar_type());
    TORCH_CHECK(wx_t.dim() == 2 && wx_t.size(0) == x.size(-1) && wx_t.size(1) == H &&
                    wx_t.scalar_type() == p.scalar_type() && wx_t.device().is_cpu(),
                "recurrence_forward_: expected a CPU wx_t of shape (", x.size(-1), ", ", H, ") and dtype ",
                p.scalar_type(), ", got ", wx_t.sizes(), " ", wx_t.scalar_type(), " on ", wx_t.device());
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
    // Where rows r0.. of step s's states lie, and how far apart: in place in the output when the step is one block
    // of rows, else (rows at different times) gathered into rows r0.. of a buffer.
    const auto step_rows = [&](int64_t s, int64_t r0) -> std::pair<scalar_t*, int64_t> {
      if (schedule.aligned()) return {rows(reverse ? T - 1 - s : s, r0), rows.sn};
      return {gathered[s % 2] + r0 * H, H};
    };
    // Step s on rows [r0, r1) and the columns cols: a_s = p_s (or x_s W_x^T) + h_{s-1} W_h^T, h_s = f(a_s), rows
    // past their length zero; prev holds rows r0.. of h_{s-1}, ld_prev apart.
    const auto run_step = [&](int64_t s, int64_t r0, int64_t r1, const scalar_t* prev, int64_t ld_prev,
                              const Slice& cols) {
      const int64_t m = std::clamp<int64_t>(schedule.running(s) - r0, 0, r1 - r0);  // rows sorted by length
      const int64_t c0 = cols.c0, width = cols.width();
      const auto [out, ld] = step_rows(s, r0);
      if (!shape.packed) {
        for (int64_t i = r0 + m; i < r1; ++i) std::fill_n(rows(s, i) + c0, width, scalar_t(0));  // padding: zero
      }
      if (!schedule.aligned()) {  // a_s = p_s + h_{s-1} W_h^T, each row's p_s from its own time
        for (int64_t i = 0; i < m; ++i) std::copy_n(rows(schedule.time(s, r0 + i), r0 + i) + c0, width, out + i * H + c0);
        product(prev, ld_prev, out, ld, m, cols, /*accumulate=*/true);
      } else if (project_in_loop) {  // a_s = x_s W_x^T + h_{s-1} W_h^T
        (*input_product)((*x_rows)(reverse ? T - 1 - s : s, r0), x_rows->sn, product, prev, ld_prev, out, ld, m, cols,
                         /*accumulate=*/false);
      } else {  // a_s = p_s + h_{s-1} W_h^T
        product(prev, ld_prev, out, ld, m, cols, /*accumulate=*/true);
      }
      activate(out + c0, ld, b == nullptr ? nullptr : b + c0, m, width, relu);  // h_s = f(a_s)
      if (!schedule.aligned()) {
        for (int64_t i = 0; i < m; ++i) std::copy_n(out + i * H + c0, width, rows(schedule.time(s, r0 + i), r0 + i) + c0);
      }
      for (int64_t i = std::max(schedule.finishing_from(s), r0); i < r0 + m; ++i) {  // rows ending at s
        std::copy_n(out + (i - r0) * ld + c0, width, last + i * H + c0);
      }
    };
    if (split_by_rows<scalar_t>(N, project_in_loop ? x.size(-1) : 0, H)) {  // each chunk of rows through every step
      const int64_t K = (project_in_loop ? x.size(-1) : 0) + H;
      for_row_chunks(N, row_split_threads(T, N, K, H), [&](int64_t r0, int64_t r1) {
        for (int64_t s = 0; s < T; ++s) {
          const auto [prev, ld_prev] = s == 0 ? std::make_pair(h0.data_ptr<scalar_t>() + r0 * H, H) : step_rows(s - 1, r0);
          run_step(s, r0, r1, prev, ld_prev, product.slice(TeamMember{0, 1}));
        }
      });
      return;
    }
    PanelQueue<scalar_t> queue(product, product.threads());
    in_team(product.threads(), [&](TeamMember& member, Team& team) {  // each step's columns shared out
      for (int64_t s = 0; s < T; ++s) {
        const auto [prev, ld_prev] = s == 0 ? std::make_pair(h0.data_ptr<scalar_t>(), H) : step_rows(s - 1, 0);
        queue.run(member, s, [&](const Slice& cols) { run_step(s, 0, N, prev, ld_prev, cols); });
        if (!team.sync(member)) return;  // the next step's product reads every column of this one
        queue.reset(member, s);
      }
    });
  });
  return h_last;
}

}  // namespace torch_rnn_native
