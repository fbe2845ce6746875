"""How sequences lie in memory, and packing by lengths.

Sequences travel as ``(T, N, ...)`` tensors in either memory layout: time-major, or batch-first memory seen
time-major (the transposed view of ``(N, T, ...)`` memory, :func:`torch_rnn.kernels.batch_major`). These helpers
keep the layout they are given, so a batch-first input is never transposed in memory. A packed sequence is
``(R, ...)``: step ``t``'s ``batch_sizes[t]`` running rows one after another, rows sorted by length
(``PackedSequence.data``'s layout, :func:`torch_rnn.functional.packed_coordinates`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .functional import packed_coordinates
from .kernels import batch_major


def rows_as_they_lie(x: Tensor) -> Tensor:
    """``x (T, N, ...)`` unchanged when time-major or batch-major in memory, else a time-major copy."""
    return x if x.is_contiguous() or batch_major(x) else x.contiguous()


def memory_view(x: Tensor) -> Tensor:
    """``x (T, N, ...)`` (time-major or batch-major memory) as its rows in memory order, ``(T * N, ...)``."""
    rows = x.transpose(0, 1) if batch_major(x) else x.contiguous()
    return rows.reshape(-1, *x.shape[2:])


def packed_memory_rows(x: Tensor, order: Tensor, batch_sizes: list[int]) -> Tensor:
    """For every packed row (step ``t`` of sequence ``order[i]``, ``i < batch_sizes[t]``), its row in
    :func:`memory_view` of ``x``: sorting and packing become one gather."""
    T, N = x.shape[0], x.shape[1]
    t, i = packed_coordinates(batch_sizes)  # (R,) every packed row's step and (sorted) sequence
    sequence = order[i]  # (R,) the sequence in x
    rows = sequence * T + t if batch_major(x) else t * N + sequence
    return rows.to(x.device)


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


class Packing(NamedTuple):
    """Padded rows with lengths, packed: ``order (N,)`` sorts the rows by length (longest first, stable) and
    ``batch_sizes`` counts the rows running at each step."""

    order: Tensor
    batch_sizes: list[int]

    @classmethod
    def of(cls, lengths: Tensor) -> "Packing":
        """The packing of rows with ``lengths (N,)`` (int64, each in ``1..T``, N > 0)."""
        sorted_lengths, order = torch.sort(lengths.cpu(), descending=True, stable=True)
        steps = torch.arange(int(sorted_lengths[0])).unsqueeze(1)  # (T', 1)
        return cls(order, (sorted_lengths.unsqueeze(0) > steps).sum(1).tolist())  # rows running at each step

    def memory_rows(self, x: Tensor) -> Tensor:
        """``(R,)``: where each packed row lies in :func:`memory_view` of ``x (T, N, ...)``."""
        return packed_memory_rows(x, self.order, self.batch_sizes)

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
