"""The word tokenizer: the Penn Treebank rules of NLTK's ``TreebankWordTokenizer``, fast on a whole corpus.

The rules (:func:`treebank_tokenize`) are NLTK 3.10's, pattern for pattern and compiled with the same regular
expression engines (the ``regex`` module, and ``re`` for the contractions), so the tokens are NLTK's; the tests
compare them with NLTK itself on the report's data, on synthetic reviews and on random punctuation-heavy text.
NLTK is not imported here (it takes half a second to import, and predict.py starts without it).

Speed comes from doing that work once per distinct *word* instead of once per sentence. A sentence without
leading or trailing whitespace is cut at its spaces into chunks. Every Treebank rule looks at most one character
beyond a chunk, and that character is always the space, except for the rules anchored at the start (``^"``) or
the end of the text (``([:,])$``, the final period). So a chunk's tokens depend only on the chunk and on whether
it is the first, the last, the only or a middle chunk; each such pair is tokenized once, with a stand-in word on
the side(s) where the sentence goes on, and remembered. Chunks of plain ASCII letters and digits are their own
token (unless they are one of the contractions ``cannot``, ``gimme``, ``gonna``, ``gotta``, ``lemme``, ``wanna``)
and skip even that.
"""
from __future__ import annotations

import operator
import re
from itertools import compress, repeat
from typing import Any, Callable, Iterable, Optional

import numpy as np
import regex

from lightning_module import chunking

