"""How sequences lie in memory, and packing by lengths.

Sequences travel as ``(T, N, ...)`` tensors in either memory layout: time-major, or batch-first memory seen
time-major (the transposed view of ``(N, T, ...)`` memory, :func:`batch_major`). These helpers
keep the layout they are given, so a batch-first input is never transposed in memory. A packed sequence is
``(R, ...)``: step ``t``'s ``batch_sizes[t]`` running rows one after another, rows sorted by length
(``PackedSequence.data``'s layout, :func:`packed_coordinates`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from .threads import own_threads_when_busy


def batch_major(x: Tensor) -> bool:
    """True when ``x (T, N, ...)`` is the transposed view of batch-first ``(N, T, ...)`` memory."""
    return x.dim() >= 2 and not x.is_contiguous() and x.transpose(0, 1).is_contiguous()


def batch_major_sequence(x: Tensor) -> bool:
    """True for a padded sequence, ``(T, N, D)`` floats or ``(T, N)`` indices, lying in batch-first memory; a
    packed ``(R, D)`` sequence is never batch-major, whatever its strides."""
    padded = x.dim() == (3 if has_values(x) else 2)
    return padded and batch_major(x)


def padded(x: Tensor, batch_sizes: Optional[Sequence[int]], reverse: bool) -> Tensor:
    """A packed ``(R, H)`` or padded sequence as padded ``(T, N, H)``, reversed for ``reverse``: what the
    time-major reference equations of :mod:`torch_rnn.functional` take (:func:`unpadded` undoes it)."""
    if x.dim() == 2:
        x = pad_packed(x, batch_sizes)
    return reverse_in_time(x, batch_sizes) if reverse else x


def unpadded(x: Tensor, batch_sizes: Optional[Sequence[int]], reverse: bool, packed: bool) -> Tensor:
    if reverse:
        x = reverse_in_time(x, batch_sizes)
    return pack_padded(x, batch_sizes) if packed else x


def sequence_buffer(x: Tensor, features: int, dtype: torch.dtype) -> Tensor:
    """An uninitialised ``(T, N, features)`` (packed: ``(R, features)``) buffer of ``dtype`` laid out like the
    sequence ``x`` (values ``(T, N, D)`` / ``(R, D)``, or one-hot indices ``(T, N)`` / ``(R,)``): batch-major
    memory for a batch-major ``x``, else time-major. A layer's output ``h`` has this layout, and so has ``dx``."""
    if x.dim() == (2 if has_values(x) else 1):  # packed
        return x.new_empty(x.shape[0], features, dtype=dtype)
    if batch_major_sequence(x):
        return x.new_empty(x.shape[1], x.shape[0], features, dtype=dtype).transpose(0, 1)
    return x.new_empty(x.shape[0], x.shape[1], features, dtype=dtype)


def has_values(x: Tensor) -> bool:
    """True for a sequence of input vectors (real or complex), False for one of one-hot indices."""
    return x.is_floating_point() or x.is_complex()


def laid_out_like_sequence(result: Tensor, x: Tensor) -> Tensor:
    """``result (T, N, F)`` (packed ``(R, F)``) itself when it is laid out as :func:`sequence_buffer` lays out a
    buffer for ``x``, else a copy so laid out: the custom ops promise their fake kernels' layouts, whichever
    loop computed the values."""
    features = result.shape[-1]
    if result.dim() == 3 and batch_major_sequence(x):
        T, N, _ = result.shape
        laid_out = result.stride() == (features, T * features, 1)
    else:
        laid_out = result.is_contiguous()
    if laid_out or result.numel() == 0:
        return result
    return sequence_buffer(x, features, result.dtype).copy_(result)


def rows_as_they_lie(x: Tensor) -> Tensor:
    """``x (T, N, ...)`` unchanged when time-major or batch-major in memory, else a time-major copy."""
    return x if x.is_contiguous() or batch_major(x) else x.contiguous()


def memory_view(x: Tensor) -> Tensor:
    """``x (T, N, ...)`` (time-major or batch-major memory) as its rows in memory order, ``(T * N, ...)``."""
    rows = x.transpose(0, 1) if batch_major(x) else x.contiguous()
    return rows.reshape(-1, *x.shape[2:])


def unpack(packed: Tensor, memory_rows: Tensor, like: Tensor) -> Tensor:
    """Packed rows ``(R, F)`` back to a ``(T, N, F)`` sequence in ``like``'s memory layout, zero elsewhere."""
    T, N = like.shape[0], like.shape[1]
    flat = packed.new_zeros(T * N, packed.shape[-1]).index_copy(0, memory_rows, packed)
    return flat.view(N, T, -1).transpose(0, 1) if batch_major(like) else flat.view(T, N, -1)


