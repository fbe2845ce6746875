"""torch_rnn.kernels, the fast in-place loops, in both their C++ and Python forms: every layout (time-major,
batch-major view, packed, reversed) against the reference functions of torch_rnn.functional, the input
projection inside the loops, and results that do not depend on the number of threads or on how the team
shares the work."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import BATCH_SIZES, DTYPES, NONLINEARITIES, randn, recurrence_inputs, seeded
from torch_rnn import functional as F
from torch_rnn.layout import batch_major, pack_padded, pad_packed, reverse_in_time
from torch_rnn import kernels, native

T, N, D, H = 4, 3, 5, 4


@pytest.fixture(params=["cpp", "python"])
def loops(request, monkeypatch):
    """Run the kernels' C++ loops (torch_rnn.native) or their Python loops."""
    if request.param == "python":
        monkeypatch.setenv("TORCH_RNN_NATIVE", "0")
    elif native.ops() is None:
        pytest.skip("the C++ loops are not built here (tests/test_native.py checks that they build)")
    return request.param


KERNEL_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
# (batch_sizes, (T, N, H)). Python loops: N * H = 4096 takes the sigmoid form of tanh, even with fewer rows running.
# C++ loops, float64: n * H * H >= 2**15 multiply-adds per step takes BLAS, fewer a plain loop (both in
# large_packed). float32 on AVX-512: 32-column panels, split between threads from 2**15 multiply-adds per step;
# unaligned_rows has rows that are not 64-byte aligned, a last panel of 6 columns, 8-row tiles and a 5-row rest.
KERNEL_CASES = [
    pytest.param(None, (T, N, H), id="small"),
    pytest.param(BATCH_SIZES, (5, 4, 3), id="small_packed"),
    pytest.param(None, (3, 64, 64), id="large"),
    pytest.param([64, 64, 40, 7], (4, 64, 64), id="large_packed"),
    pytest.param(None, (2, 80, 80), id="large_6400"),
    pytest.param([37, 30, 9], (3, 37, 70), id="unaligned_rows"),
]


def in_layout(x, layout, batch_sizes=None):
    """``x (T, N, H)`` as a time-major copy, as the (T, N, H) view of batch-major memory, or packed (R, H)."""
    if layout == "packed":
        return pack_padded(x, batch_sizes)
    return x.clone() if layout == "time_major" else x.transpose(0, 1).contiguous().transpose(0, 1)


def from_layout(x, layout, batch_sizes=None):
    return pad_packed(x, batch_sizes) if layout == "packed" else x


def reference_forward(p, h0, Wh, nonlinearity, batch_sizes, reverse):
    """The reference equations, on the reversed sequences for ``reverse``."""
    if not reverse:
        return F.recurrence_forward(p, h0, Wh, nonlinearity, batch_sizes)
    h, h_last = F.recurrence_forward(reverse_in_time(p, batch_sizes), h0, Wh, nonlinearity, batch_sizes)
    return reverse_in_time(h, batch_sizes), h_last


def reference_backward(dh, dh_last, h0, Wh, h, nonlinearity, batch_sizes, reverse):
    if not reverse:
        return F.recurrence_backward(dh, dh_last, h0, Wh, h, nonlinearity, batch_sizes)
    dp, dh0, dWh = F.recurrence_backward(reverse_in_time(dh, batch_sizes), dh_last, h0, Wh,
                                         reverse_in_time(h, batch_sizes), nonlinearity, batch_sizes)
    return reverse_in_time(dp, batch_sizes), dh0, dWh


def test_reverse_in_time_reverses_each_row_within_its_length():
    x = torch.arange(5 * 4, dtype=torch.float64).view(5, 4)  # (T, N)
    batch_sizes = [4, 3, 3, 1, 1]  # lengths 5, 3, 3, 1
    expected = x.clone()
    for i, length in enumerate([5, 3, 3, 1]):
        expected[:length, i] = x[:length, i].flip(0)
    assert torch.equal(reverse_in_time(x, batch_sizes), expected)
    assert torch.equal(reverse_in_time(x.unsqueeze(-1).expand(5, 4, 2), batch_sizes), expected.unsqueeze(-1).expand(5, 4, 2))
    assert torch.equal(reverse_in_time(x), x.flip(0))


