"""The network a SentimentClassifier trains, built from its settings without Lightning (predict.py builds it too).
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional

import torch

from lightning_module.memory import check_fits
from torch_rnn.models import SentimentRNN

#: Pretrained word vectors ``model.pretrained`` accepts, and their dimension.
PRETRAINED = {"glove-6b-50d": 50}
#: Bytes per parameter in training: float32 weights, their gradients and two optimizer states (Adam's moments).
TRAINING_BYTES_PER_PARAMETER = 16


def check_model_fits(vocab_size: int, hidden_size: int, input_mode: str, embedding_dim: int,
                     bidirectional: bool) -> None:
    """Raise :class:`~lightning_module.errors.MemoryLimitError` (one line) when the vocabulary-sized weights alone
    (the embedding, or the one-hot input's weights) would not fit in memory for training."""
    directions = 2 if bidirectional else 1
    width = {"embedding": embedding_dim, "pretrained": max(PRETRAINED.values())}.get(input_mode, hidden_size * directions)
    parameters = vocab_size * width
    check_fits(f"a vocabulary of {vocab_size:,} words with {input_mode} input of width {width:,} "
               f"({parameters:,} parameters)", parameters * TRAINING_BYTES_PER_PARAMETER,
               "bound the vocabulary (--data.max_size, --data.min_freq) or narrow the input (--model.embedding_dim)")


def build_network(vocab_size: int, num_classes: int = 2, hidden_size: int = 128, fc_size: int = 128,
                  input_mode: str = "embedding", embedding_dim: int = 100, pretrained: Optional[str] = None,
                  freeze_embedding: bool = False, num_layers: int = 1, bidirectional: bool = False,
                  nonlinearity: str = "tanh", dropout: float = 0.0, embedding_dropout: float = 0.0,
                  skip_padding: bool = True, init: str = "pytorch", embedding_init: str = "random",
                  naive_bayes_dims: int = 10, ngram_order: int = 0) -> SentimentRNN:
    """The :class:`torch_rnn.models.SentimentRNN` of :class:`~lightning_module.module.SentimentClassifier`'s
    settings (same names and defaults); pretrained vectors start as zeros of the right shape (filled in by the
    classifier's setup, or by a checkpoint): ``(vocab_size, naive_bayes_dims + 50)`` for GloVe with
    ``embedding_init="naive_bayes"`` (the naive-Bayes columns first), ``(vocab_size, 50)`` otherwise. With
    ``ngram_order > 0`` the network is a :class:`~lightning_module.ngrams.NgramSentimentRNN`: the RNN plus an
    NBSVM over n-grams up to that order (empty until fitted, or filled in by a checkpoint).

    Raises:
        ValueError: an unknown ``pretrained`` with ``input_mode="pretrained"``.
        MemoryLimitError: the vocabulary-sized weights would not fit in memory (:func:`check_model_fits`).
    """
    check_model_fits(vocab_size, hidden_size, input_mode, embedding_dim, bidirectional)
    pretrained_vectors = None
    if input_mode == "pretrained":
        if pretrained not in PRETRAINED:
            raise ValueError(f"model.pretrained must be one of {sorted(PRETRAINED)} with input_mode "
                             f"'pretrained', got {pretrained!r}")
        extra = naive_bayes_dims if embedding_init == "naive_bayes" else 0
        pretrained_vectors = torch.zeros(vocab_size, extra + PRETRAINED[pretrained])
    settings = dict(vocab_size=vocab_size, hidden_size=hidden_size, fc_size=fc_size, num_classes=num_classes,
                    input_mode=input_mode, embedding_dim=embedding_dim, pretrained_vectors=pretrained_vectors,
                    freeze_embedding=freeze_embedding, num_layers=num_layers, bidirectional=bidirectional,
                    nonlinearity=nonlinearity, dropout=dropout, skip_padding=skip_padding, init=init,
                    embedding_dropout=embedding_dropout)
    if ngram_order > 0:
        from lightning_module.ngrams import NgramSentimentRNN

        return NgramSentimentRNN(ngram_order, **settings)
    return SentimentRNN(**settings)


def start_embedding(embedding: torch.nn.Embedding, datamodule: Any, input_mode: str, embedding_init: str,
                    naive_bayes_dims: int, naive_bayes_scale: float, num_classes: int) -> None:
    """Fill in the start of a fresh fit's embedding ``(V, E)`` from the data (a ``SentimentDataModule``, set up):
    with ``input_mode="pretrained"`` the GloVe vectors of its vocabulary in the last columns; with
    ``embedding_init="naive_bayes"`` columns ``0 .. naive_bayes_dims`` := ``naive_bayes_scale`` times the
    training split's log-count ratios, class by class (:func:`lightning_module.naive_bayes.training_split_ratios`,
    kept in the data's cache)."""
    if input_mode == "pretrained":
        from lightning_module.pretrained import load_glove_vectors

        vectors, found = load_glove_vectors(datamodule.vocab)
        with torch.no_grad():  # after the naive-Bayes columns, when there are any
            embedding.weight[:, -vectors.shape[1]:] = vectors
        print(f"GloVe 6B 50d: {found} of {len(datamodule.vocab) - 1} vocabulary words found")
    if embedding_init == "naive_bayes":
        from lightning_module.naive_bayes import training_split_ratios

        ratios = training_split_ratios(datamodule.training_set(), datamodule.vocab.itos, embedding.num_embeddings,
                                       num_classes, getattr(datamodule, "cache_entry", None))  # (V, C)
        columns = torch.arange(naive_bayes_dims) % num_classes
        with torch.no_grad():
            embedding.weight[:, :naive_bayes_dims] = naive_bayes_scale * ratios[:, columns].to(embedding.weight)


def network_from_checkpoint(checkpoint: Mapping[str, Any]) -> SentimentRNN:
    """The trained network of a loaded SentimentClassifier checkpoint (its ``hyper_parameters`` and the
    ``model.*`` entries of its ``state_dict``), in eval mode."""
    settings = checkpoint["hyper_parameters"]
    names = inspect.signature(build_network).parameters
    network = build_network(**{name: settings[name] for name in names if name in settings})
    weights = {key[len("model."):]: value for key, value in checkpoint["state_dict"].items() if key.startswith("model.")}
    network.load_state_dict(weights)
    return network.eval()
