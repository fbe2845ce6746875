"""Eager against ``torch.compile``: training-step times and compile times, torch_rnn and nn.RNN (float32, CPU).

Rows: the ``(N, T, D, H)`` shapes of ``bench_rnn.py`` (``batch_first=True``, ``tanh``; the two-layer
bidirectional rows too, with lengths ``1..T`` in the last), and the sentiment model of ``configs/default.yaml``
(``SentimentRNN``: embedding 100, one RNN layer of 128, temporal affine 128, two classes; batch 50 of 50
tokens, lengths drawn from ``1..50``) with its softmax loss.

Per row and implementation:

- **eager** and **compiled** ms: one training step as ``bench_rnn.py`` times it: gradients to None, the loss
  ``output.sum() + h_n.sum()`` (the sentiment model: ``softmax_loss(model(tokens, mask), labels)``), its
  ``backward()``; medians over interleaved rounds (``timing.time_interleaved``).
- The compiled step compiles the loss, ``torch.compile(loss, backend=...)`` (inductor unless ``--backend``),
  network and loss together as in training (compiling the network alone, autograd would hand its backward a
  materialised copy of ``output.sum()``'s expanded gradient, which the eager loops read in place): torch_rnn with
  ``fullgraph=True`` (its layers are custom ops, :mod:`torch_rnn.ops`); nn.RNN with the default, since Dynamo
  cannot trace nn.RNN and runs it eagerly between two graphs (``fullgraph=True`` fails for it).
- **compile s**: the wall time of the first compiled step (tracing, compiling forward and backward, one run),
  with inductor's on-disk caches off, as on a first run (later runs of the same graphs take a fraction).
- Before timing, the compiled step's output and input gradient are checked against eager (1e-4).

Ratios are compiled / eager (below 1: compiling helps). The header gives the threads and load averages; then
comes **torch.compile's own cost** per training step, timed in the same rounds: the step of a graph with no
custom operator, ``tanh(x @ W).sum()`` (x ``(100, 64)``, W ``(64, 64)``), eager and compiled (the same backend)
-- Dynamo's guards, AOT autograd's wrappers around the forward and backward graphs, the calls of the compiled
code -- a fixed cost that a compiled step pays whatever its operators are. The last line is the target: a
compiled torch_rnn step not slower than its eager step (median ratio <= 1.00) at every row; each row that
misses it gives its extra time beside that fixed cost.

Run from the repository root::

    python benchmarks/bench_compile.py              # all rows (about ten minutes: each row compiles twice)
    python benchmarks/bench_compile.py --quick      # fewer rounds, two shapes
    python benchmarks/bench_compile.py --shapes 32,50,64,128 --backend aot_eager
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cases import EXTRA_CASES, MAIN_CASES, SEED, MismatchError, build, parse_shape  # noqa: E402
from markdown_tables import Column, markdown_table  # noqa: E402
from timing import FULL, QUICK, Settings, time_interleaved  # noqa: E402

from torch_rnn.models import SentimentRNN, softmax_loss  # noqa: E402

TOLERANCE = 1e-4
SENTIMENT = "sentiment model"
FLOOR = "torch.compile's own cost"


def floor_steps(backend: str) -> dict[str, Callable[[], None]]:
    """Eager and compiled training steps of ``tanh(x @ W).sum()``, x ``(100, 64)``, W ``(64, 64)``: no custom
    operator, almost no arithmetic, so compiled - eager is what compiling itself adds to every step."""
    torch.manual_seed(SEED)
    x, w = torch.randn(100, 64, requires_grad=True), torch.randn(64, 64, requires_grad=True)

    def loss() -> Tensor:
        return torch.tanh(x @ w).sum()

    return {"eager": step(loss, [x, w]), "compiled": step(torch.compile(loss, backend=backend, fullgraph=True), [x, w])}


def sentiment_case() -> tuple[dict[str, Callable[[], Tensor]], list[Tensor]]:
    """default.yaml's network on a batch of 50 sentences of up to 50 tokens; the loss as a closure."""
    torch.manual_seed(SEED)
    model = SentimentRNN(20000, 128, 128, 2, input_mode="embedding", embedding_dim=100, dropout=0.0)
    lengths = torch.randint(1, 51, (50,))
    mask = (torch.arange(50) < lengths.unsqueeze(1)).float()
    tokens = torch.randint(1, 20000, (50, 50)) * mask.long()
    labels = torch.randint(0, 2, (50,))
    return {"loss": lambda: softmax_loss(model(tokens, mask), labels)}, list(model.parameters())


def steps_for(case, backend: str) -> tuple[dict[str, Callable[[], None]], dict[str, float]]:
    """Eager and compiled training steps of one row, checked against each other; the compile seconds."""
    if case == SENTIMENT:
        forwards, leaves = sentiment_case()
        implementations = {"torch_rnn": (forwards["loss"], leaves, True)}
    else:
        bench = build(case)
        implementations = {name: (scalar_loss(bench.forwards[name]), bench.leaves[name], name == "torch_rnn")
                           for name in ("torch_rnn", "nn.RNN")}
    steps, compile_seconds = {}, {}
    for name, (forward, leaf_list, fullgraph) in implementations.items():
        compiled_forward = torch.compile(forward, backend=backend, fullgraph=fullgraph)
        eager_step, compiled_step = step(forward, leaf_list), step(compiled_forward, leaf_list)
        start = time.perf_counter()
        compiled_step()
        compile_seconds[name] = time.perf_counter() - start
        check(forward, compiled_forward, leaf_list, f"{name} at {label(case)}")
        steps[f"{name} eager"], steps[f"{name} compiled"] = eager_step, compiled_step
    return steps, compile_seconds