def cat_features(outputs: list[Tensor]) -> Tensor:
    """The directions' outputs ``(T, N, H)`` (or packed ``(R, H)``) side by side, in their memory layout."""
    if all(batch_major(o) for o in outputs):
        return torch.cat([o.transpose(0, 1) for o in outputs], dim=2).transpose(0, 1)
    return torch.cat(outputs, dim=-1)


class Packing:
    """Padded rows with lengths, packed: rows sorted by length (longest first, stable), step ``t``'s running rows
    one after another, so that padding is neither stored nor computed.

    Attributes:
        order: ``(N,)`` int64, the rows in length order.
        running: ``(T', N)`` bool, whether sorted row ``i`` runs at step ``t`` (``T'`` the longest length).
        batch_sizes: ``T'`` counts of the rows running at each step (PackedSequence's convention).
    """

    _recent: list[tuple[Tensor, "Packing"]] = []  # (lengths, packing) of the last few calls of :meth:`of`

    @classmethod
    def of(cls, lengths: Tensor) -> "Packing":
        """``Packing(lengths)``, reused while the same lengths come back: every layer and direction of a compiled
        RNN, forward and backward, packs the same rows (a few equal-length checks instead of a sort each)."""
        lengths = lengths.cpu()
        for known, packing in cls._recent:
            if known.shape == lengths.shape and torch.equal(known, lengths):
                return packing
        packing = cls(lengths)
        cls._recent = [(lengths.clone(), packing), *cls._recent[:3]]
        return packing

    def __init__(self, lengths: Tensor) -> None:
        """``lengths (N,)``: int64, each in ``1..T``, N > 0."""
        sorted_lengths, self.order = torch.sort(lengths.cpu(), descending=True, stable=True)
        self.running = sorted_lengths.unsqueeze(0) > torch.arange(int(sorted_lengths[0])).unsqueeze(1)
        self.batch_sizes: list[int] = self.running.sum(1).tolist()
        self._memory_rows: dict[tuple, Tensor] = {}

    def memory_rows(self, x: Tensor) -> Tensor:
        """``(R,)``: where each packed row (step ``t`` of sorted row ``i``) lies in :func:`memory_view` of
        ``x (T, N, ...)``: sorting and packing become one gather. Kept per memory layout."""
        T, N = x.shape[0], x.shape[1]
        key = (batch_major(x), T, N, x.device)
        if key not in self._memory_rows:
            steps, rows = torch.arange(self.running.shape[0]).unsqueeze(1), self.order.unsqueeze(0)  # (T', 1), (1, N)
            offsets = rows * T + steps if key[0] else steps * N + rows  # (T', N) where (t, i) lies in memory
            self._memory_rows[key] = offsets[self.running].to(x.device)  # (R,), in packed order
        return self._memory_rows[key]

    def pack(self, x: Tensor) -> Tensor:
        """``x (T, N, ...)`` -> ``(R, ...)``, sorted and packed in one gather (:class:`PackRows` when a gradient
        will flow back through it)."""
        rows = memory_view(x)
        if rows.requires_grad and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            return PackRows.apply(rows, self.memory_rows(x))
        return rows.index_select(0, self.memory_rows(x))

    def unpack(self, packed: Tensor, like: Tensor) -> Tensor:
        """``(R, F)`` -> ``(T, N, F)`` in ``like``'s memory layout, zero past each row's length."""
        return unpack(packed, self.memory_rows(like), like)

    def sort(self, rows: Tensor) -> Tensor:
        """``rows (N, ...)`` (or ``(L, N, ...)``: dimension ``-2`` when 3-D) in length order."""
        return rows.index_select(rows.dim() - 2, self.order.to(rows.device))

    def unsort(self, rows: Tensor) -> Tensor:
        """The inverse of :meth:`sort`."""
        return rows.index_select(rows.dim() - 2, torch.argsort(self.order).to(rows.device))


