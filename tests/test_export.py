"""torch_rnn in deployment formats: torch.export (static and dynamic shapes, lengths, save and load) and ONNX
through onnxruntime (the dynamo exporter with the project's translation to ONNX's RNN operator), each against
eager mode."""
from __future__ import annotations

import io

import pytest
import torch

import torch_rnn
from helpers import Tagger, tokens

TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5)}


def rnn_layer_nodes(program):
    return [node for node in program.graph.nodes if node.target is torch.ops.torch_rnn.rnn_layer.default]


@pytest.mark.parametrize("dynamic", [False, True])
def test_export_runs_equals_eager_survives_save_and_load(dynamic):
    torch.manual_seed(0)
    model = torch_rnn.RNN(3, 4, num_layers=2, bidirectional=True, batch_first=True).eval()
    x, h0 = torch.randn(2, 6, 3), torch.randn(4, 2, 4)
    dynamic_shapes = None
    if dynamic:
        batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
        dynamic_shapes = ({0: batch, 1: time}, {1: batch})
    program = torch.export.export(model, (x, h0), dynamic_shapes=dynamic_shapes)
    assert len(rnn_layer_nodes(program)) == 4  # one op per layer and direction
    longer = torch.export.export(model, (torch.randn(2, 12, 3), h0))
    assert len(list(longer.graph.nodes)) == len(list(program.graph.nodes))  # no loop unrolled over the steps
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    loaded = torch.export.load(buffer)
    sizes = [(5, 9), (3, 4)] if dynamic else [(2, 6)]
    for N, T in sizes:
        x, h0 = torch.randn(N, T, 3), torch.randn(4, N, 4)
        for program_ in (program, loaded):
            for a, e in zip(program_.module()(x, h0), model(x, h0)):
                torch.testing.assert_close(a, e, **TOLERANCE[torch.float32])


def test_export_with_lengths_equals_eager():
    model = torch_rnn.RNN(3, 4, bidirectional=True).eval()
    x, lengths = torch.randn(6, 3, 3), torch.tensor([6, 2, 4])
    program = torch.export.export(model, (x,), kwargs={"lengths": lengths})
    for a, e in zip(program.module()(x, lengths=lengths), model(x, lengths=lengths)):
        torch.testing.assert_close(a, e)


ONNX_CASES = {
    "tanh, bias, bidirectional, 2 layers, batch_first, h0, dynamic":
        (dict(num_layers=2, bidirectional=True, batch_first=True), True, True),
    "relu, no bias, time-major": (dict(nonlinearity="relu", bias=False), False, False),
    "relu, bidirectional, h0, dynamic": (dict(nonlinearity="relu", bidirectional=True), True, True),
    "tanh, 2 layers, batch_first, dynamic": (dict(num_layers=2, batch_first=True), False, True),
}


@pytest.mark.parametrize("case", ONNX_CASES.values(), ids=ONNX_CASES.keys())
def test_onnx_export_runs_in_onnxruntime_equal_to_eager(case, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import torch_rnn.onnx  # noqa: F401  (adds the translation to the exporter's registry)

    options, with_h0, dynamic = case
    torch.manual_seed(0)
    model = torch_rnn.RNN(3, 4, **options).eval()
    layers = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)

    def inputs(N, T):
        x = torch.randn(N, T, 3) if options.get("batch_first") else torch.randn(T, N, 3)
        return (x, torch.randn(layers, N, 4)) if with_h0 else (x,)

    dynamic_shapes = None
    if dynamic:
        batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
        x_dims = {0: batch, 1: time} if options.get("batch_first") else {0: time, 1: batch}
        dynamic_shapes = (x_dims, {1: batch}) if with_h0 else (x_dims,)
    program = torch.onnx.export(model, inputs(2, 5), dynamo=True, dynamic_shapes=dynamic_shapes, verbose=False)
    node_types = [node.op_type for node in program.model_proto.graph.node]
    assert node_types.count("RNN") == layers and "Loop" not in node_types
    path = tmp_path / "rnn.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for N, T in ([(3, 7), (1, 2)] if dynamic else [(2, 5)]):
        args = inputs(N, T)
        feed = {given.name: value.numpy() for given, value in zip(session.get_inputs(), args)}
        for a, e in zip(session.run(None, feed), model(*args)):
            torch.testing.assert_close(torch.from_numpy(a), e, rtol=1e-5, atol=1e-5)


def test_onnx_translation_table_for_an_explicit_export(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from torch_rnn.onnx import translation_table

    model, x = Tagger().eval(), tokens(2, 6)
    program = torch.onnx.export(model, (x,), dynamo=True, custom_translation_table=translation_table(),
                                verbose=False)
    path = tmp_path / "tagger.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(result), model(x), rtol=1e-5, atol=1e-5)


def test_onnx_export_with_lengths_uses_sequence_lens(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import torch_rnn.onnx  # noqa: F401

    model = torch_rnn.RNN(3, 4, num_layers=2, bidirectional=True, batch_first=True).eval()
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(model, (x,), kwargs={"lengths": lengths}, dynamo=True, verbose=False,
                                dynamic_shapes={"input": {0: batch}, "lengths": {0: batch}})
    path = tmp_path / "lengths.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, lengths = torch.randn(4, 6, 3), torch.tensor([1, 6, 3, 5])
    feed = {given.name: value.numpy() for given, value in zip(session.get_inputs(), (x, lengths))}
    for a, e in zip(session.run(None, feed), model(x, lengths=lengths)):
        torch.testing.assert_close(torch.from_numpy(a), e, rtol=1e-5, atol=1e-5)


def test_onnx_translation_refuses_a_packed_sequence():
    pytest.importorskip("onnxscript")
    from torch_rnn.onnx import _rnn_layer

    with pytest.raises(ValueError, match="packed sequences .* have no ONNX translation; pass the padded batch"):
        _rnn_layer(None, None, None, None, batch_sizes=torch.tensor([2, 1]))
