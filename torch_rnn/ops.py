"""torch_rnn's custom operators (``torch.library``), for ``torch.compile``, ``torch.export`` and ONNX.

Two functional ops wrap one RNN layer over a whole sequence and its backpropagation through time:

- ``torch_rnn::rnn_layer(x, h0, wx, wh, b, nonlinearity, batch_sizes, lengths, reverse) -> (h, h_last)``, with
  autograd registered (:func:`_backward`), so a compiled or exported graph holds one node per layer and
  direction, never an unrolled time loop;
- ``torch_rnn::rnn_layer_backward(dh, dh_last, x, h0, wx, wh, h, nonlinearity, batch_sizes, lengths, reverse,
  output_mask) -> (dx, dh0, dwx, dwh, db)``, each gradient None where ``output_mask`` says it is not needed.

Their kernels are :func:`torch_rnn.autograd.layer_forward` / ``layer_backward`` for every device: the C++
loops on CPU (``csrc/``), the Python loops elsewhere. Each op has a fake kernel giving its
outputs' shapes, strides and dtypes from its inputs' alone (FakeTensorMode, ``torch.compile``,
``torch.export``); the two C++ loops, ``torch_rnn::recurrence_forward_`` (which writes into ``p``, as its
schema declares) and ``torch_rnn::recurrence_backward``, get theirs here too (:func:`register_native_fakes`).
``tests/test_ops.py`` runs ``torch.library.opcheck`` on all four.

Arguments (shapes as in :class:`torch_rnn.autograd.RNNFunction`):
    x: ``(T, N, D)`` values (time-major, or the transposed view of batch-first memory), ``(T, N)`` one-hot
        indices (int64, ``-1`` = zero vector), or packed ``(R, D)`` / ``(R,)`` with ``batch_sizes``.
    h0: ``(N, H)``. wx: ``(H, D)``. wh: ``(H, H)``. b: ``(H,)`` or None (``b_ih + b_hh``).
    nonlinearity: ``"tanh"`` or ``"relu"``.
    batch_sizes: None (every row runs ``T`` steps) or an int64 CPU tensor ``(T,)`` of non-increasing counts
        of the rows running at each step, rows sorted by length (PackedSequence's convention); with a padded
        ``x`` the rows past their length get zeros.
    lengths: None, or an int64 tensor ``(N,)`` of a padded ``x``'s row lengths, each in ``1..T``, in any order:
        the kernel packs the rows (one gather), runs them packed and unpacks (zeros past each length), so the
        op's shapes never depend on the lengths' values (``RNN(..., lengths=)`` under ``torch.compile`` without
        ``fullgraph``, and under ``torch.export``, where ONNX takes them as the ``RNN`` operator's
        ``sequence_lens``).
    reverse: run each row backwards from its own last step.

Outputs: ``h`` laid out like ``x`` (:func:`torch_rnn.layout.sequence_buffer`) and ``h_last (N, H)``.

Under ``torch.compile(fullgraph=True)``, ``RNN(..., lengths=)`` packs the rows once for all layers instead, as
eager code does:
``torch_rnn::pack_by_lengths(x, lengths) -> (R, ...)`` and its inverse ``torch_rnn::unpack_by_lengths(packed,
lengths, like) -> (T, N, F)``, each the other's backward. ``R``, the number of packed rows, is the one size that
depends on the lengths' values (an unbacked size in the compiled graph; without ``fullgraph`` Dynamo would break
the graph there, so each layer's operator packs by ``lengths`` instead).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor
from torch.autograd import forward_ad

from . import functional
from .autograd import (AffineFunction, SoftmaxLossFunction, TemporalAverageFunction, layer_backward,
                       layer_forward)
from .layout import Packing, has_values, laid_out_like_sequence, sequence_buffer

_LAYER_SCHEMA = ("(Tensor x, Tensor h0, Tensor wx, Tensor wh, Tensor? b, str nonlinearity, Tensor? batch_sizes, "
                 "Tensor? lengths, bool reverse) -> (Tensor, Tensor)")
_BACKWARD_SCHEMA = ("(Tensor dh, Tensor dh_last, Tensor x, Tensor h0, Tensor wx, Tensor wh, Tensor h, "
                    "str nonlinearity, Tensor? batch_sizes, Tensor? lengths, bool reverse, bool[5] output_mask) "
                    "-> (Tensor?, Tensor?, Tensor?, Tensor?, Tensor?)")


def _sizes(batch_sizes: Optional[Tensor]) -> Optional[list[int]]:
    """The ``(T,)`` tensor of running rows as the list the loops take."""
    return None if batch_sizes is None else batch_sizes.tolist()


@torch.library.custom_op("torch_rnn::rnn_layer", mutates_args=(), schema=_LAYER_SCHEMA)
def rnn_layer(x: Tensor, h0: Tensor, wx: Tensor, wh: Tensor, b: Optional[Tensor], nonlinearity: str,
              batch_sizes: Optional[Tensor], lengths: Optional[Tensor], reverse: bool) -> tuple[Tensor, Tensor]:
    if not has_values(x) and x.numel() > 0:  # checked here, where the values exist (also when compiled)
        low, high = (int(v) for v in torch.aminmax(x))
        if low < -1 or high >= wx.shape[1]:
            raise ValueError(f"RNN: one-hot indices must lie in [-1, input_size={wx.shape[1]}), got values in "
                             f"[{low}, {high}]")
    if lengths is not None and x.shape[1] > 0:  # packed here, so the loops never see the padding
        packing = Packing.of(lengths)
        h, h_last = layer_forward(packing.pack(x), packing.sort(h0), wx, wh, b, nonlinearity, packing.batch_sizes,
                                  reverse)
        return packing.unpack(h, x), packing.unsort(h_last)
    h, h_last = layer_forward(x, h0, wx, wh, b, nonlinearity, _sizes(batch_sizes), reverse)
    return laid_out_like_sequence(h, x), h_last.contiguous()


@rnn_layer.register_fake
def _rnn_layer_fake(x: Tensor, h0: Tensor, wx: Tensor, wh: Tensor, b: Optional[Tensor], nonlinearity: str,
                    batch_sizes: Optional[Tensor], lengths: Optional[Tensor], reverse: bool) -> tuple[Tensor, Tensor]:
    return sequence_buffer(x, wh.shape[0], wh.dtype), h0.new_empty(h0.shape)


@torch.library.custom_op("torch_rnn::rnn_layer_backward", mutates_args=(), schema=_BACKWARD_SCHEMA)
def rnn_layer_backward(dh: Tensor, dh_last: Tensor, x: Tensor, h0: Tensor, wx: Tensor, wh: Tensor, h: Tensor,
                       nonlinearity: str, batch_sizes: Optional[Tensor], lengths: Optional[Tensor], reverse: bool,
                       output_mask: Sequence[bool]) -> tuple[Optional[Tensor], ...]:
    with torch.no_grad():  # the fast loops
        dx, *rest = _layer_backward(dh, dh_last, x, h0, wx, wh, h, nonlinearity, batch_sizes, lengths, reverse,
                                    output_mask)
    return (None if dx is None else laid_out_like_sequence(dx, x), *(g if g is None else g.contiguous() for g in rest))


def _layer_backward(dh: Tensor, dh_last: Tensor, x: Tensor, h0: Tensor, wx: Tensor, wh: Tensor, h: Tensor,
                    nonlinearity: str, batch_sizes: Optional[Tensor], lengths: Optional[Tensor], reverse: bool,
                    output_mask: Sequence[bool]) -> tuple[Optional[Tensor], ...]:
    """:func:`torch_rnn.autograd.layer_backward`, on the packed rows when the forward packed them (``lengths``)."""
    if lengths is None or x.shape[1] == 0:
        return layer_backward(dh, dh_last, x, h0, wx, wh, h, nonlinearity, _sizes(batch_sizes), reverse,
                              output_mask)
    packing = Packing.of(lengths)
    dx, dh0, *rest = layer_backward(packing.pack(dh), packing.sort(dh_last), packing.pack(x), packing.sort(h0), wx,
                                    wh, packing.pack(h), nonlinearity, packing.batch_sizes, reverse, output_mask)
    return (None if dx is None else packing.unpack(dx, x), None if dh0 is None else packing.unsort(dh0), *rest)


@rnn_layer_backward.register_fake
def _backward_fake(dh: Tensor, dh_last: Tensor, x: Tensor, h0: Tensor, wx: Tensor, wh: Tensor, h: Tensor,
                   nonlinearity: str, batch_sizes: Optional[Tensor], lengths: Optional[Tensor], reverse: bool,
                   output_mask: Sequence[bool]) -> tuple[Optional[Tensor], ...]:
    need_dx, need_dh0, need_dwx, need_dwh, need_db = output_mask
    return (sequence_buffer(x, wx.shape[1], wx.dtype) if need_dx and has_values(x) else None,
            h0.new_empty(h0.shape) if need_dh0 else None,
            wx.new_empty(wx.shape) if need_dwx else None,
            wh.new_empty(wh.shape) if need_dwh else None,
            wh.new_empty(wh.shape[0]) if need_db else None)


def _setup_context(ctx: Any, inputs: tuple, output: tuple[Tensor, Tensor]) -> None:
    x, h0, wx, wh, b, nonlinearity, batch_sizes, lengths, reverse = inputs
    ctx.save_for_backward(x, h0, wx, wh, output[0])
    ctx.nonlinearity, ctx.batch_sizes, ctx.lengths, ctx.reverse = nonlinearity, batch_sizes, lengths, reverse


def _backward(ctx: Any, dh: Tensor, dh_last: Tensor) -> tuple:
    """The backward op; with grad mode on (``create_graph=True``: double backward, outside compiled code) the
    reference equations instead, which autograd can differentiate again."""
    x, h0, wx, wh, h = ctx.saved_tensors
    needs = tuple(ctx.needs_input_grad[:5])
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        grads = _layer_backward(dh, dh_last, x, h0, wx, wh, h, ctx.nonlinearity, ctx.batch_sizes, ctx.lengths,
                                ctx.reverse, needs)
    else:
        grads = torch.ops.torch_rnn.rnn_layer_backward(dh, dh_last, x, h0, wx, wh, h, ctx.nonlinearity,
                                                       ctx.batch_sizes, ctx.lengths, ctx.reverse, list(needs))
    return (*grads, None, None, None, None)


rnn_layer.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("torch_rnn::pack_by_lengths", mutates_args=(),
                         schema="(Tensor x, Tensor lengths) -> Tensor")
def pack_by_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """A padded sequence packed once for every layer (:class:`torch_rnn.layout.Packing`): x ``(T, N, ...)``,
    lengths int64 ``(N,)`` in ``1..T`` -> ``(R, ...)``, ``R = sum(lengths)``, the only size that depends on the
    lengths' values (an unbacked size in compiled code)."""
    return Packing.of(lengths).pack(x)