class PackRows(torch.autograd.Function):
    """``rows.index_select(0, index)`` for distinct ``index`` values (:meth:`Packing.pack`): rows ``(M, ...)``,
    index ``(R,)`` int64 -> ``(R, ...)``.

    Each row has at most one packed copy, so the backward writes each gradient row back to its place
    (``index_copy``) where ``index_select``'s own backward scatter-adds, and on the CPU it runs in torch_rnn's own
    threads (:func:`torch_rnn.threads.own_threads_when_busy`): autograd runs it outside any layer, where a
    two-thread operation on a busy machine waits for a thread that lost its core (docs/benchmarks.md, "A busy
    machine").
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(rows: Tensor, index: Tensor) -> Tensor:
        return rows.index_select(0, index)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        rows, index = inputs
        ctx.save_for_backward(index)
        ctx.save_for_forward(index)
        ctx.shape = rows.shape

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (index,) = ctx.saved_tensors
        # torch's CPU threads only, and not while compiled autograd traces this (the graph leaves threads to torch)
        own_threads = grad.device.type == "cpu" and not torch.compiler.is_compiling()
        with own_threads_when_busy() if own_threads else contextlib.nullcontext():
            return grad.new_zeros(ctx.shape).index_copy(0, index, grad), None  # differentiable: double backward

    @staticmethod
    def jvp(ctx: Any, rows_tangent: Tensor, _index_tangent: None) -> Tensor:
        (index,) = ctx.saved_tensors
        return rows_tangent.index_select(0, index)


def length_order(lengths: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """:class:`Packing`'s ``order`` and ``batch_sizes`` in tensor operations alone, for compiled code: ``lengths
    (N,)`` int64 in ``1..steps`` -> ``order (N,)`` (longest first, stable) and ``batch_sizes (steps,)`` int64,
    the rows running at each step, zero past the longest row."""
    sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
    return order, (sorted_lengths.unsqueeze(0) > torch.arange(steps).unsqueeze(1)).sum(1)


def reverse_in_time(x: Tensor, batch_sizes: Optional[Sequence[int]] = None) -> Tensor:
    """``x (T, N, ...)`` with every row's steps reversed within its own length; padding stays in place.

    A bidirectional RNN's second direction is the same recurrence over the reversed sequences:
    ``recurrence_forward`` on ``reverse_in_time(p)``, with the result reversed back (it is an involution).
    Row ``i`` runs while ``batch_sizes[t] > i`` (rows sorted by length); None means every row has ``T`` steps.
    """
    if batch_sizes is None:
        return x.flip(0)
    T, N = x.shape[0], x.shape[1]
    lengths = sequence_lengths(batch_sizes, N)  # (N,)
    steps = torch.arange(T).unsqueeze(1)  # (T, 1)
    last = (lengths - 1).unsqueeze(0)  # (1, N)
    index = torch.where(steps <= last, last - steps, steps).to(x.device)  # (T, N)
    return x.gather(0, index.view(T, N, *([1] * (x.dim() - 2))).expand_as(x))


def sequence_lengths(batch_sizes: Sequence[int], N: int) -> Tensor:
    """``(N,)`` every row's length: row ``i`` runs while ``batch_sizes[t] > i``."""
    return (torch.tensor(batch_sizes).unsqueeze(1) > torch.arange(N)).sum(0)


def step_offsets(batch_sizes: Sequence[int]) -> Tensor:
    """``(T,)`` the first row of every step in a packed sequence."""
    sizes = torch.tensor(batch_sizes)
    return torch.cumsum(sizes, 0) - sizes


def packed_coordinates(batch_sizes: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Every packed row's step ``t`` and sequence ``i``, two ``(R,)`` tensors.

    A packed sequence (``PackedSequence.data``'s layout) stores step ``t``'s ``batch_sizes[t]`` running rows one
    after another, so padding is neither stored nor computed.
    """
    t = torch.repeat_interleave(torch.arange(len(batch_sizes)), torch.tensor(batch_sizes))  # (R,)
    return t, torch.arange(len(t)) - step_offsets(batch_sizes)[t]


def packed_positions(batch_sizes: Sequence[int]) -> Tensor:
    """Every packed row's position ``t * N + i`` in the padded ``(T, N)`` layout."""
    t, i = packed_coordinates(batch_sizes)
    return t * batch_sizes[0] + i


def pad_packed(x: Tensor, batch_sizes: Sequence[int]) -> Tensor:
    """Packed ``(R, ...)`` -> padded ``(T, N, ...)``, zeros past each row's length (differentiable)."""
    T, N = len(batch_sizes), batch_sizes[0]
    index = packed_positions(batch_sizes).to(x.device)
    return x.new_zeros(T * N, *x.shape[1:]).index_copy(0, index, x).view(T, N, *x.shape[1:])


def pack_padded(x: Tensor, batch_sizes: Sequence[int]) -> Tensor:
    """Padded ``(T, N, ...)`` -> packed ``(R, ...)`` (differentiable); the inverse of :func:`pad_packed`."""
    return x.reshape(-1, *x.shape[2:]).index_select(0, packed_positions(batch_sizes).to(x.device))
