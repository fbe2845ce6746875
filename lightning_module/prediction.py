"""What predict.py reports for a sentence (:class:`Prediction`); light (no torch), shared by both predictors."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from lightning_module.vocabulary import Vocabulary

#: Where a Lightning checkpoint keeps the encoder (:meth:`SentimentDataModule.state_dict`, under the class's name).
CHECKPOINT_KEY = "SentimentDataModule"
#: ... and where a cross-validation fold's checkpoint keeps it (:class:`lightning_module.folds.CrossValidationDataModule`).
FOLD_CHECKPOINT_KEY = "CrossValidationDataModule"


@dataclass
class Prediction:
    """One sentence's outcome: its predicted class and that class's probability, or why it has none.

    Attributes:
        text: the sentence as given.
        label: the predicted class's name (None when ``error`` is set).
        probability: that class's probability (None when ``error`` is set).
        unknown: the sentence's words outside the vocabulary, in order of appearance, each once.
        truncated: whether the sentence had more tokens than the model's ``max_length`` and was cut to them.
        tokens: how many tokens the sentence has (before cutting).
        error: why the sentence could not be classified (it has no tokens), else None.
        contributions: with ``explain``, every token the model read with its share of the predicted class's
            log-odds against the others (:meth:`SentimentPredictor.explain`), else None.
        bias: with ``explain``, the share that does not depend on the words; ``bias + sum(contributions)``
            is the predicted class's log-odds ``log p / (1 - p)``.
    """

    text: str
    label: Optional[str] = None
    probability: Optional[float] = None
    unknown: list[str] = field(default_factory=list)
    truncated: bool = False
    tokens: int = 0
    error: Optional[str] = None
    contributions: Optional[list[tuple[str, float]]] = None
    bias: Optional[float] = None


def describe(text: str, words: list[str], vocab: Vocabulary, max_length: int) -> Prediction:
    """A :class:`Prediction` of ``text`` (tokens ``words``) without its class yet: unknown words, cutting, error."""
    unknown = list(dict.fromkeys(word for word in words if word not in vocab))
    error = None if words else "no tokens: the text is empty or blank"
    return Prediction(text, unknown=unknown, truncated=len(words) > max_length, tokens=len(words), error=error)
