"""How many intra-op threads torch_rnn's own operations use around its loops.

A layer's forward and backward run a few torch operations besides the C++ time loop (the input projection, the
weight gradients, sums). Each multi-threaded one is a fork and a join of torch's intra-op threads; on a busy
machine (another process on the same cores) a join can wait a scheduler time slice, milliseconds, for a thread
that lost its core. So those operations run in one thread

- when a step is small (``N (D + H) H`` under ``2^15`` multiply-adds, where the C++ loops run in one thread too
  and a second thread gains nothing), and
- while the machine is busy: the C++ loops saw a team of threads held up at their per-step barrier within the
  last second (``csrc/team.h``; :func:`torch_rnn.native.team_settings`).

Operations outside torch_rnn (the rest of a model, its loss) keep the threads the user set; on a machine shared
with other busy processes, ``torch.set_num_threads(1)`` is the setting that helps them.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator

import torch

from . import native

SMALL_STEP = 1 << 15  # multiply-adds per step below which threads do not pay off (csrc SMALL_STEP)


def machine_busy() -> bool:
    """Whether the C++ loops saw contention within the last probe period (False without them)."""
    loops = native.ops()
    return loops is not None and loops.machine_busy()


def own_threads(rows: int, inputs: int, hidden: int) -> ContextManager[None]:
    """Within the block, torch's intra-op threads as torch_rnn's own operations take them for a layer of
    ``rows`` sequences, ``inputs`` input and ``hidden`` hidden features: one thread for a small step or on a busy
    machine (module docstring), else unchanged."""
    return _one_thread_if(lambda: rows * (inputs + hidden) * hidden < SMALL_STEP or machine_busy())


def own_threads_when_busy() -> ContextManager[None]:
    """Within the block, one intra-op thread while the machine is busy, else unchanged: for torch_rnn's operations
    that autograd runs outside any layer (the gradient of packing the rows, :mod:`torch_rnn.layout`)."""
    return _one_thread_if(machine_busy)


@contextlib.contextmanager
def _one_thread_if(condition: Callable[[], bool]) -> Iterator[None]:
    threads = torch.get_num_threads()
    if threads == 1 or not condition():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
