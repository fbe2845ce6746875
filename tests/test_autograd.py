"""torch_rnn.autograd: gradcheck (reverse, forward-mode and batched gradients) and gradgradcheck for every
Function and, through torch.func.functional_call, for the RNN and RNNCell modules' parameters; the fast kernel
path in an ordinary backward vs the reference path under create_graph; per-sample gradients with
vmap(grad(...)) against a loop over samples."""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call, grad, jacfwd, jacrev, vmap

from helpers import randn, seeded
from torch_rnn import RNN, RNNCell
from torch_rnn import functional as F
from torch_rnn import kernels
from torch_rnn.autograd import (AffineFunction, RNNCellFunction, RNNFunction, SoftmaxLossFunction,
                                TemporalAverageFunction)
from torch_rnn.layout import PackRows

# Slow mode (full Jacobians: fast mode's random projections can miss a 1% error in a small Jacobian), except
# the sequence Functions' and modules' second derivatives, which are large, in fast mode to keep the suite quick.
GRADCHECK = dict(check_forward_ad=True, check_batched_grad=True, check_backward_ad=True, fast_mode=False)
GRADGRADCHECK = dict(check_batched_grad=True)
D, H = 3, 4
BATCH_SIZES = [4, 3, 3, 1, 1]  # T = 5, N = 4


def leaf(*shape, gen, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64, generator=gen) * scale).requires_grad_()


def check(fn, inputs, fast_gradgrad=False):
    assert gradcheck(fn, inputs, **GRADCHECK)
    assert gradgradcheck(fn, inputs, fast_mode=fast_gradgrad, **GRADGRADCHECK)


# ----------------------------------------------------------------------------------------------------------
# Every Function
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_sizes", [None, BATCH_SIZES], ids=["full", "packed"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("input_kind", ["float", "onehot"])
def test_rnn_function_gradcheck(input_kind, nonlinearity, bias, batch_sizes):
    g = seeded(0)
    D, H = 2, 3  # smaller than the module's: slow-mode gradcheck perturbs every input element
    T, N = (len(batch_sizes), batch_sizes[0]) if batch_sizes else (3, 2)
    if input_kind == "float":
        x = leaf(T, N, D, gen=g)
    else:
        x = torch.randint(-1, D, (T, N), generator=g)
        x[0, 0] = -1  # a zero-vector step
    h0, Wx, Wh = leaf(N, H, gen=g), leaf(H, D, gen=g), leaf(H, H, gen=g, scale=0.5)
    b = leaf(H, gen=g) if bias else None
    inputs = (x, h0, Wx, Wh, b) if bias else (x, h0, Wx, Wh)

    def fn(x, h0, Wx, Wh, b=None):
        return RNNFunction.apply(x, h0, Wx, Wh, b, nonlinearity, batch_sizes)

    check(fn, inputs, fast_gradgrad=True)


def test_rnn_function_onehot_equals_dense_input():
    g = seeded(1)
    idx = torch.tensor([[0, 2, -1], [1, -1, 2]])  # (T, N)
    dense = torch.nn.functional.one_hot(idx.clamp(min=0), D).double() * (idx >= 0).unsqueeze(-1)
    h0, Wx, Wh, b = leaf(3, H, gen=g), leaf(H, D, gen=g), leaf(H, H, gen=g), leaf(H, gen=g)
    h1, last1 = RNNFunction.apply(idx, h0, Wx, Wh, b, "tanh", None)
    h2, last2 = RNNFunction.apply(dense, h0, Wx, Wh, b, "tanh", None)
    torch.testing.assert_close(h1, h2, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(last1, last2, rtol=1e-14, atol=1e-14)
    g1 = torch.autograd.grad((h1.sum() + last1.sum()), (h0, Wx, Wh, b))
    g2 = torch.autograd.grad((h2.sum() + last2.sum()), (h0, Wx, Wh, b))
    for a, e in zip(g1, g2):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_function_gradcheck(nonlinearity, bias):
    g = seeded(2)
    x, h, Wx, Wh = leaf(3, D, gen=g), leaf(3, H, gen=g), leaf(H, D, gen=g), leaf(H, H, gen=g)
    b = leaf(H, gen=g)
    if bias:
        check(lambda x, h, Wx, Wh, b: RNNCellFunction.apply(x, h, Wx, Wh, b, nonlinearity), (x, h, Wx, Wh, b))
    else:
        check(lambda x, h, Wx, Wh: RNNCellFunction.apply(x, h, Wx, Wh, None, nonlinearity), (x, h, Wx, Wh))


@pytest.mark.parametrize("bias", [True, False])
def test_temporal_affine_function_gradcheck(bias):
    g = seeded(3)
    x, W, b = leaf(2, 3, H, gen=g), leaf(D, H, gen=g), leaf(D, gen=g)
    if bias:
        check(lambda x, W, b: AffineFunction.apply(x, W, b), (x, W, b))
    else:
        check(lambda x, W: AffineFunction.apply(x, W, None), (x, W))


@pytest.mark.parametrize("bias", [True, False])
def test_affine_function_gradcheck(bias):
    g = seeded(4)
    x, W, b = leaf(3, H, gen=g), leaf(D, H, gen=g), leaf(D, gen=g)
    if bias:
        check(lambda x, W, b: AffineFunction.apply(x, W, b), (x, W, b))
    else:
        check(lambda x, W: AffineFunction.apply(x, W, None), (x, W))


def test_temporal_average_function_gradcheck():
    x = leaf(3, 4, D, gen=seeded(5))
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 1, 0, 1]], dtype=torch.float64)
    check(lambda x: TemporalAverageFunction.apply(x, mask), (x,))