# The rules of nltk.tokenize.treebank.TreebankWordTokenizer (NLTK 3.10, Apache License 2.0), in order.
STARTING_QUOTES = [
    (regex.compile(r"^\""), r"``"),
    (regex.compile(r"(``)"), r" \1 "),
    (regex.compile(r"([ \(\[{<])(\"|\'{2})"), r"\1 `` "),
]
PUNCTUATION = [
    (regex.compile(r"([:,])([^\d])"), r" \1 \2"),
    (regex.compile(r"([:,])$"), r" \1 "),
    (regex.compile(r"\.\.\."), r" ... "),
    (regex.compile(r"[;@#$%&]"), r" \g<0> "),
    (regex.compile(r'([^\.])(\.)([\]\)}>"\']*)\s*$'), r"\1 \2\3 "),  # the final period
    (regex.compile(r"[?!]"), r" \g<0> "),
    (regex.compile(r"([^'])' "), r"\1 ' "),
]
PARENS_BRACKETS = (regex.compile(r"[\]\[\(\)\{\}\<\>]"), r" \g<0> ")
DOUBLE_DASHES = (regex.compile(r"--"), r" -- ")
ENDING_QUOTES = [
    (regex.compile(r"''"), " '' "),
    (regex.compile(r'"'), " '' "),
    (regex.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),
    (regex.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
]
# Robert MacIntyre's contractions, as NLTK compiles them (with ``re``).
CONTRACTIONS2 = [re.compile(pattern) for pattern in (
    r"(?i)\b(can)(?#X)(not)\b", r"(?i)\b(d)(?#X)('ye)\b", r"(?i)\b(gim)(?#X)(me)\b", r"(?i)\b(gon)(?#X)(na)\b",
    r"(?i)\b(got)(?#X)(ta)\b", r"(?i)\b(lem)(?#X)(me)\b", r"(?i)\b(more)(?#X)('n)\b", r"(?i)\b(wan)(?#X)(na)(?=\s)",
)]
CONTRACTIONS3 = [re.compile(pattern) for pattern in (r"(?i) ('t)(?#X)(is)\b", r"(?i) ('t)(?#X)(was)\b")]

#: Plain ASCII words that the contraction rules split, and the two that split after an apostrophe ('tis, 'twas).
_SPLIT_WORDS = frozenset({"cannot", "gimme", "gonna", "gotta", "lemme", "wanna"})
_KEPT_WHOLE = _SPLIT_WORDS | {"tis", "twas"}
#: The stand-in word beside a chunk where its sentence goes on; the rules leave it one token of its own.
_STAND_IN = "x"
#: ASCII punctuation around one run of ASCII letters and digits, which may end in 's: ``"word,`` ``(great)!``
#: ``$5`` ``film's.``
_SHAPE = re.compile(r"([!-/:-@\[-`{-~]*)([A-Za-z0-9]+)((?:'[sS])?[!-/:-@\[-`{-~]*)")
#: Marks of a sentence's first and last chunk in :meth:`Tokenizer.encode_many` (a text holding one is
#: tokenized on its own).
_FIRST, _LAST = "\x02", "\x03"
_MARKS = _FIRST + _LAST
#: A tokenizer forgets the chunks it remembers when it holds this many (memory stays bounded).
MAX_REMEMBERED = 1_000_000


def treebank_tokenize(text: str) -> list[str]:
    """``nltk.tokenize.TreebankWordTokenizer().tokenize(text)``: the rules applied to the whole text."""
    for pattern, substitution in STARTING_QUOTES:
        text = pattern.sub(substitution, text)
    for pattern, substitution in PUNCTUATION:
        text = pattern.sub(substitution, text)
    text = PARENS_BRACKETS[0].sub(PARENS_BRACKETS[1], text)
    text = DOUBLE_DASHES[0].sub(DOUBLE_DASHES[1], text)
    text = " " + text + " "
    for pattern, substitution in ENDING_QUOTES:
        text = pattern.sub(substitution, text)
    for pattern in CONTRACTIONS2:
        text = pattern.sub(r" \1 \2 ", text)
    for pattern in CONTRACTIONS3:
        text = pattern.sub(r" \1 \2 ", text)
    return text.split()


class _Place:
    """The chunks met at one place in a sentence (first, middle or last) and their remembered tokens.

    ``before`` / ``after``: whether the sentence goes on before / after the chunk (a stand-in word is put there).
    A chunk of ASCII punctuation around one run of ASCII letters and digits is tokenized by its *shape* (the run
    replaced by ``w``, or ``0`` when it starts with a digit: only a digit after ``:`` or ``,`` changes a rule's
    outcome), so ``good,`` and ``film,`` share one entry; every other chunk is remembered as it is.
    """

    def __init__(self, before: bool, after: bool) -> None:
        self.before, self.after = before, after
        self.chunks: dict[str, tuple[str, ...]] = {}
        self.shapes: dict[str, tuple[tuple[str, ...], int]] = {}

    def tokens(self, chunk: str) -> tuple[str, ...] | list[str]:
        known = self.chunks.get(chunk)
        if known is not None:
            return known
        if chunk.isascii() and chunk.isalnum() and chunk.lower() not in _SPLIT_WORDS:
            return (chunk,)
        shape = _SHAPE.fullmatch(chunk)
        if shape is not None and not shape[1].endswith("'") and shape[2].lower() not in _KEPT_WHOLE:
            core = shape[2]
            stand_in = "0" if core[0].isdigit() else "w"
            key = shape[1] + stand_in + shape[3]
            entry = self.shapes.get(key)
            if entry is None:
                tokens = self._tokenize(key)
                holding = [i for i, token in enumerate(tokens) if stand_in in token]
                entry = self.shapes[key] = (tokens, holding[0] if len(holding) == 1 else -1)
            tokens, index = entry
            if index >= 0:
                tokens = list(tokens)
                tokens[index] = tokens[index].replace(stand_in, core)
                return tokens
        if len(self.chunks) >= MAX_REMEMBERED:
            self.chunks.clear()
        known = self.chunks[chunk] = self._tokenize(chunk)
        return known

    def _tokenize(self, chunk: str) -> tuple[str, ...]:
        tokens = treebank_tokenize(f"{_STAND_IN} " * self.before + chunk + f" {_STAND_IN}" * self.after)
        return tuple(tokens[int(self.before): len(tokens) - int(self.after)])


class Tokenizer:
    """Split a sentence into word tokens, as the original report did: NLTK's Treebank rules.

    ``nltk.word_tokenize`` (the original's choice) needs the downloaded ``punkt`` model; the Treebank
    tokenizer it wraps works offline and gives the same tokens on single sentences. Each distinct chunk
    between spaces is tokenized once (see the module's docstring).

    Args:
        lowercase: lowercase the text before tokenizing (the report and GloVe both use lowercase words).
    """

    def __init__(self, lowercase: bool = True) -> None:
        self.lowercase = lowercase
        self._first, self._middle, self._last = _Place(False, True), _Place(True, True), _Place(True, False)

    def __call__(self, text: str) -> list[str]:
        """Return the tokens of ``text`` (possibly none, for blank text)."""
        if self.lowercase:
            text = text.lower()
        if not text or text[0].isspace() or text[-1].isspace():
            return treebank_tokenize(text)  # whitespace at an end: the end-anchored rules may reach past a chunk
        chunks = text.split(" ")
        if len(chunks) == 1:
            return treebank_tokenize(text)
        tokens = list(self._first.tokens(chunks[0]))
        middle = self._middle
        remembered = middle.chunks
        for chunk in chunks[1:-1]:
            known = remembered.get(chunk)
            if known is not None:
                tokens.extend(known)
            elif chunk.isascii() and chunk.isalnum() and chunk.lower() not in _SPLIT_WORDS:
                tokens.append(chunk)
            elif chunk:  # (an empty chunk: two spaces in a row)
                tokens.extend(middle.tokens(chunk))
        tokens.extend(self._last.tokens(chunks[-1]))
        return tokens

    def encode_many(self, texts: list[str], table: "TokenTable") -> tuple[np.ndarray, np.ndarray]:
        """Tokenize many sentences straight into token ids (``table.index``: token -> id, grown by every new
        token).

        The texts are joined into one string with their first and last chunks marked, split at the spaces and
        looked up in ``table`` in C, so Python runs once per distinct chunk and place, not once per chunk. A
        text with whitespace at an end or a marker character in it is tokenized on its own (the same tokens).

        Returns:
            ``ids`` int32 ``(total tokens,)``, every text's tokens in order, and ``lengths`` int64
            ``(len(texts),)``, the number of tokens of every text.
        """
        if self.lowercase:
            texts = list(map(str.lower, texts))
        count = len(texts)
        sizes = np.fromiter(map(len, texts), np.int64, count)
        plain = (sizes > 0) & (np.fromiter(map(len, map(str.strip, texts)), np.int64, count) == sizes)
        for mark in _MARKS:
            plain &= ~np.fromiter(map(operator.contains, texts, repeat(mark)), bool, count)
        joined = texts if plain.all() else list(compress(texts, plain))
        ids, lengths = table.encode_chunks(joined, self._place_tokens)
        if joined is texts:
            return ids, lengths
        offsets = np.cumsum(lengths) - lengths
        pieces, all_lengths, position = [], np.zeros(len(texts), np.int64), 0
        for number, (text, ok) in enumerate(zip(texts, plain)):
            if ok:
                pieces.append(ids[offsets[position]: offsets[position] + lengths[position]])
                position += 1
            else:
                pieces.append(np.array(table.ids(treebank_tokenize(text)), np.int32))
            all_lengths[number] = len(pieces[-1])
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int32), all_lengths

    def _place_tokens(self, chunk: str) -> Iterable[str]:
        """The tokens of a chunk marked with its place (``_FIRST`` before a first chunk, ``_LAST`` after a last)."""
        first, last = chunk.startswith(_FIRST), chunk.endswith(_LAST)
        bare = chunk[int(first): len(chunk) - int(last)]
        if first and last:
            return treebank_tokenize(bare)
        if not bare:
            return ()
        return (self._first if first else self._last if last else self._middle).tokens(bare)

    def __getstate__(self) -> dict[str, Any]:
        return {"lowercase": self.lowercase}  # the remembered chunks are a cache, rebuilt where it is used

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["lowercase"])

    def __repr__(self) -> str:
        return f"Tokenizer(lowercase={self.lowercase})"


