"""Cutting a block of sentences into their space-separated chunks with Apache Arrow's compute kernels.

:meth:`lightning_module.tokenizer.TokenTable.encode_chunks` needs, for every chunk of every sentence, the number
of the distinct (chunk, place) pair it is: its place being first, last, only or middle chunk of its sentence
(see :mod:`lightning_module.tokenizer`). Splitting at the spaces and finding the distinct chunks are done here by
``pyarrow.compute.split_pattern`` and ``dictionary_encode`` in C++, on UTF-8 bytes, without a Python string per
chunk; Python then sees each distinct chunk of the block once. Splitting UTF-8 at the byte of ``" "`` gives the
same pieces as ``str.split(" ")``, and equal strings are equal bytes, so the numbers are the same as a dict of
Python strings would give.

pyarrow is a dependency of the package; without it (or for text that is not valid Unicode, such as lone
surrogates) :meth:`~lightning_module.tokenizer.TokenTable.encode_chunks` splits in Python instead, with the
same result.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

_arrow: list = []  # [pyarrow, pyarrow.compute] once imported; [None, None] when pyarrow is missing


def _modules() -> tuple:
    """pyarrow and pyarrow.compute, imported on first use (predict.py tokenizes without them)."""
    if not _arrow:
        try:
            import pyarrow
            import pyarrow.compute
        except ImportError:  # pragma: no cover - pyarrow is a dependency
            _arrow.extend([None, None])
        else:
            _arrow.extend([pyarrow, pyarrow.compute])
    return tuple(_arrow)


def available() -> bool:
    """Whether pyarrow can be imported."""
    return _modules()[0] is not None


def chunk_numbers(texts: list[str], numbers_of: Callable[[list[str]], np.ndarray], first: str,
                  last: str) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The number of every chunk of ``texts`` (none empty, no whitespace at their ends) and every text's count of
    chunks; None when Arrow cannot take the texts.

    Args:
        numbers_of: distinct keys -> their numbers (int64), where a key is the chunk with ``first`` before it if it
            is its text's first chunk and ``last`` after it if it is its text's last one.

    Returns:
        ``numbers`` int64 ``(total chunks,)``, text after text, and ``counts`` int64 ``(len(texts),)``.
    """
    pa, pc = _modules()
    try:
        array = pa.array(texts, pa.large_string())
    except (pa.ArrowException, UnicodeError):  # e.g. lone surrogates, which UTF-8 cannot hold
        return None
    lists = pc.split_pattern(array, " ")
    offsets = lists.offsets.to_numpy().astype(np.int64)  # (len(texts) + 1,)
    encoded = pc.dictionary_encode(lists.flatten())
    indices = encoded.indices.to_numpy().astype(np.int64)  # (total chunks,): which distinct chunk
    distinct = encoded.dictionary.to_pylist()
    firsts, lasts = offsets[:-1], offsets[1:] - 1
    middle = np.ones(len(indices), bool)
    middle[firsts] = False
    middle[lasts] = False
    numbers = np.zeros(len(indices), np.int64)
    in_middle = np.flatnonzero(np.bincount(indices[middle], minlength=len(distinct)))
    if len(in_middle):
        lookup = np.zeros(len(distinct), np.int64)
        lookup[in_middle] = numbers_of([distinct[i] for i in in_middle.tolist()])
        numbers[middle] = lookup[indices[middle]]
    only = firsts == lasts
    for positions, before, after in ((firsts[~only], first, ""), (lasts[~only], "", last), (firsts[only], first, last)):
        if len(positions):
            kinds, which = np.unique(indices[positions], return_inverse=True)
            keys = [before + distinct[i] + after for i in kinds.tolist()]
            numbers[positions] = numbers_of(keys)[which.ravel()]
    return numbers, np.diff(offsets)
