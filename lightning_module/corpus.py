"""A tokenized data set in compact arrays: every sentence's token ids in one flat int32 array, and offsets.

Memory grows with the number of tokens (4 bytes each), not with rows x vocabulary or rows x max_length:
a million reviews of 22 tokens take about 100 MB. :meth:`TokenizedCorpus.save` writes the arrays as ``.npy``
files (read back with ``allow_pickle=False``) and the words and class names as JSON, so a cached corpus holds
data only, never code.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from lightning_module.errors import BadRows, DataError
from lightning_module.progress import Progress
from lightning_module.records import Example
from lightning_module.tokenizer import Tokenizer, TokenTable

#: Sentences tokenized together (one task of a worker process).
BLOCK_ROWS = 20_000
#: Below this many sentences one process tokenizes (starting workers costs more than it saves).
PARALLEL_MIN_ROWS = 200_000
#: Rows counted or encoded at a time (each step of the vocabulary's and the encoding's progress).
SCAN_ROWS = 100_000


@dataclass
class TokenizedCorpus:
    """Tokenized, labelled sentences in file order.

    Attributes:
        words: the distinct tokens, ``words[i]`` is token id ``i`` (in order of first appearance).
        ids: int32 ``(total tokens,)``, every sentence's token ids, one sentence after the other.
        offsets: int64 ``(rows + 1,)``: sentence ``r``'s ids are ``ids[offsets[r]:offsets[r + 1]]``.
        labels: int64 ``(rows,)``, class indices into ``label_names``.
        label_names: the name of every class.
    """

    words: list[str]
    ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> np.ndarray:
        """int64 ``(rows,)``: the number of tokens of every sentence."""
        return np.diff(self.offsets)

    def save(self, folder: Path) -> None:
        """Write ``ids.npy``, ``offsets.npy``, ``labels.npy`` and ``words.json`` (words and class names)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("ids", "offsets", "labels"):
            np.save(folder / f"{name}.npy", getattr(self, name), allow_pickle=False)
        with (folder / "words.json").open("w", encoding="utf-8") as file:
            json.dump({"words": self.words, "label_names": self.label_names}, file, ensure_ascii=False)

    @classmethod
    def load(cls, folder: Path) -> "TokenizedCorpus":
        """Read what :meth:`save` wrote (arrays without pickles; ValueError/OSError when a file is damaged). The ids
        are memory-mapped (read-only): a run that finds them encoded in the cache reads only what it uses."""
        arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False, mmap_mode="r" if name == "ids" else None)
                  for name in ("ids", "offsets", "labels")}
        with (folder / "words.json").open(encoding="utf-8") as file:
            text = json.load(file)
        corpus = cls(list(text["words"]), arrays["ids"], arrays["offsets"], arrays["labels"], list(text["label_names"]))
        if (corpus.ids.dtype != np.int32 or corpus.offsets.dtype != np.int64 or corpus.labels.dtype != np.int64
                or len(corpus.offsets) != len(corpus.labels) + 1 or corpus.offsets[-1] != len(corpus.ids)):
            raise ValueError(f"{folder}: the cached arrays do not fit together")
        return corpus

    def word_counts(self, rows: np.ndarray) -> np.ndarray:
        """int64 ``(len(words),)``: how often each word occurs in the sentences ``rows`` (int64 indices)."""
        counts = np.zeros(len(self.words), np.int64)
        chosen = np.zeros(len(self), bool)
        chosen[rows] = True
        with Progress("vocabulary", len(self)) as progress:
            for start, stop, span in self._blocks():
                tokens_chosen = np.repeat(chosen[start:stop], np.diff(self.offsets[start:stop + 1]))
                counts += np.bincount(self.ids[span][tokens_chosen], minlength=len(self.words))
                progress.update(stop - start)
        return counts

    def encode(self, word_index: np.ndarray) -> np.ndarray:
        """int32 ``(total tokens,)``: every token id mapped through ``word_index`` (int32 ``(len(words),)``, e.g.
        each word's vocabulary index); offsets stay :attr:`offsets`."""
        encoded = np.empty_like(self.ids)
        with Progress("encoding", len(self)) as progress:
            for start, stop, span in self._blocks():
                encoded[span] = word_index[self.ids[span]]
                progress.update(stop - start)
        return encoded

    def token_ids(self, rows: np.ndarray, max_length: int) -> np.ndarray:
        """int32: the token ids of the sentences ``rows``, each cut to its first ``max_length`` tokens, joined."""
        starts = self.offsets[rows]
        lengths = np.minimum(np.diff(self.offsets)[rows], max_length)
        return self.ids[np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())]

    def _blocks(self) -> Iterator[tuple[int, int, slice]]:
        """``(first row, row after the last, slice of ids)`` of every block of :data:`SCAN_ROWS` rows."""
        for start in range(0, len(self), SCAN_ROWS):
            stop = min(start + SCAN_ROWS, len(self))
            yield start, stop, slice(self.offsets[start], self.offsets[stop])


