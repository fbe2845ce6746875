"""Helpers of the training-stack tests: a small labelled file, the arguments of a short fit, running the
scripts, reading TensorBoard tags, and the one-line error a bad input gets."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_module.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
REPORT_LOSSES = ["0.315483", "0.277323", "0.243838", "0.212798", "0.183810",
                 "0.157254", "0.133639", "0.113249", "0.096055", "0.081789"]

POSITIVE = ["a wonderful , moving film", "great acting and a great story", "i loved every minute of it",
            "funny , warm and smart", "a beautiful and touching movie", "brilliant direction , superb cast"]
NEGATIVE = ["a dull , lifeless mess", "boring and far too long", "i hated every minute of it",
            "the plot is stupid and the acting is bad", "a tedious , ugly film", "awful writing , weak cast"]


def write_tsv(path: Path, repeat: int = 4) -> Path:
    rows = [f"1\t{s}" for s in POSITIVE] + [f"0\t{s}" for s in NEGATIVE]
    path.write_text("\n".join(rows * repeat) + "\n", encoding="utf-8")
    return path


def small_fit_args(data: Path, root: Path, *extra: str) -> list[str]:
    """A short fit of the default recipe on a small file."""
    return ["fit", "--config", str(CONFIGS / "default.yaml"), "--data.path", str(data),
            "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "2",
            "--trainer.enable_progress_bar", "false", "--model.hidden_size", "16", "--model.fc_size", "16",
            "--model.embedding_dim", "8", "--model.naive_bayes_dims", "4", "--data.batch_size", "8",
            "--trainer.log_every_n_steps", "1", *extra]


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def event_tags(log_dir: Path) -> set[str]:
    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def cli_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    *reports, error = err.splitlines()  # the data's reports (rows read per file) may come first
    assert error.startswith("error: ") and "Traceback" not in err
    assert all(not line.startswith(("error", " ")) for line in reports), err
    return error