def scalar_loss(forward: Callable[[], tuple[Tensor, Tensor]]) -> Callable[[], Tensor]:
    """``output.sum() + h_n.sum()`` of an RNN forward: the loss is compiled with the network, as in training."""
    def loss() -> Tensor:
        output, h_n = forward()
        return output.sum() + h_n.sum()

    return loss


def step(loss: Callable[[], Tensor], leaves: Sequence[Tensor]) -> Callable[[], None]:
    def run() -> None:
        for leaf in leaves:
            leaf.grad = None
        loss().backward()

    return run


def check(forward: Callable, compiled_forward: Callable, leaves: Sequence[Tensor], what: str) -> None:
    """The compiled step's output and first leaf's gradient equal eager's within :data:`TOLERANCE`."""
    results = []
    for f in (forward, compiled_forward):
        leaves[0].grad = None
        value = f()
        value.backward()
        results.append((value.detach(), leaves[0].grad.clone()))
    for a, b in zip(*results):
        error = (a - b).abs().max().item()
        if not error <= TOLERANCE * max(1.0, b.abs().max().item()):
            raise MismatchError(f"compiled {what} differs from eager by {error:.2e}")


def label(case) -> str:
    return case if isinstance(case, str) else case.label


def run(cases: Sequence, settings: Settings, backend: str) -> tuple[list[dict], dict[str, float], list[float]]:
    """The rows' times and compile seconds, the fixed cost's eager and compiled ms (:func:`floor_steps`), and
    the load averages after each round."""
    prepared = [(case, *steps_for(case, backend)) for case in cases]
    floor = floor_steps(backend)
    floor["compiled"]()  # compiled here, not in the timed rounds
    medians, loads = time_interleaved([steps for _, steps, _ in prepared] + [floor], settings)
    fixed = {name: seconds * 1e3 for name, seconds in medians.pop().items()}
    rows = []
    for (case, _, compile_seconds), times in zip(prepared, medians):
        row = {"row": label(case)}
        for name in compile_seconds:
            eager, compiled = times[f"{name} eager"] * 1e3, times[f"{name} compiled"] * 1e3
            row[name] = dict(eager_ms=eager, compiled_ms=compiled, ratio=compiled / eager,
                             compile_s=compile_seconds[name])
        rows.append(row)
    return rows, fixed, loads


IMPLEMENTATIONS = ("torch_rnn", "nn.RNN")
NUMBERS = (("eager ms", "eager_ms", "{:.2f}"), ("compiled ms", "compiled_ms", "{:.2f}"),
           ("compiled/eager", "ratio", "{:.2f}"), ("compile s", "compile_s", "{:.1f}"))
COLUMNS = [Column("row", "row", left=True)] + [
    Column(f"{name} {title}" if key == "eager_ms" else title, f"{name} {key}", fmt)
    for name in IMPLEMENTATIONS for title, key, fmt in NUMBERS
]


def markdown(rows: Sequence[dict], fixed: dict[str, float], loads: Sequence[float], settings: Settings,
             backend: str) -> str:
    """The header line, a markdown table ("-" where a row has no such implementation), compiling's own cost
    per step (``fixed``: eager and compiled ms of :func:`floor_steps`) and the target's verdict."""
    cells = [{"row": row["row"], **{f"{name} {key}": row[name][key] if name in row else None
                                    for name in IMPLEMENTATIONS for _, key, _ in NUMBERS}}
             for row in rows]
    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} threads, backend {backend}, "
             f"{settings.rounds} rounds; load average after each round: {', '.join(f'{x:.2f}' for x in loads)}",
             "",
             *markdown_table(COLUMNS, cells)]
    floor_ms = fixed["compiled"] - fixed["eager"]
    lines += ["", f"{FLOOR} per training step (tanh(x @ W).sum(), x (100, 64), W (64, 64), no custom operator): "
                  f"{1e3 * fixed['eager']:.0f} us eager, {1e3 * fixed['compiled']:.0f} us compiled, "
                  f"+{1e3 * floor_ms:.0f} us"]
    slower = [f"{row['row']} ({row['torch_rnn']['ratio']:.2f}, "
              f"+{1e3 * (row['torch_rnn']['compiled_ms'] - row['torch_rnn']['eager_ms']):.0f} us)"
              for row in rows if row["torch_rnn"]["ratio"] > 1.0]
    lines += ["", "Target, compiled torch_rnn not slower than eager at every row: "
              + ("met" if not slower else f"not met at {len(slower)} of {len(rows)} rows (compiled/eager, "
                                          f"compiled - eager): {', '.join(slower)}")]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of short timings, two shapes")
    parser.add_argument("--shapes", nargs="+", type=parse_shape, help="N,T,D,H rows instead of all")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (default inductor)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads")
    parser.add_argument("--no-sentiment", action="store_true", help="leave out the sentiment model row")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    # Every row compiles the same loss closure for other tensors: one cache entry per row, all kept for the timing.
    torch._dynamo.config.recompile_limit = torch._dynamo.config.accumulated_recompile_limit = 64
    # Compile times from scratch, as on a first run: inductor's caches of earlier runs' graphs are not read.
    torch._inductor.config.fx_graph_cache = False
    torch._functorch.config.enable_autograd_cache = False
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = QUICK if args.quick else FULL
    cases: list = list(args.shapes or (MAIN_CASES[:2] if args.quick
                                       else MAIN_CASES + EXTRA_CASES))
    if not args.no_sentiment:
        cases.append(SENTIMENT)
    rows, fixed, loads = run(cases, settings, args.backend)
    print(markdown(rows, fixed, loads, settings, args.backend))


if __name__ == "__main__":
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no compile workers beside the timed threads
    main()
