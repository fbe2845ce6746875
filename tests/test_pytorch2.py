"""torch_rnn in PyTorch 2: torch.compile (default, fullgraph, dynamic; lengths and PackedSequence; torch.func
transforms), autocast, complex dtypes and empty batches, each against eager mode or torch.nn.RNN.
tests/test_export.py covers torch.export and ONNX."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters
from torch.nn.utils.rnn import pack_padded_sequence

import torch_rnn
from helpers import Tagger, copy_into, tokens

TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def outputs_and_grads(model, *args):
    out = model(*args)
    grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out).to(out.dtype)).sum(),
                                list(model.parameters()))
    return out, grads


def assert_same_run(model, compiled, *args, dtype=torch.float32):
    out, grads = outputs_and_grads(model, *args)
    compiled_out, compiled_grads = outputs_and_grads(compiled, *args)
    torch.testing.assert_close(compiled_out, out, **TOLERANCE[dtype])
    for a, e in zip(compiled_grads, grads):
        torch.testing.assert_close(a, e, **TOLERANCE[dtype])


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


# ---- torch.compile -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["default", "fullgraph", "dynamic"])
def test_compiled_model_equals_eager(mode, dtype):
    torch.manual_seed(0)
    model = Tagger(dtype=dtype)
    options = {"default": {}, "fullgraph": dict(fullgraph=True), "dynamic": dict(fullgraph=True, dynamic=True)}[mode]
    compiled = torch.compile(model, backend="aot_eager", **options)
    for N, T in [(4, 7), (5, 9)]:
        assert_same_run(model, compiled, tokens(N, T), dtype=dtype)


def test_fullgraph_has_no_graph_break_and_dynamic_no_recompile():
    torch.manual_seed(0)
    model = Tagger()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=True)
    for N, T in [(4, 7), (5, 9), (3, 12), (6, 5)]:
        compiled(tokens(N, T)).sum().backward()
    assert counters["stats"]["unique_graphs"] == 1


def test_nn_rnn_cannot_compile_fullgraph_and_torch_rnn_can():
    """The README's claim: nn.RNN graph-breaks (Dynamo runs it eagerly), so fullgraph fails for it."""
    model = Tagger(rnn_class=nn.RNN)
    with pytest.raises(Exception):
        torch.compile(model, backend="aot_eager", fullgraph=True)(tokens(2, 3))
    torch.compile(Tagger(), backend="aot_eager", fullgraph=True)(tokens(2, 3))


@pytest.mark.slow
def test_inductor_compiles_forward_and_backward_equal_to_eager():
    torch.manual_seed(0)
    model = Tagger()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    for N, T in [(4, 7), (3, 10)]:
        assert_same_run(model, compiled, tokens(N, T))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_lengths_equal_eager_with_fullgraph_and_dynamic(dtype):
    torch.manual_seed(0)
    model = Tagger(dtype=dtype)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=True)
    for lengths in ([3, 7, 5, 2], [1, 4, 4], [6, 6]):
        T = max(lengths) + 1  # the padding past every row's length as well
        assert_same_run(model, compiled, tokens(len(lengths), T), torch.tensor(lengths), dtype=dtype)
    assert counters["stats"]["unique_graphs"] == 1


def test_compiled_packed_sequence_equals_eager():
    torch.manual_seed(0)
    rnn = torch_rnn.RNN(3, 5, num_layers=2, bidirectional=True)
    x = torch.randn(6, 4, 3)

    def run(x):
        packed = pack_padded_sequence(x, torch.tensor([6, 2, 5, 3]), enforce_sorted=False)
        output, h_n = rnn(packed)
        return output.data.sum() + h_n.pow(2).sum()

    compiled = torch.compile(run, backend="aot_eager")
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager_value, compiled_value = run(x1), compiled(x2)
    torch.testing.assert_close(compiled_value, eager_value)
    eager_value.backward(), compiled_value.backward()
    torch.testing.assert_close(x2.grad, x1.grad)


def test_compiled_rnn_cell_loop_equals_eager():
    torch.manual_seed(0)
    cell = torch_rnn.RNNCell(3, 5)
    x = torch.randn(6, 2, 3)

    def run(x):
        h = None
        for x_t in x:
            h = cell(x_t, h)
        return h

    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager, compiled = run(x1), torch.compile(run, backend="aot_eager", fullgraph=True)(x2)
    torch.testing.assert_close(compiled, eager)
    eager.sum().backward(), compiled.sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)


