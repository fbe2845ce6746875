"""An NBSVM over the sentence's n-grams beside the RNN: its scores are added to the RNN's, with a weight fitted on
the validation split.

NBSVM (Wang & Manning, "Baselines and Bigrams: Simple, Good Sentiment and Topic Classification", ACL 2012):
each distinct n-gram ``f`` of a sentence (``n = 1 .. order``) is a binary feature ``x_f``, scaled by its
naive-Bayes log-count ratio ``r_f`` (how much more often sentences of one class contain it than the others',
:func:`lightning_module.naive_bayes.log_count_ratios`), and a logistic regression with an L2 penalty is fitted
on ``r * x`` over the training split, one class against the rest. It sees what an RNN over 8,500 sentences
learns slowly (rare words, set phrases), and the two make different mistakes, so their sum is more accurate
than either (``docs/insight.md``).

The model (:class:`NgramSentimentRNN`) computes

.. math:: s = s_{\\text{RNN}} + \\beta \\Big(b_{ng} + \\sum_t \\sum_{f \\text{ ends at } t} W_{ng}[f]\\Big)

with ``W_ng[f] = w_f r_f`` (``(C,)`` per n-gram) and ``b_ng`` from the logistic regression, fixed once fitted;
``beta`` is fitted with the temperature on the validation split
(:func:`lightning_module.calibration.fit_temperature_and_weight`). Each n-gram's weight belongs to the step
where it ends, so the per-word contributions of :meth:`SentimentRNN.contributions` stay exact.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_module.memory import check_fits
from lightning_module.naive_bayes import log_count_ratios
from torch_rnn.models import SentimentRNN

#: The L2 strengths (the C of a liblinear logistic regression) the NBSVM chooses from on the validation split.
C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)
#: Keys are written in base ``vocab_size + 1`` and must stay below this.
_KEY_LIMIT = 2 ** 62


def _check_key_range(vocab_size: int, order: int) -> None:
    if (vocab_size + 1) ** order >= _KEY_LIMIT:
        raise ValueError(f"model.ngram_order {order} with a vocabulary of {vocab_size:,} ids: the n-gram keys "
                         f"would not fit in int64; lower the order or bound the vocabulary (--data.max_size)")


def ngram_keys(tokens: Tensor, mask: Tensor, order: int, vocab_size: int) -> Tensor:
    """The key of every n-gram (``n = 1 .. order``) ending at every step: ``(N, T, order)`` int64.

    The n-gram ``(w_{t-n+1}, ..., w_t)`` has the key ``sum_j (w_{t-j} + 1) (V + 1)^j`` (``V = vocab_size``), one
    number per n-gram whatever its order. A slot is ``-1`` where no n-gram ends (padding, or fewer than ``n``
    real tokens so far) and where the same n-gram already occurred earlier in the row: each distinct n-gram is
    one binary feature, counted at its first occurrence.

    Args:
        tokens: ``(N, T)`` int64 ids in ``[0, V)``, 0 = padding. mask: ``(N, T)`` nonzero at real tokens.
        order: the longest n-gram, ``>= 1``. vocab_size: ``V``.

    Raises:
        ValueError: keys that would not fit in int64 (``(V + 1)^order >= 2^62``).
    """
    _check_key_range(vocab_size, order)
    digits = torch.where(mask.bool(), tokens.long() + 1, 0)  # (N, T), 0 = no token
    key, valid, keys = torch.zeros_like(digits), torch.ones_like(digits, dtype=torch.bool), []
    for n in range(order):
        earlier = F.pad(digits, (n, 0))[:, : digits.shape[1]]  # (N, T): the token n steps back, 0 before the start
        key = key + earlier * (vocab_size + 1) ** n
        valid = valid & (earlier > 0)
        keys.append(torch.where(valid, key, -1))
    keys = torch.stack(keys, dim=-1)  # (N, T, order)
    flat = keys.flatten(1)  # (N, T * order), in order of the steps
    ordered, where = torch.sort(flat, dim=1, stable=True)  # equal keys stay in step order
    repeated = torch.zeros_like(ordered, dtype=torch.bool)
    repeated[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    first = torch.ones_like(repeated).scatter_(1, where, ~repeated)  # (N, T * order): the first of its key
    return torch.where(first, flat, -1).view_as(keys)


def ragged_ngram_rows(ids: np.ndarray, offsets: np.ndarray, order: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct (sentence, n-gram key) pair of ragged sentences: ``rows`` and ``keys``, int64 ``(P,)``.

    Args:
        ids: int64 ``(total,)`` the sentences' token ids one after the other; offsets: int64 ``(N + 1,)``.
    """
    _check_key_range(vocab_size, order)
    row_of = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))  # (total,)
    position = np.arange(len(ids), dtype=np.int64) - offsets[row_of]  # (total,): the step within the sentence
    rows, keys = [], []
    key = np.zeros(len(ids), np.int64)
    for n in range(order):
        has = position >= n  # a token n steps back in the same sentence
        earlier = np.zeros(len(ids), np.int64)
        earlier[n:] = ids[: len(ids) - n] + 1
        key = key + np.where(has, earlier, 0) * (vocab_size + 1) ** n
        rows.append(row_of[has])
        keys.append(key[has])
    rows, keys = np.concatenate(rows), np.concatenate(keys)
    order_ = np.lexsort((keys, rows))
    rows, keys = rows[order_], keys[order_]
    distinct = np.ones(len(rows), bool)
    distinct[1:] = (rows[1:] != rows[:-1]) | (keys[1:] != keys[:-1])
    return rows[distinct], keys[distinct]


