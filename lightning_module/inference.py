"""Classifying new sentences with a trained checkpoint, and telling our checkpoints from others."""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch

from lightning_module.datamodule import SentimentDataModule, TextEncoder
from lightning_module.errors import CheckpointError
from lightning_module.module import SentimentClassifier


def safe_load(path: Union[str, Path]) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors, containers and plain values only, so a crafted
    pickle cannot run code (our checkpoints hold nothing else).

    Raises:
        CheckpointError: the file holds other Python objects (refused before any is built), or is not a
            PyTorch checkpoint at all.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else type(error).__name__)
        raise CheckpointError(f"{path}: refused to load: it holds Python objects other than tensors and plain "
                              f"data, and building them could run code ({reason})") from None
    except Exception as error:  # torch raises several types for files that are not checkpoints
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(error).__name__}: {error})") from None


def load_checkpoint(path: Union[str, Path]) -> dict[str, Any]:
    """Load a checkpoint file and check that it is one of ours: a SentimentClassifier's weights and
    hyperparameters, and the SentimentDataModule's vocabulary.

    Raises:
        CheckpointError: naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    checkpoint = safe_load(path)
    missing = [key for key in ("state_dict", "hyper_parameters", SentimentDataModule.__qualname__)
               if not isinstance(checkpoint, dict) or key not in checkpoint]
    if not missing and not any(key.startswith("model.rnn.") for key in checkpoint["state_dict"]):
        missing.append("the SentimentRNN weights")
    if missing:
        raise CheckpointError(f"{path}: not a torch-rnn sentiment checkpoint (it has no {', '.join(missing)}); "
                              "use a .ckpt written by `python train.py`")
    return checkpoint


@dataclass
class Prediction:
    """One sentence's predicted class and that class's probability."""

    text: str
    label: str
    probability: float


class SentimentPredictor:
    """A trained model and its text encoder; needs nothing but the checkpoint.

    Args:
        model: the trained LightningModule (put in eval mode here).
        encoder: the tokenizer, vocabulary, T and class names the model was trained with.
    """

    def __init__(self, model: SentimentClassifier, encoder: TextEncoder) -> None:
        self.model = model.eval()
        self.encoder = encoder

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path]) -> "SentimentPredictor":
        checkpoint = load_checkpoint(path)
        model = SentimentClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True)
        return cls(model, TextEncoder.from_checkpoint(checkpoint))

    @torch.no_grad()
    def probabilities(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Class probabilities ``(len(texts), C)``; DataError for a text without tokens."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.encoder.encode(texts[start:start + batch_size])
            chunks.append(self.model(batch["tokens"], batch["mask"]).softmax(dim=1))
        return torch.cat(chunks)

    def predict(self, texts: list[str]) -> list[Prediction]:
        """The most probable class of every text."""
        probabilities, labels = self.probabilities(texts).max(dim=1)
        return [Prediction(text, self.encoder.label_names[label], float(p))
                for text, label, p in zip(texts, labels.tolist(), probabilities)]
