"""Sentences to the model's input: the text encoder a checkpoint carries, the encoded data set and its batches.

A batch is a dict:

- ``tokens``: LongTensor (N, T), vocabulary indices, 0 = padding, padding only at the end;
- ``mask``: float32 (N, T), 1.0 at the sentence's real tokens, 0.0 at padding;
- ``labels``: LongTensor (N,), class indices (data set batches only).

T is the longest sentence of the batch, at most ``max_length`` (longer sentences are cut): steps past every row's
end are never computed. With a built vocabulary ``mask == (tokens != 0)``. With a dictionary vocabulary (no
``<unk>``) an unknown word is index 0 as well, the zero input vector, but it is still a real position of the
sentence, so its mask is 1.

This module needs torch but not Lightning: predict.py encodes with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_module.errors import DataError
from lightning_module.prediction import CHECKPOINT_KEY
from lightning_module.tokenizer import Tokenizer
from lightning_module.vocabulary import Vocabulary



def pad(rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tokens`` (N, T) long and ``mask`` (N, T) float32 from N rows of token ids; T = the longest row."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    steps = int(lengths.max()) if len(rows) else 0
    tokens = torch.zeros(len(rows), steps, dtype=torch.long)
    for number, row in enumerate(rows):
        tokens[number, : len(row)] = row
    mask = (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)).to(torch.float32)
    return {"tokens": tokens, "mask": mask}


class TextEncoder:
    """Turns sentences into the model's input: the tokenizer, the vocabulary, T and the class names.

    This is everything needed to encode new text; :meth:`state` / :meth:`from_state` turn it into a plain
    dict and back, so predict.py needs only a checkpoint.

    Args:
        vocab: token -> index.
        tokenizer: sentence -> tokens.
        max_length: T; sentences are cut to T tokens, and a batch is padded at the end to its longest row.
        label_names: the name of every class (``label_names[label]``).
    """

    def __init__(self, vocab: Vocabulary, tokenizer: Tokenizer, max_length: int, label_names: list[str]) -> None:
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.label_names = list(label_names)

    def state(self) -> dict[str, Any]:
        """A plain, JSON-able dict: ``vocab`` (Vocabulary.to_dict), ``label_names``, ``lowercase``, ``max_length``."""
        return {"vocab": self.vocab.to_dict(), "label_names": list(self.label_names),
                "lowercase": self.tokenizer.lowercase, "max_length": self.max_length}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TextEncoder":
        """Rebuild the encoder from :meth:`state`'s dict (no data access)."""
        return cls(Vocabulary.from_dict(state["vocab"]), Tokenizer(lowercase=state["lowercase"]),
                   int(state["max_length"]), list(state["label_names"]))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any] | str | Path) -> "TextEncoder":
        """Rebuild the encoder from a Lightning checkpoint (a loaded dict or a path to a ``.ckpt`` file).

        Raises:
            DataError: the checkpoint holds no SentimentDataModule state (it was not trained with it).
        """
        if not isinstance(checkpoint, dict):
            from lightning_module.inference import safe_load  # inference imports this module

            checkpoint = safe_load(checkpoint)
        state = checkpoint.get(CHECKPOINT_KEY)
        if not state:
            raise DataError(f"the checkpoint has no {CHECKPOINT_KEY!r} entry with the "
                            "vocabulary; it was not saved by a Trainer running SentimentDataModule")
        return cls.from_state(state)

    def encode_tokens(self, token_lists: list[list[str]]) -> dict[str, torch.Tensor]:
        """``tokens`` (N, T) long and ``mask`` (N, T) float32 for already tokenized sentences; T is the longest
        sentence's length, at most ``max_length``."""
        ids = [torch.tensor(self.vocab.encode(words[: self.max_length]), dtype=torch.long) for words in token_lists]
        return pad(ids)

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``tokens`` (N, T) and ``mask`` (N, T) for new sentences.

        Raises:
            DataError: a text has no tokens (names which one, counting from 1).
        """
        token_lists = [self.tokenizer(text) for text in texts]
        for number, words in enumerate(token_lists, start=1):
            if not words:
                raise DataError(f"text {number} ({texts[number - 1]!r}) has no tokens")
        return self.encode_tokens(token_lists)

    __call__ = encode


class EncodedDataset(Dataset):
    """Encoded sentences as ragged token ids; item ``i`` is ``{"tokens": (L_i,) long, "labels": scalar}``, ``L_i`` the
    sentence's length cut to ``max_length``. :func:`collate` pads a batch to its longest row.

    Args:
        ids: int32 ``(total tokens,)``, vocabulary indices of every sentence of the corpus, one after the other.
        offsets: int64 ``(corpus rows + 1,)``: corpus row ``r``'s ids are ``ids[offsets[r]:offsets[r + 1]]``.
        rows: int64 ``(N,)``, the corpus rows of this data set.
        labels: LongTensor ``(N,)``.
        max_length: the longest a sentence may be; longer ones are cut.
    """

    def __init__(self, ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray, labels: torch.Tensor,
                 max_length: int) -> None:
        self.ids, self.offsets, self.rows, self.labels, self.max_length = ids, offsets, rows, labels, max_length
        self._starts = offsets[rows]
        self._lengths = np.minimum(offsets[rows + 1] - self._starts, max_length)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = self._starts[index]
        tokens = torch.from_numpy(self.ids[start:start + self._lengths[index]].astype(np.int64))
        return {"tokens": tokens, "labels": self.labels[index]}

    def lengths(self) -> list[int]:
        """The number of (kept) tokens of every example."""
        return self._lengths.tolist()

    def ragged(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept token ids of every example, one after the other (int64 ``(total,)``), and offsets
        (int64 ``(N + 1,)``)."""
        offsets = np.zeros(len(self.rows) + 1, np.int64)
        np.cumsum(self._lengths, out=offsets[1:])
        positions = np.repeat(self._starts - offsets[:-1], self._lengths) + np.arange(offsets[-1])
        return self.ids[positions].astype(np.int64), offsets


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A batch from :class:`EncodedDataset` items: ``tokens`` and ``mask`` (N, T), T = the longest row; ``labels``."""
    batch = pad([item["tokens"] for item in items])
    batch["labels"] = torch.stack([item["labels"] for item in items])
    return batch
