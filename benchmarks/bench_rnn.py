"""Benchmark ``torch_rnn.RNN`` against ``torch.nn.RNN`` and a naive autograd loop (float32, CPU).

What is measured, per row (``batch_first=True``, ``tanh``, ``(N, T, D, H)`` = batch, steps, input and
hidden features):

- **train**: one training step as a layer inside a network sees it: the input requires grad, every
  gradient is set to None first (as ``optimizer.zero_grad()`` does), then forward and
  ``(output.sum() + h_n.sum()).backward()``.
- **fwd**: forward only, under ``torch.no_grad()``.
- The three implementations share weights (``load_state_dict``):

  - ``torch.nn.RNN``;
  - ``torch_rnn.RNN``, the hand-written gradients;
  - **naive**: the textbook loop with ordinary autograd, ``h = tanh(x_t @ Wx.T + h @ Wh.T + b)`` per step
    and ``torch.stack`` of the outputs (one-layer rows only; "-" elsewhere).

- Four rows of large hidden sizes, H 512-2048 (``--no-large`` leaves them out), where ``W_h`` no longer stays in a
  core's cache from step to step.
- Two extra rows at ``(32, 50, 64, 128)``: ``num_layers=2, bidirectional=True``, and the same with lengths
  drawn uniformly from ``1..T``. ``torch_rnn.RNN`` gets ``lengths=`` on the padded batch; ``nn.RNN`` gets
  the equivalent ``pack_padded_sequence(..., enforce_sorted=False)`` and its output is padded back with
  ``pad_packed_sequence``, both inside the timed step (padded in, padded out, like ours).

Times are ``torch.utils.benchmark.Timer`` medians (``blocked_autorange``) in ms. The VM this runs on drifts
and has slow spells (one vCPU at two thirds of its speed for ten seconds or more), so everything is
interleaved: every round goes through all the rows and times each implementation of each row once (a short
``blocked_autorange``, the order within a row rotating between rounds), and each time reported is the median
over the rounds. A slow spell then touches a few rounds of every row rather than every round of one row.
Ratios are ``torch_rnn / other`` of those medians: below 1 means ``torch_rnn`` is faster. The header gives the
1-minute load average after each round: when other processes keep the cores busy, multi-threaded ops (whose
threads wait for each other) slow down erratically, so trust such a run less, or use ``--threads 1``.

**bound**: the matmul work of a training step, ``3 x 2 * steps * sum(D_in * H + H * H)`` FLOPs (forward,
input gradient and weight gradient; summed over layers and directions, ``D_in`` being each layer's input
size; ``steps = N * T``, or the sum of the lengths for the variable-length row), at the sustained
``torch.mm`` rate of a 2048 x 2048 float32 product, timed beside the row in every round.
"% of bound" is ``bound time / torch_rnn train time``.

**peak MB**: the peak memory of one training step, the same way for every implementation: the step runs
under ``torch.profiler.profile(profile_memory=True)``, which records every CPU allocation and free with its
size; the peak of their running sum, in time order, is the most memory the step held on top of what
existed before it (the input and the weights; the gradients are set to None before profiling starts):
saved activations, outputs, gradients, temporaries.

``torch_rnn`` runs its C++ loops when they are built (the header says which loops ran);
``TORCH_RNN_NATIVE=0 python benchmarks/bench_rnn.py`` times the same library with its Python loops.

Before timing, every row checks that ``torch_rnn.RNN`` (and the naive loop) agree with ``nn.RNN``: outputs,
``h_n`` and the input gradient within 1e-4; the run aborts otherwise.

Run from the repository root::

    python benchmarks/bench_rnn.py            # all rows, a markdown table (a few minutes)
    python benchmarks/bench_rnn.py --quick    # smoke run: fewer rounds, shorter timings
    python benchmarks/bench_rnn.py --json     # the same numbers as a JSON list of dicts
    python benchmarks/bench_rnn.py --threads 1 --shapes 32,50,64,128 1,1000,32,32
    python benchmarks/bench_rnn.py --neighbour torch   # on a busy machine: default threads against 1 thread

**A busy machine** (``--neighbour python|torch``, :mod:`neighbour`): the training steps of torch_rnn and nn.RNN
with the default threads and with 1 thread, interleaved, while neighbour processes keep the cores busy (two
pure-Python busy loops, or a 2-thread PyTorch training loop). The target line says whether torch_rnn with the
default threads stays within 1.25x of its own 1-thread time, and not slower than nn.RNN, at every row. The last
two columns time torch_rnn's step with the default threads once more, its loss (``output.sum() + h_n.sum()``,
outside torch_rnn) in one thread: what is left of the gap there is torch_rnn's.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn
from torch._C._profiler import _EventType
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.profiler import ProfilerActivity, profile
from torch.utils.benchmark import Timer

import torch_rnn
from torch_rnn import native

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import neighbour  # noqa: E402  (the neighbour processes of --neighbour)

TOLERANCE = 1e-4
MM_SIZE = 2048
SEED = 0

Forward = Callable[[], tuple[Tensor, Tensor]]  # () -> (padded output (N, T, dirs * H), hidden state(s))


@dataclass(frozen=True)
class Case:
    """One row: shape, layers, directions, and whether the sequences have random lengths."""

    N: int
    T: int
    D: int
    H: int
    num_layers: int = 1
    bidirectional: bool = False
    varlen: bool = False

    @property
    def label(self) -> str:
        label = f"({self.N},{self.T},{self.D},{self.H})"
        if self.num_layers > 1:
            label += f" L{self.num_layers}"
        if self.bidirectional:
            label += " bi"
        if self.varlen:
            label += " len 1..T"
        return label

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1


@dataclass(frozen=True)
class Settings:
    """How long to time: ``rounds`` interleaved rounds of ``blocked_autorange(min_run_time)``."""

    rounds: int
    min_run_time: float


MAIN_CASES = [
    Case(32, 50, 64, 128),
    Case(64, 100, 128, 256),
    Case(16, 200, 300, 512),
    Case(100, 30, 50, 64),
    Case(1, 1000, 32, 32),
    Case(256, 50, 128, 128),
]
EXTRA_CASES = [
    Case(32, 50, 64, 128, num_layers=2, bidirectional=True),
    Case(32, 50, 64, 128, num_layers=2, bidirectional=True, varlen=True),
]
# Large hidden sizes, where W_h (4-16 MB) no longer stays in a core's cache from step to step.
LARGE_CASES = [
    Case(16, 100, 1024, 1024),
    Case(64, 50, 1024, 1024),
    Case(16, 50, 2048, 2048),
    Case(128, 50, 512, 512),
]
FULL = Settings(rounds=11, min_run_time=0.1)
QUICK = Settings(rounds=2, min_run_time=0.02)


class MismatchError(RuntimeError):
    """``torch_rnn.RNN`` or the naive loop disagree with ``nn.RNN``: timing them would be meaningless."""


# ---------------------------------------------------------------------------------------------- setup
@dataclass
class Bench:
    """The three implementations of one case, as forward closures over a shared input."""

    case: Case
    x: Tensor  # (N, T, D), requires grad
    steps: int  # real (not padded) time steps over the batch
    forwards: dict[str, Forward]  # "nn.RNN", "torch_rnn", and "naive" for one-layer rows
    leaves: dict[str, list[Tensor]]  # what each implementation's training step accumulates gradients into


def build(case: Case) -> Bench:
    """Seeded weights and input; ``torch_rnn.RNN`` gets ``nn.RNN``'s weights."""
    torch.manual_seed(SEED)
    kwargs = {"num_layers": case.num_layers, "bidirectional": case.bidirectional, "batch_first": True}
    ref = nn.RNN(case.D, case.H, **kwargs)
    ours = torch_rnn.RNN(case.D, case.H, **kwargs)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(case.N, case.T, case.D, requires_grad=True)
    if case.varlen:
        lengths = torch.randint(1, case.T + 1, (case.N,))
        forwards = {"nn.RNN": _packed_forward(ref, x, lengths), "torch_rnn": lambda: ours(x, lengths=lengths)}
        steps = int(lengths.sum())
    else:
        forwards = {"nn.RNN": lambda: ref(x), "torch_rnn": lambda: ours(x)}
        steps = case.N * case.T
    leaves = {"nn.RNN": [x, *ref.parameters()], "torch_rnn": [x, *ours.parameters()]}
    if case.num_layers == 1 and not case.bidirectional and not case.varlen:
        params = [p.detach().clone().requires_grad_() for p in (ref.weight_ih_l0, ref.weight_hh_l0)]
        bias = (ref.bias_ih_l0 + ref.bias_hh_l0).detach().requires_grad_()
        forwards["naive"] = _naive_forward(x, params[0], params[1], bias)
        leaves["naive"] = [x, *params, bias]
    return Bench(case, x, steps, forwards, leaves)


