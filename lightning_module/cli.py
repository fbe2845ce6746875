"""The command line: a LightningCLI over SentimentClassifier and SentimentDataModule.

``python train.py`` fits ``configs/default.yaml``; ``python train.py fit|validate|test|predict --config X``
and every ``--model.*``, ``--data.*``, ``--trainer.*`` override work as in any LightningCLI. Bad input
(data, settings, checkpoints) ends with one line on stderr and exit status 1 instead of a traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from lightning_module.callbacks import TrainingSummary
from lightning_module.datamodule import SentimentDataModule
from lightning_module.errors import DataError
from lightning_module.inference import load_checkpoint
from lightning_module.module import SentimentClassifier


class SentimentCLI(LightningCLI):
    """Links the data's vocabulary size and class count into the model, and always adds the summary."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_lightning_class_args(TrainingSummary, "summary")

    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path`` must be one of our checkpoints, checked (with a weights-only load) before Lightning
        reads its hyperparameters: its own errors would be tracebacks."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path not in (None, "best", "last", "hpc", "registry"):
            load_checkpoint(ckpt_path)
        super()._parse_ckpt_path()

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        """The Trainer loads ``--ckpt_path`` with ``weights_only=True`` too: no checkpoint can run code."""
        return {**super()._prepare_subcommand_kwargs(subcommand), "weights_only": True}


def main(args: Optional[Sequence[str]] = None, default_config: Optional[Path] = None) -> None:
    """Run the CLI on ``args`` (default: the command line); with no arguments at all, fit ``default_config``."""
    if args is None and len(sys.argv) == 1 and default_config is not None:
        args = ["fit", "--config", str(default_config)]
    try:
        SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, auto_configure_optimizers=False,
                     save_config_kwargs={"overwrite": True})
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
