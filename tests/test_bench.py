"""Smoke test of benchmarks/bench_rnn.py and the modules it is made of (cases, timing, busy): one tiny shape,
quick settings, a JSON row with sane numbers."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import load_script

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BENCH_PATH = BENCHMARKS / "bench_rnn.py"
sys.path.insert(0, str(BENCHMARKS))
import busy  # noqa: E402
import cases  # noqa: E402
import neighbour  # noqa: E402
import timing  # noqa: E402


@pytest.fixture(scope="module")
def bench():
    yield from load_script(BENCH_PATH)


def test_one_tiny_row(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "MM_SIZE", 64)  # keeps the matmul timed beside the row short
    settings = timing.Settings(rounds=1, min_run_time=0.001)
    [row] = bench.run_cases([cases.Case(3, 5, 4, 6)], settings)
    times = ("nn_rnn_train_ms", "ours_train_ms", "naive_train_ms", "nn_rnn_fwd_ms", "ours_fwd_ms", "bound_ms")
    for key in (*times, "mm_gflops"):
        assert row[key] > 0, key
    assert row["peak_mb_nn_rnn"] > 0 and row["peak_mb_ours"] > 0 and row["peak_mb_naive"] > 0
    assert json.loads(json.dumps(row)) == row


def test_rows_are_timed_in_the_same_rounds(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every round goes through all the rows: one row per case, in order, the same load averages for all."""
    monkeypatch.setattr(timing, "MM_SIZE", 64)
    shapes = [cases.Case(3, 5, 4, 6), cases.Case(2, 4, 3, 5, num_layers=2, bidirectional=True)]
    rows = bench.run_cases(shapes, timing.Settings(rounds=2, min_run_time=0.001))
    assert [row["shape"] for row in rows] == [case.label for case in shapes]
    assert rows[0]["load_average"] == rows[1]["load_average"]
    assert rows[1]["naive_train_ms"] is None and rows[1]["ours_train_ms"] > 0


def test_variable_lengths_row_agrees(bench) -> None:
    cases.check_agreement(cases.build(cases.Case(3, 5, 4, 6, num_layers=2, bidirectional=True, varlen=True)))


def test_disagreement_aborts(bench) -> None:
    built = cases.build(cases.Case(2, 3, 4, 5))
    forward = built.forwards["torch_rnn"]
    built.forwards["torch_rnn"] = lambda: tuple(t + 1e-3 for t in forward())
    with pytest.raises(cases.MismatchError, match="torch_rnn disagrees"):
        cases.check_agreement(built)


def test_matmul_flops_sums_layers_and_directions(bench) -> None:
    case = cases.Case(2, 3, 4, 5, num_layers=2, bidirectional=True)
    assert cases.matmul_flops(case, steps=6) == 3 * 2 * 6 * 2 * ((4 * 5 + 25) + (10 * 5 + 25))


def test_busy_machine_rows_time_both_thread_counts_beside_a_neighbour(bench) -> None:
    settings = timing.Settings(rounds=1, min_run_time=0.001)
    [row] = busy.run_busy([cases.Case(3, 5, 4, 6)], settings, "python")
    for key in ("torch_rnn default ms", "torch_rnn 1 thread ms", "nn.RNN default ms", "nn.RNN 1 thread ms",
                "torch_rnn default, loss 1 thread ms"):
        assert row[key] > 0, key
    assert row["threads_ratio"] == row["torch_rnn default ms"] / row["torch_rnn 1 thread ms"]
    table = busy.busy_markdown([row], settings)
    assert "two pure-Python busy loops" in table and ("Target" in table.splitlines()[-1])
    with pytest.raises(ValueError, match="expected one of python, torch"):
        with neighbour.neighbours("java"):
            pass