def _packed_forward(rnn: nn.RNN, x: Tensor, lengths: Tensor) -> Forward:
    """``nn.RNN`` on a padded batch with lengths: pack, run, pad back to ``T`` steps."""

    def forward() -> tuple[Tensor, Tensor]:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, h_n = rnn(packed)
        return pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])[0], h_n

    return forward


def _naive_forward(x: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Forward:
    """The textbook loop, differentiated by autograd step by step; returns ``h_n`` as ``(1, N, H)``."""

    def forward() -> tuple[Tensor, Tensor]:
        h = x.new_zeros(x.shape[0], Wh.shape[0])
        outputs = []
        for t in range(x.shape[1]):
            h = torch.tanh(x[:, t] @ Wx.T + h @ Wh.T + b)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)

    return forward


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


# ------------------------------------------------------------------------------------------ agreement
def check_agreement(bench: Bench) -> None:
    """Outputs, ``h_n`` and input gradient of every implementation within :data:`TOLERANCE` of ``nn.RNN``."""
    results = {}
    for name, forward in bench.forwards.items():
        bench.x.grad = None
        output, h_n = forward()
        (output.sum() + h_n.sum()).backward()
        results[name] = (output.detach(), h_n.detach(), bench.x.grad)
    bench.x.grad = None
    expected = results.pop("nn.RNN")
    for name, got in results.items():
        for what, a, b in zip(("output", "h_n", "input gradient"), got, expected):
            error = (a - b).abs().max().item()
            if a.shape != b.shape or not error <= TOLERANCE:
                raise MismatchError(
                    f"{name} disagrees with nn.RNN at {bench.case.label}: {what} shape {tuple(a.shape)} vs "
                    f"{tuple(b.shape)}, max abs error {error:.2e} > {TOLERANCE:g}"
                )


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
    (:func:`with_threads`) runs with that many threads, the others with the current number.
    """
    threads = torch.get_num_threads()
    timer_sets = [{name: Timer("step()", globals={"step": step}, num_threads=getattr(step, "threads", threads))
                   for name, step in steps.items()}
                  for steps in step_sets]
    samples: list[dict[str, list[float]]] = [{name: [] for name in timers} for timers in timer_sets]
    loads = []
    for round_ in range(settings.rounds):
        for timers, row_samples in zip(timer_sets, samples):
            names = list(timers)
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                row_samples[name].append(timers[name].blocked_autorange(min_run_time=settings.min_run_time).median)
        loads.append(os.getloadavg()[0])
    medians = [{name: statistics.median(times) for name, times in row_samples.items()} for row_samples in samples]
    return medians, loads


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


def matmul_flops(case: Case, steps: int) -> int:
    """Matmul FLOPs of a training step: forward, input gradient, weight gradient, each ``2 * steps * D_in * H``
    for the input projection plus ``2 * steps * H * H`` for the recurrence, per layer and direction."""
    total = 0
    for layer in range(case.num_layers):
        d_in = case.D if layer == 0 else case.num_directions * case.H
        total += case.num_directions * (d_in * case.H + case.H * case.H)
    return 3 * 2 * steps * total


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


# ----------------------------------------------------------------------------------------------- rows
@dataclass
class Row:
    """A case ready to time: its implementations agree, and every step to time is warm."""

    bench: Bench
    train: dict[str, Callable[[], None]]  # training step per implementation
    steps: dict[str, Callable[[], None]]  # what is timed: "<name> train", "<name> fwd", and "mm"
    mm_flops: int


def prepare(case: Case) -> Row:
    """Build the case, check agreement, warm every step up."""
    bench = build(case)
    check_agreement(bench)
    train = {name: training_step(forward, bench.leaves[name]) for name, forward in bench.forwards.items()}
    steps = {f"{name} train": step for name, step in train.items()}
    steps.update({f"{name} fwd": inference_step(bench.forwards[name]) for name in ("nn.RNN", "torch_rnn")})
    steps["mm"], mm_flops = mm_step()
    for step in steps.values():
        step()  # warm-up
    return Row(bench, train, steps, mm_flops)


def run_cases(cases: Sequence[Case], settings: Settings) -> list[dict]:
    """Check agreement, time train and fwd of every implementation and ``torch.mm`` interleaved (every round
    over all the cases), then measure peak memory; one dict per case."""
    rows = [prepare(case) for case in cases]
    timings, loads = time_interleaved([row.steps for row in rows], settings)
    return [summarize(row, seconds, loads) for row, seconds in zip(rows, timings)]


def summarize(row: Row, seconds: dict[str, float], loads: Sequence[float]) -> dict:
    """One case's numbers from its median times (``loads``: the load averages after the rounds); measures peak
    memory."""
    bench, case = row.bench, row.bench.case
    ms = {name: 1e3 * s for name, s in seconds.items()}
    gflops = row.mm_flops / seconds["mm"] / 1e9
    peak_mb = {name: training_peak_bytes(step, bench.leaves[name]) / 1e6 for name, step in row.train.items()}
    bound_ms = 1e3 * matmul_flops(case, bench.steps) / (gflops * 1e9)
    naive_ms = ms.get("naive train")
    return {
        "shape": case.label,
        "N": case.N,
        "T": case.T,
        "D": case.D,
        "H": case.H,
        "num_layers": case.num_layers,
        "bidirectional": case.bidirectional,
        "varlen": case.varlen,
        "nn_rnn_train_ms": ms["nn.RNN train"],
        "ours_train_ms": ms["torch_rnn train"],
        "train_ratio": ms["torch_rnn train"] / ms["nn.RNN train"],
        "naive_train_ms": naive_ms,
        "naive_ratio": None if naive_ms is None else ms["torch_rnn train"] / naive_ms,
        "nn_rnn_fwd_ms": ms["nn.RNN fwd"],
        "ours_fwd_ms": ms["torch_rnn fwd"],
        "fwd_ratio": ms["torch_rnn fwd"] / ms["nn.RNN fwd"],
        "bound_ms": bound_ms,
        "bound_percent": 100 * bound_ms / ms["torch_rnn train"],
        "peak_mb_nn_rnn": peak_mb["nn.RNN"],
        "peak_mb_ours": peak_mb["torch_rnn"],
        "peak_mb_naive": peak_mb.get("naive"),
        "mm_gflops": gflops,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": [min(loads), max(loads)],  # 1-min load average after the rounds: lowest, highest
    }


# --------------------------------------------------------------------------------------------- output
COLUMNS = [
    ("shape (N,T,D,H)", "shape", "{}"),
    ("nn.RNN train ms", "nn_rnn_train_ms", "{:.3g}"),
    ("ours train ms", "ours_train_ms", "{:.3g}"),
    ("ours/nn.RNN", "train_ratio", "{:.2f}"),
    ("naive train ms", "naive_train_ms", "{:.3g}"),
    ("ours/naive", "naive_ratio", "{:.2f}"),
    ("nn.RNN fwd ms", "nn_rnn_fwd_ms", "{:.3g}"),
    ("ours fwd ms", "ours_fwd_ms", "{:.3g}"),
    ("fwd ours/nn.RNN", "fwd_ratio", "{:.2f}"),
    ("bound ms", "bound_ms", "{:.3g}"),
    ("% of bound", "bound_percent", "{:.0f}%"),
    ("peak MB nn.RNN", "peak_mb_nn_rnn", "{:.2f}"),
    ("peak MB ours", "peak_mb_ours", "{:.2f}"),
    ("peak MB naive", "peak_mb_naive", "{:.2f}"),
]


def median_train_ratio(rows: Sequence[dict]) -> float:
    """Median ``torch_rnn / nn.RNN`` training-step ratio over the one-layer rows."""
    return statistics.median(row["train_ratio"] for row in rows if row["num_layers"] == 1 and not row["varlen"])


def markdown(rows: Sequence[dict], settings: Settings) -> str:
    """Header lines and a markdown table, one row per case."""
    low, high = rows[0]["load_average"]  # the same rounds for every row
    if native.ops() is not None:
        loops = "C++ (torch_rnn.native)"
    else:
        loops = "Python (TORCH_RNN_NATIVE=0)" if not native.enabled() else "Python (the C++ loops could not be built)"
    header = [
        f"torch {torch.__version__}, float32 CPU, {torch.get_num_threads()} threads; torch_rnn loops: {loops}; "
        f"torch.mm {MM_SIZE}x{MM_SIZE}: {statistics.median(row['mm_gflops'] for row in rows):.1f} GFLOP/s "
        "(median over rows); "
        f"median train ratio ours/nn.RNN over the one-layer rows: {median_train_ratio(rows):.2f}; "
        f"1-min load average after each round: {low:.1f} to {high:.1f} on {os.cpu_count()} CPUs",
        "",
        f"Times: medians over {settings.rounds} rounds of blocked_autorange(min_run_time="
        f"{settings.min_run_time}s), ms; every round times every implementation of every row once. train = forward + (output.sum() + h_n.sum()).backward(), input requires "
        "grad, gradients set to None first; fwd = forward under no_grad. Ratios < 1: torch_rnn faster. "
        "bound = matmul FLOPs of a training step at the torch.mm rate timed beside the row in every round. "
        "Peak MB = peak of the running sum of the CPU allocations and frees recorded by "
        "torch.profiler(profile_memory=True) during one training step.",
        "",
        "| " + " | ".join(title for title, _, _ in COLUMNS) + " |",
        "|" + "|".join("---" if key == "shape" else "---:" for _, key, _ in COLUMNS) + "|",
    ]
    body = [
        "| " + " | ".join("-" if row[key] is None else fmt.format(row[key]) for _, key, fmt in COLUMNS) + " |"
        for row in rows
    ]
    return "\n".join(header + body)


# ------------------------------------------------------------------------------------- a busy machine
BUSY_LIMIT = 1.25  # default threads / 1 thread, the most a training step may lose to a neighbour


def run_busy(cases: Sequence[Case], settings: Settings, kind: str) -> list[dict]:
    """The training steps of torch_rnn and nn.RNN with the default threads and with 1 thread, interleaved,
    while a neighbour of ``kind`` (:mod:`neighbour`) runs; one dict per case."""
    prepared = []
    for case in cases:
        bench = build(case)
        check_agreement(bench)
        steps = {}
        for name in ("torch_rnn", "nn.RNN"):
            step = training_step(bench.forwards[name], bench.leaves[name])
            step()  # warm-up
            steps[f"{name} default"], steps[f"{name} 1 thread"] = step, with_threads(step, 1)
        steps["torch_rnn default, loss 1 thread"] = training_step(bench.forwards["torch_rnn"],
                                                                  bench.leaves["torch_rnn"], loss_threads=1)
        prepared.append((case, steps))
    with neighbour.neighbours(kind):
        timings, loads = time_interleaved([steps for _, steps in prepared], settings)
    rows = []
    for (case, _), seconds in zip(prepared, timings):
        ms = {name: 1e3 * value for name, value in seconds.items()}
        row = {"shape": case.label, "neighbour": kind, "threads": torch.get_num_threads(),
               "load_average": [min(loads), max(loads)], **{f"{name} ms": value for name, value in ms.items()},
               "threads_ratio": ms["torch_rnn default"] / ms["torch_rnn 1 thread"],
               "nn_rnn_ratio": ms["torch_rnn default"] / ms["nn.RNN default"],
               "loss_1_thread_ratio": ms["torch_rnn default, loss 1 thread"] / ms["torch_rnn 1 thread"]}
        row["met"] = row["threads_ratio"] <= BUSY_LIMIT and row["nn_rnn_ratio"] <= 1.0
        rows.append(row)
    return rows


def busy_markdown(rows: Sequence[dict], settings: Settings) -> str:
    """Header lines, a markdown table and the target's verdict for :func:`run_busy`'s rows."""
    low, high = rows[0]["load_average"]
    lines = [
        f"torch {torch.__version__}, float32 CPU, default {rows[0]['threads']} threads; neighbour: "
        f"{rows[0]['neighbour']} ({neighbour.describe(rows[0]['neighbour'])}); medians over {settings.rounds} "
        f"interleaved rounds; 1-min load average {low:.1f} to {high:.1f} on {os.cpu_count()} CPUs",
        "",
        "| shape (N,T,D,H) | ours default ms | ours 1 thread ms | default/1 thread | nn.RNN default ms "
        "| nn.RNN 1 thread ms | ours/nn.RNN (default) | met | ours default, loss 1 thread ms | /1 thread |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['shape']} | {row['torch_rnn default ms']:.3g} | {row['torch_rnn 1 thread ms']:.3g} "
                     f"| {row['threads_ratio']:.2f} | {row['nn.RNN default ms']:.3g} | {row['nn.RNN 1 thread ms']:.3g} "
                     f"| {row['nn_rnn_ratio']:.2f} | {'yes' if row['met'] else 'no'} "
                     f"| {row['torch_rnn default, loss 1 thread ms']:.3g} | {row['loss_1_thread_ratio']:.2f} |")
    missed = [row["shape"] for row in rows if not row["met"]]
    lines += ["", f"Target (torch_rnn with the default threads at most {BUSY_LIMIT}x its 1-thread time, and not "
              "slower than nn.RNN, at every row): " + ("met" if not missed else "not met at " + ", ".join(missed))]
    return "\n".join(lines)


def target_lines(rows: Sequence[dict]) -> list[str]:
    """The speed targets on a quiet machine, each with whether the rows meet it (rows that were not run are not
    judged)."""
    by_shape = {row["shape"]: row for row in rows}

    def judged(name: str, shapes: Sequence[str], holds: Callable[[dict], bool]) -> Optional[str]:
        present = [by_shape[shape] for shape in shapes if shape in by_shape]
        if not present:
            return None
        missed = [f"{row['shape']} ({row['train_ratio']:.2f}x, {row['bound_percent']:.0f}%)" for row in present
                  if not holds(row)]
        return f"- {name}: " + ("met" if not missed else "not met at " + ", ".join(missed))

    main_one_layer = [row for row in rows if row["num_layers"] == 1 and not row["varlen"]
                      and row["shape"] in {case.label for case in MAIN_CASES}]
    lines = ["Targets:"]
    if main_one_layer:
        median = statistics.median(row["train_ratio"] for row in main_one_layer)
        lines.append(f"- median train ratio ours/nn.RNN <= 0.45 over the main one-layer rows: {median:.2f}, "
                     + ("met" if median <= 0.45 else "not met"))
    large_main = [case.label for case in (Case(64, 100, 128, 256), Case(16, 200, 300, 512), Case(256, 50, 128, 128))]
    for line in (judged(">= 95% of the bound at the three large main rows", large_main,
                        lambda row: row["bound_percent"] >= 95),
                 judged(">= 85% of the bound at the small rows", [Case(32, 50, 64, 128).label, Case(100, 30, 50, 64).label],
                        lambda row: row["bound_percent"] >= 85),
                 judged("large H: <= 0.7x nn.RNN and >= 85% of the bound", [case.label for case in LARGE_CASES],
                        lambda row: row["train_ratio"] <= 0.7 and row["bound_percent"] >= 85)):
        if line is not None:
            lines.append(line)
    return lines


def parse_shape(text: str) -> Case:
    try:
        N, T, D, H = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N,T,D,H (four integers), got {text!r}") from None
    return Case(N, T, D, H)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter timings (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of dicts instead of the table")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument(
        "--shapes", type=parse_shape, nargs="+", metavar="N,T,D,H", help="one-layer shapes to run instead of all rows"
    )
    parser.add_argument("--no-large", action="store_true", help="leave out the large hidden sizes (H 512-2048)")
    parser.add_argument("--neighbour", choices=neighbour.KINDS,
                        help="time training steps with the default threads against 1 thread while a neighbour "
                             "process runs (python: two busy loops; torch: a 2-thread training loop)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    cases = args.shapes or MAIN_CASES + EXTRA_CASES + ([] if args.no_large else LARGE_CASES)
    start = time.perf_counter()
    try:
        rows = run_busy(cases, settings, args.neighbour) if args.neighbour else run_cases(cases, settings)
    except MismatchError as error:
        sys.exit(f"bench_rnn: {error}")
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(busy_markdown(rows, settings) if args.neighbour
              else markdown(rows, settings) + "\n\n" + "\n".join(target_lines(rows)))
        print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
