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

import re
from itertools import repeat
from typing import Any, Callable, Iterable

import numpy as np
import regex

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
        token, ids in order of first appearance).

        The texts are joined into one string with their first and last chunks marked, split at the spaces and
        looked up in ``table`` in C, so Python runs once per distinct chunk and place, not once per chunk. A
        text with whitespace at an end or a marker character in it is tokenized on its own (the same tokens).

        Returns:
            ``ids`` int32 ``(total tokens,)``, every text's tokens in order, and ``lengths`` int64
            ``(len(texts),)``, the number of tokens of every text.
        """
        if self.lowercase:
            texts = list(map(str.lower, texts))
        plain = [bool(text) and not (text[0].isspace() or text[-1].isspace() or _FIRST in text or _LAST in text)
                 for text in texts]
        joined = texts if all(plain) else [text for text, ok in zip(texts, plain) if ok]
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
        self._starts = np.zeros(1024, np.int64)  # chunk number -> where its ids start in _ids
        self._lengths = np.zeros(1024, np.int64)  # chunk number -> how many tokens it has
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
        if len(self._chunks) >= MAX_REMEMBERED:
            self._chunks.clear()
            self._used = 0
        chunks = (_FIRST + f"{_LAST} {_FIRST}".join(texts) + _LAST).split(" ")
        numbers = np.fromiter(map(self._chunks.get, chunks, repeat(-1)), np.int64, len(chunks))
        missing = np.flatnonzero(numbers < 0)
        if len(missing):
            new = self._resolve(dict.fromkeys(map(chunks.__getitem__, missing.tolist())), place_tokens)
            self._add(new)
            numbers[missing] = np.fromiter(map(self._chunks.__getitem__, map(chunks.__getitem__, missing.tolist())),
                                           np.int64, len(missing))
        del chunks
        counts = self._lengths[numbers]  # tokens per chunk
        ends = np.cumsum(counts)
        ids = self._ids[np.repeat(self._starts[numbers] - (ends - counts), counts) + np.arange(ends[-1] if len(ends) else 0)]
        chunks_per_text = np.fromiter(map(str.count, texts, [" "] * len(texts)), np.int64, len(texts)) + 1
        text_ends = np.cumsum(chunks_per_text)
        token_ends = np.concatenate([[0], ends])[text_ends]
        return ids, np.diff(token_ends, prepend=0)

    def _resolve(self, chunks: Iterable[str], place_tokens: Callable[[str], Iterable[str]]) -> list[tuple[str, list[int]]]:
        """Every new chunk with its token ids; a plain ASCII word is its own token wherever it stands."""
        index, words, new, suffixed = self.index, self.words, [], self._suffixed
        get, append, marks, split_words = index.get, new.append, _MARKS, _SPLIT_WORDS
        for chunk in chunks:
            bare = chunk.strip(marks)
            if bare.isascii() and bare.isalnum() and bare.lower() not in split_words:
                number = get(bare)
                if number is None:
                    number = index[bare] = len(words)
                    words.append(bare)
                append((chunk, [number]))
                continue
            core, mark = bare[:-1], bare[-1:]
            if mark in ",.!?" and core.isascii() and core.isalnum() and core.lower() not in _KEPT_WHOLE:
                # A word and one punctuation mark, by its shape at its place (as _Place does, without the regex).
                stand_in = "0" if core[0].isdigit() else "w"
                key = chunk[: len(chunk) - len(chunk.lstrip(_FIRST))] + stand_in + mark + \
                    chunk[len(chunk.rstrip(_LAST)):]
                entry = suffixed.get(key)
                if entry is None:
                    tokens = list(place_tokens(key))
                    holding = [i for i, token in enumerate(tokens) if stand_in in token]
                    entry = suffixed[key] = (tokens, holding[0] if len(holding) == 1 else -1)
                if entry[1] >= 0:
                    tokens = list(entry[0])
                    tokens[entry[1]] = tokens[entry[1]].replace(stand_in, core)
                    append((chunk, self.ids(tokens)))
                    continue
            append((chunk, self.ids(place_tokens(chunk))))
        return new

    def _add(self, new: list[tuple[str, list[int]]]) -> None:
        """Remember new chunks and their token ids."""
        first = len(self._chunks)
        needed = first + len(new)
        if needed > len(self._starts):
            self._starts = np.resize(self._starts, 2 * needed)
            self._lengths = np.resize(self._lengths, 2 * needed)
        lengths = np.array([len(ids) for _, ids in new], np.int64)
        ids = np.array([number for _, chunk_ids in new for number in chunk_ids], np.int32)
        if self._used + len(ids) > len(self._ids):
            self._ids = np.resize(self._ids, 2 * (self._used + len(ids)))
        self._lengths[first:needed] = lengths
        self._starts[first:needed] = self._used + np.cumsum(lengths) - lengths
        self._ids[self._used: self._used + len(ids)] = ids
        self._used += len(ids)
        self._chunks.update(zip((chunk for chunk, _ in new), range(first, needed)))
