"""How a training step's time grows with the sequence length T, the hidden size H and the batch N: torch_rnn and
nn.RNN beside the matmul bound, as a PNG (``docs/cost_growth.png``, which README shows).

Three sweeps around ``(N, T, D, H) = (32, 100, 128, 256)``: T from 25 to 800, H (with ``D = H``) from 64 to 1024,
N from 1 to 512, one factor at a time. Each point is ``bench_rnn.py``'s training step (``batch_first``,
``tanh``, ``(output.sum() + h_n.sum()).backward()``), medians over interleaved rounds
(``timing.time_interleaved``); the bound is the step's matmul FLOPs at the ``torch.mm`` rate timed beside
it (``cases.matmul_flops``). Log-log axes: a line of slope 1 is a cost linear in the factor.

Run from the repository root (needs matplotlib, a dependency of the project)::

    python benchmarks/plot_cost_growth.py                 # about five minutes
    python benchmarks/plot_cost_growth.py --quick --output /tmp/cost.png
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import timing  # noqa: E402
from cases import Case, build, check_agreement, matmul_flops  # noqa: E402

BASE = dict(N=32, T=100, D=128, H=256)
SWEEPS = {
    "T": [25, 50, 100, 200, 400, 800],
    "H": [64, 128, 256, 512, 1024],
    "N": [1, 4, 16, 64, 128, 512],
}
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "cost_growth.png"


def sweep_cases(sweeps: dict[str, Sequence[int]]) -> list[tuple[str, int, Case]]:
    """(factor, value, case) for every point: one factor changed from :data:`BASE` (``D`` follows ``H``)."""
    points = []
    for factor, values in sweeps.items():
        for value in values:
            shape = dict(BASE, **{factor: value}, **({"D": value} if factor == "H" else {}))
            points.append((factor, value, Case(**shape)))
    return points


def measure(points, settings: timing.Settings) -> tuple[list[dict[str, float]], list[float]]:
    """Median ms of torch_rnn's and nn.RNN's training steps and the bound, per point."""
    step_sets, flops = [], []
    for _, _, case in points:
        bench = build(case)
        check_agreement(bench)
        steps = {name: timing.training_step(bench.forwards[name], bench.leaves[name])
                 for name in ("torch_rnn", "nn.RNN")}
        steps["mm"], mm_flops = timing.mm_step()
        for step in steps.values():
            step()
        step_sets.append(steps)
        flops.append((matmul_flops(case, bench.steps), mm_flops))
    medians, loads = timing.time_interleaved(step_sets, settings)
    results = []
    for seconds, (step_flops, mm_flops) in zip(medians, flops):
        rate = mm_flops / seconds["mm"]
        results.append({"torch_rnn": 1e3 * seconds["torch_rnn"], "nn.RNN": 1e3 * seconds["nn.RNN"],
                        "bound": 1e3 * step_flops / rate})
    return results, loads


def plot(points, results, loads: Sequence[float], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = list(dict.fromkeys(factor for factor, _, _ in points))
    figure, axes = plt.subplots(1, len(factors), figsize=(4.2 * len(factors), 3.6), constrained_layout=True)
    styles = {"torch_rnn": dict(marker="o"), "nn.RNN": dict(marker="s"), "bound": dict(linestyle="--", color="gray")}
    for axis, factor in zip(axes, factors):
        chosen = [(value, result) for (f, value, _), result in zip(points, results) if f == factor]
        values = [value for value, _ in chosen]
        for name, style in styles.items():
            axis.plot(values, [result[name] for _, result in chosen], label=name, **style)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        fixed = ", ".join(f"{k}={v}" for k, v in BASE.items() if k != factor and not (factor == "H" and k == "D"))
        axis.set_title(f"{factor}{' (= D)' if factor == 'H' else ''}; {fixed}", fontsize=9)
        axis.set_xlabel(factor)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("training step, ms")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"torch {torch.__version__}, float32 CPU, {torch.get_num_threads()} threads, load average "
                    f"{min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs", fontsize=9)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=90)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two rounds, short timings, three points a sweep")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"PNG path (default {DEFAULT_OUTPUT})")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    sweeps = {factor: values[:3] for factor, values in SWEEPS.items()} if args.quick else SWEEPS
    points = sweep_cases(sweeps)
    results, loads = measure(points, timing.QUICK if args.quick else timing.Settings(rounds=5, min_run_time=0.1))
    for (factor, value, case), result in zip(points, results):
        print(f"{factor}={value:<5} {case.label:<20} torch_rnn {result['torch_rnn']:9.2f} ms  "
              f"nn.RNN {result['nn.RNN']:9.2f} ms  bound {result['bound']:8.2f} ms")
    plot(points, results, loads, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