@pack_by_lengths.register_fake
def _pack_fake(x: Tensor, lengths: Tensor) -> Tensor:
    rows = torch.library.get_ctx().new_dynamic_size()
    return x.new_empty(rows, *x.shape[2:])


@torch.library.custom_op("torch_rnn::unpack_by_lengths", mutates_args=(),
                         schema="(Tensor packed, Tensor lengths, Tensor like) -> Tensor")
def unpack_by_lengths(packed: Tensor, lengths: Tensor, like: Tensor) -> Tensor:
    """The inverse of :func:`pack_by_lengths`: ``packed (R, F)`` -> ``(T, N, F)`` in the memory layout of the
    sequence ``like (T, N, ...)`` it was packed from, zero past each row's length."""
    return Packing.of(lengths).unpack(packed, like)


@unpack_by_lengths.register_fake
def _unpack_fake(packed: Tensor, lengths: Tensor, like: Tensor) -> Tensor:
    return sequence_buffer(like, packed.shape[-1], packed.dtype)


def _setup_packing_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    ctx.save_for_backward(inputs[1], inputs[-1] if len(inputs) == 3 else inputs[0])  # lengths, the padded sequence


def _pack_backward(ctx: Any, dpacked: Tensor) -> tuple:
    lengths, x = ctx.saved_tensors
    return unpack_by_lengths(dpacked, lengths, x) if ctx.needs_input_grad[0] else None, None