def tokenize_examples(examples: list[Example], label_names: list[str], tokenizer: Callable[[str], list[str]],
                      skip_bad_rows: bool, what: str, workers: Optional[int] = None) -> TokenizedCorpus:
    """Tokenize every example into a :class:`TokenizedCorpus`; a sentence with no tokens is a bad row.

    ``tokenizer`` is usually a :class:`Tokenizer` (tokenized in blocks, by ``workers`` processes when there are
    at least :data:`PARALLEL_MIN_ROWS` sentences; default: one per CPU core); any other callable is called on
    every text. ``what`` names the data in messages.

    Raises:
        DataError: a sentence has no tokens (naming its ``file:line``) unless ``skip_bad_rows``; no sentence has any.
    """
    texts = [example.text for example in examples]
    table = TokenTable()
    pieces, lengths = [], []
    with Progress("tokenizing", len(texts)) as progress:
        for ids, block_lengths in _blocks(texts, tokenizer, table, workers):
            pieces.append(ids)
            lengths.append(block_lengths)
            progress.update(len(block_lengths))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    labels = np.fromiter((example.label for example in examples), np.int64, len(examples))
    empty = np.flatnonzero(lengths == 0)
    if len(empty):
        bad = BadRows(skip_bad_rows)
        for row in empty.tolist():
            bad.add(examples[row].source, "the sentence has no tokens")
        bad.report(what)
        keep = lengths > 0
        lengths, labels = lengths[keep], labels[keep]
    if not len(labels):
        raise DataError(f"{what}: the data set is empty: no sentence has any tokens")
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return TokenizedCorpus(table.words, ids, offsets, labels, list(label_names))


def _blocks(texts: list[str], tokenizer: Callable[[str], list[str]], table: TokenTable,
            workers: Optional[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(ids, lengths)`` of every block of :data:`BLOCK_ROWS` texts, in order, with ids of ``table``."""
    starts = range(0, len(texts), BLOCK_ROWS)
    if not isinstance(tokenizer, Tokenizer):
        for start in starts:
            token_lists = [tokenizer(text) for text in texts[start:start + BLOCK_ROWS]]
            ids = np.fromiter((i for tokens in token_lists for i in table.ids(tokens)), np.int32)
            yield ids, np.fromiter(map(len, token_lists), np.int64, len(token_lists))
        return
    workers = os.cpu_count() or 1 if workers is None else workers
    if workers <= 1 or len(texts) < PARALLEL_MIN_ROWS:
        for start in starts:
            yield tokenizer.encode_many(texts[start:start + BLOCK_ROWS], table)
        return
    # Each worker has its own token table and sends back its ids and the tokens it met for the first time;
    # here they are mapped onto ``table``'s ids, block by block in file order.
    to_ours: dict[int, np.ndarray] = {}
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(tokenizer.lowercase,)) as pool:
        blocks = (texts[start:start + BLOCK_ROWS] for start in starts)
        for worker, ids, block_lengths, new_tokens in pool.imap(_encode_block, blocks):
            mapping = np.array(table.ids(new_tokens), np.int32)
            to_ours[worker] = np.concatenate([to_ours.get(worker, np.zeros(0, np.int32)), mapping])
            yield to_ours[worker][ids], block_lengths


_worker: dict[str, Any] = {}


def _start_worker(lowercase: bool) -> None:
    _worker.update(tokenizer=Tokenizer(lowercase), table=TokenTable(), sent=0)


def _encode_block(texts: list[str]) -> tuple[int, np.ndarray, np.ndarray, list[str]]:
    """In a worker: the block's ids (the worker's own), lengths, and the tokens this worker had not sent yet."""
    table: TokenTable = _worker["table"]
    ids, lengths = _worker["tokenizer"].encode_many(texts, table)
    words = table.words[_worker["sent"]:]
    _worker["sent"] = len(table.words)
    return os.getpid(), ids, lengths, words
