// sequence.h's argument checks and the one-matmul projection of a whole sequence.
#include "sequence.h"

namespace torch_rnn_native {

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

}  // namespace torch_rnn_native
