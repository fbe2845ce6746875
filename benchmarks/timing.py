"""How the benchmarks time and measure a step: interleaved rounds of ``torch.utils.benchmark.Timer``, the
training and inference steps of an RNN forward, the ``torch.mm`` rate timed beside them, and a step's peak memory.

Used by ``bench_rnn.py`` and ``busy.py``, ``bench_compile.py``, ``bench_peers.py`` and ``plot_cost_growth.py``.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile
from torch.utils.benchmark import Timer

MM_SIZE = 2048  # the square float32 torch.mm whose rate the bound uses

Forward = Callable[[], tuple[Tensor, Tensor]]  # () -> (padded output (N, T, dirs * H), hidden state(s))


@dataclass(frozen=True)
class Settings:
    """How long to time: ``rounds`` interleaved rounds of ``blocked_autorange(min_run_time)``."""

    rounds: int
    min_run_time: float


FULL = Settings(rounds=11, min_run_time=0.1)
QUICK = Settings(rounds=2, min_run_time=0.02)


# ---------------------------------------------------------------------------------------------- steps
def training_step(forward: Forward, leaves: Sequence[Tensor], loss_threads: Optional[int] = None
                  ) -> Callable[[], None]:
    """Gradients to None, forward, ``(output.sum() + h_n.sum()).backward()``; the loss with ``loss_threads``
    intra-op threads when given (the rest of the step keeps the current number)."""

    def step() -> None:
        for leaf in leaves:
            leaf.grad = None
        output, h_n = forward()
        if loss_threads is None:
            loss = output.sum() + h_n.sum()
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(loss_threads)
            loss = output.sum() + h_n.sum()
            torch.set_num_threads(threads)
        loss.backward()

    return step


def inference_step(forward: Forward) -> Callable[[], None]:
    """Forward under ``torch.no_grad()``."""

    def step() -> None:
        with torch.no_grad():
            forward()

    return step


# --------------------------------------------------------------------------------------------- timing
def time_interleaved(
    step_sets: Sequence[dict[str, Callable[[], None]]], settings: Settings
) -> tuple[list[dict[str, float]], list[float]]:
    """Median seconds per call of every step of every set (row) over ``settings.rounds`` rounds, each round
    timing every step of every set once; and the 1-minute load average after each round.

    Rounds go through all the rows, so each row's samples spread over the whole run: a slow spell of the
    machine (on a shared VM one vCPU can run at two thirds of its speed for ten seconds or more) touches a few
    rounds of every row instead of every round of one row. Within a row the order rotates from round to round,
    so neither drift nor position favours one implementation. A step with a ``threads`` attribute
    (:func:`with_threads`) runs with that many threads, the others with the current number. A step with a
    ``measure(min_run_time) -> seconds`` method is timed by it (a step that runs in another process).
    """
    threads = torch.get_num_threads()
    measure_sets = [{name: getattr(step, "measure", None) or _measure_here(step, getattr(step, "threads", threads))
                     for name, step in steps.items()}
                    for steps in step_sets]
    samples: list[dict[str, list[float]]] = [{name: [] for name in measures} for measures in measure_sets]
    loads = []
    for round_ in range(settings.rounds):
        for measures, row_samples in zip(measure_sets, samples):
            names = list(measures)
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                row_samples[name].append(measures[name](settings.min_run_time))
        loads.append(os.getloadavg()[0])
    medians = [{name: statistics.median(times) for name, times in row_samples.items()} for row_samples in samples]
    return medians, loads


def _measure_here(step: Callable[[], None], threads: int) -> Callable[[float], float]:
    """``min_run_time -> seconds``: the median call of ``step`` in ``blocked_autorange`` with ``threads`` threads."""
    timer = Timer("step()", globals={"step": step}, num_threads=threads)
    return lambda min_run_time: timer.blocked_autorange(min_run_time=min_run_time).median


def with_threads(step: Callable[[], None], threads: int) -> Callable[[], None]:
    """``step``, timed by :func:`time_interleaved` with ``threads`` intra-op threads."""

    def threaded() -> None:
        step()

    threaded.threads = threads
    return threaded


def mm_step() -> tuple[Callable[[], None], int]:
    """A ``MM_SIZE`` square float32 ``torch.mm`` and its FLOPs, timed beside each row for the sustained rate."""
    a, b = torch.randn(MM_SIZE, MM_SIZE), torch.randn(MM_SIZE, MM_SIZE)
    return lambda: torch.mm(a, b), 2 * MM_SIZE**3


# --------------------------------------------------------------------------------------------- memory
@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """The profiler's C++ side logs a line to stderr at every start and stop; send them to /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _walk(events: Sequence) -> Iterator:
    for event in events:
        yield event
        yield from _walk(event.children)


def peak_memory_bytes(step: Callable[[], None]) -> int:
    """Peak of the running sum of the CPU allocations (+) and frees (-) the profiler records during ``step``."""
    with _stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    tree = prof.profiler.kineto_results.experimental_event_tree()
    allocations = sorted(
        (event for event in _walk(tree) if event.tag == _EventType.Allocation), key=lambda event: event.start_time_ns
    )
    running = peak = 0
    for event in allocations:
        running += event.extra_fields.alloc_size
        peak = max(peak, running)
    return peak


def training_peak_bytes(step: Callable[[], None], leaves: Sequence[Tensor]) -> int:
    """:func:`peak_memory_bytes` of a training step, its gradients set to None before profiling starts.

    The profiler only knows the size of what it saw allocated, so freeing the previous step's gradients inside
    the profile would count for nothing or for minus their size depending on what was profiled before.
    """
    for leaf in leaves:
        leaf.grad = None
    return peak_memory_bytes(step)