def _unpack_backward(ctx: Any, doutput: Tensor) -> tuple:
    lengths, _ = ctx.saved_tensors
    return pack_by_lengths(doutput, lengths) if ctx.needs_input_grad[0] else None, None, None


pack_by_lengths.register_autograd(_pack_backward, setup_context=_setup_packing_context)
unpack_by_lengths.register_autograd(_unpack_backward, setup_context=_setup_packing_context)


@torch.library.custom_op("torch_rnn::rnn_cell", mutates_args=(),
                         schema="(Tensor x, Tensor h, Tensor wx, Tensor wh, Tensor? b, str nonlinearity) -> Tensor")
def rnn_cell(x: Tensor, h: Tensor, wx: Tensor, wh: Tensor, b: Optional[Tensor], nonlinearity: str) -> Tensor:
    """One step, :func:`torch_rnn.functional.rnn_step_forward`: x ``(N, D)``, h ``(N, H)`` -> ``(N, H)``."""
    return functional.rnn_step_forward(x, h, wx, wh, b, nonlinearity)[0]


@rnn_cell.register_fake
def _rnn_cell_fake(x: Tensor, h: Tensor, wx: Tensor, wh: Tensor, b: Optional[Tensor], nonlinearity: str) -> Tensor:
    return h.new_empty(x.shape[0], wh.shape[0])


