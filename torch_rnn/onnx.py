"""ONNX export: each ``torch_rnn::rnn_layer`` node becomes one standard ONNX ``RNN`` operator.

``torch.onnx.export(model, args, dynamo=True)`` captures a model holding :class:`torch_rnn.RNN` with
``torch.export`` (one ``rnn_layer`` node per layer and direction, :mod:`torch_rnn.ops`) and translates every
node with a function from its registry. Importing this module (``import torch_rnn.onnx``) adds ours to that
registry (:func:`register`), so the plain call works; :func:`translation_table` gives it to pass as
``custom_translation_table`` instead. Any ONNX runtime then runs the recurrence natively (onnxruntime's RNN
kernel), with no custom domain. Needs ``onnxscript`` (``pip install -e .[dev]`` or ``.[onnx]``).

The ONNX operator (https://onnx.ai/onnx/operators/onnx__RNN.html) computes, per direction,
``H_t = f(X_t W^T + H_{t-1} R^T + Wb + Rb)``: our ``W_x``, ``W_h`` and ``b`` (as ``Wb``, with ``Rb = 0``),
``X`` ``(T, N, D)`` time-major, ``Y`` ``(T, num_directions = 1, N, H)``, ``Y_h`` ``(1, N, H)``; ``direction =
"reverse"`` runs each row backwards from its last step, as ``reverse=True`` does. ``lengths`` (``RNN(x,
lengths=...)``) become ``sequence_lens``; the outputs past a row's length are zero in both.

Not translated: one-hot index inputs (the ONNX operator takes vectors: put an ``nn.Embedding`` in front) and
packed ``(R, D)`` sequences (PackedSequence input).
"""
from __future__ import annotations

from typing import Callable

import torch

_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu"}


def _rnn_layer(x, h0, wx, wh, b=None, nonlinearity: str = "tanh", batch_sizes=None, lengths=None,
               reverse: bool = False):
    """``torch_rnn::rnn_layer`` as ONNX ``RNN``, built with ONNX Script (the attributes are Python values)."""
    from onnxscript import opset18 as op

    if batch_sizes is not None:
        raise ValueError("torch_rnn ONNX export: packed sequences (PackedSequence input) have no ONNX translation; "
                         "pass the padded batch with lengths= instead")
    hidden_size = wh.shape[0]
    if not isinstance(hidden_size, int):
        raise ValueError("torch_rnn ONNX export: W_h needs a static shape (it is a parameter)")
    bias = None
    if b is not None:  # ONNX's B is [Wb, Rb]: the sum b_ih + b_hh goes in Wb, Rb stays zero
        bias = op.Unsqueeze(op.Concat(b, op.Sub(b, b), axis=0), [0])  # (1, 2H)
    sequence_lens = None if lengths is None else op.Cast(lengths, to=6)  # int32 (N,)
    y, y_h = op.RNN(x, op.Unsqueeze(wx, [0]), op.Unsqueeze(wh, [0]), bias, sequence_lens, op.Unsqueeze(h0, [0]),
                    activations=[_ACTIVATIONS[nonlinearity]], direction="reverse" if reverse else "forward",
                    hidden_size=hidden_size)  # (T, 1, N, H), (1, N, H)
    return op.Squeeze(y, [1]), op.Squeeze(y_h, [0])


def translation_table() -> dict[Callable, Callable]:
    """``{torch.ops.torch_rnn.rnn_layer.default: translation}``, for ``torch.onnx.export``'s
    ``custom_translation_table``."""
    from . import ops  # noqa: F401  (defines the op)

    return {torch.ops.torch_rnn.rnn_layer.default: _rnn_layer}


def register() -> None:
    """Add the translation to the registry that ``torch.onnx.export(..., dynamo=True)`` builds by default.

    torch has no public hook for that registry; this appends to the list it is built from
    (``torch.onnx._internal.exporter._torchlib``), once. Where that list has moved, it raises ImportError, and
    ``custom_translation_table=translation_table()`` still works.
    """
    from torch.onnx._internal.exporter import _registration
    from torch.onnx._internal.exporter._torchlib import _torchlib_registry

    from . import ops  # noqa: F401  (defines the op)

    target = torch.ops.torch_rnn.rnn_layer.default
    if not any(meta.fx_target is target for meta in _torchlib_registry._registry):
        _torchlib_registry._registry.append(
            _registration.OnnxDecompMeta(onnx_function=_rnn_layer, fx_target=target, signature=None, is_custom=True))


register()
