"""k-fold cross-validation splits: every sentence is tested exactly once, by the model trained on the other folds.

:func:`fold_splits` assigns the rows to ``k`` stratified folds (each class dealt round-robin over the folds in
a seeded random order, so every fold holds each class in the corpus' proportion and the fold sizes differ by at
most one); fold ``i`` is the test split, and a stratified ``val_fraction`` of the remaining rows is the
validation split (checkpoint choice, early stopping, the temperature), the rest the training split.
:class:`CrossValidationDataModule` is the :class:`~lightning_module.datamodule.SentimentDataModule` of one fold,
so ``python train.py`` trains the same model on it that it trains on the ordinary split
(``benchmarks/cross_validate.py`` runs all folds).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from lightning_module.corpus import TokenizedCorpus
from lightning_module.datamodule import SentimentDataModule
from lightning_module.errors import DataError


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (int64 in ``[0, folds)``) of every row, shape ``(N,)``, for integer class ``labels (N,)``.

    Each class's rows, in a random order drawn from ``seed``, are dealt round-robin over the folds, the deal
    going on from class to class: every fold gets each class's share within one row, and the fold sizes differ
    by at most one. The same labels, ``folds`` and ``seed`` give the same folds.

    Raises:
        ValueError: ``folds < 2`` or fewer rows than folds.
    """
    labels = np.asarray(labels)
    if folds < 2 or len(labels) < folds:
        raise ValueError(f"stratified_folds: need folds >= 2 and at least as many rows as folds, got {folds} "
                         f"fold(s) for {len(labels)} row(s)")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), np.int64)
    dealt = 0
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        rows = rows[rng.permutation(len(rows))]
        fold_of[rows] = (dealt + np.arange(len(rows))) % folds
        dealt += len(rows)
    return fold_of


def fold_splits(labels: np.ndarray, folds: int, fold: int, seed: int, val_fraction: float) -> dict[str, np.ndarray]:
    """The ``"train"``, ``"val"`` and ``"test"`` rows (int64, sorted) of fold ``fold`` of :func:`stratified_folds`.

    ``"test"`` is the fold itself; ``"val"`` is ``round(val_fraction * n)`` of each class's ``n`` rows in the
    other folds (drawn from ``seed`` and ``fold``; none when ``val_fraction`` is 0), ``"train"`` the rest. The
    three are disjoint and together are every row.

    Raises:
        ValueError: ``fold`` not in ``[0, folds)``, ``val_fraction`` not in ``[0, 1)``, or as
            :func:`stratified_folds`.
    """
    if not 0 <= fold < folds:
        raise ValueError(f"fold_splits: fold must be in [0, {folds}), got {fold}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"fold_splits: val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    fold_of = stratified_folds(labels, folds, seed)
    test = np.flatnonzero(fold_of == fold)
    rest = np.flatnonzero(fold_of != fold)
    rng = np.random.default_rng([seed, fold])
    val = []
    for label in np.unique(labels[rest]):
        rows = rest[labels[rest] == label]
        val.append(rng.choice(rows, size=round(val_fraction * len(rows)), replace=False))
    val = np.sort(np.concatenate(val)).astype(np.int64)
    train = np.setdiff1d(rest, val).astype(np.int64)
    return {"train": train, "val": val, "test": test.astype(np.int64)}


class CrossValidationDataModule(SentimentDataModule):
    """:class:`~lightning_module.datamodule.SentimentDataModule` on fold ``fold`` of ``folds``-fold
    cross-validation (:func:`fold_splits`): the fold is the test split, ``val_fraction`` of the other rows the
    validation split, and the vocabulary (and naive-Bayes statistics, when the model uses them) come from the
    training split alone. ``test_fraction`` is not used.

    Args:
        folds: the number of folds ``k`` (at least 2).
        fold: which fold is tested, ``0 .. k - 1``.
        fold_seed: the seed of the fold assignment: every fold of one cross-validation uses the same one.
        **kwargs: the :class:`~lightning_module.datamodule.SentimentDataModule` settings.

    Raises:
        DataError: ``folds < 2`` or ``fold`` outside ``[0, folds)`` (at construction), or fewer sentences than
            folds (at setup).
    """

    def __init__(self, folds: int = 5, fold: int = 0, fold_seed: int = 42, **kwargs: Any) -> None:
        if folds < 2 or not 0 <= fold < folds:
            raise DataError(f"bad data settings: need folds >= 2 and 0 <= fold < folds, got folds {folds} and "
                            f"fold {fold}")
        super().__init__(**kwargs)

    def _make_splits(self, corpus: TokenizedCorpus) -> dict[str, np.ndarray]:
        hp = self.hparams
        try:
            return fold_splits(corpus.labels, hp.folds, hp.fold, hp.fold_seed, hp.val_fraction)
        except ValueError as error:
            raise DataError(f"{self._describe()}: {error}") from None
