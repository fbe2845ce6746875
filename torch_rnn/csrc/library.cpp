// The torch_rnn:: operators of the C++ loops: schemas, and the CPU kernels registered for the CPU dispatch key.
// torch_rnn/ops.py registers a fake kernel for each (shapes, strides and dtypes without data), so
// FakeTensorMode, torch.compile and torch.library.opcheck can run them.
#include <torch/library.h>

#include "panels.h"
#include "recurrence.h"
#include "team.h"

using namespace torch_rnn_native;

TORCH_LIBRARY(torch_rnn, m) {
  m.def("recurrence_forward_(Tensor(a!) p, Tensor h0, Tensor wh_t, Tensor? bias, bool relu, int[] batch_sizes,"
        " bool reverse, Tensor? x=None, Tensor? wx_t=None) -> Tensor");
  m.def("recurrence_backward(Tensor dh, Tensor dh_last, Tensor wh, Tensor h, bool relu, int[] batch_sizes,"
        " bool reverse, bool need_dh0, Tensor? wx=None) -> (Tensor dp, Tensor? dh0, Tensor db, Tensor? dx)");
  // Queries of the machine and settings, not kernels (no dispatch key).
  m.def("panels_available() -> bool", [] { return panels_available<float>(); });
  m.def("team_settings(int straggle_ns, int probe_ns) -> int[]", &team_settings);  // team.h
  m.def("machine_busy() -> bool", &machine_busy);
}

TORCH_LIBRARY_IMPL(torch_rnn, CPU, m) {
  m.impl("recurrence_forward_", &recurrence_forward_);
  m.impl("recurrence_backward", &recurrence_backward);
}
