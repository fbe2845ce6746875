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

The rows, their three implementations and the agreement check are in :mod:`cases`; the timing rounds, steps and
peak memory in :mod:`timing`; the busy-machine run in :mod:`busy`.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from torch_rnn import native

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import neighbour  # noqa: E402  (the neighbour processes of --neighbour)
import timing  # noqa: E402
from busy import busy_markdown, run_busy  # noqa: E402
from cases import (EXTRA_CASES, LARGE_CASES, MAIN_CASES, Bench, Case, MismatchError, build,  # noqa: E402
                   check_agreement, matmul_flops, parse_shape)
from markdown_tables import Column, markdown_table  # noqa: E402
from timing import (FULL, QUICK, Settings, inference_step, mm_step, time_interleaved, training_peak_bytes,  # noqa: E402
                    training_step)


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
MS, RATIO = "{:.3g}", "{:.2f}"
COLUMNS = [  # grouped by comparison: the times, then torch_rnn's ratio
    Column("shape (N,T,D,H)", "shape", left=True),
    Column("nn.RNN train ms", "nn_rnn_train_ms", MS), Column("ours train ms", "ours_train_ms", MS),
    Column("ours/nn.RNN", "train_ratio", RATIO),
    Column("naive train ms", "naive_train_ms", MS), Column("ours/naive", "naive_ratio", RATIO),
    Column("nn.RNN fwd ms", "nn_rnn_fwd_ms", MS), Column("ours fwd ms", "ours_fwd_ms", MS),
    Column("fwd ours/nn.RNN", "fwd_ratio", RATIO),
    Column("bound ms", "bound_ms", MS), Column("% of bound", "bound_percent", "{:.0f}%"),
    *(Column(f"peak MB {name}", f"peak_mb_{key}", "{:.2f}") for name, key in [("nn.RNN", "nn_rnn"), ("ours", "ours"),
                                                                             ("naive", "naive")]),
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
    lines = [
        f"torch {torch.__version__}, float32 CPU, {torch.get_num_threads()} threads; torch_rnn loops: {loops}; "
        f"torch.mm {timing.MM_SIZE}x{timing.MM_SIZE}: {statistics.median(row['mm_gflops'] for row in rows):.1f} "
        "GFLOP/s (median over rows); "
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
        *markdown_table(COLUMNS, rows),
    ]
    return "\n".join(lines)


def unreachable_note(row: dict, ratio_target: float) -> str:
    """Where ``ratio_target`` times nn.RNN's time is less than the matmul bound, no implementation can reach it:
    nn.RNN itself already runs at over ``ratio_target`` of the bound there."""
    if ratio_target * row["nn_rnn_train_ms"] >= row["bound_ms"]:
        return ""
    share = ratio_target * row["nn_rnn_train_ms"] / row["bound_ms"]
    return f"; {ratio_target}x nn.RNN's time is {share:.0%} of the bound's: unreachable"


def target_lines(rows: Sequence[dict]) -> list[str]:
    """The speed targets on a quiet machine, each with whether the rows meet it (rows that were not run are not
    judged)."""
    by_shape = {row["shape"]: row for row in rows}

    def judged(name: str, shapes: Sequence[str], holds: Callable[[dict], bool],
               ratio_target: Optional[float] = None) -> Optional[str]:
        present = [by_shape[shape] for shape in shapes if shape in by_shape]
        if not present:
            return None
        missed = [f"{row['shape']} ({row['train_ratio']:.2f}x, {row['bound_percent']:.0f}%"
                  + (unreachable_note(row, ratio_target) if ratio_target is not None else "") + ")"
                  for row in present if not holds(row)]
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
                        lambda row: row["train_ratio"] <= 0.7 and row["bound_percent"] >= 85, ratio_target=0.7)):
        if line is not None:
            lines.append(line)
    return lines


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