def fit_nbsvm(train: tuple[np.ndarray, np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray, np.ndarray],
              order: int, vocab_size: int, num_classes: int, c_grid: Sequence[float] = C_GRID,
              alpha: float = 1.0) -> tuple[Tensor, Tensor, Tensor, float]:
    """Fit the NBSVM (module docstring) on the training sentences, choosing its C on the validation ones.

    Args:
        train, val: ``(ids (total,), offsets (N + 1,), labels (N,))`` of the ragged training and validation
            sentences (int64 numpy arrays; :meth:`lightning_module.encoder.EncodedDataset.ragged`).
        order: the longest n-gram. vocab_size: ``V``. num_classes: ``C``.
        c_grid: the C values tried: each fit minimises ``C * sum(logistic losses) + |w|^2 / 2``.
        alpha: the naive-Bayes ratios' additive smoothing.

    Returns:
        ``keys (K,)`` int64 sorted, ``weights (K, C)`` float32 (``w * r`` per class), ``bias (C,)`` float32, and
        the C chosen (the best validation accuracy, the first of equals). With two classes one logistic
        regression is fitted, class 1 against class 0, and its score ``d`` split as ``(-d/2, d/2)``.

    Raises:
        MemoryLimitError: the n-gram counts of the training split would not fit in the memory available.
    """
    (ids, offsets, labels), (val_ids, val_offsets, val_labels) = train, val
    # (sentence, n-gram) pairs: two int64 arrays, sorted (twice that), then the sparse matrix and its ratios
    check_fits(f"model.ngram_order {order} on {len(ids):,} training tokens", 48 * order * len(ids),
               "lower model.ngram_order, or leave it at 0 (the RNN alone)")
    rows, keys = ragged_ngram_rows(ids, offsets, order, vocab_size)
    features = np.unique(keys)  # (K,) sorted
    n_rows, n_features = len(offsets) - 1, len(features)
    x = _feature_matrix(rows, keys, features, n_rows)
    # naive-Bayes ratios over the features, one class against the rest: the same counting as the words'
    row_of, column = x.indices().numpy()  # coalesced: grouped by row
    ratios = log_count_ratios(column + 1, np.concatenate([[0], np.cumsum(np.bincount(row_of, minlength=n_rows))]),
                              labels, n_features + 1, num_classes, alpha)[1:].double()  # (K, C)
    x_val = _feature_matrix(*ragged_ngram_rows(val_ids, val_offsets, order, vocab_size), features, len(val_offsets) - 1)
    targets = torch.as_tensor(labels, dtype=torch.long)
    val_targets = torch.as_tensor(val_labels, dtype=torch.long)
    classes = [1] if num_classes == 2 else list(range(num_classes))
    best: Optional[tuple[float, float, Tensor, Tensor]] = None
    for c in c_grid:
        weights = torch.zeros(n_features, num_classes, dtype=torch.float64)
        bias = torch.zeros(num_classes, dtype=torch.float64)
        for k in classes:
            w, b = _logistic_regression(x, ratios[:, k], (targets == k).double(), c)
            weights[:, k], bias[k] = w * ratios[:, k], b
        if num_classes == 2:
            weights[:, 1], bias[1] = weights[:, 1] / 2, bias[1] / 2
            weights[:, 0], bias[0] = -weights[:, 1], -bias[1]
        accuracy = float(((torch.sparse.mm(x_val, weights) + bias).argmax(1) == val_targets).double().mean()) \
            if len(val_targets) else 0.0
        if best is None or accuracy > best[0]:
            best = (accuracy, c, weights, bias)
    _, c, weights, bias = best
    return torch.from_numpy(features), weights.float(), bias.float(), c


