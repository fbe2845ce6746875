"""Fast in-place versions of the recurrence loops in :mod:`torch_rnn.functional`.

Same equations, same argument conventions, tested against the reference functions. They write into
preallocated buffers and so cannot be differentiated, vmapped or traced by autograd: the autograd Functions
use them only for plain tensors with grad mode off (the common training and inference case) and fall back to
the reference functions otherwise (double backward, ``torch.func`` transforms).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

from .functional import activation_derivative


def recurrence_forward_(
    p: Tensor, h0: Tensor, Wh: Tensor, nonlinearity: str = "tanh", batch_sizes: Optional[Sequence[int]] = None
) -> tuple[Tensor, Tensor]:
    """:func:`torch_rnn.functional.recurrence_forward`, overwriting ``p (T, N, H)`` with ``h``.

    Each step is one in-place ``addmm`` into its output slice, then the nonlinearity in place.
    ``p`` must be contiguous so that every step's running rows are a contiguous block.

    Returns:
        ``h`` (which is ``p``) and ``h_last (N, H)``.
    """
    T, N, _ = p.shape
    WhT = Wh.T.contiguous()  # a transposed view as matmul operand is up to 2x slower for small batches
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


def recurrence_backward_(
    dh: Tensor,
    dh_last: Tensor,
    h0: Tensor,
    Wh: Tensor,
    h: Tensor,
    nonlinearity: str = "tanh",
    batch_sizes: Optional[Sequence[int]] = None,
) -> tuple[Tensor, Tensor]:
    """The time loop of :func:`torch_rnn.functional.recurrence_backward`, on preallocated buffers.

    ``da_t = dh_t * f'(h_t) + carry_t * f'(h_t)``: the first product is one pass over the whole sequence
    before the loop; the loop adds the recurrent part in place with ``addcmul_``. ``carry`` starts as
    ``dh_last`` and, row by row, becomes ``W_h^T da_{t+1}`` once the row's later steps are done.

    Returns:
        ``dp (T, N, H)`` and ``dh0 (N, H)``; the weight gradient is one matmul afterwards
        (:func:`torch_rnn.functional.recurrence_weight_grad`).
    """
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
    return dp, carry
