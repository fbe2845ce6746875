"""torch_rnn.functional: every hand-written backward against torch autograd applied to its forward and against
central finite differences (float64), and the sequence functions against step-by-step loops and torch.func.jvp.
tests/test_kernels.py checks the fast kernels against these functions."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

from helpers import (BATCH_SIZES, DTYPES, NONLINEARITIES, assert_grads_close, autograd_grads, numeric_grads, randn,
                     recurrence_inputs, seeded)
from torch_rnn import functional as F

# hand-written backward vs autograd on the same forward
AUTOGRAD_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}
NUMERIC_TOL = dict(rtol=1e-6, atol=1e-7)  # central differences in float64, eps = 1e-6

T, N, D, H = 4, 3, 5, 4


def check_backward(forward, backward, inputs, douts, dtype):
    """``backward`` equals autograd on ``forward`` (in ``dtype``) and, in float64, central differences."""
    expected = autograd_grads(forward, inputs, douts)
    assert_grads_close(backward(), expected, **AUTOGRAD_TOL[dtype])
    if dtype == torch.float64:
        assert_grads_close(backward(), numeric_grads(forward, inputs, douts), **NUMERIC_TOL)


# ----------------------------------------------------------------------------------------------------------
# One step and the whole layer
# ----------------------------------------------------------------------------------------------------------
#: One step (x (N, D), h_{t-1} (N, H)) and the whole layer (x (N, T, D), h0 (N, H)): the forward, its backward,
#: the shape of x and of the upstream gradient, and the scale of W_h (0.5 keeps T steps of relu from growing).
LAYERS = {"step": (F.rnn_step_forward, F.rnn_step_backward, (N, D), (N, H), 1.0),
          "sequence": (F.rnn_forward, F.rnn_backward, (N, T, D), (N, T, H), 0.5)}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("layer", LAYERS)
def test_rnn_step_and_layer_backward(layer, nonlinearity, bias, dtype):
    forward_fn, backward_fn, x_shape, dout_shape, wh_scale = LAYERS[layer]
    g = seeded(1)
    x, h, Wx = randn(*x_shape, dtype=dtype, gen=g), randn(N, H, dtype=dtype, gen=g), randn(H, D, dtype=dtype, gen=g)
    Wh = randn(H, H, dtype=dtype, gen=g) * wh_scale
    b = randn(H, dtype=dtype, gen=g) if bias else None
    dout = randn(*dout_shape, dtype=dtype, gen=g)

    def forward(*args):
        return forward_fn(*args, nonlinearity)[0]

    def backward():
        return backward_fn(dout, forward_fn(x, h, Wx, Wh, b, nonlinearity)[1])

    check_backward(forward, backward, [x, h, Wx, Wh, b], [dout], dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_rnn_forward_equals_looping_rnn_step_forward(nonlinearity, dtype):
    g = seeded(3)
    x, h0 = randn(N, T, D, dtype=dtype, gen=g), randn(N, H, dtype=dtype, gen=g)
    Wx, Wh, b = randn(H, D, dtype=dtype, gen=g), randn(H, H, dtype=dtype, gen=g), randn(H, dtype=dtype, gen=g)
    h, _ = F.rnn_forward(x, h0, Wx, Wh, b, nonlinearity)
    assert h.shape == (N, T, H) and h.dtype == dtype
    prev_h = h0
    for t in range(T):
        prev_h, _ = F.rnn_step_forward(x[:, t], prev_h, Wx, Wh, b, nonlinearity)
        torch.testing.assert_close(h[:, t], prev_h, **AUTOGRAD_TOL[dtype])


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_rnn_forward_equals_torch_nn_rnn(nonlinearity):
    g = seeded(4)
    x, h0 = randn(N, T, D, gen=g), randn(N, H, gen=g)
    rnn = torch.nn.RNN(D, H, nonlinearity=nonlinearity, batch_first=True, dtype=torch.float64)
    b = rnn.bias_ih_l0 + rnn.bias_hh_l0
    h, _ = F.rnn_forward(x, h0, rnn.weight_ih_l0, rnn.weight_hh_l0, b, nonlinearity)
    torch.testing.assert_close(h, rnn(x, h0.unsqueeze(0))[0], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# The recurrence over a sequence, with variable lengths
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("batch_sizes", [None, BATCH_SIZES], ids=["full", "packed"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_recurrence_backward(nonlinearity, batch_sizes, dtype):
    p, h0, Wh, dh, dh_last = recurrence_inputs(dtype, batch_sizes)

    def forward(p, h0, Wh):
        return F.recurrence_forward(p, h0, Wh, nonlinearity, batch_sizes)

    def backward():
        h, _ = forward(p, h0, Wh)
        return F.recurrence_backward(dh, dh_last, h0, Wh, h, nonlinearity, batch_sizes)

    check_backward(forward, backward, [p, h0, Wh], [dh, dh_last], dtype)


def test_recurrence_forward_with_batch_sizes_equals_running_each_row_alone():
    """Row ``n`` of length ``L_n``: ``h`` is the full recurrence over its first ``L_n`` steps, then zeros."""
    p, h0, Wh, _, _ = recurrence_inputs(torch.float64, BATCH_SIZES)
    lengths = [sum(1 for size in BATCH_SIZES if size > n) for n in range(BATCH_SIZES[0])]
    h, h_last = F.recurrence_forward(p, h0, Wh, "tanh", BATCH_SIZES)
    for n, length in enumerate(lengths):
        h_row, h_last_row = F.recurrence_forward(p[:length, n : n + 1], h0[n : n + 1], Wh, "tanh")
        torch.testing.assert_close(h[:length, n], h_row[:, 0], rtol=1e-14, atol=1e-14)
        assert (h[length:, n] == 0).all()
        torch.testing.assert_close(h_last[n], h_last_row[0], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("batch_sizes", [None, BATCH_SIZES], ids=["full", "packed"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_recurrence_weight_grad_is_sum_of_outer_products(nonlinearity, batch_sizes):
    p, h0, Wh, dh, dh_last = recurrence_inputs(torch.float64, batch_sizes)
    h, _ = F.recurrence_forward(p, h0, Wh, nonlinearity, batch_sizes)
    dp, _, dWh = F.recurrence_backward(dh, dh_last, h0, Wh, h, nonlinearity, batch_sizes)
    h_prev = torch.cat([h0.unsqueeze(0), h[:-1]])
    expected = sum(dp[t].T @ h_prev[t] for t in range(h.shape[0]))
    torch.testing.assert_close(dWh, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tangents", ["all", "no_dh0", "no_dWh"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("batch_sizes", [None, BATCH_SIZES], ids=["full", "packed"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_recurrence_jvp_equals_torch_func_jvp(nonlinearity, batch_sizes, dtype, tangents):
    p, h0, Wh, _, _ = recurrence_inputs(dtype, batch_sizes)
    g = seeded(6)
    dp = randn(*p.shape, dtype=dtype, gen=g)
    dh0 = None if tangents == "no_dh0" else randn(*h0.shape, dtype=dtype, gen=g)
    dWh = None if tangents == "no_dWh" else randn(*Wh.shape, dtype=dtype, gen=g)
    (h, h_last), (expected_dh, expected_dh_last) = torch.func.jvp(
        lambda p, h0, Wh: F.recurrence_forward(p, h0, Wh, nonlinearity, batch_sizes),
        (p, h0, Wh),
        (dp, torch.zeros_like(h0) if dh0 is None else dh0, torch.zeros_like(Wh) if dWh is None else dWh),
    )
    actual_dh, actual_dh_last = F.recurrence_jvp(dp, dh0, dWh, h0, Wh, h, nonlinearity, batch_sizes)
    torch.testing.assert_close(actual_dh, expected_dh, **AUTOGRAD_TOL[dtype])
    torch.testing.assert_close(actual_dh_last, expected_dh_last, **AUTOGRAD_TOL[dtype])


# ----------------------------------------------------------------------------------------------------------
# Affine maps, one-hot projection, average, softmax loss
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False])
def test_temporal_affine_backward(bias, dtype):
    g = seeded(7)
    x, W = randn(N, T, H, dtype=dtype, gen=g), randn(D, H, dtype=dtype, gen=g)
    b = randn(D, dtype=dtype, gen=g) if bias else None
    dout = randn(N, T, D, dtype=dtype, gen=g)

    def forward(*args):
        return F.temporal_affine_forward(*args)[0]

    check_backward(forward, lambda: F.temporal_affine_backward(dout, F.temporal_affine_forward(x, W, b)[1]),
                   [x, W, b], [dout], dtype)
    # needs_dx=False skips only dx
    dx, dW, db = F.temporal_affine_backward(dout, F.temporal_affine_forward(x, W, b)[1], needs_dx=False)
    assert dx is None
    assert_grads_close([dW, db], autograd_grads(forward, [x, W, b], [dout])[1:], **AUTOGRAD_TOL[dtype])


def test_temporal_affine_forward_equals_linear():
    g = seeded(8)
    x, W, b = randn(N, T, H, gen=g), randn(D, H, gen=g), randn(D, gen=g)
    torch.testing.assert_close(F.temporal_affine_forward(x, W, b)[0], TF.linear(x, W, b), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(F.temporal_affine_forward(x, W, None)[0], TF.linear(x, W), rtol=1e-14, atol=1e-14)


def onehot_indices(shape, D_, seed=9):
    """Integer indices in ``[-1, D_)`` including at least one -1 (padding) and every real index."""
    idx = torch.randint(-1, D_, shape, generator=seeded(seed))
    flat = idx.view(-1)
    flat[0] = -1
    flat[1 : 1 + D_] = torch.arange(D_)
    return idx


def dense_onehot(indices, D_, dtype):
    """``e_k`` for index ``k``, the zero vector for -1."""
    return TF.one_hot(indices.clamp(min=0), D_).to(dtype) * (indices >= 0).unsqueeze(-1).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False])
def test_onehot_affine_forward_equals_dense_onehot_temporal_affine(bias, dtype):
    g = seeded(10)
    idx = onehot_indices((N, T), D)
    W, b = randn(H, D, dtype=dtype, gen=g), (randn(H, dtype=dtype, gen=g) if bias else None)
    out, _ = F.onehot_affine_forward(idx, W, b)
    expected, _ = F.temporal_affine_forward(dense_onehot(idx, D, dtype), W, b)
    torch.testing.assert_close(out, expected, **AUTOGRAD_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False])
def test_onehot_affine_backward(bias, dtype):
    g = seeded(11)
    idx = onehot_indices((T, N), D)  # repeated indices: their gradients must add up
    W, b = randn(H, D, dtype=dtype, gen=g), (randn(H, dtype=dtype, gen=g) if bias else None)
    dout = randn(T, N, H, dtype=dtype, gen=g)

    def forward(idx, W, b):
        return F.onehot_affine_forward(idx, W, b)[0]

    def backward():
        return [None, *F.onehot_affine_backward(dout, F.onehot_affine_forward(idx, W, b)[1])]

    check_backward(forward, backward, [idx, W, b], [dout], dtype)
    # and the same as the dense one-hot input's weight gradient
    dense = dense_onehot(idx, D, dtype)
    _, dW, db = F.temporal_affine_backward(dout, F.temporal_affine_forward(dense, W, b)[1])
    assert_grads_close(backward()[1:], [dW, db], **AUTOGRAD_TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int64, torch.float32])
def test_average_backward(mask_dtype, dtype):
    g = seeded(12)
    x, dout = randn(N, T, D, dtype=dtype, gen=g), randn(N, D, dtype=dtype, gen=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 0]]).to(mask_dtype)

    def forward(x):
        return F.average_forward(x, mask)[0]

    check_backward(forward, lambda: [F.average_backward(dout, F.average_forward(x, mask)[1])], [x], [dout], dtype)


def test_average_forward_equals_masked_mean():
    x = randn(N, T, D, gen=seeded(13))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 1]])
    out, _ = F.average_forward(x, mask)
    for n in range(N):
        torch.testing.assert_close(out[n], x[n][mask[n].bool()].mean(0), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False])
def test_affine_backward(bias, dtype):
    g = seeded(14)
    x, W = randn(N, H, dtype=dtype, gen=g), randn(D, H, dtype=dtype, gen=g)
    b = randn(D, dtype=dtype, gen=g) if bias else None
    dout = randn(N, D, dtype=dtype, gen=g)

    def forward(*args):
        return F.affine_forward(*args)[0]

    check_backward(forward, lambda: F.affine_backward(dout, F.affine_forward(x, W, b)[1]), [x, W, b], [dout], dtype)
    torch.testing.assert_close(forward(x, W, b), TF.linear(x, W, b))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("scale", [1.0, 1000.0], ids=["normal", "large_scores"])
def test_softmax_loss_equals_cross_entropy(scale, dtype):
    g = seeded(15)
    scores = randn(6, 3, dtype=dtype, gen=g) * scale
    y = torch.randint(0, 3, (6,), generator=g)
    loss, dscores = F.softmax_loss(scores, y)
    assert torch.isfinite(loss) and torch.isfinite(dscores).all()
    torch.testing.assert_close(loss, TF.cross_entropy(scores, y), **AUTOGRAD_TOL[dtype])
    [expected] = autograd_grads(lambda s: TF.cross_entropy(s, y), [scores], [torch.ones((), dtype=dtype)])
    torch.testing.assert_close(dscores, expected, **AUTOGRAD_TOL[dtype])


def test_softmax_loss_dscores_against_finite_differences():
    g = seeded(16)
    scores, y = randn(5, 4, gen=g), torch.tensor([0, 3, 1, 1, 2])
    [expected] = numeric_grads(lambda s: F.softmax_loss(s, y)[0], [scores], [torch.ones((), dtype=torch.float64)])
    torch.testing.assert_close(F.softmax_loss(scores, y)[1], expected, **NUMERIC_TOL)
