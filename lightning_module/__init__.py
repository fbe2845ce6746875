"""The training stack: the LightningModule, the LightningDataModule and the command line around them."""
from lightning_module.datamodule import SentimentDataModule
from lightning_module.module import SentimentClassifier

__all__ = ["SentimentClassifier", "SentimentDataModule"]
