"""Smoke test of benchmarks/bench_train.py: a few steps of the four variants on a small data file; the recipe
read through the CLI; the nn.RNN swap (benchmarks/nn_rnn_swap.py)."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
from helpers import load_script
import torch

import torch_rnn

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
BENCH_PATH = BENCHMARKS / "bench_train.py"
sys.path.insert(0, str(BENCHMARKS))
import nn_rnn_swap  # noqa: E402
ROWS = ["1\ta wonderful , moving film", "1\tgreat acting and a great story", "1\ti loved every minute of it",
        "0\ta dull , lifeless mess", "0\tboring and far too long", "0\ti hated every minute of it"]


@pytest.fixture(scope="module")
def bench():
    yield from load_script(BENCH_PATH)


def small_file(folder: Path) -> Path:
    data = folder / "small.tsv"
    data.write_text("\n".join(ROWS * 8) + "\n", encoding="utf-8")
    return data


def test_four_variants_on_a_small_file(bench, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = small_file(tmp_path)
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
    adapter = nn_rnn_swap.NNRNN(ours)
    x = torch.randn(3, 6, 4)
    lengths = torch.tensor([2, 6, 4])
    expected, expected_h = ours(x, lengths=lengths)
    got, got_h = adapter(x, lengths=lengths)
    assert got.shape == expected.shape == (3, 6, 10)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_h, expected_h, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")  # pytest's own argv is not the CLI's
def test_the_recipe_comes_from_the_cli_with_its_scheduler(bench, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """default.yaml through the CLI: the data file and seed overrides, the trainer's clipping, and the module's own
    optimizer and epoch-interval scheduler, which the plain loop steps when an epoch ends."""
    cli = bench.build_cli(bench.DEFAULT_CONFIG, str(small_file(tmp_path)), seed=3)
    assert cli.datamodule.hparams.path == str(tmp_path / "small.tsv") and cli.config.seed_everything == 3
    assert cli.config.trainer.gradient_clip_val == 5.0
    optimizer, scheduler, interval = bench.optimizer_and_scheduler(cli.model)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["lr"] == 0.002
    assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and interval == "epoch"
    built = []
    original = bench.optimizer_and_scheduler
    monkeypatch.setattr(bench, "optimizer_and_scheduler", lambda module: built.append(original(module)) or built[-1])
    batches_per_epoch = len(cli.datamodule.train_dataloader())
    record, _ = bench.run_plain(copy.deepcopy(cli.model), cli.datamodule, cli.config.trainer, batches_per_epoch + 1,
                                seed=0)
    [(_, scheduler, _)] = built
    assert len(record.ends) == batches_per_epoch + 1 and scheduler.last_epoch == 1