def test_targets_are_judged_on_the_rows_that_ran(bench) -> None:
    def row(case, ratio, percent, nn_rnn_ms=100.0):
        return {"shape": case.label, "num_layers": 1, "varlen": False, "train_ratio": ratio, "bound_percent": percent,
                "nn_rnn_train_ms": nn_rnn_ms, "bound_ms": ratio * nn_rnn_ms * percent / 100}

    rows = [row(cases.Case(32, 50, 64, 128), 0.4, 90), row(cases.Case(100, 30, 50, 64), 0.5, 80),
            row(cases.Case(16, 100, 1024, 1024), 0.6, 86)]
    lines = bench.target_lines(rows)
    assert lines[1] == "- median train ratio ours/nn.RNN <= 0.45 over the main one-layer rows: 0.45, met"
    assert lines[2] == "- >= 85% of the bound at the small rows: not met at (100,30,50,64) (0.50x, 80%)"
    assert lines[3] == "- large H: <= 0.7x nn.RNN and >= 85% of the bound: met"
    assert len(lines) == 4  # the three large main rows did not run: not judged
    # nn.RNN at 234 ms, the bound at 166 ms: 0.7x nn.RNN (164 ms) is faster than the bound allows
    large = [row(cases.Case(64, 50, 1024, 1024), 0.83, 85, nn_rnn_ms=234.0)]
    assert bench.target_lines(large)[1] == ("- large H: <= 0.7x nn.RNN and >= 85% of the bound: not met at "
                                            "(64,50,1024,1024) (0.83x, 85%; 0.7x nn.RNN's time is 99% of the "
                                            "bound's: unreachable)")


def test_peers_targets_name_what_each_row_misses() -> None:
    """bench_peers.misses: each missed target with its ratio, and "unreachable" where 0.6x of JAX's time is below
    the matmul bound."""
    for peers in load_script(BENCHMARKS / "bench_peers.py"):
        row = {"JAX train": 10.0, "JAX train ratio": 0.5, "train bound": 5.0,
               "JAX fwd": 10.0, "JAX fwd ratio": 0.7, "fwd bound": 6.5, "ONNX Runtime fwd ratio": 0.2}
        assert peers.misses(row) == " (fwd 0.70x JAX, 0.6x JAX's time is 92% of the bound's: unreachable)"
        row.update({"fwd bound": 5.0, "JAX train ratio": 0.65, "ONNX Runtime fwd ratio": 0.55})
        assert peers.misses(row) == " (train 0.65x JAX; fwd 0.70x JAX; fwd 0.55x ONNX Runtime)"
        row.update({"JAX train ratio": 0.6, "JAX fwd ratio": 0.6, "ONNX Runtime fwd ratio": 0.5})
        assert peers.misses(row) == ""


@pytest.mark.slow
def test_peers_benchmark_runs_a_tiny_row() -> None:
    """benchmarks/bench_peers.py (the ``peers`` extra): checks JAX and ONNX Runtime against torch_rnn, then times."""
    pytest.importorskip("jax")
    pytest.importorskip("onnxruntime")
    import subprocess
    import sys

    script = BENCH_PATH.with_name("bench_peers.py")
    result = subprocess.run([sys.executable, str(script), "--threads", "2", "--quick", "--cases", "3,5,4,6",
                             "2,4,5,3 L2 bi"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| (")]
    assert [line.split(" | ")[0] for line in table] == ["| (3,5,4,6)", "| (2,4,5,3) L2 bi"]  # each row its own sizes
    assert "Targets" in result.stdout


def test_cost_growth_plot_writes_a_png(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in load_script(BENCH_PATH.with_name("plot_cost_growth.py")):
        monkeypatch.setattr(module, "BASE", dict(N=2, T=3, D=4, H=5))
        monkeypatch.setattr(module, "SWEEPS", {"T": [2, 4], "H": [3, 6], "N": [1, 2]})
        monkeypatch.setattr(module.timing, "MM_SIZE", 64)
        module.main(["--quick", "--output", str(tmp_path / "cost.png")])
    assert (tmp_path / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
