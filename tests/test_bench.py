"""Smoke test of benchmarks/bench_rnn.py: one tiny shape, quick settings, a JSON row with sane numbers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_script

BENCH_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rnn.py"


@pytest.fixture(scope="module")
def bench():
    yield from load_script(BENCH_PATH)


def test_one_tiny_row(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "MM_SIZE", 64)  # keeps the matmul timed beside the row short
    settings = bench.Settings(rounds=1, min_run_time=0.001)
    [row] = bench.run_cases([bench.Case(3, 5, 4, 6)], settings)
    times = ("nn_rnn_train_ms", "ours_train_ms", "naive_train_ms", "nn_rnn_fwd_ms", "ours_fwd_ms", "bound_ms")
    for key in (*times, "mm_gflops"):
        assert row[key] > 0, key
    assert row["peak_mb_nn_rnn"] > 0 and row["peak_mb_ours"] > 0 and row["peak_mb_naive"] > 0
    assert json.loads(json.dumps(row)) == row


def test_rows_are_timed_in_the_same_rounds(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every round goes through all the rows: one row per case, in order, the same load averages for all."""
    monkeypatch.setattr(bench, "MM_SIZE", 64)
    cases = [bench.Case(3, 5, 4, 6), bench.Case(2, 4, 3, 5, num_layers=2, bidirectional=True)]
    rows = bench.run_cases(cases, bench.Settings(rounds=2, min_run_time=0.001))
    assert [row["shape"] for row in rows] == [case.label for case in cases]
    assert rows[0]["load_average"] == rows[1]["load_average"]
    assert rows[1]["naive_train_ms"] is None and rows[1]["ours_train_ms"] > 0


def test_variable_lengths_row_agrees(bench) -> None:
    bench.check_agreement(bench.build(bench.Case(3, 5, 4, 6, num_layers=2, bidirectional=True, varlen=True)))


def test_disagreement_aborts(bench) -> None:
    built = bench.build(bench.Case(2, 3, 4, 5))
    forward = built.forwards["torch_rnn"]
    built.forwards["torch_rnn"] = lambda: tuple(t + 1e-3 for t in forward())
    with pytest.raises(bench.MismatchError, match="torch_rnn disagrees"):
        bench.check_agreement(built)


def test_matmul_flops_sums_layers_and_directions(bench) -> None:
    case = bench.Case(2, 3, 4, 5, num_layers=2, bidirectional=True)
    assert bench.matmul_flops(case, steps=6) == 3 * 2 * 6 * 2 * ((4 * 5 + 25) + (10 * 5 + 25))
