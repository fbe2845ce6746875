"""Fast in-place versions of the recurrence loops in :mod:`torch_rnn.functional`.

Same equations, same argument conventions, tested against the reference functions. They write into
preallocated buffers and so cannot be differentiated, vmapped or traced by autograd: the autograd Functions
use them only for plain tensors with grad mode off (the common training and inference case) and fall back to
the reference functions otherwise (double backward, ``torch.func`` transforms).

On the CPU each loop runs in C++ (:mod:`torch_rnn.native`, ``csrc/``) when that extension is
built; the Python loops below are the same algorithm and run on other devices or when it is not. The C++
loops also take the layer's input: the forward loop then computes the input projection and the backward loop
``dx`` and the weight gradients step by step (:func:`projects_input`), which the Python loops leave to one
matmul each outside the loop.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import torch
from torch import Tensor

from . import native
from .functional import activation_derivative
from .layout import (batch_major, pack_padded, packed_coordinates, pad_packed, reverse_in_time, sequence_lengths,
                     step_offsets)


def _native_ops(t: Tensor):
    """The C++ loops for a CPU float tensor when they are built, else None."""
    if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64):
        return None
    return native.ops()


def projects_input(x: Tensor) -> bool:
    """Whether the loops take ``x`` and ``W_x`` themselves (the C++ loops, for a float ``x``): the forward loop
    then computes ``p_t = W_x x_t`` step by step and the backward loop ``dx_t = W_x^T da_t``, each while the
    step's rows are in cache, instead of one large matmul before or after the loop. (The C++ loops still take
    one large matmul themselves when ``W_x`` and ``W_h`` are too large to stay in a core's cache from step to
    step, over 2 MiB of float32 together: ``csrc`` ``panels_fit_in_cache``.)"""
    return x.is_floating_point() and _native_ops(x) is not None


def recurrence_forward_(
    p: Tensor,
    h0: Tensor,
    Wh: Tensor,
    nonlinearity: str = "tanh",
    batch_sizes: Optional[Sequence[int]] = None,
    reverse: bool = False,
    bias: Optional[Tensor] = None,
    x: Optional[Tensor] = None,
    Wx: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor]:
    """:func:`torch_rnn.functional.recurrence_forward`, overwriting ``p (T, N, H)`` with ``h``.

    ``bias (H,)``, when given, is added to every ``p_t`` inside the loop (``p`` then holds ``W_x x_t`` alone),
    which spares the input projection a broadcast pass over the whole sequence.

    Given ``x (T, N, D)`` (packed: ``(R, D)``) and ``Wx (H, D)``, ``p``'s contents are not read: ``p_t = W_x x_t``
    is computed first (:func:`projects_input`: by the C++ loop itself, step by step). ``p`` is then only the
    output buffer, best laid out like ``x``.

    Each step is one in-place ``addmm`` into its output slice, then the nonlinearity in place. ``p`` is
    time-major; or the ``(T, N, H)`` transposed view of batch-first memory, every step's running rows then a
    block of rows ``T * H`` apart, which the matmul takes as they are; or packed ``(R, H)`` with
    ``batch_sizes`` (:func:`torch_rnn.layout.packed_coordinates`).

    ``reverse=True`` runs every row backwards from its own last step (the equations on
    :func:`torch_rnn.layout.reverse_in_time` of ``p``, the result reversed back): the C++ loops index the
    steps directly, the Python loops reverse copies.

    Returns:
        ``h`` (which is ``p``) and ``h_last (N, H)``.
    """
    ops = _native_ops(p)
    if ops is not None:  # the C++ loops pack the transposed views into panels as they lie: no copy
        return p, ops.recurrence_forward_(p, h0, Wh.T, bias, nonlinearity == "relu", list(batch_sizes or []),
                                          reverse, x, None if Wx is None else Wx.T)
    WhT = Wh.T.contiguous()  # a transposed view as matmul operand is up to 2x slower for small batches
    if x is not None:
        p.copy_(x @ Wx.T)
    if bias is not None:
        p.add_(bias)
    if p.dim() == 2:  # packed: the Python loops run on the padded sequence
        h, h_last = recurrence_forward_(pad_packed(p, batch_sizes), h0, Wh, nonlinearity, batch_sizes, reverse)
        return p.copy_(pack_padded(h, batch_sizes)), h_last
    if reverse:
        h, h_last = recurrence_forward_(reverse_in_time(p, batch_sizes).contiguous(), h0, Wh, nonlinearity, batch_sizes)
        return p.copy_(reverse_in_time(h, batch_sizes)), h_last
    T, N, _ = p.shape
    if nonlinearity == "relu":
        activation_ = torch.relu_
    else:
        activation_ = _tanh_via_sigmoid_ if p.device.type == "cpu" else torch.tanh_
    steps = p.unbind(0)  # T views (N, H); one call instead of an indexing op per step
    h_prev = h0.contiguous()  # (N, H)
    if batch_sizes is None:
        for h_t in steps:
            h_t.addmm_(h_prev, WhT)  # a_t = p_t + W_h h_{t-1}
            activation_(h_t)  # h_t = f(a_t)
            h_prev = h_t
        return p, h_prev.clone()
    h_last = torch.empty_like(h_prev)
    for t, h_t in enumerate(steps):
        n, n_next = batch_sizes[t], batch_sizes[t + 1] if t + 1 < T else 0
        if n < N:
            h_t[n:].zero_()  # finished rows output zeros, like a padded PackedSequence
        running = h_t[:n]
        running.addmm_(h_prev[:n], WhT)
        activation_(running)
        if n_next < n:
            h_last[n_next:n] = running[n_next:]  # rows whose last step is t
        h_prev = h_t
    return p, h_last


def _tanh_via_sigmoid_(x: Tensor) -> Tensor:
    """``tanh`` in place, on the CPU. For blocks of 4096 elements or more as ``2 sigmoid(2x) - 1``: torch's
    vectorised sigmoid makes these four passes about 3x faster than its CPU tanh (float32 error < 2e-7);
    below that size the extra per-op overhead loses."""
    if x.numel() >= 4096:
        return x.mul_(2).sigmoid_().mul_(2).sub_(1)
    return x.tanh_()


class LoopGradients(NamedTuple):
    """What :func:`recurrence_backward_` returns; the fields it was not asked for are None."""

    dp: Tensor  # (T, N, H) in h's memory layout
    dh0: Optional[Tensor]  # (N, H), when need_dh0
    db: Tensor  # (H,)
    dx: Optional[Tensor]  # (T, N, D) in h's memory layout, given Wx


def recurrence_backward_(
    dh: Tensor,
    dh_last: Tensor,
    h0: Tensor,
    Wh: Tensor,
    h: Tensor,
    nonlinearity: str = "tanh",
    batch_sizes: Optional[Sequence[int]] = None,
    reverse: bool = False,
    need_dh0: bool = True,
    Wx: Optional[Tensor] = None,
) -> LoopGradients:
    """The time loop of :func:`torch_rnn.functional.recurrence_backward`, on preallocated buffers.

    ``da_t = dh_t * f'(h_t) + carry_t * f'(h_t)``: the first product is one pass over the whole sequence
    before the loop; the loop adds the recurrent part in place with ``addcmul_``. ``carry`` starts as
    ``dh_last`` and, row by row, becomes ``W_h^T da_{t+1}`` once the row's later steps are done.

    The C++ loops fuse that product into the loop (one pass per step) and write ``dp`` in ``h``'s memory
    layout; ``reverse`` is as in :func:`recurrence_forward_`.

    Returns :class:`LoopGradients`: ``dp (T, N, H)``, ``dh0 (N, H)`` and ``db (H,)``, the sum of ``dp`` over
    steps and rows (the C++ loop adds it up as it goes, in double precision). With ``need_dh0=False``, ``dh0``
    is None; the C++ loop then saves its last matmul and its buffer (the gradient arriving at each step is
    kept in ``dp``'s own rows). Given ``Wx (H, D)``, also ``dx = dp W_x`` ``(T, N, D)`` in ``dp``'s memory
    layout (the C++ loop computes it step by step, :func:`projects_input`). The caller takes ``dW_x`` and
    ``dW_h`` as one matmul each over ``dp`` (:func:`recurrence_weight_grad` for ``dW_h``).
    """
    ops = _native_ops(h)
    if ops is not None:
        grads = LoopGradients(*ops.recurrence_backward(
            dh, dh_last, Wh, h, nonlinearity == "relu", list(batch_sizes or []), reverse, need_dh0, Wx))
    else:
        grads = _python_recurrence_backward_(dh, dh_last, h0, Wh, h, nonlinearity, batch_sizes, reverse, need_dh0, Wx)
    return grads


def _python_recurrence_backward_(
    dh: Tensor,
    dh_last: Tensor,
    h0: Tensor,
    Wh: Tensor,
    h: Tensor,
    nonlinearity: str,
    batch_sizes: Optional[Sequence[int]],
    reverse: bool,
    need_dh0: bool,
    Wx: Optional[Tensor] = None,
) -> LoopGradients:
    """The Python loops of :func:`recurrence_backward_`."""
    if Wx is not None:
        dp, dh0, db, *_ = _python_recurrence_backward_(dh, dh_last, h0, Wh, h, nonlinearity, batch_sizes, reverse,
                                                       need_dh0)
        dx = (dp.transpose(0, 1) @ Wx).transpose(0, 1) if batch_major(dp) else dp @ Wx  # in dp's layout
        return LoopGradients(dp, dh0, db, dx)
    if h.dim() == 2:  # packed: the Python loops run on the padded sequence
        dp, dh0, db, *_ = _python_recurrence_backward_(pad_packed(dh, batch_sizes), dh_last, h0, Wh,
                                                       pad_packed(h, batch_sizes), nonlinearity, batch_sizes, reverse,
                                                       need_dh0)
        return LoopGradients(pack_padded(dp, batch_sizes), dh0, db, None)
    if reverse:
        dp, dh0, db, *_ = _python_recurrence_backward_(reverse_in_time(dh, batch_sizes), dh_last, h0, Wh,
                                                       reverse_in_time(h, batch_sizes), nonlinearity, batch_sizes,
                                                       False, need_dh0)
        return LoopGradients(reverse_in_time(dp, batch_sizes), dh0, db, None)
    T, N, _ = h.shape
    derivative = activation_derivative(h, nonlinearity)  # (T, N, H)
    dp = dh * derivative  # (T, N, H), a new buffer: the incoming gradient is never modified
    carry = dh_last.clone(memory_format=torch.contiguous_format)  # (N, H)
    steps, derivatives = dp.unbind(0), derivative.unbind(0)  # T views (N, H) each
    for t in reversed(range(T)):
        da, derivative_t, carry_t = steps[t], derivatives[t], carry
        n = N if batch_sizes is None else batch_sizes[t]
        if n < N:
            da[n:].zero_()  # no gradient reaches steps past a row's length
            da, derivative_t, carry_t = da[:n], derivative_t[:n], carry[:n]
        da.addcmul_(carry_t, derivative_t)
        torch.mm(da, Wh, out=carry_t)  # W_h^T da_t, as rows
    return LoopGradients(dp, carry if need_dh0 else None, dp.sum((0, 1)), None)


def recurrence_weight_grad(
    dp: Tensor, h0: Tensor, h: Tensor, batch_sizes: Optional[Sequence[int]] = None, reverse: bool = False
) -> Tensor:
    """``dW_h = sum_t da_t^T h_prev_t`` as one matmul over the rows of ``dp`` and ``h`` in memory order.

    ``h_prev_t`` is ``h_{t-1}`` (``h_{t+1}`` in reverse) and ``h0`` at a row's first step. Flattened in memory
    order, ``h_prev`` is ``h`` shifted by one step: ``N`` rows for time-major memory, one row for batch-major
    memory, where the shift also pairs each sequence's first step with the previous sequence's last one; those
    ``N - 1`` pairs are subtracted. Steps past a row's length hold zeros in ``dp`` and ``h``, so they add
    nothing. ``dp`` and ``h`` share a memory layout (the kernels make it so).

    Packed ``(R, H)`` sequences gather ``h_prev`` (one copy) and take one matmul.
    """
    if h.dim() == 2:
        return dp.T @ _packed_previous_states(h, h0, batch_sizes, reverse)
    T, N, H = h.shape
    if T == 0:  # no step: nothing to sum
        return h.new_zeros(H, H)
    first = 0 if not reverse else T - 1  # where every full-length row starts
    if batch_major(dp) and batch_major(h):
        flat_dp, flat_h = dp.transpose(0, 1).reshape(-1, H), h.transpose(0, 1).reshape(-1, H)  # views
        if reverse:
            dWh = flat_dp[:-1].T @ flat_h[1:] - dp[T - 1, :-1].T @ h[0, 1:]
        else:
            dWh = flat_dp[1:].T @ flat_h[:-1] - dp[0, 1:].T @ h[T - 1, :-1]
    else:
        flat_dp, flat_h = dp.reshape(-1, H), h.reshape(-1, H)
        dWh = flat_dp[: -N or None].T @ flat_h[N:] if reverse else flat_dp[N:].T @ flat_h[: -N or None]
    if reverse and batch_sizes is not None:  # a reversed row starts at its own last step
        dp_first = dp[sequence_lengths(batch_sizes, N) - 1, torch.arange(N)]  # (N, H)
    else:
        dp_first = dp[first]
    return dWh.addmm_(dp_first.T, h0)


def _packed_previous_states(h: Tensor, h0: Tensor, batch_sizes: Sequence[int], reverse: bool) -> Tensor:
    """``h_prev`` of every row of a packed sequence: its state one step earlier in its own direction, or ``h0``."""
    sizes = torch.tensor(batch_sizes)
    T = len(batch_sizes)
    t, i = packed_coordinates(batch_sizes)  # (R,) every row's step and sequence
    first_row = step_offsets(batch_sizes)  # (T,)
    before = (t + 1).clamp(max=T - 1) if reverse else (t - 1).clamp(min=0)  # the step visited before t
    has_previous = (t + 1 < T) & (i < sizes[before]) if reverse else t > 0
    previous = h.index_select(0, torch.where(has_previous, first_row[before] + i, 0).to(h.device))  # (R, H)
    starts = (~has_previous).nonzero().squeeze(1)  # rows at their sequence's first step
    return previous.index_copy_(0, starts.to(h.device), h0.index_select(0, i[starts].to(h.device)))
