"""Smoke test of benchmarks/bench_train.py: a few steps of the four variants on a small data file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_script
import torch

import torch_rnn

BENCH_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
ROWS = ["1\ta wonderful , moving film", "1\tgreat acting and a great story", "1\ti loved every minute of it",
        "0\ta dull , lifeless mess", "0\tboring and far too long", "0\ti hated every minute of it"]


@pytest.fixture(scope="module")
def bench():
    yield from load_script(BENCH_PATH)


def test_four_variants_on_a_small_file(bench, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "small.tsv"
    data.write_text("\n".join(ROWS * 8) + "\n", encoding="utf-8")
    bench.main(["--data-path", str(data), "--steps", "3", "--warmup", "1", "--rounds", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["same_batches"] and result["steps"] == 3 and result["data"] == str(data)
    assert [(row["loop"], row["rnn"]) for row in result["rows"]] == list(bench.VARIANTS)
    for row in result["rows"]:
        assert row["timed_steps"] == 3 and row["timed_sentences"] > 0
        assert row["sentences_per_s"] > 0 and row["ms_per_step"] > 0
        assert row["forward_ms"] > 0 and row["backward_ms"] > 0 and row["optimizer_ms"] > 0
        assert 0 < row["outside_percent"] < 100
    assert set(result["lightning_overhead_percent"]) == {"torch_rnn", "nn.RNN"}
    assert set(result["torch_rnn_speedup"]) == {"lightning", "plain"}
    assert "| lightning | torch_rnn |" in bench.markdown(result)


def test_nn_rnn_adapter_matches_torch_rnn_with_lengths(bench) -> None:
    torch.manual_seed(0)
    ours = torch_rnn.RNN(4, 5, batch_first=True, bidirectional=True)
    adapter = bench.NNRNN(ours)
    x = torch.randn(3, 6, 4)
    lengths = torch.tensor([2, 6, 4])
    expected, expected_h = ours(x, lengths=lengths)
    got, got_h = adapter(x, lengths=lengths)
    assert got.shape == expected.shape == (3, 6, 10)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_h, expected_h, rtol=1e-5, atol=1e-5)
