"""Naive-Bayes log-count ratios of the words, to start part of a learned embedding from the training split.

NBSVM (Wang & Manning, "Baselines and Bigrams", ACL 2012) scales each word's feature by how much more often it
occurs in one class's sentences than in the others'. Here those ratios initialise a few columns of the learned
embedding (:class:`lightning_module.module.SentimentClassifier`, ``embedding_init="naive_bayes"``): the RNN
starts from the words' polarity instead of discovering it from 8,500 sentences, and training goes on
adjusting every column. Only the training split's tokens and labels are used.
"""
from __future__ import annotations

import torch
from torch import Tensor


def log_count_ratios(tokens: Tensor, mask: Tensor, labels: Tensor, vocab_size: int, num_classes: int,
                     alpha: float = 1.0) -> Tensor:
    """Per word and class, ``r[w, c] = log(p[w] / |p|_1) - log(q[w] / |q|_1)``, one class against the rest.

    ``p[w] = alpha + (number of class-c sentences that contain w)`` and ``q`` the same over the other classes'
    sentences (each word counted once per sentence); ``alpha`` smooths words seen in one class only.

    Args:
        tokens: ``(N, T)`` word ids, 0 = padding.
        mask: ``(N, T)``, nonzero at the real words.
        labels: ``(N,)`` class ids in ``[0, num_classes)``.
        vocab_size: ``V``, including the padding id 0.
        num_classes: ``C``.
        alpha: additive smoothing.

    Returns:
        ``r``: ``(V, C)`` float32, zero in the padding row.
    """
    if tokens.shape != mask.shape or tokens.dim() != 2 or labels.shape != tokens.shape[:1]:
        raise ValueError(f"expected tokens and mask (N, T) and labels (N,), got {tuple(tokens.shape)}, "
                         f"{tuple(mask.shape)} and {tuple(labels.shape)}")
    words = torch.where(mask != 0, tokens, torch.zeros_like(tokens))
    presence = torch.zeros(len(tokens), vocab_size)
    presence.scatter_(1, words, 1.0)  # (N, V): which words each sentence contains
    presence[:, 0] = 0.0
    per_class = torch.zeros(num_classes, vocab_size).index_add_(0, labels, presence)  # (C, V) sentence counts
    p = per_class + alpha
    q = per_class.sum(0, keepdim=True) - per_class + alpha
    ratios = (p / p.sum(1, keepdim=True)).log() - (q / q.sum(1, keepdim=True)).log()  # (C, V)
    ratios[:, 0] = 0.0
    return ratios.T.contiguous()
