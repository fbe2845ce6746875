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
) -> Tensor:
    """:func:`torch_rnn.functional.recurrence_forward`, overwriting ``p (T, N, H)`` with ``h`` and returning it.

    Each step is one in-place ``addmm`` into its output slice, then the nonlinearity in place.
    ``p`` must be contiguous so that ``p[t, :n]`` is a contiguous block of rows.
    """
    T, N, _ = p.shape
    WhT = Wh.T.contiguous()  # a transposed view as matmul operand is up to 2x slower for small batches
    activation_ = torch.tanh_ if nonlinearity == "tanh" else torch.relu_
    h_prev = h0.contiguous()  # (N, H)
    for t in range(T):
        n = N if batch_sizes is None else batch_sizes[t]
        h_t = p[t, :n]  # (n, H), holds p_t
        h_t.addmm_(h_prev[:n], WhT)  # a_t = p_t + W_h h_{t-1}
        activation_(h_t)  # h_t = f(a_t)
        if n < N:
            p[t, n:].zero_()  # finished rows output zeros, like a padded PackedSequence
        h_prev = p[t]
    return p


def recurrence_backward_(
    dh: Tensor,
    h0: Tensor,
    Wh: Tensor,
    h: Tensor,
    nonlinearity: str = "tanh",
    batch_sizes: Optional[Sequence[int]] = None,
) -> tuple[Tensor, Tensor]:
    """The time loop of :func:`torch_rnn.functional.recurrence_backward`, on preallocated buffers.

    ``da_t = dh_t * f'(h_t) + (W_h^T da_{t+1}) * f'(h_t)``: the first product is one pass over the whole
    sequence before the loop; the loop adds the recurrent part in place with ``addcmul_``.

    Returns:
        ``dp (T, N, H)`` and ``dh0 (N, H)``; the weight gradient is one matmul afterwards
        (:func:`torch_rnn.functional.recurrence_weight_grad`).
    """
    T, N, _ = h.shape
    derivative = activation_derivative(h, nonlinearity)  # (T, N, H)
    dp = dh * derivative  # (T, N, H), a new buffer: the incoming gradient is never modified
    carry = torch.zeros_like(h0)  # (N, H); rows never written stay zero until their last step
    for t in reversed(range(T)):
        n = N if batch_sizes is None else batch_sizes[t]
        da = dp[t, :n]  # (n, H)
        if t < T - 1:
            da.addcmul_(carry[:n], derivative[t, :n])
        if n < N:
            dp[t, n:].zero_()  # no gradient reaches steps past a row's length
        torch.mm(da, Wh, out=carry[:n])  # W_h^T da_t, as rows
    return dp, carry
