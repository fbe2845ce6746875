"""How sequences lie in memory, and packing by lengths.

Sequences travel as ``(T, N, ...)`` tensors in either memory layout: time-major, or batch-first memory seen
time-major (the transposed view of ``(N, T, ...)`` memory, :func:`torch_rnn.kernels.batch_major`). These helpers
keep the layout they are given, so a batch-first input is never transposed in memory. A packed sequence is
``(R, ...)``: step ``t``'s ``batch_sizes[t]`` running rows one after another, rows sorted by length
(``PackedSequence.data``'s layout, :func:`torch_rnn.functional.packed_coordinates`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .kernels import batch_major


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
        """``x (T, N, ...)`` -> ``(R, ...)``, sorted and packed in one gather."""
        return memory_view(x).index_select(0, self.memory_rows(x))

    def unpack(self, packed: Tensor, like: Tensor) -> Tensor:
        """``(R, F)`` -> ``(T, N, F)`` in ``like``'s memory layout, zero past each row's length."""
        return unpack(packed, self.memory_rows(like), like)

    def sort(self, rows: Tensor) -> Tensor:
        """``rows (N, ...)`` (or ``(L, N, ...)``: dimension ``-2`` when 3-D) in length order."""
        return rows.index_select(rows.dim() - 2, self.order.to(rows.device))

    def unsort(self, rows: Tensor) -> Tensor:
        """The inverse of :meth:`sort`."""
        return rows.index_select(rows.dim() - 2, torch.argsort(self.order).to(rows.device))



def length_order(lengths: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """:class:`Packing`'s ``order`` and ``batch_sizes`` in tensor operations alone, for compiled code: ``lengths
    (N,)`` int64 in ``1..steps`` -> ``order (N,)`` (longest first, stable) and ``batch_sizes (steps,)`` int64,
    the rows running at each step, zero past the longest row."""
    sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
    return order, (sorted_lengths.unsqueeze(0) > torch.arange(steps).unsqueeze(1)).sum(1)
