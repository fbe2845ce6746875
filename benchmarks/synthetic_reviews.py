"""Synthetic labelled reviews shaped like real ones, for measuring data loading at scale.

``label<TAB>sentence`` rows: about 22 Treebank tokens per sentence, words drawn from a Zipf distribution over
a 400,000-word vocabulary (a head of common English words, then made-up words, capitalised names and typos),
with commas, final periods, ``!``/``?``, ``...``, quotes, parentheses, contractions and possessives, so that
the tokenizer meets what reviews hold. The same ``seed`` and ``rows`` always give the same file.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

COMMON = ("the a and of to is it this that in was for with as but film movie on not its his one you be all "
          "at by an who are from like so just has have about more story there than what out if some very "
          "can't don't it's isn't doesn't i'm he's she's they're we've you'll wasn't couldn't won't "
          "characters time good bad great best plot acting director really much even well only any "
          "no little funny comedy drama little makes made make way too love life most also other into "
          "those their them through while because could would should never ever still then scene scenes").split()
POSITIVE = "wonderful great brilliant moving gorgeous witty charming superb delightful touching".split()
NEGATIVE = "dull boring tedious awful lifeless mess bland stupid clumsy tiresome".split()
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "sh", "qu", "ck", "ng"]
#: The vocabulary the words are drawn from.
VOCABULARY_SIZE = 400_000


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    """COMMON, then distinct made-up words: mostly lowercase, some capitalised names, some with a typo."""
    words = list(dict.fromkeys(COMMON + POSITIVE + NEGATIVE))
    seen = set(words)
    while len(words) < VOCABULARY_SIZE:
        parts = rng.integers(0, len(SYLLABLES), size=(VOCABULARY_SIZE, 4))
        sizes = rng.integers(1, 5, size=VOCABULARY_SIZE)
        kinds = rng.random(VOCABULARY_SIZE)
        for row, size, kind in zip(parts, sizes, kinds):
            word = "".join(SYLLABLES[i] for i in row[:size])
            if kind < 0.08:
                word = word.capitalize()  # a name
            elif kind < 0.12 and len(word) > 3:
                word = word[:2] + word[2] * 2 + word[3:]  # a typo: a doubled letter
            if word not in seen:
                seen.add(word)
                words.append(word)
                if len(words) == VOCABULARY_SIZE:
                    break
    return np.array(words, dtype=object)


def reviews(rows: int, seed: int = 0, part: int = 0, vocabulary: Optional[np.ndarray] = None) -> list[str]:
    """``rows`` lines ``label<TAB>sentence`` (label 0 or 1), the same for the same arguments.

    ``part`` numbers the pieces of a long file; ``vocabulary`` is ``seed``'s (made here when not given).
    """
    if vocabulary is None:
        vocabulary = _vocabulary(np.random.default_rng(seed))
    rng = np.random.default_rng([seed, part])
    weights = 1.0 / (np.arange(VOCABULARY_SIZE) + 2.7) ** 1.07
    lengths = rng.integers(6, 33, size=rows)  # words per sentence; punctuation brings tokens to about 22
    draws = rng.choice(VOCABULARY_SIZE, size=int(lengths.sum()), p=weights / weights.sum())
    words = vocabulary[draws]
    labels = rng.integers(0, 2, size=rows)
    polar = rng.random(rows) < 0.8
    style = rng.random((rows, 6))
    comma = rng.random(len(draws)) < 0.07
    words = np.where(comma, words + ",", words)
    lines = []
    start = 0
    for row in range(rows):
        end = start + lengths[row]
        sentence = list(words[start:end])
        start = end
        if polar[row]:
            pool = POSITIVE if labels[row] else NEGATIVE
            sentence.insert(int(style[row, 0] * len(sentence)), pool[int(style[row, 1] * len(pool))])
        if style[row, 2] < 0.1:
            sentence[0] = '"' + sentence[0]
            sentence[-1] = sentence[-1] + '"'
        elif style[row, 2] < 0.15:
            middle = len(sentence) // 2
            sentence[middle] = "(" + sentence[middle]
            sentence[-2] = sentence[-2] + ")"
        if style[row, 3] < 0.05:
            sentence.insert(len(sentence) // 3, "...")
        if style[row, 4] < 0.1:
            sentence[len(sentence) // 4] += "'s"
        ending = style[row, 5]
        text = " ".join(sentence).rstrip(",") + ("." if ending < 0.7 else "!" if ending < 0.85 else "?" if ending < 0.9 else "")
        lines.append(f"{labels[row]}\t{text}")
    return lines


def write_reviews(path: str | Path, rows: int, seed: int = 0) -> Path:
    """Write :func:`reviews` to ``path`` (UTF-8, one row per line) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vocabulary = _vocabulary(np.random.default_rng(seed))
    with path.open("w", encoding="utf-8") as file:
        for part, start in enumerate(range(0, rows, 200_000)):  # in parts: a million rows need not all be held
            lines = reviews(min(200_000, rows - start), seed, part, vocabulary)
            file.write("\n".join(lines) + "\n")
    return path


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    write_reviews(options.path, options.rows, options.seed)


if __name__ == "__main__":
    main()
