"""The tokenizer gives NLTK's Treebank tokens exactly: the rules are NLTK's, and remembering chunks changes nothing
(the report's data, synthetic reviews, random punctuation-heavy text); and it is faster."""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lightning_module import tokenizer as tokenizer_module
from lightning_module.sources import CS5242_DIR, read_cs5242
from lightning_module.tokenizer import Tokenizer, TokenTable, treebank_tokenize

nltk_treebank = pytest.importorskip("nltk.tokenize.treebank")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic_reviews import reviews  # noqa: E402

TREEBANK = nltk_treebank.TreebankWordTokenizer()
needs_cs5242 = pytest.mark.skipif(not (CS5242_DIR / "train.csv").is_file(), reason=f"the report's data is not in {CS5242_DIR}")


def nltk_tokens(text: str, lowercase: bool = True) -> list[str]:
    return TREEBANK.tokenize(text.lower() if lowercase else text)


def block_tokens(texts: list[str], lowercase: bool = True) -> list[list[str]]:
    """Tokens of ``texts`` through :meth:`Tokenizer.encode_many`, in blocks sharing one table."""
    table, tokenizer, out = TokenTable(), Tokenizer(lowercase), []
    for start in range(0, len(texts), 500):
        ids, lengths = tokenizer.encode_many(texts[start:start + 500], table)
        ends = np.cumsum(lengths)
        out += [[table.words[i] for i in ids[end - length:end]] for end, length in zip(ends, lengths)]
    return out


def random_texts(count: int, seed: int) -> list[str]:
    """Short texts of words, punctuation, quotes, brackets, contractions, digits, odd whitespace."""
    pieces = ["a", "Word", "film", "can", "not", "cannot", "gonna", "wanna", "gimme", "lemme", "gotta", "more'n", "d'ye",
              "'t", "is", "'tis", "'twas", "was", "n't", "don't", "it's", "I'm", "they'll", "we've", "o'", "3", "1,000",
              "3:15", "$5", "e-mail", "--", "-", "...", "..", ".", ",", ":", ";", "!", "?", "'", "''", '"', "``", "(",
              ")", "[", "]", "{", "}", "<", ">", "@", "#", "%", "&", "é", "naïve", "ß", "\t", "\u00a0", "\n", "\x1c",
              "s", "S", "m", "d", "ll", "re", "ve", "LL", "N'T", "'s", "'S", "'d", "'m", "'ll", "'re", "'ve", "\x02", "\x03"]
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        parts = [rng.choice(pieces) for _ in range(rng.randint(1, 9))]
        glue = [rng.choice(["", " ", " ", " ", "  "]) for _ in parts]
        text = "".join(part + sep for part, sep in zip(parts, glue))
        texts.append(text if rng.random() < 0.1 else text.strip())
    return texts


def test_the_rules_are_nltks():
    tb = nltk_treebank.TreebankWordTokenizer
    ours = (tokenizer_module.STARTING_QUOTES + tokenizer_module.PUNCTUATION + [tokenizer_module.PARENS_BRACKETS,
            tokenizer_module.DOUBLE_DASHES] + tokenizer_module.ENDING_QUOTES)
    theirs = tb.STARTING_QUOTES + tb.PUNCTUATION + [tb.PARENS_BRACKETS, tb.DOUBLE_DASHES] + tb.ENDING_QUOTES
    assert [(p.pattern, p.flags, s) for p, s in ours] == [(p.pattern, p.flags, s) for p, s in theirs]
    assert [p.pattern for p in tokenizer_module.CONTRACTIONS2 + tokenizer_module.CONTRACTIONS3] == \
        [p.pattern for p in tb.CONTRACTIONS2 + tb.CONTRACTIONS3]


@needs_cs5242
def test_every_cs5242_sentence_gets_nltks_tokens():
    texts = [example.text for example in read_cs5242().examples]
    assert len(texts) == 800
    expected = [nltk_tokens(text) for text in texts]
    tokenizer = Tokenizer()
    assert [tokenizer(text) for text in texts] == expected
    assert block_tokens(texts) == expected


def test_synthetic_reviews_get_nltks_tokens():
    texts = [line.split("\t", 1)[1] for line in reviews(6000, seed=5)]
    for lowercase in (True, False):
        expected = [nltk_tokens(text, lowercase) for text in texts]
        tokenizer = Tokenizer(lowercase)
        assert [tokenizer(text) for text in texts] == expected
        assert block_tokens(texts, lowercase) == expected


@pytest.mark.parametrize("seed", range(4))
def test_random_punctuation_heavy_text_gets_nltks_tokens(seed):
    texts = random_texts(3000, seed)
    for lowercase in (True, False):
        expected = [nltk_tokens(text, lowercase) for text in texts]
        assert [treebank_tokenize(text.lower() if lowercase else text) for text in texts] == expected
        tokenizer = Tokenizer(lowercase)
        assert [tokenizer(text) for text in texts] == expected  # remembered chunks, twice
        assert [tokenizer(text) for text in texts] == expected
        assert block_tokens(texts, lowercase) == expected


def test_tokens_of_known_sentences():
    assert Tokenizer()("I don't LOVE it!") == ["i", "do", "n't", "love", "it", "!"]
    assert Tokenizer(lowercase=False)('"Gonna" see it (again), cannot wait.') == \
        ["``", "Gon", "na", "''", "see", "it", "(", "again", ")", ",", "can", "not", "wait", "."]
    assert Tokenizer()("") == [] and Tokenizer()(" \t ") == []


def test_encode_many_counts_sentences_without_tokens():
    table = TokenTable()
    ids, lengths = Tokenizer().encode_many(["good film", " ", "", "good"], table)
    assert lengths.tolist() == [2, 0, 0, 1] and ids.dtype == np.int32
    assert [table.words[i] for i in ids] == ["good", "film", "good"]


def test_a_block_of_reviews_tokenizes_several_times_faster_than_nltk():
    """20,000 new sentences: every chunk is met for the first time here, so this is the slowest case (the table of
    chunks fills up; on a million reviews most chunks are known and the factor is larger, see bench_data.py)."""
    texts = [line.split("\t", 1)[1] for line in reviews(20_000, seed=9)]
    nltk_seconds, ours_seconds = [], []
    for _ in range(2):  # interleaved rounds, the best of each: a shared machine's load hits both alike
        started = time.perf_counter()
        for text in texts:
            nltk_tokens(text)
        nltk_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        Tokenizer().encode_many(texts, TokenTable())  # a new table: every chunk is new again
        ours_seconds.append(time.perf_counter() - started)
    assert min(ours_seconds) * 2 <= min(nltk_seconds), f"ours {ours_seconds} s, NLTK {nltk_seconds} s"
