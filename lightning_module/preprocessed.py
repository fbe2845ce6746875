"""The tokenized data set cached on disk, so that later runs (and every DDP process) skip reading and tokenizing.

A cache entry is a folder ``<root>/<key>/`` holding a :class:`~lightning_module.corpus.TokenizedCorpus`
(``.npy`` arrays read with ``allow_pickle=False``, JSON words) and ``meta.json``: what was read and the reports
that reading logged (rows read, bad rows skipped), which a run that loads the entry logs again. The key is a
SHA-256 over the input files' contents (and names) and every setting that changes the result (format, label
handling, lowercasing, limit, the tokenizer's rules, this format's version): a changed file or setting gets a new
entry, an unchanged one finds its entry whatever its modification time.

An entry is written to a temporary folder and renamed into place, so a reader never sees half of one, and built
under a file lock, so that processes starting together (DDP ranks, several jobs) build it once and the others
wait and load it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from filelock import FileLock

from lightning_module.corpus import TokenizedCorpus

log = logging.getLogger(__name__)

#: Changes whenever the cached layout or the tokenizer's output changes, so that old entries are not used.
CACHE_VERSION = "1-treebank-nltk-3.10"
#: Loggers whose reports (rows read, rows skipped) a cache entry keeps and a loading run logs again.
_REPORTING_LOGGERS = ("lightning_module.sources", "lightning_module.errors", "lightning_module.corpus")


def default_root(cache_dir: Optional[str | Path] = None) -> Path:
    """``$TORCH_RNN_PREPROCESSED`` if set, else ``<cache_dir>/preprocessed`` (``cache_dir`` default:
    ``$TORCH_RNN_CACHE`` or ``~/.cache/torch_rnn``)."""
    from lightning_module.vader import default_cache_dir

    configured = os.environ.get("TORCH_RNN_PREPROCESSED")
    return Path(configured) if configured else Path(cache_dir or default_cache_dir()) / "preprocessed"


def input_files(path: Path) -> list[Path]:
    """The files whose content the data comes from: ``path`` itself, or every file under a folder, sorted."""
    if path.is_dir():
        return sorted(file for file in path.rglob("*") if file.is_file())
    return [path]


def cache_key(files: list[Path], settings: dict[str, Any], root: Optional[Path] = None) -> str:
    """SHA-256 (hex) over :data:`CACHE_VERSION`, ``settings`` (JSON) and every file's path and content.

    With ``root`` (the cache's folder), each file's content digest is remembered there with the file's size,
    modification time (ns) and inode, and read back while those are unchanged (as ``make`` and ``git status``
    trust them), so that a later run does not read a large file again only to find it unchanged. Deleting
    ``root/digest-*.json`` makes every file be read again."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": CACHE_VERSION, "settings": settings}, sort_keys=True).encode())
    for file in files:
        digest.update(str(file.resolve()).encode() + b"\0")
        digest.update(bytes.fromhex(content_digest(file, root)))
        digest.update(b"\0")
    return digest.hexdigest()


def content_digest(file: Path, root: Optional[Path] = None) -> str:
    """The SHA-256 (hex) of a file's content; remembered in ``root/digest-*.json`` (see :func:`cache_key`)."""
    status = file.stat()
    stamp = [status.st_size, status.st_mtime_ns, status.st_ino]
    memo = None
    if root is not None:
        memo = root / f"digest-{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:32]}.json"
        try:
            remembered = json.loads(memo.read_text(encoding="utf-8"))
            if remembered["stamp"] == stamp:
                return remembered["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    digest = hashlib.sha256()
    with file.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 22), b""):
            digest.update(block)
    # Remembered only for a file not written to while it was read, nor within the last 2 s: a change within the
    # file system's timestamp resolution could otherwise keep its size and time (git's "racily clean" files).
    settled = file.stat().st_mtime_ns == status.st_mtime_ns and time.time_ns() - status.st_mtime_ns > 2_000_000_000
    if memo is not None and settled:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            partial = memo.with_name(f".{memo.name}.{os.getpid()}")
            partial.write_text(json.dumps({"stamp": stamp, "sha256": digest.hexdigest(), "path": str(file)}),
                               encoding="utf-8")
            os.replace(partial, memo)
        except OSError:
            pass  # a read-only cache: the digest is computed every time
    return digest.hexdigest()


def load(folder: Path) -> Optional[TokenizedCorpus]:
    """The cached corpus in ``folder`` with its reports logged again, or None when there is no usable entry."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        corpus = TokenizedCorpus.load(folder)
    except (OSError, ValueError, KeyError) as error:
        log.warning("%s: the cached data set cannot be read (%s); it is built again", folder, error)
        return None
    for name, level, message in meta.get("reports", []):
        logging.getLogger(name).log(level, "%s", message)
    log.info("%s: %s rows, %s tokens, loaded from the cache %s", meta.get("data", "data"), f"{len(corpus):,}",
             f"{len(corpus.ids):,}", folder)
    return corpus


def load_or_build(root: Path, key: str, what: str, build: Callable[[], TokenizedCorpus]) -> TokenizedCorpus:
    """The corpus cached under ``root/key``, built with ``build()`` and stored first if there is none.

    Processes calling this together build it once: the first takes a lock on ``root/key.lock``, the others
    wait for it and then load what it stored.
    """
    folder = root / key
    corpus = load(folder)
    if corpus is not None:
        return corpus
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock")):
        corpus = load(folder)  # another process may have built it while this one waited
        if corpus is not None:
            return corpus
        started = time.perf_counter()
        with _kept_reports() as reports:
            corpus = build()
        _store(corpus, folder, {"data": what, "reports": reports, "built_in_s": round(time.perf_counter() - started, 2)})
        log.info("%s: cached the tokenized data set in %s", what, folder)
    return corpus


def cached_array(folder: Optional[Path], name: str, make: Callable[[], np.ndarray]) -> np.ndarray:
    """An array kept next to a cache entry (``folder/name.npy``; a derived result such as a split's order), made
    with ``make()`` and stored the first time; without an entry (``folder`` None) just ``make()``."""
    if folder is None or not folder.is_dir():
        return make()
    path = folder / f"{name}.npy"
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        pass
    array = make()
    partial = folder / f".{name}.{os.getpid()}.npy"
    np.save(partial, array, allow_pickle=False)
    os.replace(partial, path)
    return array


def _store(corpus: TokenizedCorpus, folder: Path, meta: dict[str, Any]) -> None:
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        corpus.save(partial)
        (partial / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        if folder.exists():  # a damaged entry that load() refused
            shutil.rmtree(folder)
        os.replace(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reports: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name in _REPORTING_LOGGERS and not record.getMessage().startswith("tokenizing:"):
            self.reports.append((record.name, record.levelno, record.getMessage()))


class _kept_reports:
    """Within the ``with``: the reports of reading (logged as usual) are also collected in a list."""

    def __enter__(self) -> list[tuple[str, int, str]]:
        self._handler = _Keep()
        self._logger = logging.getLogger("lightning_module")
        self._level = self._logger.level
        self._logger.addHandler(self._handler)
        if self._logger.getEffectiveLevel() > logging.INFO:  # collect INFO reports even when they are not shown
            self._logger.setLevel(logging.INFO)
        return self._handler.reports

    def __exit__(self, *exc: Any) -> None:
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._level)
