"""``torch.autograd.Function``s that run the hand-written backward of :mod:`torch_rnn.functional`.

Autograd never records the time loop: each Function is one node in the graph, and its ``backward`` is the
hand-written backpropagation through time. Every Function here supports

- ``backward`` (skipping the gradients nobody asked for, via ``ctx.needs_input_grad``),
- double backward: the backward is written in differentiable operations, so autograd can differentiate it
  (``create_graph=True``, gradgradcheck) on any device, unlike cuDNN's RNN,
- forward-mode AD (``jvp``) and ``torch.func`` transforms (``vmap`` rules are generated from the
  differentiable reference code; per-sample gradients with ``vmap(grad(...))`` work).

The sequence Function takes the fast in-place kernels of :mod:`torch_rnn.kernels` when it can: plain
tensors, and (in backward) grad mode off, which is what an ordinary ``loss.backward()`` sees.
"""
from __future__ import annotations

import inspect
from typing import Any, Optional, Sequence

import torch
from torch import Tensor
from torch._C._functorch import is_functorch_wrapped_tensor, is_legacy_batchedtensor

from . import functional, kernels
from .layout import PackRows, batch_major, batch_major_sequence, has_values, padded, sequence_buffer, unpadded
from .threads import own_threads


def _plain(*tensors: Optional[Tensor]) -> bool:
    """True when no tensor is batched or wrapped by a ``torch.func`` transform, so in-place kernels are safe.

    ``torch.func`` wraps its tensors; gradcheck's batched-grad check uses the legacy vmap instead.
    """
    return not any(
        t is not None and (is_functorch_wrapped_tensor(t) or is_legacy_batchedtensor(t)) for t in tensors
    )


def _input_projection(x: Tensor, Wx: Tensor, b: Optional[Tensor]) -> Tensor:
    """``p_t = W_x x_t + b`` for all steps at once, in ``x``'s memory layout (time-major or batch-major);
    integer ``x`` holds one-hot indices (-1 = zero vector)."""
    if batch_major_sequence(x):  # one matmul over the rows as they lie, no transposed copy
        p = _input_projection(x.transpose(0, 1), Wx, b).transpose(0, 1)
        # Inside a Function's forward (grad mode off), detach(): the same memory, but not an autograd view,
        # which a Function's output must not be for forward-mode AD (its tangent would share the view's
        # layout). With grad mode on (reference_layer_forward traced under torch.compile) the view stays.
        return p if torch.is_grad_enabled() else p.detach()
    if has_values(x):
        return functional.temporal_affine_forward(x, Wx, b)[0]
    return functional.onehot_affine_forward(x, Wx, b)[0]


def _input_projection_backward(
    dp: Tensor, x: Tensor, Wx: Tensor, need_dx: bool, need_dWx: bool
) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """``dx`` and ``dW_x`` of :func:`_input_projection`, each one matmul over all steps in memory order (the
    bias gradient, a sum of ``dp``, comes from the recurrence's backward)."""
    if batch_major_sequence(x) and batch_major(dp):
        dx, dWx = _input_projection_backward(dp.transpose(0, 1), x.transpose(0, 1), Wx, need_dx, need_dWx)
        return None if dx is None else dx.transpose(0, 1), dWx
    if has_values(x):
        dx, dWx, _ = functional.temporal_affine_backward(dp, (x, Wx, False), need_dx, need_dWx)
        return dx, dWx
    dWx, _ = functional.onehot_affine_backward(dp, (x, Wx.shape, False))
    return None, dWx


def _fast_loops_apply(*tensors: Optional[Tensor]) -> bool:
    """Whether the in-place loops of :mod:`torch_rnn.kernels` may run: plain (not ``torch.func``-wrapped) real
    tensors. Complex sequences take the reference equations, whose backward conjugates the local derivatives."""
    return _plain(*tensors) and not any(t is not None and t.is_complex() for t in tensors)


