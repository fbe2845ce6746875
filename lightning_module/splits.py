"""The seeded random split of a data set's rows into training, validation and test rows."""
from __future__ import annotations

import random

import numpy as np

from lightning_module.errors import DataError


def split_size(n: int, fraction: float) -> int:
    """round(n * fraction), but at least 1 when the fraction is not 0."""
    return 0 if fraction == 0 else max(1, round(n * fraction))


def shuffled_rows(n: int, seed: int) -> np.ndarray:
    """Rows ``0 .. n - 1`` in the seeded random order of the split (``random.Random(seed).shuffle``), int64."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return np.array(order, dtype=np.int64)


def split_rows(order: np.ndarray, val_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
    """The split of the rows in a seeded random ``order`` (:func:`shuffled_rows`): test first, then validation,
    the rest training; each split's rows in file order (so shuffle=False trains in file order).

    Returns:
        ``{"train": rows, "val": rows, "test": rows}``, int64 arrays.

    Raises:
        DataError: no training row would be left.
    """
    n = len(order)
    n_val, n_test = split_size(n, val_fraction), split_size(n, test_fraction)
    if n - n_val - n_test < 1:
        raise DataError(f"{n} example(s) are too few for val_fraction={val_fraction} and "
                        f"test_fraction={test_fraction}: no training example would be left")
    chosen = {"train": order[n_test + n_val:], "val": order[n_test:n_test + n_val], "test": order[:n_test]}
    return {name: np.sort(rows) for name, rows in chosen.items()}
