"""Classifying new sentences with a trained checkpoint, and telling our checkpoints from others.

Only torch and the project's light modules are imported (not Lightning, torchmetrics or NLTK), so that
``predict.py`` starts quickly.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Optional, Union

import torch

from torch import nn

from lightning_module.encoder import TextEncoder
from lightning_module.errors import CheckpointError
from lightning_module.explanations import log_odds_shares
from lightning_module.network import network_from_checkpoint
from lightning_module.prediction import CHECKPOINT_KEY, FOLD_CHECKPOINT_KEY, Prediction, describe

__all__ = ["Prediction", "SentimentPredictor", "load_checkpoint", "safe_load"]


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
    if isinstance(checkpoint, dict) and CHECKPOINT_KEY not in checkpoint and FOLD_CHECKPOINT_KEY in checkpoint:
        checkpoint[CHECKPOINT_KEY] = checkpoint[FOLD_CHECKPOINT_KEY]  # a cross-validation fold's: the same state
    missing = [key for key in ("state_dict", "hyper_parameters", CHECKPOINT_KEY)
               if not isinstance(checkpoint, dict) or key not in checkpoint]
    if not missing and not any(key.startswith("model.rnn.") for key in checkpoint["state_dict"]):
        missing.append("the SentimentRNN weights")
    if missing:
        raise CheckpointError(f"{path}: not a torch-rnn sentiment checkpoint (it has no {', '.join(missing)}); "
                              "use a .ckpt written by `python train.py`")
    return checkpoint


class SentimentPredictor:
    """A trained model and its text encoder; needs nothing but the checkpoint.

    Args:
        model: the trained network (:class:`torch_rnn.models.SentimentRNN`), or the SentimentClassifier holding
            it (and its temperature); put in eval mode here.
        encoder: the tokenizer, vocabulary, T and class names the model was trained with.
        temperature: the calibration temperature the scores are divided by (a SentimentClassifier's own when
            none is given; else 1).
    """

    def __init__(self, model: nn.Module, encoder: TextEncoder, temperature: Optional[float] = None) -> None:
        network = getattr(model, "model", model)  # a SentimentClassifier holds the network as .model
        if temperature is None:
            temperature = float(getattr(model, "temperature", 1.0))
        self.model = network.eval()
        self.encoder = encoder
        self.temperature = temperature

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path]) -> "SentimentPredictor":
        checkpoint = load_checkpoint(path)
        temperature = float(checkpoint["state_dict"].get("temperature", 1.0))  # checkpoints before calibration: 1
        return cls(network_from_checkpoint(checkpoint), TextEncoder.from_checkpoint(checkpoint), temperature)

    def _calibrated_scores(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``scores / temperature`` ``(N, C)``, whose softmax is the calibrated probabilities."""
        return self.model(tokens, mask) / self.temperature

    @torch.no_grad()
    def probabilities(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Calibrated class probabilities ``(len(texts), C)``, ``softmax(scores / temperature)``; DataError for a
        text without tokens."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.encoder.encode(texts[start:start + batch_size])
            chunks.append(self._calibrated_scores(batch["tokens"], batch["mask"]).softmax(dim=1))
        return torch.cat(chunks)

    def predict(self, texts: list[str], explain: bool = False) -> list[Prediction]:
        """Every text's :class:`Prediction`, in order; a text that cannot be classified (no tokens) gets one
        with ``error`` set, and the others are still classified. ``explain`` adds each token's contribution
        (:meth:`explain`)."""
        token_lists = [self.encoder.tokenizer(text) for text in texts]
        predictions = [self._describe(text, words) for text, words in zip(texts, token_lists)]
        classifiable = [i for i, words in enumerate(token_lists) if words]
        if classifiable:
            batch = self.encoder.encode_tokens([token_lists[i] for i in classifiable])
            with torch.no_grad():
                scores = self._calibrated_scores(batch["tokens"], batch["mask"])  # (n, C)
                explained = self.explain(batch["tokens"], batch["mask"], scores) if explain else None
            best, labels = scores.softmax(dim=1).max(dim=1)
            for row, (i, label, probability) in enumerate(zip(classifiable, labels.tolist(), best.tolist())):
                predictions[i].label = self.encoder.label_names[label]
                predictions[i].probability = probability
                if explained is not None:
                    words = token_lists[i][: self.encoder.max_length]
                    values, bias = explained
                    predictions[i].contributions = list(zip(words, values[row, : len(words)].tolist()))
                    predictions[i].bias = float(bias[row])
        return predictions

    @torch.no_grad()
    def explain(self, tokens: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each step's share of the predicted class's log-odds against the others, and the rest (bias), for the
        calibrated probabilities: :func:`lightning_module.explanations.log_odds_shares` of
        :meth:`torch_rnn.models.SentimentRNN.contributions` divided by the model's temperature.

        Args:
            tokens, mask: ``(N, T)``. scores: ``(N, C)`` the calibrated scores (:meth:`_calibrated_scores`).

        Returns:
            ``(N, T)`` shares (0 at padding) and ``(N,)`` biases; ``bias + shares.sum(1)`` is the log-odds.
        """
        contributions, bias = self.model.contributions(tokens, mask)  # (N, T, C), (N, C)
        return log_odds_shares(contributions / self.temperature, bias / self.temperature, scores)

    def _describe(self, text: str, words: list[str]) -> Prediction:
        return describe(text, words, self.encoder.vocab, self.encoder.max_length)

    @property
    def max_length(self) -> int:
        """The most tokens of a sentence the model reads (longer ones are cut)."""
        return self.encoder.max_length