def layer_forward(
    x: Tensor,
    h0: Tensor,
    Wx: Tensor,
    Wh: Tensor,
    b: Optional[Tensor],
    nonlinearity: str,
    batch_sizes: Optional[Sequence[int]],
    reverse: bool,
) -> tuple[Tensor, Tensor]:
    """One RNN layer over a whole sequence (:class:`RNNFunction`'s forward; the ``torch_rnn::rnn_layer`` op's
    kernel): the fast loops for plain real tensors, else the differentiable reference equations.

    Returns ``h`` (laid out like ``x``, :func:`sequence_buffer`, for the fast loops) and ``h_last (N, H)``.
    """
    if _fast_loops_apply(x, h0, Wx, Wh, b):  # the fast loops add the bias themselves
        with own_threads(h0.shape[0], Wx.shape[1], Wh.shape[0]):
            if kernels.projects_input(x):  # and the C++ loop projects x step by step, into a buffer laid out like x
                p = sequence_buffer(x, Wh.shape[0], Wh.dtype)
                return kernels.recurrence_forward_(p, h0, Wh, nonlinearity, batch_sizes, reverse, bias=b, x=x, Wx=Wx)
            p = _input_projection(x, Wx, None)  # (T, N, H), a fresh buffer
            return kernels.recurrence_forward_(p, h0, Wh, nonlinearity, batch_sizes, reverse, bias=b)
    return reference_layer_forward(x, h0, Wx, Wh, b, nonlinearity, batch_sizes, reverse)


def reference_layer_forward(
    x: Tensor,
    h0: Tensor,
    Wx: Tensor,
    Wh: Tensor,
    b: Optional[Tensor],
    nonlinearity: str,
    batch_sizes: Optional[Sequence[int]],
    reverse: bool,
) -> tuple[Tensor, Tensor]:
    """:func:`layer_forward` in the reference equations of :mod:`torch_rnn.functional` alone: differentiable
    torch operations, a Python loop over the steps. Returns time-major ``h`` and ``h_last (N, H)``."""
    p = _input_projection(x, Wx, b)
    packed = p.dim() == 2
    h, h_last = functional.recurrence_forward(padded(p, batch_sizes, reverse), h0, Wh, nonlinearity, batch_sizes)
    return unpadded(h, batch_sizes, reverse, packed), h_last


def layer_backward(
    dh: Tensor,
    dh_last: Tensor,
    x: Tensor,
    h0: Tensor,
    Wx: Tensor,
    Wh: Tensor,
    h: Tensor,
    nonlinearity: str,
    batch_sizes: Optional[Sequence[int]],
    reverse: bool,
    needs_input_grad: Sequence[bool],
) -> tuple[Optional[Tensor], ...]:
    """Backpropagation through time for :func:`layer_forward`: ``(dx, dh0, dW_x, dW_h, db)``, None where
    ``needs_input_grad`` (five flags, in that order) says nobody asked (and ``dx`` for one-hot indices).

    With grad mode off and plain real tensors (an ordinary ``loss.backward()``) the fast loops run; otherwise
    the reference equations, written in differentiable operations, so autograd can differentiate them again
    (double backward, ``torch.func`` transforms).
    """
    need_dx, need_dh0, need_dWx, need_dWh, need_db = needs_input_grad[:5]
    need_dx = need_dx and has_values(x)
    if not torch.is_grad_enabled() and _fast_loops_apply(dh, dh_last, x, h0, Wx, Wh, h):
        with own_threads(h0.shape[0], Wx.shape[1], Wh.shape[0]):
            return _fast_layer_backward(dh, dh_last, x, h0, Wx, Wh, h, nonlinearity, batch_sizes, reverse,
                                        (need_dx, need_dh0, need_dWx, need_dWh, need_db))
    # the reference equations, on the padded and (in reverse) reversed sequences
    dp, dh0, dWh = functional.recurrence_backward(padded(dh, batch_sizes, reverse), dh_last, h0, Wh,
                                         padded(h, batch_sizes, reverse), nonlinearity, batch_sizes)
    dp = unpadded(dp, batch_sizes, reverse, h.dim() == 2)
    db = dp.sum(tuple(range(dp.dim() - 1))) if need_db else None
    dx, dWx = _input_projection_backward(dp, x, Wx, need_dx, need_dWx)
    return (dx if need_dx else None, dh0 if need_dh0 else None, dWx if need_dWx else None,
            dWh if need_dWh else None, db if need_db else None)