def test_softmax_loss_function_gradcheck():
    scores = leaf(5, 3, gen=seeded(6))
    y = torch.tensor([0, 2, 1, 1, 0])
    check(lambda s: SoftmaxLossFunction.apply(s, y), (scores,))


def test_inference_runs_the_forward_alone_and_forward_ad_still_gets_tangents(monkeypatch):
    """Under no_grad with no forward-AD level or torch.func transform, ops.dispatch calls a Function's forward
    without apply; a dual tensor (forward AD works under no_grad) still goes through apply and its jvp."""
    import torch.autograd.forward_ad as fwAD

    calls = []
    apply = RNNFunction.apply
    monkeypatch.setattr(RNNFunction, "apply", lambda *args: calls.append(1) or apply(*args))
    rnn = RNN(D, H).double()
    x = leaf(5, 2, D, gen=seeded(8)).detach()
    with torch.no_grad():
        output, h_n = rnn(x)
    assert calls == []
    expected_output, expected_h_n = rnn(x)
    assert calls == [1]
    assert torch.equal(output, expected_output) and torch.equal(h_n, expected_h_n)
    tangent = torch.randn_like(x)
    with torch.no_grad(), fwAD.dual_level():
        dual_output, _ = rnn(fwAD.make_dual(x, tangent))
        got = fwAD.unpack_dual(dual_output).tangent
    assert calls == [1, 1] and got is not None
    _, (expected_tangent, _) = torch.func.jvp(lambda v: rnn(v), (x,), (tangent,))
    torch.testing.assert_close(got, expected_tangent)


def test_pack_rows_function_gradcheck():
    """layout.PackRows (packing by lengths): rows 1 and 4 are packed nowhere, so their gradient is zero."""
    rows = leaf(6, D, gen=seeded(7))
    index = torch.tensor([3, 0, 5, 2])
    check(lambda r: PackRows.apply(r, index), (rows,))
    packed = PackRows.apply(rows, index)
    (grad,) = torch.autograd.grad(packed.sum(), rows)
    assert grad[[1, 4]].eq(0).all() and grad[index].eq(1).all()


def test_functions_only_return_requested_gradients():
    """``ctx.needs_input_grad``: an input that does not require grad gets no gradient and breaks nothing."""
    g = seeded(7)
    x, h0 = randn(3, 2, D, gen=g), randn(2, H, gen=g)
    Wx, Wh, b = leaf(H, D, gen=g), leaf(H, H, gen=g), leaf(H, gen=g)
    h, last = RNNFunction.apply(x, h0, Wx, Wh, b, "tanh", None)
    h.sum().backward()
    assert x.grad is None and h0.grad is None
    assert Wx.grad is not None and Wh.grad is not None and b.grad is not None


# ----------------------------------------------------------------------------------------------------------
# The modules, parameters included, through functional_call
# ----------------------------------------------------------------------------------------------------------
RNN_CONFIGS = [
    pytest.param(dict(), {}, id="default"),
    pytest.param(dict(num_layers=2), {}, id="2_layers"),
    pytest.param(dict(bidirectional=True), {}, id="bidirectional"),
    pytest.param(dict(num_layers=2, bidirectional=True, nonlinearity="relu"), {}, id="2_layers_bidir_relu"),
    pytest.param(dict(bias=False), {}, id="no_bias"),
    pytest.param(dict(batch_first=True, bidirectional=True), dict(lengths=[2, 4, 1]), id="lengths_bidir"),
    pytest.param(dict(num_layers=2), dict(h0=True), id="2_layers_h0"),
    pytest.param(dict(bidirectional=True), dict(h0=True, lengths=[4, 2, 3]), id="bidir_h0_lengths"),
]