def _setup_cell_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    x, h, wx, wh, b, nonlinearity = inputs
    ctx.save_for_backward(x, h, wx, wh, output)
    ctx.has_bias, ctx.nonlinearity = b is not None, nonlinearity


def _cell_backward(ctx: Any, dnext_h: Tensor) -> tuple:
    """:func:`torch_rnn.functional.rnn_step_backward`, in differentiable operations."""
    x, h, wx, wh, next_h = ctx.saved_tensors
    grads = functional.rnn_step_backward(dnext_h, (x, h, wx, wh, ctx.has_bias, next_h, ctx.nonlinearity))
    return (*(g if need else None for g, need in zip(grads, ctx.needs_input_grad)), None)


rnn_cell.register_autograd(_cell_backward, setup_context=_setup_cell_context)


# ----------------------------------------------------------------------------------------------------------
# Fake kernels of the C++ loops (registered once the extension is loaded: torch_rnn.native.build).
# ----------------------------------------------------------------------------------------------------------
def register_native_fakes() -> None:
    """Fake kernels for ``torch_rnn::recurrence_forward_`` and ``torch_rnn::recurrence_backward`` (their
    comments in ``csrc/recurrence.h`` give the shapes); a no-op when already registered."""
    if getattr(register_native_fakes, "done", False):
        return
    register_native_fakes.done = True

    @torch.library.register_fake("torch_rnn::recurrence_forward_")
    def _forward_fake(p, h0, wh_t, bias, relu, batch_sizes, reverse, x=None, wx_t=None):
        return h0.new_empty(h0.shape)  # h_last; p is written in place

    @torch.library.register_fake("torch_rnn::recurrence_backward")
    def _backward_fake(dh, dh_last, wh, h, relu, batch_sizes, reverse, need_dh0, wx=None):
        N, H = dh_last.shape
        return (sequence_buffer(h, H, h.dtype), h.new_empty(N, H) if need_dh0 else None, h.new_empty(H),
                None if wx is None else sequence_buffer(h, wx.shape[1], h.dtype))