def _feature_matrix(rows: np.ndarray, keys: np.ndarray, features: np.ndarray, n_rows: int) -> Tensor:
    """The binary ``(n_rows, K)`` float64 sparse (COO, coalesced) matrix of (row, n-gram key) pairs over the sorted
    ``features (K,)``; keys that are not features are left out."""
    found = np.searchsorted(features, keys).clip(max=max(len(features) - 1, 0))
    known = features[found] == keys if len(features) else np.zeros(len(keys), bool)
    return torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows[known], found[known]])),
                                   torch.ones(int(known.sum()), dtype=torch.float64), (n_rows, len(features)),
                                   check_invariants=True).coalesce()


def _logistic_regression(x: Tensor, scale: Tensor, targets: Tensor, c: float, max_iter: int = 200) -> tuple[Tensor, float]:
    """Binary logistic regression on the features ``x (N, K)`` (sparse) scaled by ``scale (K,)``: the ``w (K,)``
    and ``b`` minimising ``c * sum_i log(1 + exp(-y_i (x_i . (scale * w) + b))) + |w|^2 / 2`` (``y = 2 t - 1``),
    by L-BFGS in float64."""
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        margins = torch.sparse.mm(x, (scale * w).unsqueeze(1)).squeeze(1) + b  # (N,)
        loss = c * F.binary_cross_entropy_with_logits(margins, targets, reduction="sum") + 0.5 * w.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return w.detach(), float(b.detach())


class NgramScores(nn.Module):
    """The fitted NBSVM as a lookup: ``(N, T)`` tokens -> every step's n-gram weights ``(N, T, C)``.

    Buffers (saved in checkpoints; empty until :meth:`set` or a checkpoint fills them): ``keys (K,)`` int64,
    sorted (:func:`ngram_keys`); ``weights (K, C)``; ``bias (C,)``; ``scale`` the weight ``beta`` of these scores
    in the model's (0 until fitted on the validation split).

    Args:
        vocab_size: ``V``, including the padding id 0. num_classes: ``C``. order: the longest n-gram.
    """

    def __init__(self, vocab_size: int, num_classes: int, order: int) -> None:
        super().__init__()
        _check_key_range(vocab_size, order)
        self.vocab_size, self.order = vocab_size, order
        self.register_buffer("keys", torch.zeros(0, dtype=torch.long))
        self.register_buffer("weights", torch.zeros(0, num_classes))
        self.register_buffer("bias", torch.zeros(num_classes))
        self.register_buffer("scale", torch.tensor(0.0))

    def set(self, keys: Tensor, weights: Tensor, bias: Tensor) -> None:
        """Take a fitted NBSVM (:func:`fit_nbsvm`); ``scale`` is left as it is."""
        self.keys, self.weights = keys.to(self.keys), weights.to(self.weights)
        self.bias.copy_(bias)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for name in ("keys", "weights"):  # a checkpoint's table has its own size
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], dtype=getattr(self, name).dtype))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def contributions(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """``(N, T, C)``: the weights of the n-grams that end at each step (their first occurrence), 0 elsewhere."""
        keys = ngram_keys(tokens, mask, self.order, self.vocab_size)  # (N, T, order)
        if len(self.keys) == 0:
            return self.weights.new_zeros(*tokens.shape, self.weights.shape[1])
        index = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)  # (N, T, order)
        found = (self.keys[index] == keys) & (keys >= 0)
        return (self.weights[index] * found.unsqueeze(-1)).sum(2)  # (N, T, C)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """The NBSVM's class scores ``(N, C)`` (without ``scale``)."""
        return self.bias + self.contributions(tokens, mask).sum(1)


class NgramSentimentRNN(SentimentRNN):
    """:class:`torch_rnn.models.SentimentRNN` plus ``scale`` times the NBSVM's scores (module docstring).

    Args:
        ngram_order: the longest n-gram of the NBSVM (``>= 1``). The rest: as :class:`SentimentRNN`.

    Inputs and outputs as :class:`SentimentRNN`; :meth:`rnn_scores` are the RNN's alone (what training
    optimises: the NBSVM is fitted on the training split already, and its scores there are overconfident).
    """

    def __init__(self, ngram_order: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ngrams = NgramScores(kwargs["vocab_size"], self.classifier.out_features, ngram_order)

    def rnn_scores(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """The RNN's class scores ``(N, C)`` alone."""
        return super().forward(tokens, mask)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        return self.rnn_scores(tokens, mask) + self.ngrams.scale * self.ngrams(tokens, mask)

    def contributions(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """As :meth:`SentimentRNN.contributions`, with each step's n-gram weights times ``scale`` added (and
        the NBSVM's bias times ``scale`` in ``bias``): still ``scores = bias + contributions.sum(1)``."""
        contributions, bias = super().contributions(tokens, mask)
        scale = self.ngrams.scale.to(contributions.dtype)
        return (contributions + scale * self.ngrams.contributions(tokens, mask).to(contributions.dtype),
                bias + scale * self.ngrams.bias.to(bias.dtype))
