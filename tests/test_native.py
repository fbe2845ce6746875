"""torch_rnn.native: the C++ loops build wherever a C++ compiler exists, their float32 tanh is accurate, bad
arguments give clear errors, and a failed build falls back to the Python loops with a warning.
(tests/test_kernels.py runs the kernels in both C++ and Python against the reference functions.)"""
from __future__ import annotations

import shutil
import warnings

import pytest
import torch

from torch_rnn import RNN, native

needs_compiler = pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler on this machine")


@needs_compiler
def test_the_cpp_loops_build_and_load_where_a_compiler_exists():
    assert native.ops() is not None


@needs_compiler
def test_cpp_float32_tanh_within_3_ulp_of_exact_tanh_and_nan_propagates():
    x = torch.cat([torch.linspace(-20, 20, 200_001), torch.logspace(-10, 1, 2001), -torch.logspace(-10, 1, 2001),
                   torch.tensor([0.0, float("inf"), -float("inf")])])
    h = x.view(-1, 1, 1).clone()  # T steps of one unit with W_h = 0: h_t = tanh(p_t)
    native.ops().recurrence_forward_(h, torch.zeros(1, 1), torch.zeros(1, 1), None, False, [], False)
    expected = torch.tanh(x.double())
    error = (h.view(-1).double() - expected).abs()
    assert (error <= 3 * 2.0 ** -23 * expected.abs()).all()  # relative error under 3 float32 ulp
    nan = torch.full((1, 1, 2), float("nan"))
    native.ops().recurrence_forward_(nan, torch.zeros(1, 2), torch.zeros(2, 2), None, False, [], False)
    assert nan.isnan().all()


def _same_values_other_strides(w: torch.Tensor, layout: str) -> torch.Tensor:
    """``w``'s values in another memory layout: a transposed view, a view with non-unit strides in both
    dimensions, or a view inside a larger buffer (row stride beyond the width)."""
    if layout == "transposed view":
        return w.T.contiguous().T
    big = torch.zeros(2 * w.shape[0], 3 * w.shape[1], dtype=w.dtype)
    view = big[::2, ::3] if layout == "strided in both dimensions" else big[: w.shape[0], 5 : 5 + w.shape[1]]
    return view.copy_(w)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("layout", ["transposed view", "strided in both dimensions", "inside a larger buffer"])
def test_forward_loop_takes_weights_of_any_strides(layout, dtype):
    """The C++ forward loop packs W_h^T and W_x^T as they lie in memory (float64 and CPUs without AVX-512: a
    contiguous copy for BLAS): the same bits as from contiguous weights. 40 rows (split by rows), H = 37 (a panel
    of 5 columns), and an expanded (stride-0) W_x^T."""
    T, N, D, H = 5, 40, 7, 37
    g = torch.Generator().manual_seed(3)
    x, h0 = torch.randn(T, N, D, generator=g, dtype=dtype), torch.randn(N, H, generator=g, dtype=dtype)
    wh_t, wx_t = (torch.randn(*shape, generator=g, dtype=dtype) * 0.3 for shape in ((H, H), (D, H)))
    b = torch.randn(H, generator=g, dtype=dtype)
    for wx, wx_strided in ((wx_t, _same_values_other_strides(wx_t, layout)), (wx_t[:1].expand(D, H),) * 2):
        results = []
        for h_weight, x_weight in ((wh_t, wx.contiguous()), (_same_values_other_strides(wh_t, layout), wx_strided)):
            h = torch.empty(T, N, H, dtype=dtype)
            h_last = native.ops().recurrence_forward_(h, h0, h_weight, b, False, [], False, x, x_weight)
            results.append((h, h_last))
        torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)