# ----------------------------------------------------------------------------------------------------------
# The sentiment model's head, for compiled code: the Functions' forward, setup and backward in torch_rnn.autograd.
# ----------------------------------------------------------------------------------------------------------
@torch.library.custom_op("torch_rnn::affine", mutates_args=(), schema="(Tensor x, Tensor w, Tensor? b) -> Tensor")
def affine(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    """``x w^T + b`` at every leading index: :func:`torch_rnn.functional.temporal_affine_forward`,
    x ``(..., H)``, w ``(M, H)``, b ``(M,)`` -> ``(..., M)`` (``Affine`` and ``TemporalAffine``)."""
    return functional.temporal_affine_forward(x, w, b)[0]


@affine.register_fake
def _affine_fake(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    return x.new_empty(*x.shape[:-1], w.shape[0])


affine.register_autograd(AffineFunction.backward, setup_context=AffineFunction.setup_context)


@torch.library.custom_op("torch_rnn::temporal_average", mutates_args=(), schema="(Tensor x, Tensor mask) -> Tensor")
def temporal_average(x: Tensor, mask: Tensor) -> Tensor:
    """:func:`torch_rnn.functional.average_forward`: x ``(N, T, M)``, mask ``(N, T)`` of x's dtype -> ``(N, M)``."""
    return functional.average_forward(x, mask)[0]


@temporal_average.register_fake
def _temporal_average_fake(x: Tensor, mask: Tensor) -> Tensor:
    return x.new_empty(x.shape[0], x.shape[2])


temporal_average.register_autograd(TemporalAverageFunction.backward,
                                   setup_context=TemporalAverageFunction.setup_context)


@torch.library.custom_op("torch_rnn::softmax_loss", mutates_args=(), schema="(Tensor scores, Tensor y) -> Tensor")
def softmax_loss(scores: Tensor, y: Tensor) -> Tensor:
    """:func:`torch_rnn.functional.softmax_loss`: scores ``(N, C)``, labels ``(N,)`` int64 -> the mean loss."""
    return functional.softmax_loss(scores, y)[0]


@softmax_loss.register_fake
def _softmax_loss_fake(scores: Tensor, y: Tensor) -> Tensor:
    return scores.new_empty(())


softmax_loss.register_autograd(SoftmaxLossFunction.backward, setup_context=SoftmaxLossFunction.setup_context)


def dispatch(function: type[torch.autograd.Function], op: Any, reference: Any, *args: Any) -> Any:
    """Run one of torch_rnn's computations the way the context needs:

    - eager mode: the autograd ``Function`` (hand-written backward, forward-mode AD, ``torch.func`` rules), or
      its ``forward`` alone when no autograd feature can see the call (:func:`autograd_idle`): ``apply`` itself
      costs 30-100 us a call, 11-16% of a small layer's inference;
    - ``torch.compile`` / ``torch.export``: the custom ``op`` (one opaque node, the same hand-written backward);
    - a ``torch.func`` transform inside compiled code, which custom ops and Dynamo's handling of Functions with
      a ``jvp`` do not support: the ``reference`` equations, traced as they are.
    """
    if not torch.compiler.is_compiling():
        return function.forward(*args) if autograd_idle() else function.apply(*args)
    if torch._C._are_functorch_transforms_active():
        return reference(*args)
    return op(*args)


def autograd_idle() -> bool:
    """Whether no autograd feature can see an eager call: grad mode off (``no_grad``, ``inference_mode``), no
    forward-mode AD level entered (tangents exist only inside ``torch.autograd.forward_ad.dual_level``, which
    works in ``no_grad`` too) and no ``torch.func`` transform active. A Function's ``forward`` then gives what
    its ``apply`` would."""
    return (not torch.is_grad_enabled() and getattr(forward_ad, "_current_level", 0) < 0
            and not torch._C._are_functorch_transforms_active())


@torch.library.custom_op("torch_rnn::embedding", mutates_args=(),
                         schema="(Tensor weight, Tensor indices, int padding_idx) -> Tensor")
def embedding(weight: Tensor, indices: Tensor, padding_idx: int) -> Tensor:
    """``weight[indices]``: weight ``(V, E)``, indices int64 ``(...)`` -> ``(..., E)``; row ``padding_idx`` (-1:
    none) gets no gradient. ``nn.Embedding``'s lookup for compiled code: inductor lowers its backward to a
    generated scatter that is several times slower on the CPU than this one ``index_add``."""
    return torch.nn.functional.embedding(indices, weight)


@embedding.register_fake
def _embedding_fake(weight: Tensor, indices: Tensor, padding_idx: int) -> Tensor:
    return weight.new_empty(*indices.shape, weight.shape[1])


def _setup_embedding_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
    weight, indices, padding_idx = inputs
    ctx.save_for_backward(indices)
    ctx.rows, ctx.padding_idx = weight.shape[0], padding_idx


@torch.library.custom_op("torch_rnn::embedding_backward", mutates_args=(),
                         schema="(Tensor dout, Tensor indices, SymInt rows, int padding_idx) -> Tensor")
def embedding_backward(dout: Tensor, indices: Tensor, rows: int, padding_idx: int) -> Tensor:
    """``dW[k] = sum of dout over the positions holding index k`` ``(rows, E)``, zero at ``padding_idx``; an op of
    its own, so compiled code runs this ``index_add`` rather than a generated scatter."""
    flat = dout.reshape(-1, dout.shape[-1])  # (K, E)
    dweight = flat.new_zeros(rows, flat.shape[1]).index_add_(0, indices.reshape(-1), flat)  # (V, E)
    if padding_idx >= 0:
        dweight[padding_idx] = 0
    return dweight


@embedding_backward.register_fake
def _embedding_backward_fake(dout: Tensor, indices: Tensor, rows: int, padding_idx: int) -> Tensor:
    return dout.new_empty(rows, dout.shape[-1])


def _embedding_backward(ctx: Any, dout: Tensor) -> tuple:
    (indices,) = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None
    return embedding_backward(dout, indices, ctx.rows, ctx.padding_idx), None, None


embedding.register_autograd(_embedding_backward, setup_context=_setup_embedding_context)
