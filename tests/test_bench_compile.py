"""Smoke test of benchmarks/bench_compile.py: one tiny row under the fast ``aot_eager`` backend, the table with
compiling's own cost per step and the target's verdict."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import load_script

BENCH_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_compile.py"


@pytest.fixture(scope="module")
def bench():
    yield from load_script(BENCH_PATH)


def test_one_tiny_row_and_compilings_own_cost(bench) -> None:
    settings = bench.Settings(rounds=1, min_run_time=0.001)
    rows, fixed, loads = bench.run([bench.parse_shape("3,5,4,6")], settings, "aot_eager")
    [row] = rows
    for name in ("torch_rnn", "nn.RNN"):
        assert row[name]["eager_ms"] > 0 and row[name]["compiled_ms"] > 0 and row[name]["compile_s"] > 0
        assert row[name]["ratio"] == pytest.approx(row[name]["compiled_ms"] / row[name]["eager_ms"])
    assert fixed["eager"] > 0 and fixed["compiled"] > 0 and len(loads) == 1
    table = bench.markdown(rows, fixed, loads, settings, "aot_eager")
    assert "| (3,5,4,6) |" in table
    assert f"{1e3 * fixed['compiled']:.0f} us compiled" in table
    assert "Target, compiled torch_rnn not slower than eager at every row: " in table.splitlines()[-1]