class TokenTable:
    """Token ids (``index``: token -> id, ``words``: id -> token, in order of first appearance) and the ids of
    every chunk met so far.

    :meth:`Tokenizer.encode_many` fills it; one table serves one corpus, so that ids agree across its parts.
    """

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.words: list[str] = []  # id -> token
        self._suffixed: dict[str, tuple[list[str], int]] = {}  # marked shape of a word and a mark -> its tokens
        self._chunks: dict[str, int] = {}  # marked chunk -> chunk number
        self._starts = np.zeros(1024, np.int32)  # chunk number -> where its ids start in _ids (< 2**30, see below)
        self._lengths = np.zeros(1024, np.int32)  # chunk number -> how many tokens it has
        self._ids = np.zeros(4096, np.int32)
        self._used = 0  # of _ids

    def ids(self, tokens: Iterable[str]) -> list[int]:
        """The id of every token, new tokens getting the next ids."""
        index, words, found = self.index, self.words, []
        for token in tokens:
            number = index.get(token)
            if number is None:
                number = index[token] = len(words)
                words.append(token)
            found.append(number)
        return found

    def encode_chunks(self, texts: list[str], place_tokens: Callable[[str], Iterable[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and per-text token counts of ``texts`` (no whitespace at their ends, no marker in them)."""
        if not texts:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        if len(self._chunks) >= MAX_REMEMBERED or self._used >= 2**30:  # (int32 starts)
            self._chunks.clear()
            self._used = 0
        arrow = chunking.chunk_numbers(texts, lambda keys: self._numbers(keys, place_tokens), _FIRST, _LAST) \
            if chunking.available() else None
        if arrow is not None:
            numbers, chunks_per_text = arrow
        else:
            chunks = (_FIRST + f"{_LAST} {_FIRST}".join(texts) + _LAST).split(" ")
            numbers = self._numbers(chunks, place_tokens)
            del chunks
            chunks_per_text = np.fromiter(map(str.count, texts, [" "] * len(texts)), np.int64, len(texts)) + 1
        counts = self._lengths[numbers]  # tokens per chunk
        ends = np.cumsum(counts)
        ids = self._ids[np.repeat(self._starts[numbers] - (ends - counts), counts) + np.arange(ends[-1] if len(ends) else 0)]
        text_ends = np.cumsum(chunks_per_text)
        token_ends = np.concatenate([[0], ends])[text_ends]
        return ids, np.diff(token_ends, prepend=0)

    def _numbers(self, chunks: list[str], place_tokens: Callable[[str], Iterable[str]]) -> np.ndarray:
        """The chunk number (int64) of every marked chunk, remembering the new ones."""
        numbers = np.fromiter(map(self._chunks.get, chunks, repeat(-1)), np.int64, len(chunks))
        missing = np.flatnonzero(numbers < 0)
        if len(missing):
            new = list(dict.fromkeys(map(chunks.__getitem__, missing.tolist())))
            first = len(self._chunks)
            self._add(new, *self._resolve(new, place_tokens))
            if len(new) == len(missing):  # distinct chunks (as Arrow gives them): numbered in order
                numbers[missing] = np.arange(first, first + len(new))
            else:
                numbers[missing] = np.fromiter(map(self._chunks.__getitem__, map(chunks.__getitem__, missing.tolist())),
                                               np.int64, len(missing))
        return numbers

    def _resolve(self, chunks: list[str], place_tokens: Callable[[str], Iterable[str]]) -> tuple[np.ndarray, np.ndarray]:
        """The number of tokens of every new chunk (int64) and their ids, chunk after chunk (int32).

        A plain ASCII word is its own token wherever it stands: those are found without a Python loop."""
        bare = list(map(str.strip, chunks, repeat(_MARKS)))
        plain = np.fromiter(map(str.isascii, bare), bool, len(bare)) & np.fromiter(map(str.isalnum, bare), bool, len(bare))
        plain[plain] = ~np.fromiter(map(_SPLIT_WORDS.__contains__, map(str.lower, compress(bare, plain))), bool,
                                    int(plain.sum()))
        other = np.flatnonzero(~plain).tolist()
        other_ids = self._punctuated_ids([chunks[i] for i in other], [bare[i] for i in other], place_tokens)
        lengths = np.ones(len(chunks), np.int64)
        lengths[other] = np.fromiter(map(len, other_ids), np.int64, len(other))
        starts = np.cumsum(lengths) - lengths
        ids = np.empty(int(lengths.sum()), np.int32)
        ids[starts[plain]] = self.ids_array(list(compress(bare, plain)))
        if other:
            ids[np.repeat(starts[other] - (np.cumsum(lengths[other]) - lengths[other]), lengths[other])
                + np.arange(int(lengths[other].sum()))] = [number for found in other_ids for number in found]
        return lengths, ids

    def ids_array(self, tokens: list[str]) -> np.ndarray:
        """:meth:`ids` as an int64 array, looked up without a Python loop (new tokens get the next ids)."""
        index, words = self.index, self.words
        ids = np.fromiter(map(index.get, tokens, repeat(-1)), np.int64, len(tokens))
        unseen = np.flatnonzero(ids < 0)
        if len(unseen):
            fresh = list(dict.fromkeys(map(tokens.__getitem__, unseen.tolist())))
            index.update(zip(fresh, range(len(words), len(words) + len(fresh))))
            words.extend(fresh)
            ids[unseen] = np.fromiter(map(index.__getitem__, map(tokens.__getitem__, unseen.tolist())), np.int64,
                                      len(unseen))
        return ids

    def _punctuated_ids(self, chunks: list[str], bare: list[str],
                        place_tokens: Callable[[str], Iterable[str]]) -> list[list[int]]:
        """The token ids of new chunks that are not plain words (``bare``: without their marks).

        A word followed by one of ``,.!?`` is tokenized by its shape (:meth:`_chunk_ids`); the chunks of one shape
        are done together, the others one by one."""
        found: list[Optional[list[int]]] = [None] * len(chunks)
        cores, last = [word[:-1] for word in bare], [word[-1:] for word in bare]
        count = len(chunks)
        shaped = np.fromiter(map(str.isascii, cores), bool, count) & np.fromiter(map(str.isalnum, cores), bool, count) \
            & np.fromiter(map(",.!?".__contains__, last), bool, count)
        shaped[shaped] = ~np.fromiter(map(_KEPT_WHOLE.__contains__, map(str.lower, compress(cores, shaped))), bool,
                                      int(shaped.sum()))
        at = np.flatnonzero(shaped)
        keys = [chunks[i][: len(chunks[i]) - len(chunks[i].lstrip(_FIRST))] + ("0" if cores[i][0].isdigit() else "w")
                + last[i] + chunks[i][len(chunks[i].rstrip(_LAST)):] for i in at.tolist()]
        groups: dict[str, list[int]] = {}
        for i, key in zip(at.tolist(), keys):
            groups.setdefault(key, []).append(i)
        for key, members in groups.items():
            tokens, holding = self._shape(key, place_tokens)
            if holding < 0:
                continue
            before, after = tokens[holding].split(key.strip(_MARKS)[0], 1)
            varying = self.ids_array([before + cores[i] + after for i in members]).tolist()
            fixed = self.ids(tokens[:holding]) + [-1] + self.ids(tokens[holding + 1:])  # not the stand-in itself
            for i, number in zip(members, varying):
                fixed[holding] = number
                found[i] = list(fixed)
        return [ids if ids is not None else self._chunk_ids(chunk, word, place_tokens)
                for ids, chunk, word in zip(found, chunks, bare)]

    def _shape(self, key: str, place_tokens: Callable[[str], Iterable[str]]) -> tuple[list[str], int]:
        """The tokens of a shape (a stand-in word and a mark, at a place) and which token holds the word (-1:
        not exactly one)."""
        entry = self._suffixed.get(key)
        if entry is None:
            stand_in = key.strip(_MARKS)[0]
            tokens = list(place_tokens(key))
            holding = [i for i, token in enumerate(tokens) if stand_in in token]
            entry = self._suffixed[key] = (tokens, holding[0] if len(holding) == 1 else -1)
        return entry

    def _chunk_ids(self, chunk: str, bare: str, place_tokens: Callable[[str], Iterable[str]]) -> list[int]:
        """The token ids of a new chunk that is not a plain word (``bare``: without its marks)."""
        core, mark = bare[:-1], bare[-1:]
        if mark in ",.!?" and core.isascii() and core.isalnum() and core.lower() not in _KEPT_WHOLE:
            # A word and one punctuation mark, by its shape at its place (as _Place does, without the regex).
            stand_in = "0" if core[0].isdigit() else "w"
            key = chunk[: len(chunk) - len(chunk.lstrip(_FIRST))] + stand_in + mark + chunk[len(chunk.rstrip(_LAST)):]
            entry = self._shape(key, place_tokens)
            if entry[1] >= 0:
                tokens = list(entry[0])
                tokens[entry[1]] = tokens[entry[1]].replace(stand_in, core)
                return self.ids(tokens)
        return self.ids(place_tokens(chunk))

    def _add(self, chunks: list[str], lengths: np.ndarray, ids: np.ndarray) -> None:
        """Remember new chunks: the number of tokens of each, and their ids one chunk after the other."""
        first = len(self._chunks)
        needed = first + len(chunks)
        if needed > len(self._starts):
            self._starts = np.resize(self._starts, needed + needed // 2)
            self._lengths = np.resize(self._lengths, needed + needed // 2)
        if self._used + len(ids) > len(self._ids):
            self._ids = np.resize(self._ids, (self._used + len(ids)) * 3 // 2)
        self._lengths[first:needed] = lengths
        self._starts[first:needed] = self._used + np.cumsum(lengths) - lengths
        self._ids[self._used: self._used + len(ids)] = ids
        self._used += len(ids)
        self._chunks.update(zip(chunks, range(first, needed)))
