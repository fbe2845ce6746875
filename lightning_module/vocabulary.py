"""The vocabulary: token <-> index, with index 0 reserved for padding."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from lightning_module.errors import DataError

PAD = "<pad>"
UNK = "<unk>"


class Vocabulary:
    """Maps tokens to indices. Index 0 is always padding (``<pad>``).

    Build one from training tokens with :meth:`build` (index 1 is then ``<unk>``, which unknown tokens map
    to), or read the original report's word list with :meth:`from_dictionary_file` (no ``<unk>``: unknown
    tokens map to index 0, which the one-hot input turns into the zero vector, as in the report).

    Args:
        itos: the token of every index; ``itos[0]`` must be ``<pad>``.
        unk_token: the token unknown words map to, or None to map them to index 0.
    """

    pad_index = 0

    def __init__(self, itos: list[str], unk_token: Optional[str] = None) -> None:
        if not itos or itos[0] != PAD:
            raise ValueError(f"index 0 of a vocabulary must be {PAD!r}")
        self.itos = list(itos)
        self.stoi = {token: index for index, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a vocabulary must not hold a token twice")
        if unk_token is not None and unk_token not in self.stoi:
            raise ValueError(f"the unknown token {unk_token!r} is not in the vocabulary")
        self.unk_token = unk_token

    @property
    def unk_index(self) -> Optional[int]:
        """The index unknown tokens map to, or None when they map to padding (index 0)."""
        return None if self.unk_token is None else self.stoi[self.unk_token]

    @classmethod
    def build(
        cls, token_lists: Iterable[list[str]], min_freq: int = 1, max_size: Optional[int] = None
    ) -> "Vocabulary":
        """Count tokens and keep the frequent ones.

        Index 0 is ``<pad>``, index 1 ``<unk>``, then the words by descending count (ties alphabetically,
        so the result does not depend on the data's order).

        Args:
            token_lists: the tokenized training sentences.
            min_freq: keep words seen at least this often.
            max_size: keep at most this many words (not counting ``<pad>`` and ``<unk>``); None keeps all.
        """
        counts = Counter(token for tokens in token_lists for token in tokens)
        return cls.from_counts(list(counts), list(counts.values()), min_freq, max_size)

    @classmethod
    def from_counts(cls, words: Sequence[str], counts: Sequence[int], min_freq: int = 1,
                    max_size: Optional[int] = None) -> "Vocabulary":
        """:meth:`build` from counted words: ``counts[i]`` is how often ``words[i]`` occurs (0 is allowed).

        Only the words that can make the cut are sorted: with ``max_size``, those counted at least as often as the
        ``max_size + 2``-th most frequent word (two more, as a literal ``<pad>`` or ``<unk>`` is dropped after it).
        """
        counts = np.asarray(counts, dtype=np.int64)
        candidates = np.flatnonzero(counts >= min_freq)
        if max_size is not None and len(candidates) > max_size + 2:
            threshold = np.partition(counts[candidates], len(candidates) - max_size - 2)[len(candidates) - max_size - 2]
            candidates = candidates[counts[candidates] >= threshold]
        counted = sorted(zip((-counts[candidates]).tolist(), [words[i] for i in candidates.tolist()]))
        kept = [word for _, word in counted[:max_size] if word not in (PAD, UNK)]
        # A literal "<pad>"/"<unk>" in the text is an ordinary word that happens to share the name.
        return cls([PAD, UNK, *kept], unk_token=UNK)

    @classmethod
    def from_training_counts(cls, words: Sequence[str], counts: np.ndarray, min_freq: int,
                             max_size: Optional[int]) -> tuple["Vocabulary", str]:
        """:meth:`from_counts` of the training split's word counts (int64 ``(len(words),)``), and a report line: how
        many of its words were left out and what share of its tokens they are (they map to ``<unk>``)."""
        vocab = cls.from_counts(words, counts, min_freq, max_size)
        kept = np.fromiter(map(set(vocab.itos[2:]).__contains__, words), bool, len(words))  # after <pad>, <unk>
        seen = counts > 0
        left_out = int(seen.sum() - (kept & seen).sum())
        unknown, total = int(counts[~kept].sum()), int(counts.sum())
        limit = f"{max_size:,}" if max_size is not None else "none"
        report = (f"vocabulary: {len(vocab) - 2:,} words (min_freq {min_freq}, max_size {limit}) of the training "
                  f"split's {int(seen.sum()):,} distinct words; {left_out:,} words left out, which are "
                  f"{100 * unknown / max(1, total):.2f}% of its {total:,} tokens (they map to <unk>)")
        return vocab, report

    @classmethod
    def from_dictionary_file(cls, path: str | Path) -> "Vocabulary":
        """Read a word list: one word per line, the word on line i (from 0) gets index i + 1.

        This is the original report's ``dictionary.csv``; there is no ``<unk>``, so an 874-word file gives a
        vocabulary of 875 entries (one-hot input size 874).

        Raises:
            DataError: the file is missing or empty, or a line is blank or repeats a word (names the line).
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: dictionary file not found")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: cannot read the dictionary file: {error}") from None
        # Split on "\n" only: str.splitlines() also breaks at rarer separators and would shift line numbers.
        lines = [line.rstrip("\r") for line in text.split("\n")]
        if lines and lines[-1] == "":
            lines.pop()  # the final newline ends the last line; it does not start an empty one
        if not lines:
            raise DataError(f"{path}: the dictionary file is empty")
        first_line: dict[str, int] = {PAD: 0}
        for number, word in enumerate(lines, start=1):
            word = word.strip()
            if not word:
                raise DataError(f"{path}:{number}: blank line in the dictionary (one word per line)")
            if word in first_line:
                where = "is reserved for padding" if word == PAD else f"is already on line {first_line[word]}"
                raise DataError(f"{path}:{number}: duplicate word {word!r}: it {where}")
            first_line[word] = number
        return cls(list(first_line))  # insertion order: <pad>, then the words in file order

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """The index of every token; unknown tokens get :attr:`unk_index`, or 0 when there is none."""
        fallback = self.pad_index if self.unk_index is None else self.unk_index
        return [self.stoi.get(token, fallback) for token in tokens]

    def unknown_words(self, words: Sequence[str], ids: np.ndarray, shown: int = 5) -> Optional[str]:
        """How many of the tokens ``ids`` (indices into ``words``, e.g. a split's token ids) are not in this
        vocabulary, e.g. ``"3 of 40 tokens (2 distinct: 'zorb', 'quux')"`` naming the first ``shown`` distinct ones
        in order of appearance; None when every token is known."""
        known = np.fromiter(map(self.stoi.__contains__, words), bool, len(words))
        unknown = ids[~known[ids]]
        if not len(unknown):
            return None
        distinct, first = np.unique(unknown, return_index=True)
        distinct = distinct[np.argsort(first)]
        names = ", ".join(repr(words[i]) for i in distinct[:shown].tolist()) + (", ..." if len(distinct) > shown else "")
        return f"{len(unknown)} of {len(ids)} tokens ({len(distinct)} distinct: {names})"

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able description (it goes into checkpoints); :meth:`from_dict` inverts it."""
        return {"itos": list(self.itos), "unk_token": self.unk_token}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "Vocabulary":
        """Rebuild a vocabulary from :meth:`to_dict`'s output."""
        return cls(list(state["itos"]), unk_token=state.get("unk_token"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and (self.itos, self.unk_token) == (other.itos, other.unk_token)

    def __repr__(self) -> str:
        return f"Vocabulary(size={len(self)}, unk_token={self.unk_token!r})"