@needs_compiler
@pytest.mark.parametrize("args, message", [
    (lambda: (torch.zeros(3, 2, 4), torch.zeros(2, 5), torch.zeros(4, 4)), "expected a state of shape (2, 4)"),
    (lambda: (torch.zeros(3, 2, 4), torch.zeros(2, 4), torch.zeros(4, 3)), "expected W_h of shape (4, 4)"),
    (lambda: (torch.zeros(3, 2, 4), torch.zeros(2, 4, dtype=torch.float64), torch.zeros(4, 4)), "dtype"),
])
def test_cpp_loops_name_a_bad_argument(args, message):
    with pytest.raises(RuntimeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        native.ops().recurrence_forward_(*args(), None, False, [], False)
    with pytest.raises(RuntimeError, match="batch_sizes must be non-increasing"):
        native.ops().recurrence_forward_(torch.zeros(2, 2, 4), torch.zeros(2, 4), torch.zeros(4, 4), None, False, [1, 2], False)


def test_a_failed_build_warns_once_and_the_python_loops_run(monkeypatch):
    def failing_build(verbose=False):
        raise RuntimeError("Error building extension 'torch_rnn_native'")

    monkeypatch.setattr(native, "build", failing_build)
    monkeypatch.setattr(native, "_ops", None)
    monkeypatch.setattr(native, "_tried", False)
    torch.manual_seed(0)
    rnn = RNN(3, 4, bidirectional=True)
    x = torch.randn(5, 2, 3, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="could not be built.*Error building extension"):
        output, _ = rnn(x)
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        output.sum().backward()
        expected, _ = rnn(x)
    assert later == [], "the build is tried and reported once per process"
    torch.testing.assert_close(output, expected)


def test_torch_rnn_native_0_selects_the_python_loops(monkeypatch):
    monkeypatch.setenv("TORCH_RNN_NATIVE", "0")
    assert native.ops() is None


@needs_compiler
def test_cpp_forward_names_a_bad_bias():
    with pytest.raises(RuntimeError, match=r"expected a bias of shape \(4\)"):
        native.ops().recurrence_forward_(torch.zeros(3, 2, 4), torch.zeros(2, 4), torch.zeros(4, 4), torch.zeros(3),
                                         False, [], False)


@needs_compiler
def test_cpp_forward_names_a_bad_input_weight():
    message = r"expected a CPU wx_t of shape \(5, 4\) and dtype Float, got \[5, 3\] Float on cpu"
    with pytest.raises(RuntimeError, match=message):
        native.ops().recurrence_forward_(torch.zeros(3, 2, 4), torch.zeros(2, 4), torch.zeros(4, 4), None, False, [],
                                         False, torch.zeros(3, 2, 5), torch.zeros(5, 3))


@needs_compiler
def test_cpp_backward_names_a_gradient_of_the_wrong_dtype():
    h = torch.zeros(3, 2, 4)
    with pytest.raises(RuntimeError, match="dh must be a CPU tensor of h's dtype Float, got Double"):
        native.ops().recurrence_backward(torch.zeros(3, 2, 4, dtype=torch.float64), torch.zeros(2, 4),
                                         torch.zeros(4, 4), h, False, [], False, True)


@needs_compiler
@pytest.mark.parametrize("batch_sizes", [[], [6, 4, 2, 1]], ids=["aligned", "gathered"])
def test_cpp_backward_returns_dh0_only_when_asked(batch_sizes):
    """dh0 is None unless need_dh0, also where the reverse direction of rows of different lengths keeps its carry
    in dh0's buffer (which must not come back holding the carry into step 0)."""
    g = torch.Generator().manual_seed(0)
    h, dh, dh_last, Wh = (torch.randn(*shape, generator=g) for shape in ((4, 6, 8), (4, 6, 8), (6, 8), (8, 8)))
    h = h.tanh()
    if batch_sizes:  # padding past each row's length, as the forward leaves it
        for t, n in enumerate(batch_sizes):
            h[t, n:] = 0
    wanted = native.ops().recurrence_backward(dh, dh_last, Wh, h, False, batch_sizes, True, True)[1]
    not_wanted = native.ops().recurrence_backward(dh, dh_last, Wh, h, False, batch_sizes, True, False)[1]
    assert wanted.shape == (6, 8) and not_wanted is None


@pytest.mark.parametrize("log, reason", [
    ("Error building extension 'x': [1/2] c++ -c a.cpp\n/bin/sh: 1: c++: not found\nninja: build stopped", "/bin/sh: 1: c++: not found"),
    ("Error building extension 'x': [1/2] c++ -c a.cpp\na.cpp:3:1: error: expected ';'\nninja: build stopped", "a.cpp:3:1: error: expected ';'"),
    ("something odd\nlast line", "last line"),
])
def test_the_fallback_warning_names_the_telling_line_of_the_build_log(log, reason):
    assert native._reason(RuntimeError(log)) == reason


def test_team_settings_apply_within_the_block_and_name_a_bad_value():
    if native.ops() is None:
        pytest.skip("the C++ loops are not built here")
    before = torch.ops.torch_rnn.team_settings(-1, -1)  # reads them: a negative value keeps a setting
    with native.team_settings(straggle_ms=2.5, probe_s=float("inf")):
        assert torch.ops.torch_rnn.team_settings(-1, -1) == [2_500_000, 2 ** 62]
    assert torch.ops.torch_rnn.team_settings(-1, -1) == before
    with pytest.raises(ValueError, match="straggle_ms=-1"):
        with native.team_settings(straggle_ms=-1):
            pass


def test_team_settings_say_when_the_cpp_loops_are_missing(monkeypatch):
    monkeypatch.setattr(native, "ops", lambda: None)
    with pytest.raises(RuntimeError, match="team_settings needs the C\\+\\+ loops"):
        with native.team_settings(probe_s=1):
            pass


@pytest.mark.parametrize("batch_first", [False, True])
def test_weights_beyond_the_cache_take_the_input_products_outside_the_loop(batch_first):
    """At (D + H) * H * 4 bytes over 2 MiB (here 2.9 MB) the C++ loops leave x_t W_x^T and dx to one matmul each
    and split each step's columns between threads (csrc ``panels_fit_in_cache``); the results still equal
    nn.RNN's."""
    if native.ops() is None:
        pytest.skip("the C++ loops are not built here")
    torch.manual_seed(0)
    ours, reference = RNN(600, 600, batch_first=batch_first), torch.nn.RNN(600, 600, batch_first=batch_first)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(40, 3, 600) if batch_first else torch.randn(3, 40, 600)
    results = []
    for rnn in (ours, reference):
        inputs = x.clone().requires_grad_()
        output, h_n = rnn(inputs)
        (output.square().sum() + h_n.sum()).backward()
        results.append([output, h_n, inputs.grad, *(p.grad for p in rnn.parameters())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_own_operations_take_one_thread_for_small_steps_and_on_a_busy_machine():
    """torch_rnn/threads.py: one intra-op thread around the loops for a step under 2^15 multiply-adds, and while
    the C++ loops have seen a team held up; the user's setting otherwise, and back after the block."""
    from torch_rnn import threads

    if native.ops() is None:
        pytest.skip("the C++ loops are not built here")
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threads.own_threads(1, 32, 32):  # 2,048 multiply-adds a step
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with threads.own_threads(64, 128, 256):
            assert torch.get_num_threads() == 2
        if not torch.ops.torch_rnn.panels_available():
            return  # the loops run in one thread on this CPU: no team to be held up
        with native.team_settings(straggle_ms=0, probe_s=60):  # every wait counts: the first team shrinks
            RNN(128, 256)(torch.randn(10, 8, 128))  # 8 rows: too few to split by rows, a team splits the columns
            assert threads.machine_busy()
            with threads.own_threads(64, 128, 256):
                assert torch.get_num_threads() == 1
        assert not threads.machine_busy()  # new settings end the one-thread period
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_operations_between_layers_take_one_thread_on_a_busy_machine(busy, monkeypatch):
    """The module's own operations between the layers' loops (here: concatenating the two directions) run
    under torch_rnn.threads.own_threads too: one thread while the machine is busy, the user's setting otherwise."""
    from torch_rnn import modules, threads

    seen = []

    def recording_cat(outputs):
        seen.append(torch.get_num_threads())
        return torch.cat(outputs, -1)

    monkeypatch.setattr(threads, "machine_busy", lambda: busy)
    monkeypatch.setattr(modules, "cat_features", recording_cat)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        RNN(128, 256, num_layers=2, bidirectional=True)(torch.randn(5, 64, 128))
    finally:
        torch.set_num_threads(previous)
    assert seen == ([1, 1] if busy else [2, 2])


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_packing_gradient_takes_one_thread_on_a_busy_machine(busy, monkeypatch):
    """The gradient of packing rows by lengths (layout.PackRows), which autograd runs outside any layer, takes one
    thread while the machine is busy, the user's setting otherwise."""
    from torch_rnn import threads

    seen = []
    index_copy = torch.Tensor.index_copy

    def recording_index_copy(self, *args):
        seen.append(torch.get_num_threads())
        return index_copy(self, *args)

    monkeypatch.setattr(threads, "machine_busy", lambda: busy)
    x = torch.randn(3, 6, 5, requires_grad=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        output, _ = RNN(5, 4, batch_first=True)(x, lengths=[6, 2, 4])
        with monkeypatch.context() as patch:
            patch.setattr(torch.Tensor, "index_copy", recording_index_copy)
            output.sum().backward()
    finally:
        torch.set_num_threads(previous)
    assert seen == ([1] if busy else [2])

