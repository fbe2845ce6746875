"""The training stack: the LightningModule, the LightningDataModule and the command line around them.

``SentimentClassifier`` and ``SentimentDataModule`` are imported on first use, so that importing a light
submodule (``lightning_module.errors``, the start of ``predict.py``) does not import torch and Lightning.
"""
from __future__ import annotations

from typing import Any

__all__ = ["SentimentClassifier", "SentimentDataModule"]


def __getattr__(name: str) -> Any:
    if name == "SentimentClassifier":
        from lightning_module.module import SentimentClassifier

        return SentimentClassifier
    if name == "SentimentDataModule":
        from lightning_module.datamodule import SentimentDataModule

        return SentimentDataModule
    raise AttributeError(f"module 'lightning_module' has no attribute {name!r}")
