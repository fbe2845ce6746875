"""Naive-Bayes log-count ratios of the words, to start part of a learned embedding from the training split.

NBSVM (Wang & Manning, "Baselines and Bigrams", ACL 2012) scales each word's feature by how much more often it
occurs in one class's sentences than in the others'. Here those ratios initialise a few columns of the learned
embedding (:class:`lightning_module.module.SentimentClassifier`, ``embedding_init="naive_bayes"``): the RNN
starts from the words' polarity instead of discovering it from 8,500 sentences, and training goes on
adjusting every column. Only the training split's tokens and labels are used.

The counts come from the sentences' token ids directly (one entry per distinct word of a sentence), so memory
grows with the number of tokens, never with sentences x vocabulary.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from lightning_module.encoder import EncodedDataset

#: Sentences counted at a time.
_BLOCK_ROWS = 100_000


def log_count_ratios(ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray | Tensor, vocab_size: int,
                     num_classes: int, alpha: float = 1.0) -> Tensor:
    """Per word and class, ``r[w, c] = log(p[w] / |p|_1) - log(q[w] / |q|_1)``, one class against the rest.

    ``p[w] = alpha + (number of class-c sentences that contain w)`` and ``q`` the same over the other classes'
    sentences (each word counted once per sentence); ``alpha`` smooths words seen in one class only.

    Args:
        ids: integer ``(total tokens,)``, the sentences' word ids one after the other, 0 = padding (not counted).
        offsets: integer ``(N + 1,)``: sentence ``i``'s ids are ``ids[offsets[i]:offsets[i + 1]]``.
        labels: integer ``(N,)`` class ids in ``[0, num_classes)``.
        vocab_size: ``V``, including the padding id 0.
        num_classes: ``C``.
        alpha: additive smoothing.

    Returns:
        ``r``: ``(V, C)`` float32, zero in the padding row.

    Raises:
        ValueError: the arrays do not fit together, or an id or a label is out of range.
    """
    ids, offsets = np.asarray(ids, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
    labels = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels, dtype=np.int64)
    if ids.ndim != 1 or offsets.shape != (len(labels) + 1,) or labels.ndim != 1 or offsets[-1] != len(ids):
        raise ValueError(f"expected ids (total,), offsets (N + 1,) ending at len(ids) and labels (N,), got "
                         f"{ids.shape}, {offsets.shape} and {labels.shape}")
    if len(ids) and not 0 <= ids.min() <= ids.max() < vocab_size:
        raise ValueError(f"word ids must be in [0, {vocab_size}), found {ids.min()}..{ids.max()}")
    if len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
        raise ValueError(f"labels must be in [0, {num_classes}), found {labels.min()}..{labels.max()}")
    counts = np.zeros(num_classes * vocab_size, np.int64)
    for start in range(0, len(labels), _BLOCK_ROWS):  # in blocks of sentences: bounded temporary arrays
        stop = min(start + _BLOCK_ROWS, len(labels))
        rows = np.repeat(np.arange(start, stop, dtype=np.int64), np.diff(offsets[start:stop + 1]))
        pairs = np.sort(rows * vocab_size + ids[offsets[start]:offsets[stop]])
        present = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]  # (sentence, word), each once
        counts += np.bincount(labels[present // vocab_size] * vocab_size + present % vocab_size,
                              minlength=num_classes * vocab_size)
    per_class = torch.from_numpy(counts.reshape(num_classes, vocab_size)).to(torch.float32)  # (C, V) sentence counts
    per_class[:, 0] = 0.0
    p = per_class + alpha
    q = per_class.sum(0, keepdim=True) - per_class + alpha
    ratios = (p / p.sum(1, keepdim=True)).log() - (q / q.sum(1, keepdim=True)).log()  # (C, V)
    ratios[:, 0] = 0.0
    return ratios.T.contiguous()


def training_split_ratios(train: "EncodedDataset", words: Sequence[str], vocab_size: int, num_classes: int,
                          cache_entry: Optional[Path] = None, alpha: float = 1.0) -> Tensor:
    """:func:`log_count_ratios` ``(vocab_size, C)`` of an encoded training split whose vocabulary is ``words``
    (index -> word).

    With the corpus' preprocessing-cache entry (``cache_entry``) the ratios are kept there, named by a SHA-256 of
    everything they depend on besides the corpus (the training rows, the vocabulary, ``max_length``, the
    classes, ``alpha``): a later run with the same split and vocabulary reads them instead of counting a
    million sentences again.
    """
    from lightning_module.preprocessed import cached_array

    digest = hashlib.sha256(np.ascontiguousarray(train.rows, np.int64).tobytes())
    digest.update("\n".join(words).encode("utf-8", "surrogatepass"))
    digest.update(repr((train.max_length, vocab_size, num_classes, alpha)).encode())

    def count() -> np.ndarray:
        ids, offsets = train.ragged()
        return log_count_ratios(ids, offsets, train.labels, vocab_size, num_classes, alpha).numpy()

    ratios = cached_array(cache_entry, f"naive-bayes-{digest.hexdigest()[:32]}", count)
    return torch.from_numpy(np.ascontiguousarray(ratios, np.float32))