@pytest.mark.parametrize("config,extra", RNN_CONFIGS)
def test_rnn_module_gradcheck_with_parameters(config, extra):
    torch.manual_seed(8)
    rnn = RNN(D, H, dtype=torch.float64, **config)
    names = [name for name, _ in rnn.named_parameters()]
    g = seeded(9)
    T, N = 4, 3
    x = leaf(*((N, T, D) if rnn.batch_first else (T, N, D)), gen=g)
    num_states = rnn.num_layers * (2 if rnn.bidirectional else 1)
    inputs = [x] + ([leaf(num_states, N, H, gen=g)] if extra.get("h0") else [])
    lengths = extra.get("lengths")

    def fn(x, *rest):
        hx = rest[0] if extra.get("h0") else None
        params = dict(zip(names, rest[1:] if extra.get("h0") else rest))
        return functional_call(rnn, params, (x, hx), dict(lengths=lengths))

    params = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
    check(fn, tuple(inputs + params), fast_gradgrad=True)


@pytest.mark.parametrize("config", [dict(), dict(bias=False, nonlinearity="relu")], ids=["default", "relu_no_bias"])
@pytest.mark.parametrize("batched", [True, False])
def test_rnn_cell_module_gradcheck_with_parameters(config, batched):
    torch.manual_seed(10)
    cell = RNNCell(D, H, dtype=torch.float64, **config)
    names = [name for name, _ in cell.named_parameters()]
    g = seeded(11)
    x, h = (leaf(3, D, gen=g), leaf(3, H, gen=g)) if batched else (leaf(D, gen=g), leaf(H, gen=g))
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    check(lambda x, h, *ps: functional_call(cell, dict(zip(names, ps)), (x, h)), (x, h, *params))


def test_rnn_module_onehot_gradcheck_with_parameters():
    torch.manual_seed(12)
    rnn = RNN(D, H, bidirectional=True, dtype=torch.float64)
    names = [name for name, _ in rnn.named_parameters()]
    idx = torch.tensor([[0, 2, -1], [1, -1, 2], [2, 0, -1]])
    params = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
    check(lambda *ps: functional_call(rnn, dict(zip(names, ps)), (idx,), dict(lengths=[3, 3, 1])), tuple(params),
          fast_gradgrad=True)