def _fast_layer_backward(dh: Tensor, dh_last: Tensor, x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, h: Tensor,
                         nonlinearity: str, batch_sizes: Optional[Sequence[int]], reverse: bool,
                         needs: tuple[bool, bool, bool, bool, bool]) -> tuple[Optional[Tensor], ...]:
    """:func:`layer_backward` in the fast loops of :mod:`torch_rnn.kernels`."""
    need_dx, need_dh0, need_dWx, need_dWh, need_db = needs
    in_loop = kernels.projects_input(x)  # the C++ loop computes dx step by step
    dp, dh0, db, dx = kernels.recurrence_backward_(dh, dh_last, h0, Wh, h, nonlinearity, batch_sizes, reverse,
                                                   need_dh0=need_dh0, Wx=Wx if need_dx and in_loop else None)
    dWh = kernels.recurrence_weight_grad(dp, h0, h, batch_sizes, reverse) if need_dWh else None  # one matmul
    dx_after, dWx = _input_projection_backward(dp, x, Wx, need_dx and dx is None, need_dWx)
    dx = dx_after if dx is None else dx
    return (dx if need_dx else None, dh0 if need_dh0 else None, dWx if need_dWx else None,
            dWh if need_dWh else None, db if need_db else None)


class RNNFunction(torch.autograd.Function):
    """One RNN layer over a whole sequence, time-major: :func:`layer_forward` and :func:`layer_backward`.

    Forward: the input projection of all steps as one matmul, then only the recurrence inside the loop.
    Backward: the loop computes ``da_t`` for every step; then ``dW_x``, ``dW_h``, ``db`` and ``dx`` are each
    one large matmul (or sum) over all steps. The C++ loops (float CPU tensors, :func:`kernels.projects_input`)
    go further: the forward loop computes ``W_x x_t`` step by step and the backward loop ``dx_t``, while each
    step's rows are in cache. A batch-first input (the transposed view of
    ``(N, T, D)`` memory) is used as it lies: ``h`` and every gradient keep that layout, so nothing is
    transposed.

    This Function is the eager entry point (it adds forward-mode AD and ``torch.func`` rules); under
    ``torch.compile`` and ``torch.export`` the same kernels run as the custom op ``torch_rnn::rnn_layer``
    (:mod:`torch_rnn.ops`).

    Inputs:
        x: ``(T, N, D)`` inputs, or ``(T, N)`` integer one-hot indices in ``[-1, D)`` (-1 = zero vector); or
            packed with ``batch_sizes`` (``PackedSequence.data``'s layout): ``(R, D)`` or ``(R,)``.
        h0: ``(N, H)`` initial hidden state.
        Wx: ``(H, D)``; Wh: ``(H, H)``; b: ``(H,)`` or None.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        batch_sizes: None, or ``T`` non-increasing counts of the rows still running at each step
            (rows sorted by length, longest first; PackedSequence's convention).
        reverse: run every row backwards in time from its own last step (a bidirectional RNN's second
            direction); ``h`` stays in the input's time order.

    Outputs:
        h: ``(T, N, H)``, zero at steps past a row's length; packed ``(R, H)`` for a packed input.
        h_last: ``(N, H)``, each row's hidden state after its last step (``h_n``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: Tensor,
        h0: Tensor,
        Wx: Tensor,
        Wh: Tensor,
        b: Optional[Tensor],
        nonlinearity: str,
        batch_sizes: Optional[Sequence[int]],
        reverse: bool = False,
    ) -> tuple[Tensor, Tensor]:
        return layer_forward(x, h0, Wx, Wh, b, nonlinearity, batch_sizes, reverse)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: tuple[Tensor, Tensor]) -> None:
        x, h0, Wx, Wh, _, nonlinearity, batch_sizes, *rest = inputs
        h, _ = output
        ctx.save_for_backward(x, h0, Wx, Wh, h)
        ctx.save_for_forward(x, h0, Wx, Wh, h)
        ctx.nonlinearity = nonlinearity
        ctx.batch_sizes = batch_sizes
        ctx.reverse = bool(rest and rest[0])

    @staticmethod
    def backward(ctx: Any, dh: Tensor, dh_last: Tensor) -> tuple:
        x, h0, Wx, Wh, h = ctx.saved_tensors
        grads = layer_backward(dh, dh_last, x, h0, Wx, Wh, h, ctx.nonlinearity, ctx.batch_sizes, ctx.reverse,
                               ctx.needs_input_grad)
        return (*grads, None, None, None)

    @staticmethod
    def jvp(
        ctx: Any,
        dx: Optional[Tensor],
        dh0: Optional[Tensor],
        dWx: Optional[Tensor],
        dWh: Optional[Tensor],
        db: Optional[Tensor],
        _nonlinearity: None,
        _batch_sizes: None,
        _reverse: None = None,
    ) -> tuple[Tensor, Tensor]:
        x, h0, Wx, Wh, h = ctx.saved_tensors
        dp = torch.zeros_like(h)  # tangent of p_t = W_x x_t + b
        if dx is not None and has_values(x):
            dp = dp + functional.temporal_affine_forward(dx, Wx, None)[0]
        if dWx is not None:
            dp = dp + _input_projection(x, dWx, None)
        if db is not None:
            dp = dp + db
        batch_sizes, reverse = ctx.batch_sizes, ctx.reverse
        dh, dh_last = functional.recurrence_jvp(padded(dp, batch_sizes, reverse), dh0, dWh, h0, Wh,
                                       padded(h, batch_sizes, reverse), ctx.nonlinearity, batch_sizes)
        return unpadded(dh, batch_sizes, reverse, h.dim() == 2), dh_last


class RNNCellFunction(torch.autograd.Function):
    """One RNN step, :func:`torch_rnn.functional.rnn_step_forward` / ``rnn_step_backward``.

    Inputs: x ``(N, D)``, h ``(N, H)``, Wx ``(H, D)``, Wh ``(H, H)``, b ``(H,)`` or None, nonlinearity.
    Output: next_h ``(N, H)``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, h: Tensor, Wx: Tensor, Wh: Tensor, b: Optional[Tensor], nonlinearity: str) -> Tensor:
        return functional.rnn_step_forward(x, h, Wx, Wh, b, nonlinearity)[0]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, h, Wx, Wh, b, nonlinearity = inputs
        ctx.save_for_backward(x, h, Wx, Wh, output)
        ctx.save_for_forward(x, h, Wx, Wh, output)
        ctx.has_bias = b is not None
        ctx.nonlinearity = nonlinearity

    @staticmethod
    def backward(ctx: Any, dnext_h: Tensor) -> tuple:
        x, h, Wx, Wh, next_h = ctx.saved_tensors
        cache = (x, h, Wx, Wh, ctx.has_bias, next_h, ctx.nonlinearity)
        grads = functional.rnn_step_backward(dnext_h, cache)
        return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad)) + (None,)

    @staticmethod
    def jvp(ctx: Any, dx, dh, dWx, dWh, db, _nonlinearity) -> Tensor:
        x, h, Wx, Wh, next_h = ctx.saved_tensors
        da = torch.zeros_like(next_h)  # tangent of a = W_x x + W_h h + b
        for weight, weight_tangent, inp, inp_tangent in ((Wx, dWx, x, dx), (Wh, dWh, h, dh)):
            if inp_tangent is not None:
                da = da + inp_tangent @ weight.T
            if weight_tangent is not None:
                da = da + inp @ weight_tangent.T
        if db is not None:
            da = da + db
        return functional.activation_derivative(next_h, ctx.nonlinearity) * da


