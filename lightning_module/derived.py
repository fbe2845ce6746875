"""Results derived from a cached corpus, kept next to it so that a later run with the same settings reads them:
the vocabulary built on the training split (with its report line) and the corpus encoded with a vocabulary.

Each is a file in the corpus' cache entry (:mod:`lightning_module.preprocessed`) named by a SHA-256 of what it
depends on besides the corpus: ``vocabulary-<digest>.json`` of the split (its order's name and fractions) and
``min_freq`` / ``max_size``; ``encoded-<digest>.npy`` of the vocabulary's words. JSON and ``.npy`` read with
``allow_pickle=False``, like the entry itself. The encoded ids are memory-mapped (read-only): a run reads the
pages its batches use. Without an entry (the cache is off) everything is computed, as before.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from lightning_module.vocabulary import Vocabulary

def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
                          ).hexdigest()[:32]


def _write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file and rename it into place (processes may race; either result is whole)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        write(partial)
        os.replace(partial, path)
    except OSError:  # a read-only cache: the result is simply not kept
        partial.unlink(missing_ok=True)


def vocabulary(entry: Optional[Path], settings: dict[str, Any],
               build: Callable[[], tuple[Vocabulary, str]]) -> tuple[Vocabulary, str]:
    """``build()``'s vocabulary and report line, kept in ``entry`` under ``settings`` (what they depend on besides
    the corpus); a later call reads them."""
    if entry is None or not entry.is_dir():
        return build()
    path = entry / f"vocabulary-{_digest(settings)}.json"
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        return Vocabulary.from_dict(kept["vocab"]), str(kept["report"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    vocab, report = build()
    state = {"settings": settings, "vocab": vocab.to_dict(), "report": report}
    _write(path, lambda partial: partial.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8"))
    return vocab, report


def encoded(entry: Optional[Path], vocab: Vocabulary, encode: Callable[[], np.ndarray]) -> np.ndarray:
    """``encode()``'s ids (the corpus mapped to ``vocab``), kept in ``entry``; later calls memory-map them."""
    if entry is None or not entry.is_dir():
        return encode()
    path = entry / f"encoded-{_digest(vocab.to_dict())}.npy"
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        pass
    ids = encode()

    def save(partial: Path) -> None:
        with partial.open("wb") as file:
            np.save(file, ids, allow_pickle=False)

    _write(path, save)
    return ids
