"""The busy-machine benchmark (``bench_rnn.py --neighbour python|torch``): training steps of torch_rnn and nn.RNN
with the default threads and with 1 thread, interleaved, while :mod:`neighbour` processes keep the cores busy."""
from __future__ import annotations

import os
from typing import Sequence

import torch

import neighbour
from cases import Case, build, check_agreement
from markdown_tables import Column, markdown_table
from timing import Settings, time_interleaved, training_step, with_threads

BUSY_LIMIT = 1.25  # default threads / 1 thread, the most a training step may lose to a neighbour

MS, RATIO = "{:.3g}", "{:.2f}"
COLUMNS = [  # grouped by comparison: the times, then their ratio
    Column("shape (N,T,D,H)", "shape", left=True),
    Column("ours default ms", "torch_rnn default ms", MS), Column("ours 1 thread ms", "torch_rnn 1 thread ms", MS),
    Column("default/1 thread", "threads_ratio", RATIO),
    Column("nn.RNN default ms", "nn.RNN default ms", MS), Column("nn.RNN 1 thread ms", "nn.RNN 1 thread ms", MS),
    Column("ours/nn.RNN (default)", "nn_rnn_ratio", RATIO),
    Column("met", "met", lambda met: "yes" if met else "no", left=True),
    Column("ours default, loss 1 thread ms", "torch_rnn default, loss 1 thread ms", MS),
    Column("/1 thread", "loss_1_thread_ratio", RATIO),
]


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
        *markdown_table(COLUMNS, rows),
    ]
    missed = [row["shape"] for row in rows if not row["met"]]
    lines += ["", f"Target (torch_rnn with the default threads at most {BUSY_LIMIT}x its 1-thread time, and not "
              "slower than nn.RNN, at every row): " + ("met" if not missed else "not met at " + ", ".join(missed))]
    return "\n".join(lines)