class AffineFunction(torch.autograd.Function):
    """:func:`torch_rnn.functional.temporal_affine_forward`, ``x W^T + b`` at every leading index: x ``(..., H)``
    (``(N, T, H)`` for the temporal affine layer, ``(N, H)`` for the last one), W ``(M, H)``, b ``(M,)`` or None
    -> ``(..., M)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, W: Tensor, b: Optional[Tensor]) -> Tensor:
        return functional.temporal_affine_forward(x, W, b)[0]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, W, b = inputs
        ctx.save_for_backward(x, W)
        ctx.save_for_forward(x, W)
        ctx.has_bias = b is not None

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple:
        x, W = ctx.saved_tensors
        need_dx, need_dW, need_db = ctx.needs_input_grad
        dx, dW, db = functional.temporal_affine_backward(dout, (x, W, ctx.has_bias), need_dx, need_dW)
        return dx, dW, db if need_db else None

    @staticmethod
    def jvp(ctx: Any, dx: Optional[Tensor], dW: Optional[Tensor], db: Optional[Tensor]) -> Tensor:
        """Tangent of ``x W^T + b``: ``dx W^T + x dW^T + db`` (the map is bilinear in ``x`` and ``W``)."""
        x, W = ctx.saved_tensors
        terms = [functional.temporal_affine_forward(a, w, None)[0] for a, w in ((dx, W), (x, dW)) if a is not None
                 and w is not None]
        out = sum(terms[1:], terms[0]) if terms else x.new_zeros(())
        return out if db is None else out + db


class TemporalAverageFunction(torch.autograd.Function):
    """:func:`torch_rnn.functional.average_forward`: x ``(N, T, M)``, mask ``(N, T)`` -> ``(N, M)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, mask: Tensor) -> Tensor:
        return functional.average_forward(x, mask)[0]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        _, mask = inputs
        ctx.save_for_backward(mask)
        ctx.save_for_forward(mask, output)

    @staticmethod
    def backward(ctx: Any, dout: Tensor) -> tuple:
        (mask,) = ctx.saved_tensors
        return functional.average_backward(dout, (mask,)) if ctx.needs_input_grad[0] else None, None

    @staticmethod
    def jvp(ctx: Any, dx: Optional[Tensor], _dmask: None) -> Tensor:
        mask, out = ctx.saved_tensors
        return torch.zeros_like(out) if dx is None else functional.average_forward(dx, mask)[0]