@pytest.mark.parametrize("lengths", [None, [3, 1, 2]], ids=["full", "lengths"])
def test_forward_mode_jacobian_and_hessian_of_rnn_module_match_reverse_mode(lengths):
    """torch.func's forward mode (jvp under vmap: the Functions' jvp and generated vmap rules) against reverse
    mode, for the Jacobian of the outputs and the Hessian of a scalar loss, wrt the input."""
    torch.manual_seed(23)
    rnn = RNN(D, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = randn(3, 3, D, gen=seeded(24))

    def outputs(x):
        output, h_n = rnn(x, lengths=lengths)
        return torch.cat([output.reshape(-1), h_n.reshape(-1)])

    torch.testing.assert_close(jacfwd(outputs)(x), jacrev(outputs)(x), rtol=1e-10, atol=1e-10)

    def loss(x):
        return (outputs(x) ** 2).sum()

    torch.testing.assert_close(jacfwd(jacrev(loss))(x), jacrev(jacrev(loss))(x), rtol=1e-10, atol=1e-10)


def test_forward_mode_jacobian_of_layers_match_reverse_mode():
    g = seeded(25)
    x, W, b = randn(2, 3, H, gen=g), randn(D, H, gen=g), randn(D, gen=g)
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([2, 0])

    def model(x, W, b):
        features = TemporalAverageFunction.apply(AffineFunction.apply(x, W, b), mask)  # (2, D)
        return SoftmaxLossFunction.apply(AffineFunction.apply(features, W.T[:D], None), y)

    for a, e in zip(jacfwd(model, argnums=(0, 1, 2))(x, W, b), jacrev(model, argnums=(0, 1, 2))(x, W, b)):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------------------------
# Fast path in an ordinary backward, reference path under create_graph
# ----------------------------------------------------------------------------------------------------------
def count_calls(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


@pytest.mark.parametrize("lengths", [None, [4, 2, 3]], ids=["full", "lengths"])
def test_fast_kernels_in_ordinary_backward_reference_under_create_graph(monkeypatch, lengths):
    torch.manual_seed(13)
    rnn = RNN(D, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = randn(4, 3, D, gen=seeded(14), requires_grad=True)
    fast_forward = count_calls(monkeypatch, kernels, "recurrence_forward_")
    fast_backward = count_calls(monkeypatch, kernels, "recurrence_backward_")
    reference_backward = count_calls(monkeypatch, F, "recurrence_backward")
    wrt = [x, *rnn.parameters()]

    output, h_n = rnn(x, lengths=lengths)
    loss = (output * torch.linspace(-1, 1, output.numel(), dtype=torch.float64).view_as(output)).sum() + h_n.sum()
    assert len(fast_forward) == 4  # 2 layers x 2 directions
    fast_grads = torch.autograd.grad(loss, wrt, retain_graph=True)
    assert (len(fast_backward), len(reference_backward)) == (4, 0)

    reference_grads = torch.autograd.grad(loss, wrt, create_graph=True)
    assert (len(fast_backward), len(reference_backward)) == (4, 4)
    for fast, reference in zip(fast_grads, reference_grads):
        torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-12)


def test_reference_forward_under_torch_func(monkeypatch):
    """Under a torch.func transform the in-place kernel is not used (it cannot see batched tensors)."""
    torch.manual_seed(15)
    rnn = RNN(D, H, dtype=torch.float64)
    fast_forward = count_calls(monkeypatch, kernels, "recurrence_forward_")
    x = randn(5, 3, 2, D, gen=seeded(16))  # 5 samples of (T=3, N=2, D)
    batched = vmap(lambda xi: rnn(xi)[0])(x)
    assert fast_forward == []
    expected = torch.stack([rnn(xi)[0] for xi in x])
    assert len(fast_forward) == 5
    torch.testing.assert_close(batched, expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# Per-sample gradients: vmap(grad(...)) against a loop over samples
# ----------------------------------------------------------------------------------------------------------
def per_sample_grads_loop(module, loss_of, samples):
    """``[d loss_of(module, sample) / d params for sample in samples]``, by ordinary autograd."""
    grads = []
    for sample in samples:
        module.zero_grad()
        loss_of(module, sample).backward()
        grads.append({name: p.grad.clone() for name, p in module.named_parameters()})
    return {name: torch.stack([g[name] for g in grads]) for name in grads[0]}


def rnn_sample_loss(rnn, x):  # x: (T, D), one sample, run as a batch of one
    output, h_n = rnn(x.unsqueeze(1))
    return (output ** 2).sum() + h_n.sum()


@pytest.mark.parametrize("config", [dict(), dict(num_layers=2), dict(bidirectional=True),
                                    dict(num_layers=2, bidirectional=True, nonlinearity="relu")],
                         ids=["1_layer", "2_layers", "bidirectional", "2_layers_bidir_relu"])
def test_vmap_grad_per_sample_gradients_rnn(config):
    torch.manual_seed(17)
    rnn = RNN(D, H, dtype=torch.float64, **config)
    samples = randn(5, 4, D, gen=seeded(18))  # B = 5 samples of (T=4, D)
    params = {name: p.detach() for name, p in rnn.named_parameters()}
    per_sample = vmap(grad(lambda ps, x: rnn_sample_loss(lambda *a: functional_call(rnn, ps, a), x)),
                      in_dims=(None, 0))(params, samples)
    expected = per_sample_grads_loop(rnn, rnn_sample_loss, samples)
    assert per_sample.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(per_sample[name], expected[name], rtol=1e-10, atol=1e-10)


def test_vmap_grad_per_sample_gradients_rnn_cell():
    torch.manual_seed(19)
    cell = RNNCell(D, H, dtype=torch.float64)
    g = seeded(20)
    samples = (randn(5, D, gen=g), randn(5, H, gen=g))

    def loss_of(module, sample):
        x, h = sample
        return (module(x, h) ** 2).sum()

    params = {name: p.detach() for name, p in cell.named_parameters()}
    per_sample = vmap(grad(lambda ps, x, h: loss_of(lambda *a: functional_call(cell, ps, a), (x, h))),
                      in_dims=(None, 0, 0))(params, *samples)
    expected = per_sample_grads_loop(cell, loss_of, list(zip(*samples)))
    for name in expected:
        torch.testing.assert_close(per_sample[name], expected[name], rtol=1e-10, atol=1e-10)


def test_vmap_grad_through_torch_nn_rnn_raises():
    """Why the hand-written Functions exist: torch.nn.RNN's fused kernel has no vmap rule for this."""
    torch.manual_seed(21)
    rnn = torch.nn.RNN(D, H, dtype=torch.float64)
    samples = randn(5, 4, D, gen=seeded(22))
    params = {name: p.detach() for name, p in rnn.named_parameters()}
    with pytest.raises(RuntimeError):
        vmap(grad(lambda ps, x: rnn_sample_loss(lambda *a: functional_call(rnn, ps, a), x)),
             in_dims=(None, 0))(params, samples)