@pytest.mark.parametrize("transform", ["grad", "vmap(grad) per sample", "jvp"])
def test_torch_func_transforms_under_compile_equal_eager(transform):
    from torch.func import functional_call, grad, jvp, vmap

    rnn = torch_rnn.RNN(3, 4, dtype=torch.float64)
    params = {name: p.detach() for name, p in rnn.named_parameters()}
    x = torch.randn(5, 2, 3, dtype=torch.float64)

    def loss(params, x):
        return functional_call(rnn, params, (x,))[0].pow(2).sum()

    def run(params, x):
        if transform == "grad":
            return grad(loss)(params, x)
        if transform == "vmap(grad) per sample":
            return vmap(grad(loss), in_dims=(None, 1))(params, x.unsqueeze(2))
        tangent = torch.ones_like(params["weight_hh_l0"])
        return jvp(lambda w: loss({**params, "weight_hh_l0": w}, x), (params["weight_hh_l0"],), (tangent,))

    eager = run(params, x)
    compiled = torch.compile(run, backend="aot_eager", fullgraph=True)(params, x)
    torch.testing.assert_close(compiled, eager, **TOLERANCE[torch.float64])


def test_eager_double_backward_jvp_and_vmap_still_work():
    from torch.func import jacfwd, vmap

    rnn = torch_rnn.RNN(3, 4, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    (dx,) = torch.autograd.grad(rnn(x)[0].pow(2).sum(), x, create_graph=True)
    (ddx,) = torch.autograd.grad(dx.sum(), x)
    assert torch.isfinite(ddx).all() and ddx.abs().sum() > 0
    jacobian = jacfwd(lambda x: rnn(x)[1])(x.detach())
    assert jacobian.shape == (1, 2, 4, 5, 2, 3)
    batched = vmap(lambda x: rnn(x)[0], in_dims=1, out_dims=1)(x.detach())  # unbatched (T, D) per sample
    torch.testing.assert_close(batched, rnn(x.detach())[0])


# ---- autocast, dtypes, empty batches -------------------------------------------------------------------------
def test_autocast_follows_nn_rnn_policy():
    torch.manual_seed(0)
    ours, theirs = torch_rnn.RNN(3, 4, num_layers=2), nn.RNN(3, 4, num_layers=2)
    copy_into(ours, theirs)
    x = torch.randn(5, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (out, h_n), (expected_out, expected_h_n) = ours(x), theirs(x)
        assert out.dtype == expected_out.dtype == torch.bfloat16 and h_n.dtype == expected_h_n.dtype
        torch.testing.assert_close(out, expected_out, rtol=2e-2, atol=2e-2)
        low_precision = nn.Linear(3, 3)(x)  # bfloat16 activations from an autocast layer
        assert low_precision.dtype == torch.bfloat16
        assert ours(low_precision)[0].dtype == theirs(low_precision)[0].dtype
    out.float().sum().backward()
    assert ours.weight_hh_l0.grad.dtype == torch.float32
    with pytest.raises(ValueError, match="does not match weight dtype"):  # outside autocast, as nn.RNN
        ours(x.bfloat16())


def test_autocast_rnn_cell_and_compiled():
    cell = torch_rnn.RNNCell(3, 4)
    model = Tagger()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cell(torch.randn(2, 3)).dtype == torch.bfloat16
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        assert compiled(tokens(2, 5)).dtype == model(tokens(2, 5)).dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("options", [dict(), dict(num_layers=2, bidirectional=True, batch_first=True)])
def test_complex_rnn_equals_nn_rnn(dtype, options):
    torch.manual_seed(0)
    ours, theirs = torch_rnn.RNN(3, 4, dtype=dtype, **options), nn.RNN(3, 4, dtype=dtype, **options)
    copy_into(ours, theirs)
    x = torch.randn(2, 5, 3, dtype=dtype)
    results = []
    for module in (ours, theirs):
        x_ = x.clone().requires_grad_()
        out, h_n = module(x_)
        (out.abs().pow(2).sum() + h_n.real.sum()).backward()
        results.append([out, h_n, x_.grad, *(p.grad for p in module.parameters())])
    tolerance = dict(rtol=1e-3, atol=1e-4) if dtype == torch.complex64 else TOLERANCE[torch.float64]
    for a, e in zip(*results):
        assert a.dtype == e.dtype == dtype
        torch.testing.assert_close(a, e, **tolerance)


def test_complex_rnn_cell_equals_nn_rnn_cell():
    ours, theirs = torch_rnn.RNNCell(3, 4, dtype=torch.complex128), nn.RNNCell(3, 4, dtype=torch.complex128)
    copy_into(ours, theirs)
    x = torch.randn(2, 3, dtype=torch.complex128)
    torch.testing.assert_close(ours(x), theirs(x))


def test_complex_input_to_a_real_rnn_raises_nn_rnn_error():
    x = torch.randn(5, 2, 3, dtype=torch.complex64)
    with pytest.raises(ValueError) as ours:
        torch_rnn.RNN(3, 4)(x)
    with pytest.raises(ValueError) as theirs:
        nn.RNN(3, 4)(x)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch_with_lengths_returns_empty_outputs(batch_first):
    rnn = torch_rnn.RNN(2, 3, batch_first=batch_first)
    x = torch.randn(0, 4, 2) if batch_first else torch.randn(4, 0, 2)
    output, h_n = rnn(x, lengths=torch.zeros(0, dtype=torch.long))
    without = rnn(x)
    assert output.shape == without[0].shape == x.shape[:2] + (3,) and h_n.shape == without[1].shape == (1, 0, 3)


def test_compile_with_the_python_loops(monkeypatch):
    """Without the C++ loops (another device, no compiler: TORCH_RNN_NATIVE=0 here) the ops run the Python
    loops under the same registration, so compile works the same."""
    monkeypatch.setenv("TORCH_RNN_NATIVE", "0")
    torch.manual_seed(0)
    model = Tagger(dtype=torch.float64)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=True)
    for N, T in [(4, 7), (3, 9)]:
        assert_same_run(model, compiled, tokens(N, T), dtype=torch.float64)
    assert_same_run(model, compiled, tokens(3, 8), torch.tensor([8, 2, 5]), dtype=torch.float64)


def test_the_sentiment_model_trains_under_autocast():
    """Every layer follows autocast (the head too): bfloat16 scores, float32 gradients for the parameters."""
    from torch_rnn.models import SentimentRNN, softmax_loss

    torch.manual_seed(0)
    model = SentimentRNN(30, 8, 6, 2, input_mode="embedding", embedding_dim=5, bidirectional=True)
    lengths = torch.tensor([7, 3, 5, 1])
    mask = (torch.arange(7) < lengths[:, None]).float()
    tokens = torch.randint(1, 30, (4, 7)) * mask.long()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = model(tokens, mask)
        loss = softmax_loss(scores, torch.tensor([0, 1, 0, 1]))
    assert scores.dtype == torch.bfloat16
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("fullgraph", [True, False])
def test_compiled_lengths_pack_once_with_fullgraph_and_per_layer_without(fullgraph):
    """With ``fullgraph=True`` the rows are packed once for all layers (the packed row count is a data-dependent
    size, which such a graph may hold); by default Dynamo would break the graph there, so each layer's operator
    packs its rows itself: one graph either way, the same numbers."""
    torch.manual_seed(0)
    rnn = torch_rnn.RNN(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    graphs = []

    def backend(gm, example_inputs):
        graphs.append([str(node.target) for node in gm.graph.nodes if node.op == "call_function"])
        return gm.forward

    torch._dynamo.reset()
    output, h_n = torch.compile(lambda: rnn(x, lengths=lengths), backend=backend, fullgraph=fullgraph)()
    assert len(graphs) == 1  # no graph break
    packing = [target for target in graphs[0] if "by_lengths" in target]
    assert packing == (["torch_rnn.pack_by_lengths.default", "torch_rnn.unpack_by_lengths.default"] if fullgraph
                       else [])
    expected_output, expected_h_n = rnn(x, lengths=lengths)
    torch.testing.assert_close(output, expected_output)
    torch.testing.assert_close(h_n, expected_h_n)
