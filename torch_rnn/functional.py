"""The vanilla RNN's equations as plain tensor functions, each forward next to its backward.

Every forward returns ``(out, cache)``; the matching backward takes the upstream gradient and that cache.
Batch rows: one step's input ``x_t`` is ``(N, D)``. Weights are in the equations' layout, which is also
``torch.nn.RNN``'s: ``Wx (H, D)``, ``Wh (H, H)``, ``b (H,)``, so ``a_t = W_x x_t + W_h h_{t-1} + b`` becomes
``a = x @ Wx.T + prev_h @ Wh.T + b`` on a batch of rows.

These functions use only differentiable torch operations: autograd can differentiate the backward functions
themselves (double backward), and ``torch.func`` transforms (``vmap``, ``grad``, ``jvp``) apply to them.

Complex tensors work too. A backward then multiplies by the conjugate of every local derivative (``dx = da
conj(W_x)``, ``da = dh * conj(1 - h^2)``), PyTorch's convention for the gradient of a real loss with respect to
a complex input; for real tensors ``conj()`` returns the tensor itself at no cost.
They are the reference the fast in-place kernels in :mod:`torch_rnn.kernels` are tested against.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

NONLINEARITIES = ("tanh", "relu")


# ----------------------------------------------------------------------------------------------------------
# Nonlinearity and its local derivative, written in terms of the output h = f(a).
# ----------------------------------------------------------------------------------------------------------
def activation(a: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """``h = tanh(a)`` or ``h = relu(a)``."""
    return torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)


def activation_derivative(h: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """``dh/da`` from the output alone: ``1 - h^2`` for tanh, ``1[h > 0]`` for relu."""
    if nonlinearity == "tanh":
        return 1 - h * h
    return (h > 0).to(h.dtype)


# ----------------------------------------------------------------------------------------------------------
# One time step.
# ----------------------------------------------------------------------------------------------------------
def rnn_step_forward(
    x: Tensor, prev_h: Tensor, Wx: Tensor, Wh: Tensor, b: Optional[Tensor], nonlinearity: str = "tanh"
) -> tuple[Tensor, tuple]:
    """One step: ``a_t = W_x x_t + W_h h_{t-1} + b``, ``h_t = tanh(a_t)``.

    Args:
        x: ``(N, D)`` inputs of this step.
        prev_h: ``(N, H)`` hidden state ``h_{t-1}``.
        Wx: ``(H, D)`` input-to-hidden weights.
        Wh: ``(H, H)`` hidden-to-hidden weights.
        b: ``(H,)`` bias, or None for no bias.
        nonlinearity: ``"tanh"`` (the report's) or ``"relu"``.

    Returns:
        next_h: ``(N, H)`` hidden state ``h_t``.
        cache: what :func:`rnn_step_backward` needs.
    """
    a = x @ Wx.T + prev_h @ Wh.T  # (N, H)
    if b is not None:
        a = a + b
    next_h = activation(a, nonlinearity)
    return next_h, (x, prev_h, Wx, Wh, b is not None, next_h, nonlinearity)


def rnn_step_backward(dnext_h: Tensor, cache: tuple) -> tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Backward of one step, with ``da = dh_t * (1 - h_t^2)``:

    ``dx_t = W_x^T da``, ``dh_{t-1} = W_h^T da``, ``dW_x = da x_t^T``, ``dW_h = da h_{t-1}^T``, ``db = da``
    (summed over the batch rows).

    Args:
        dnext_h: ``(N, H)`` gradient of the loss with respect to ``h_t``.
        cache: from :func:`rnn_step_forward`.

    Returns:
        ``dx (N, D)``, ``dprev_h (N, H)``, ``dWx (H, D)``, ``dWh (H, H)``, ``db (H,)`` (None without bias).
    """
    x, prev_h, Wx, Wh, has_bias, next_h, nonlinearity = cache
    da = dnext_h * activation_derivative(next_h, nonlinearity).conj()  # (N, H)
    dx = da @ Wx.conj()  # (N, D)
    dprev_h = da @ Wh.conj()  # (N, H)
    dWx = da.T @ x.conj()  # (H, D)
    dWh = da.T @ prev_h.conj()  # (H, H)
    db = da.sum(0) if has_bias else None  # (H,)
    return dx, dprev_h, dWx, dWh, db


# ----------------------------------------------------------------------------------------------------------
# Temporal affine: the same affine map at every step. It is also the RNN's input projection W_x x_t + b,
# computed for all steps at once, as one matrix multiply, before the time loop.
# ----------------------------------------------------------------------------------------------------------
def temporal_affine_forward(x: Tensor, W: Tensor, b: Optional[Tensor]) -> tuple[Tensor, tuple]:
    """``out[..., t, :] = W x_t + b`` at every step.

    Args:
        x: ``(N, T, H)`` (any leading dimensions work; the last one is the feature).
        W: ``(M, H)`` weights.
        b: ``(M,)`` bias, or None.

    Returns:
        out: ``(N, T, M)``; cache for :func:`temporal_affine_backward`.
    """
    flat_x = x.reshape(-1, x.shape[-1])  # (N*T, H)
    out = flat_x @ W.T if b is None else torch.addmm(b, flat_x, W.T)  # (N*T, M)
    return out.reshape(*x.shape[:-1], W.shape[0]), (x, W, b is not None)


def temporal_affine_backward(
    dout: Tensor, cache: tuple, needs_dx: bool = True, needs_dW: bool = True
) -> tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    """``dx = dout W``, ``dW = sum_t dout_t^T x_t``, ``db = sum_t dout_t``, each one matmul over all steps.

    Args:
        dout: ``(N, T, M)`` upstream gradient.
        cache: from :func:`temporal_affine_forward`.
        needs_dx, needs_dW: skip that matmul (and return None) when nobody asked for the gradient.

    Returns:
        ``dx (N, T, H)``, ``dW (M, H)``, ``db (M,)``, each None when skipped (``db`` without bias).
    """
    x, W, has_bias = cache
    flat_dout = dout.reshape(-1, W.shape[0])  # (N*T, M)
    dx = (flat_dout @ W.conj()).reshape(x.shape) if needs_dx else None
    dW = flat_dout.T @ x.reshape(-1, x.shape[-1]).conj() if needs_dW else None  # (M, H)
    db = flat_dout.sum(0) if has_bias else None
    return dx, dW, db


def onehot_affine_forward(indices: Tensor, W: Tensor, b: Optional[Tensor]) -> tuple[Tensor, tuple]:
    """:func:`temporal_affine_forward` on one-hot inputs given by their indices, without building them.

    ``W e_k = W[:, k]``, so the product is a gather of weight columns. Index ``-1`` stands for the zero
    vector (a padding step): its projection is ``b`` alone.

    Args:
        indices: ``(...)`` integer tensor with values in ``[-1, D)``.
        W: ``(M, D)`` weights.
        b: ``(M,)`` bias, or None.

    Returns:
        out: ``(..., M)``; cache for :func:`onehot_affine_backward`.
    """
    real = (indices >= 0).unsqueeze(-1)  # (..., 1)
    out = W.T[indices.clamp(min=0)] * real  # (..., M); padding rows are zero
    if b is not None:
        out = out + b
    return out, (indices, W.shape, b is not None)


def onehot_affine_backward(dout: Tensor, cache: tuple) -> tuple[Tensor, Optional[Tensor]]:
    """``dW = sum_t dout_t e_{k_t}^T``: each step's gradient is added to the column of its index.

    Returns:
        ``dW (M, D)``, ``db (M,)`` or None. There is no gradient for integer inputs.
    """
    indices, W_shape, has_bias = cache
    M, D = W_shape
    flat_dout = dout.reshape(-1, M)  # (K, M)
    flat_idx = indices.reshape(-1)  # (K,)
    real = flat_idx >= 0
    dWT = flat_dout.new_zeros(D, M).index_add(0, flat_idx[real], flat_dout[real])  # (D, M)
    db = flat_dout.sum(0) if has_bias else None
    return dWT.T, db


# ----------------------------------------------------------------------------------------------------------
# The recurrence over a whole sequence, time-major, given the input projections p_t = W_x x_t + b.
#
# Variable lengths use PackedSequence's convention: rows are sorted by length (longest first) and
# batch_sizes[t] rows are still running at step t, so the running rows are always a prefix of the batch.
# Steps past a row's length produce zeros and do not touch its hidden state.
# ----------------------------------------------------------------------------------------------------------
def recurrence_forward(
    p: Tensor,
    h0: Tensor,
    Wh: Tensor,
    nonlinearity: str = "tanh",
    batch_sizes: Optional[Sequence[int]] = None,
) -> tuple[Tensor, Tensor]:
    """``h_t = tanh(p_t + W_h h_{t-1})`` for ``t = 0 .. T-1``, from ``h0``.

    Args:
        p: ``(T, N, H)`` input projections ``W_x x_t + b``.
        h0: ``(N, H)`` initial hidden state.
        Wh: ``(H, H)`` hidden-to-hidden weights.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        batch_sizes: ``T`` non-increasing row counts (rows sorted by length), or None when all run ``T`` steps.

    Returns:
        h: ``(T, N, H)`` hidden states; zero at steps past a row's length.
        h_last: ``(N, H)`` every row's hidden state at its last step.
    """
    T, N, H = p.shape
    hs, finished = [], []
    h = h0  # (N, H)
    for t in range(T):
        n, n_next = _running_rows(batch_sizes, t, T, N)
        h_t = activation(p[t, :n] + h[:n] @ Wh.T, nonlinearity)  # (n, H)
        hs.append(_pad_rows(h_t, N))
        finished.append(h_t[n_next:])  # rows whose last step is t
        h = h_t
    return torch.stack(hs), torch.cat(finished[::-1])  # (T, N, H), (N, H)


def recurrence_backward(
    dh: Tensor,
    dh_last: Tensor,
    h0: Tensor,
    Wh: Tensor,
    h: Tensor,
    nonlinearity: str = "tanh",
    batch_sizes: Optional[Sequence[int]] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Backpropagation through time for :func:`recurrence_forward`.

    Step ``t`` receives its upstream gradient plus the gradient flowing back from step ``t+1``:
    ``da_t = (dh_t + W_h^T da_{t+1}) * (1 - h_t^2)``; a row's last step receives ``dh_last`` instead of the
    gradient from the step after it. The weight gradient is a sum over steps, ``dW_h = sum_t da_t h_{t-1}^T``,
    computed after the loop as one matrix multiply.

    Args:
        dh: ``(T, N, H)`` upstream gradient of every hidden state.
        dh_last: ``(N, H)`` upstream gradient of ``h_last``.
        h0: ``(N, H)``; Wh: ``(H, H)``; h: ``(T, N, H)`` the forward's output.
        nonlinearity, batch_sizes: as in :func:`recurrence_forward`.

    Returns:
        ``dp (T, N, H)`` (the gradient of every ``a_t``), ``dh0 (N, H)``, ``dWh (H, H)``.
    """
    T, N, H = dh.shape
    das = []
    carry = dh_last  # (N, H): gradient reaching each row's current step from the step after it
    for t in reversed(range(T)):
        n, _ = _running_rows(batch_sizes, t, T, N)
        da = (dh[t, :n] + carry[:n]) * activation_derivative(h[t, :n], nonlinearity).conj()  # (n, H)
        das.append(_pad_rows(da, N))
        carry = torch.cat([da @ Wh.conj(), carry[n:]])  # rows past their length keep dh_last for their last step
    dp = torch.stack(das[::-1])  # (T, N, H)
    return dp, carry, recurrence_weight_grad(dp, h0, h)


def recurrence_weight_grad(dp: Tensor, h0: Tensor, h: Tensor) -> Tensor:
    """``dW_h = sum_t da_t h_{t-1}^T`` as one matmul over all steps (``h_{-1} = h0``)."""
    H = h0.shape[-1]
    dWh = dp[0].T @ h0.conj()  # (H, H)
    if dp.shape[0] > 1:
        dWh = dWh + dp[1:].reshape(-1, H).T @ h[:-1].reshape(-1, H).conj()
    return dWh


def recurrence_jvp(
    dp: Tensor,
    dh0: Optional[Tensor],
    dWh: Optional[Tensor],
    h0: Tensor,
    Wh: Tensor,
    h: Tensor,
    nonlinearity: str = "tanh",
    batch_sizes: Optional[Sequence[int]] = None,
) -> tuple[Tensor, Tensor]:
    """Forward-mode derivative of :func:`recurrence_forward`.

    ``dh_t = f'(a_t) * (dp_t + dW_h h_{t-1} + W_h dh_{t-1})``; only the last term runs inside the loop.

    Args:
        dp: ``(T, N, H)`` tangent of the input projections; dh0: ``(N, H)`` or None; dWh: ``(H, H)`` or None.
        h0, Wh, h, nonlinearity, batch_sizes: the forward's inputs and output.

    Returns:
        Tangents of ``h (T, N, H)`` and of ``h_last (N, H)``.
    """
    T, N, H = h.shape
    if dWh is not None:
        h_prev = torch.cat([h0.unsqueeze(0), h[:-1]])  # (T, N, H)
        dp = dp + h_prev @ dWh.T
    dhs, finished = [], []
    dh_prev = torch.zeros_like(h0) if dh0 is None else dh0  # (N, H)
    for t in range(T):
        n, n_next = _running_rows(batch_sizes, t, T, N)
        dh_t = activation_derivative(h[t, :n], nonlinearity) * (dp[t, :n] + dh_prev[:n] @ Wh.T)  # (n, H)
        dhs.append(_pad_rows(dh_t, N))
        finished.append(dh_t[n_next:])
        dh_prev = dh_t
    return torch.stack(dhs), torch.cat(finished[::-1])


def _running_rows(batch_sizes: Optional[Sequence[int]], t: int, T: int, N: int) -> tuple[int, int]:
    """Rows running at step ``t`` and at step ``t + 1`` (0 after the last step)."""
    if batch_sizes is None:
        return N, N if t + 1 < T else 0
    return batch_sizes[t], batch_sizes[t + 1] if t + 1 < T else 0


def _pad_rows(rows: Tensor, n: int) -> Tensor:
    """Append zero rows to ``(m, H)`` so that it has ``n`` rows."""
    if rows.shape[0] == n:
        return rows
    return torch.cat([rows, rows.new_zeros(n - rows.shape[0], rows.shape[1])])


# ----------------------------------------------------------------------------------------------------------
# The whole RNN layer over a sequence: the assignment's batch-first API.
# ----------------------------------------------------------------------------------------------------------
def rnn_forward(
    x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Optional[Tensor], nonlinearity: str = "tanh"
) -> tuple[Tensor, tuple]:
    """Run the RNN over a sequence: the input projection of all steps, then the loop ``t = 0 .. T-1``.

    Args:
        x: ``(N, T, D)`` inputs.
        h0: ``(N, H)`` initial hidden state (pass zeros for the report's ``h0 = 0``).
        Wx: ``(H, D)``; Wh: ``(H, H)``; b: ``(H,)`` or None; nonlinearity: ``"tanh"`` or ``"relu"``.

    Returns:
        h: ``(N, T, H)`` hidden states of every step; cache for :func:`rnn_backward`.
    """
    p, affine_cache = temporal_affine_forward(x.transpose(0, 1), Wx, b)  # (T, N, H)
    h, _ = recurrence_forward(p, h0, Wh, nonlinearity)  # (T, N, H)
    return h.transpose(0, 1), (affine_cache, h0, Wh, h, nonlinearity)


def rnn_backward(dh: Tensor, cache: tuple) -> tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Backpropagation through time for :func:`rnn_forward`.

    Args:
        dh: ``(N, T, H)`` upstream gradient of every hidden state.
        cache: from :func:`rnn_forward`.

    Returns:
        ``dx (N, T, D)``, ``dh0 (N, H)``, ``dWx (H, D)``, ``dWh (H, H)``, ``db (H,)`` or None; the parameter
        gradients are sums over the steps.
    """
    affine_cache, h0, Wh, h, nonlinearity = cache
    dp, dh0, dWh = recurrence_backward(dh.transpose(0, 1), torch.zeros_like(h0), h0, Wh, h, nonlinearity)
    dx, dWx, db = temporal_affine_backward(dp, affine_cache)
    return dx.transpose(0, 1), dh0, dWx, dWh, db


# ----------------------------------------------------------------------------------------------------------
# The sentiment model's head: masked average over time, affine, softmax cross-entropy.
# ----------------------------------------------------------------------------------------------------------
def average_forward(x: Tensor, mask: Tensor) -> tuple[Tensor, tuple]:
    """Mean over the steps where ``mask`` is 1: ``out_n = sum_t mask_nt x_nt / sum_t mask_nt``.

    Args:
        x: ``(N, T, M)``.
        mask: ``(N, T)`` of 0/1; every row needs at least one 1.

    Returns:
        out: ``(N, M)``; cache for :func:`average_backward`.
    """
    out = torch.einsum("nt,ntm->nm", _average_weights(mask, x.dtype), x)  # (N, M)
    return out, (mask,)


def average_backward(dout: Tensor, cache: tuple) -> Tensor:
    """``dx_nt = dout_n * mask_nt / sum_t mask_nt``; returns ``dx (N, T, M)``."""
    (mask,) = cache
    return _average_weights(mask, dout.dtype).unsqueeze(-1) * dout.unsqueeze(1)  # (N, T, M)


def _average_weights(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``mask_nt / sum_t mask_nt``: each row's weights sum to 1."""
    mask = mask.to(dtype)
    return mask / mask.sum(1, keepdim=True)  # (N, T)


def affine_forward(x: Tensor, W: Tensor, b: Optional[Tensor]) -> tuple[Tensor, tuple]:
    """``out = x W^T + b`` with ``x (N, M)``, ``W (C, M)``, ``b (C,)``; returns ``out (N, C)`` and cache."""
    out = x @ W.T if b is None else torch.addmm(b, x, W.T)
    return out, (x, W, b is not None)


def affine_backward(dout: Tensor, cache: tuple) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """``dx = dout W``, ``dW = dout^T x``, ``db = sum_n dout_n``; returns ``dx (N, M)``, ``dW (C, M)``, ``db``."""
    x, W, has_bias = cache
    return dout @ W.conj(), dout.T @ x.conj(), dout.sum(0) if has_bias else None


def softmax_loss(scores: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax cross-entropy averaged over the batch, and its gradient.

    ``loss = -1/N sum_n log softmax(scores_n)[y_n]``, ``dscores = (softmax(scores) - onehot(y)) / N``.

    Args:
        scores: ``(N, C)`` class scores (logits).
        y: ``(N,)`` integer labels in ``[0, C)``.

    Returns:
        loss: scalar tensor; dscores: ``(N, C)``.
    """
    N = scores.shape[0]
    log_probs = scores - torch.logsumexp(scores, dim=1, keepdim=True)  # (N, C), stable for large scores
    loss = -log_probs.gather(1, y.unsqueeze(1)).sum() / N
    dscores = log_probs.exp()
    dscores = dscores - torch.nn.functional.one_hot(y, scores.shape[1]).to(scores.dtype)
    return loss, dscores / N