class SoftmaxLossFunction(torch.autograd.Function):
    """:func:`torch_rnn.functional.softmax_loss`: scores ``(N, C)``, labels ``(N,)`` -> mean cross-entropy."""

    generate_vmap_rule = True

    @staticmethod
    def forward(scores: Tensor, y: Tensor) -> Tensor:
        return functional.softmax_loss(scores, y)[0]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        scores, y = inputs
        ctx.save_for_backward(scores, y)
        ctx.save_for_forward(scores, y)

    @staticmethod
    def backward(ctx: Any, dloss: Tensor) -> tuple:
        scores, y = ctx.saved_tensors
        dscores = functional.softmax_loss(scores, y)[1] * dloss if ctx.needs_input_grad[0] else None
        return dscores, None

    @staticmethod
    def jvp(ctx: Any, dscores: Optional[Tensor], _dy: None) -> Tensor:
        scores, y = ctx.saved_tensors
        grad = functional.softmax_loss(scores, y)[1]
        return (grad * dscores).sum() if dscores is not None else grad.new_zeros(())


# torch.autograd.Function.apply binds a Function's default arguments with inspect.signature(forward) on every call
# when the Function defines setup_context (torch 2.13; pytorch/pytorch#189573 tracks that overhead): about 40 us
# a call on a 2-core Xeon, where a one-step RNN layer's whole training step takes about 500 us.
# inspect.signature returns a function's __signature__ when it has one, so computing it once removes that cost.
for _function in (RNNFunction, RNNCellFunction, AffineFunction, TemporalAverageFunction, SoftmaxLossFunction,
                  PackRows):
    _function.forward.__signature__ = inspect.signature(_function.forward)
del _function