LAYOUTS = ["time_major", "batch_major"]
# Every kernel case in every memory layout; packed (R, H) sequences exist only with batch_sizes.
KERNEL_LAYOUT_CASES = [
    pytest.param(layout, *case.values, id=f"{case.id}-{layout}")
    for case in KERNEL_CASES
    for layout in LAYOUTS + (["packed"] if case.values[0] is not None else [])
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout,batch_sizes,shape", KERNEL_LAYOUT_CASES)
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
def test_kernel_recurrence_forward_equals_reference(bias, reverse, nonlinearity, layout, batch_sizes, shape, dtype,
                                                    loops):
    p, h0, Wh, _, _ = recurrence_inputs(dtype, batch_sizes, seed=17, shape=shape)
    b = randn(p.shape[-1], dtype=dtype, gen=seeded(20)) if bias else None
    expected_h, expected_h_last = reference_forward(p if b is None else p + b, h0, Wh, nonlinearity, batch_sizes,
                                                    reverse)
    buffer = in_layout(p, layout, batch_sizes)
    h, h_last = kernels.recurrence_forward_(buffer, h0, Wh, nonlinearity, batch_sizes, reverse, bias=b)
    assert h.data_ptr() == buffer.data_ptr() and h.stride() == buffer.stride(), "the kernel writes h into p"
    h = from_layout(h, layout, batch_sizes)
    torch.testing.assert_close(h, expected_h, **KERNEL_TOL[dtype])
    torch.testing.assert_close(h_last, expected_h_last, **KERNEL_TOL[dtype])
    if batch_sizes is not None:
        for t, n in enumerate(batch_sizes):
            assert (h[t, n:] == 0).all(), "steps past a row's length are zero"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout,batch_sizes,shape", KERNEL_LAYOUT_CASES)
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_kernel_recurrence_backward_equals_reference(reverse, nonlinearity, layout, batch_sizes, shape, dtype, loops):
    p, h0, Wh, dh, dh_last = recurrence_inputs(dtype, batch_sizes, seed=18, shape=shape)
    h, _ = reference_forward(p, h0, Wh, nonlinearity, batch_sizes, reverse)
    expected_dp, expected_dh0, expected_dWh = reference_backward(dh, dh_last, h0, Wh, h, nonlinearity, batch_sizes, reverse)
    h, dh = in_layout(h, layout, batch_sizes), in_layout(dh, layout, batch_sizes)
    dh_before, dh_last_before, h_before = dh.clone(), dh_last.clone(), h.clone()
    dp, dh0, db, *_ = kernels.recurrence_backward_(dh, dh_last, h0, Wh, h, nonlinearity, batch_sizes, reverse)
    torch.testing.assert_close(from_layout(dp, layout, batch_sizes), expected_dp, **KERNEL_TOL[dtype])
    torch.testing.assert_close(db, expected_dp.sum((0, 1)), **KERNEL_TOL[dtype])
    torch.testing.assert_close(dh0, expected_dh0, **KERNEL_TOL[dtype])
    dWh = kernels.recurrence_weight_grad(dp, h0, h, batch_sizes, reverse)
    torch.testing.assert_close(dWh, expected_dWh, **KERNEL_TOL[dtype])
    assert torch.equal(dh, dh_before), "the incoming gradient must not be modified"
    assert torch.equal(dh_last, dh_last_before), "the incoming dh_last must not be modified"
    assert torch.equal(h, h_before)
    dp_alone, dh0_alone, db_alone, *_ = kernels.recurrence_backward_(dh, dh_last, h0, Wh, h, nonlinearity, batch_sizes,
                                                                 reverse, need_dh0=False)
    torch.testing.assert_close(dp_alone, dp, rtol=0, atol=0)
    torch.testing.assert_close(db_alone, db, rtol=0, atol=0)
    assert dh0_alone is None


def test_kernel_tanh_matches_tanh_on_both_sides_of_the_4096_switch():
    """``_tanh_via_sigmoid_`` switches to ``2 sigmoid(2x) - 1`` at 4096 elements: both sides agree with ``tanh``."""
    for numel in (4095, 4096):
        x = torch.linspace(-20, 20, numel, dtype=torch.float32)
        torch.testing.assert_close(kernels._tanh_via_sigmoid_(x.clone()), torch.tanh(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_kernel_recurrence_backward_takes_an_expanded_incoming_gradient(layout, loops):
    """``output.sum()`` sends an expanded gradient (stride 0); the C++ loop reads it a step at a time, and an
    expanded ``dh_last`` in place too."""
    p, h0, Wh, _, dh_last = recurrence_inputs(torch.float64, None, seed=19, shape=(4, 64, 64))
    h, _ = F.recurrence_forward(p, h0, Wh)
    dense = torch.full_like(h, 0.5)
    expected_dp, expected_dh0, *_ = kernels.recurrence_backward_(dense, dh_last, h0, Wh, in_layout(h, layout))
    dp, dh0, *_ = kernels.recurrence_backward_(torch.tensor(0.5, dtype=torch.float64).expand_as(h), dh_last, h0, Wh,
                                                 in_layout(h, layout))
    torch.testing.assert_close(dp, expected_dp, rtol=0, atol=0)
    torch.testing.assert_close(dh0, expected_dh0, rtol=0, atol=0)
    # h_n.sum() sends an expanded dh_last too, read in place as well
    expected_dp, expected_dh0, *_ = kernels.recurrence_backward_(dense, torch.full_like(dh_last, 0.25), h0, Wh,
                                                                   in_layout(h, layout))
    dp, dh0, *_ = kernels.recurrence_backward_(dense, torch.tensor(0.25, dtype=torch.float64).expand_as(dh_last), h0,
                                                 Wh, in_layout(h, layout))
    torch.testing.assert_close(dp, expected_dp, rtol=0, atol=0)
    torch.testing.assert_close(dh0, expected_dh0, rtol=0, atol=0)


def projection_inputs(dtype, batch_sizes, shape, D_, seed):
    """``x (T, N, D)`` and ``W_x (H, D)`` beside :func:`recurrence_inputs`."""
    g = seeded(seed)
    T_, N_, _ = shape
    return randn(T_, N_, D_, dtype=dtype, gen=g), randn(shape[-1], D_, dtype=dtype, gen=g) / D_ ** 0.5


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("layout,batch_sizes,shape", KERNEL_LAYOUT_CASES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("D_", [3, 100])
def test_kernel_loops_project_the_input_and_its_gradient_themselves(D_, reverse, layout, batch_sizes, shape, dtype,
                                                                    loops):
    """Given ``x`` and ``W_x``, the forward loop computes ``p_t = W_x x_t`` itself (ignoring ``p``'s contents,
    and ``x``'s past each row's length); the backward returns ``dx = dp W_x`` in ``h``'s layout, zero past each
    row's length; ``dW_x`` and ``dW_h`` are one matmul each over ``dp``."""
    p, h0, Wh, dh, dh_last = recurrence_inputs(dtype, batch_sizes, seed=21, shape=shape)
    x, Wx = projection_inputs(dtype, batch_sizes, shape, D_, seed=22)
    if batch_sizes is not None:  # padding steps of x hold garbage: they must not reach anything
        for t, n in enumerate(batch_sizes):
            x[t, n:] = float("nan")
    b = randn(shape[-1], dtype=dtype, gen=seeded(23))
    x_clean = x.nan_to_num(0.0)
    expected_h, expected_h_last = reference_forward(x_clean @ Wx.T + b, h0, Wh, "tanh", batch_sizes, reverse)
    buffer = torch.full_like(in_layout(p, layout, batch_sizes), float("nan"))
    h, h_last = kernels.recurrence_forward_(buffer, h0, Wh, "tanh", batch_sizes, reverse, bias=b,
                                            x=in_layout(x, layout, batch_sizes), Wx=Wx)
    torch.testing.assert_close(from_layout(h, layout, batch_sizes), expected_h, **KERNEL_TOL[dtype])
    torch.testing.assert_close(h_last, expected_h_last, **KERNEL_TOL[dtype])

    expected_dp, expected_dh0, expected_dWh = reference_backward(dh, dh_last, h0, Wh, expected_h, "tanh", batch_sizes,
                                                                 reverse)
    grads = kernels.recurrence_backward_(in_layout(dh, layout, batch_sizes), dh_last, h0, Wh, h, "tanh", batch_sizes,
                                         reverse, Wx=Wx)
    torch.testing.assert_close(from_layout(grads.dp, layout, batch_sizes), expected_dp, **KERNEL_TOL[dtype])
    torch.testing.assert_close(grads.dh0, expected_dh0, **KERNEL_TOL[dtype])
    torch.testing.assert_close(grads.db, expected_dp.sum((0, 1)), **KERNEL_TOL[dtype])
    dx = grads.dx
    if loops == "cpp":
        assert dx.dim() == 2 or batch_major(dx) == batch_major(h), "dx lies like h in memory"
    torch.testing.assert_close(from_layout(dx, layout, batch_sizes), expected_dp @ Wx, **KERNEL_TOL[dtype])
    # one matmul each over dp, as RNNFunction.backward takes them
    dWx = from_layout(grads.dp, layout, batch_sizes).reshape(-1, shape[-1]).T @ x_clean.reshape(-1, D_)
    dWh = kernels.recurrence_weight_grad(grads.dp, h0, h, batch_sizes, reverse)
    expected_dWx = expected_dp.reshape(-1, shape[-1]).T @ x_clean.reshape(-1, D_)
    # sums over every step and row, in another order than the reference's: float32 rounding grows with them
    weight_tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else KERNEL_TOL[dtype]
    torch.testing.assert_close(dWx, expected_dWx, **weight_tol)
    torch.testing.assert_close(dWh, expected_dWh, **weight_tol)


def loop_results(threads, p, h0, Wh, dh, dh_last, batch_sizes, reverse, **projection):
    """Everything the C++ loops return for one forward and one backward, run on ``threads`` threads (only the
    loops' own results: the matmuls before or after a loop are BLAS's, whose sums may split differently
    between threads)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        h, h_last = kernels.recurrence_forward_(p.clone(), h0, Wh, "tanh", batch_sizes, reverse, **projection)
        grads = kernels.recurrence_backward_(dh, dh_last, h0, Wh, h, "tanh", batch_sizes, reverse,
                                             Wx=projection.get("Wx"))
    finally:
        torch.set_num_threads(previous)
    return (h, h_last, *grads)


def assert_same_bits(one, several):
    assert len(one) == len(several)
    for a, b in zip(one, several):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("layout,batch_sizes,shape", KERNEL_LAYOUT_CASES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_kernel_results_do_not_depend_on_the_number_of_threads(reverse, layout, batch_sizes, shape):
    """The C++ loops split each step's columns between threads; every element is computed the same way
    whoever computes it, so one thread and several give identical bits."""
    if native.ops() is None:
        pytest.skip("the C++ loops are not built here")
    p, h0, Wh, dh, dh_last = recurrence_inputs(torch.float32, batch_sizes, seed=24, shape=shape)
    x, Wx = projection_inputs(torch.float32, batch_sizes, shape, 50, seed=25)
    aligned = not reverse or batch_sizes is None or len(set(batch_sizes)) == 1  # one block of rows per step
    projection = dict(x=in_layout(x, layout, batch_sizes), Wx=Wx) if aligned else {}
    inputs = (in_layout(p, layout, batch_sizes), h0, Wh, in_layout(dh, layout, batch_sizes), dh_last, batch_sizes,
              reverse)
    assert_same_bits(loop_results(1, *inputs, **projection), loop_results(3, *inputs, **projection))


@pytest.mark.parametrize("layout,batch_sizes,shape", KERNEL_LAYOUT_CASES)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_kernel_results_do_not_change_when_the_team_shrinks_to_one_thread(reverse, layout, batch_sizes, shape):
    """On a busy machine a team of threads that keeps waiting for a member shrinks to its first member, which
    finishes the loop alone (csrc ``Team``). With no wait tolerated it shrinks at the second step of every loop,
    and the results keep their bits."""
    if native.ops() is None:
        pytest.skip("the C++ loops are not built here")
    p, h0, Wh, dh, dh_last = recurrence_inputs(torch.float32, batch_sizes, seed=26, shape=shape)
    x, Wx = projection_inputs(torch.float32, batch_sizes, shape, 50, seed=27)
    aligned = not reverse or batch_sizes is None or len(set(batch_sizes)) == 1
    projection = dict(x=in_layout(x, layout, batch_sizes), Wx=Wx) if aligned else {}
    inputs = (in_layout(p, layout, batch_sizes), h0, Wh, in_layout(dh, layout, batch_sizes), dh_last, batch_sizes,
              reverse)
    with native.team_settings(straggle_ms=0, probe_s=0):
        shrunk = loop_results(3, *inputs, **projection)
    assert_same_bits(loop_results(1, *inputs, **projection), shrunk)


# 7 panels of 32 columns (the last one 8 wide) over 12 steps. With 12 rows (under the 32 a split by rows needs)
# every loop product runs on a team that shares each step's panels; with 45 rows the loops split the rows, in
# chunks of whole groups of 4 (the last group 1 row). Lengths 1..T make the reverse direction gather rows from
# different times.
STEALING_SHAPE = (12, 12, 200)
SPLITS = {"columns": 12, "rows": 45}
STEALING_CASES = [
    pytest.param(False, False, id="forward"),
    pytest.param(False, True, id="reverse"),
    pytest.param(True, True, id="reverse_gathered"),
]


def stealing_inputs(lengths, reverse, rows=SPLITS["columns"]):
    T_, _, H_ = STEALING_SHAPE
    shape = (T_, rows, H_)
    batch_sizes = None
    if lengths:  # rows sorted by length, longest first
        drawn = sorted(torch.randint(1, T_ + 1, (rows,), generator=torch.Generator().manual_seed(7)).tolist(),
                       reverse=True)
        batch_sizes = [sum(length > t for length in drawn) for t in range(T_)]
    p, h0, Wh, dh, dh_last = recurrence_inputs(torch.float32, batch_sizes, seed=27, shape=shape)
    x, Wx = projection_inputs(torch.float32, batch_sizes, shape, 70, seed=28)
    projection = dict(x=x, Wx=Wx) if not lengths else {}
    return (p, h0, Wh, dh, dh_last, batch_sizes, reverse), projection


@pytest.mark.parametrize("threads", [2, 5])
@pytest.mark.parametrize("split", SPLITS.keys())
@pytest.mark.parametrize("lengths,reverse", STEALING_CASES)
def test_kernel_results_do_not_depend_on_which_thread_takes_each_panel(lengths, reverse, split, threads):
    """A team hands out each step's panels as they come: each thread first takes its own share, then what is
    left of the others' (so a thread slowed down by the machine does not hold up every step). Who computes
    which panel then changes from run to run (on an idle 2-core machine a probe counted 840 panels of 10,000
    taken from the other thread's share; more threads than cores take many more); every run must still give
    one thread's bits. A loop split by rows hands out its chunks of rows the same way, and sums db per group of
    4 rows in a fixed order, so its bits do not depend on who took which chunk either."""
    if native.ops() is None:
        pytest.skip("the C++ loops are not built here")
    inputs, projection = stealing_inputs(lengths, reverse, SPLITS[split])
    expected = loop_results(1, *inputs, **projection)
    for _ in range(10):
        assert_same_bits(expected, loop_results(threads, *inputs, **projection))


def test_kernel_team_smaller_than_asked_for_computes_every_panel():
    """OpenMP may start fewer threads than asked (OMP_THREAD_LIMIT, nested parallel regions): the threads that
    came then take every panel, step after step, and the results are one thread's."""
    if native.ops() is None:
        pytest.skip("the C++ loops are not built here")
    script = textwrap.dedent("""
        import torch
        from test_kernels import SPLITS, STEALING_CASES, assert_same_bits, loop_results, stealing_inputs
        for case in STEALING_CASES:
            for rows in SPLITS.values():
                inputs, projection = stealing_inputs(*case.values, rows)
                assert_same_bits(loop_results(1, *inputs, **projection), loop_results(2, *inputs, **projection))
        print("same bits")
    """)
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, OMP_THREAD_LIMIT="1",
               PYTHONPATH=os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "same bits" in run.stdout, run.stdout + run.stderr


@pytest.mark.parametrize("N_", [9, 40], ids=["split_by_columns", "split_by_rows"])
def test_kernel_backward_of_an_empty_sequence(N_, loops):
    """T = 0 (the modules reject it like nn.RNN; the kernels still answer): no step, so dh0 = dh_last and
    every other gradient is zero, whichever way the C++ loop shares its work (float32: 40 rows split by rows)
    (recurrence_weight_grad used to index a step that does not exist)."""
    H_, D_ = 15, 7
    g = seeded(26)
    f32 = dict(dtype=torch.float32, gen=g)
    dh_last, h0, Wh = randn(N_, H_, **f32), randn(N_, H_, **f32), randn(H_, H_, **f32)
    grads = kernels.recurrence_backward_(torch.zeros(0, N_, H_), dh_last, h0, Wh, torch.zeros(0, N_, H_), "tanh",
                                         None, False, Wx=randn(H_, D_, **f32))
    torch.testing.assert_close(grads.dh0, dh_last)
    assert grads.dx.shape == (0, N_, D_)
    dWx = grads.dp.reshape(-1, H_).T @ torch.zeros(0, D_)
    dWh = kernels.recurrence_weight_grad(grads.dp, h0, torch.zeros(0, N_, H_))
    for zero in (grads.db, dWx, dWh):
        assert zero.shape[-1] in (H_, D_) and not zero.any()

