"""The Arrow chunk splitting (lightning_module.chunking) gives the same tokens as the Python one and as NLTK, and the
tokenizer is at least 10x faster than NLTK's Treebank tokenizer on a million reviews (slow)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lightning_module import chunking
from lightning_module.tokenizer import Tokenizer, TokenTable, treebank_tokenize

nltk_treebank = pytest.importorskip("nltk.tokenize.treebank")
pytest.importorskip("pyarrow")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic_reviews import reviews  # noqa: E402
from test_tokenizer import block_tokens, nltk_tokens, random_texts  # noqa: E402


@pytest.mark.parametrize("arrow", [True, False])
def test_both_splitters_give_nltks_tokens(monkeypatch, arrow):
    if not arrow:
        monkeypatch.setattr(chunking, "_arrow", [None, None])
    texts = random_texts(3000, seed=5) + [line.split("\t", 1)[1] for line in reviews(3000, seed=4)]
    texts += ["Cannot", "gonna.", "Good film.", "a  b", "(great)!", "3,000 people", "'tis good,", "so... bad!"]
    assert block_tokens(texts) == [nltk_tokens(text) for text in texts]
    assert block_tokens(texts, lowercase=False) == [nltk_tokens(text, lowercase=False) for text in texts]


def test_text_that_utf8_cannot_hold_falls_back_to_python():
    texts = ["caf\ud800 is good.", "fine film"]  # a lone surrogate: Arrow refuses it, Python splits it
    table = TokenTable()
    ids, lengths = Tokenizer().encode_many(texts, table)
    assert lengths.tolist() == [4, 2]
    assert [table.words[i] for i in ids] == treebank_tokenize(texts[0]) + ["fine", "film"]


def test_arrow_numbers_every_chunk_by_its_place():
    seen: list[list[str]] = []

    def numbers_of(keys: list[str]) -> np.ndarray:
        seen.append(keys)
        return np.arange(len(keys), dtype=np.int64) + 100 * len(seen)

    numbers, counts = chunking.chunk_numbers(["a b a", "b", "a  c"], numbers_of, "<", ">")
    assert counts.tolist() == [3, 1, 3]
    assert seen == [["b", ""], ["<a"], ["a>", "c>"], ["<b>"]]
    assert numbers.tolist() == [200, 100, 300, 400, 200, 101, 301]


@pytest.mark.slow
def test_a_million_reviews_tokenize_ten_times_faster_than_nltk(tmp_path):
    from bench_tokenizer import compare, read_texts
    from synthetic_reviews import write_reviews

    data = tmp_path / "reviews.tsv"
    write_reviews(data, 1_000_000)
    result = compare(read_texts(data, 1_000_000), nltk_every=50)
    assert result["same_tokens"]
    assert result["ours_ratio"] >= 10, result
