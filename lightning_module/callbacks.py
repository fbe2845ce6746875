"""Callbacks: the closing summary of a fit, and the original report's loss printout and figure."""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any, Literal, Optional

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from lightning_module.settings import check_settings


class TrainingSummary(pl.Callback):
    """Prints, when a fit ends: the best validation metrics, where the logs and checkpoints are, and the
    ``tensorboard`` and ``predict.py`` commands to use them.

    Args:
        monitor: the validation metric that picks the best epoch.
        mode: ``"max"`` or ``"min"``: whether larger or smaller ``monitor`` is better.

    Raises:
        ValueError: a ``mode`` other than ``"max"`` / ``"min"``.
    """

    def __init__(self, monitor: str = "val/acc", mode: Literal["max", "min"] = "max") -> None:
        problems = check_settings(TrainingSummary.__init__, {"mode": mode}, "summary")
        if problems:
            raise ValueError("; ".join(problems))
        self.monitor, self.mode = monitor, mode
        self.best: Optional[dict[str, float]] = None
        self.best_epoch = -1
        self._start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.monotonic() - getattr(self, "_elapsed_before", 0.0)

    def state_dict(self) -> dict[str, Any]:
        """The best epoch so far and the training time so far: a resumed fit's summary covers the whole run."""
        return {"best": self.best, "best_epoch": self.best_epoch, "elapsed": time.monotonic() - self._start}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_epoch = state_dict["best"], state_dict["best_epoch"]
        self._elapsed_before = float(state_dict["elapsed"])

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        value = metrics[self.monitor]
        if self.best is None or (value > self.best[self.monitor] if self.mode == "max" else value < self.best[self.monitor]):
            self.best, self.best_epoch = metrics, trainer.current_epoch

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        minutes, seconds = divmod(time.monotonic() - self._start, 60)
        lines = [f"Training finished: {trainer.current_epoch} epoch(s), {trainer.global_step} step(s) "
                 f"in {int(minutes)}m{seconds:04.1f}s."]
        if self.best is not None:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in sorted(self.best.items()))
            lines.append(f"Best validation (epoch {self.best_epoch}, by {self.monitor}): {shown}")
        else:
            lines.append("No validation metrics (no validation split or no validation run).")
        saved, seen = [], set()
        for callback in trainer.checkpoint_callbacks:  # two callbacks may keep the same file (last.ckpt)
            if callback.best_model_path and callback.best_model_path not in seen:
                saved.append(callback)
                seen.add(callback.best_model_path)
        for callback in saved:
            kind = f"best by {callback.monitor}" if callback.monitor else "latest"
            lines.append(f"Checkpoint ({kind}): {callback.best_model_path}")
        if trainer.logger is not None and trainer.logger.log_dir is not None:
            log_dir = Path(trainer.logger.log_dir)
            lines.append(f"TensorBoard logs: {log_dir}")
            lines.append(f"View them with:   {shell_command(sys.executable, '-m', 'tensorboard.main', '--logdir', log_dir.parent)}")
        if saved:
            predict = Path(__file__).resolve().parents[1] / "predict.py"
            lines.append("Classify sentences: "
                         + shell_command(sys.executable, predict, saved[0].best_model_path, "a sentence to classify"))
        print("\n" + "\n".join(lines), flush=True)


def shell_command(*parts: Any) -> str:
    """A command line that runs as printed in the user's own shell, whatever environment is active there: the
    running interpreter by its path (so this environment's packages), paths relative to the working directory
    when they lie inside it, each part quoted where the shell needs it."""
    cwd = Path.cwd()
    words = []
    for part in parts:
        text = str(part)
        if isinstance(part, Path) or Path(text).is_absolute():
            path = Path(text)
            text = str(path.relative_to(cwd)) if path.is_relative_to(cwd) else text
        words.append(shlex.quote(text))
    return " ".join(words)


class ReportLossPrinter(pl.Callback):
    """Prints the original report's lines, ``(Iteration k / K) loss: %f``, every ``every`` iterations from
    the first. The loss of iteration k is the training loss computed before the k-th update.

    Args:
        every: print every this many iterations (the report: 10).
        figure: where to save the loss-history figure (PNG), relative to the logger's directory unless
            absolute; None for no figure.
    """

    def __init__(self, every: int = 10, figure: Optional[str] = "loss_history.png") -> None:
        self.every = every
        self.figure = figure
        self.history: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        loss = float(outputs["loss"])
        self.history.append(loss)
        iteration = len(self.history)
        if (iteration - 1) % self.every == 0:
            total = trainer.estimated_stepping_batches
            print(f"(Iteration {iteration} / {total}) loss: {loss:f}", flush=True)

    @rank_zero_only
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.figure is None or not self.history:
            return
        import matplotlib

        matplotlib.use("Agg")  # no screen needed
        import matplotlib.pyplot as plt

        path = Path(self.figure)
        if not path.is_absolute():
            path = Path(trainer.logger.log_dir if trainer.logger is not None else trainer.default_root_dir) / path
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(range(1, len(self.history) + 1), self.history, marker="o", markersize=2)
        ax.set_title("Training loss history")
        ax.set_xlabel("Iteration")
        ax.set_ylabel("Loss")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        print(f"Loss history figure: {path}", flush=True)
