"""Data at scale: compact arrays, the preprocessing cache, progress, the bounded vocabulary, batches cut to their
longest row, and one-line errors for what would not fit in memory."""
from __future__ import annotations

import json
import logging
import multiprocessing
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_module import memory, preprocessed, progress
from lightning_module.corpus import TokenizedCorpus, tokenize_examples
from lightning_module.datamodule import SentimentDataModule
from lightning_module.encoder import collate
from lightning_module.errors import DataError, MemoryLimitError
from lightning_module.module import SentimentClassifier
from lightning_module.sources import read_user_data
from lightning_module.tokenizer import Tokenizer
from lightning_module.vocabulary import PAD, UNK, Vocabulary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic_reviews import write_reviews  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "preprocessed"
    monkeypatch.setenv("TORCH_RNN_PREPROCESSED", str(folder))
    return folder


@pytest.fixture(scope="module")
def reviews_file(tmp_path_factory) -> Path:
    return write_reviews(tmp_path_factory.mktemp("reviews") / "reviews.tsv", 30_000, seed=1)


def module(path: Path, **settings) -> SentimentDataModule:
    dm = SentimentDataModule(path=str(path), **settings)
    dm.prepare_data()
    dm.setup()
    return dm


def rows_of(dm: SentimentDataModule, split: str) -> list[list[str]]:
    dataset = dm._datasets[split]
    return [[dm.vocab.itos[i] for i in dataset[row]["tokens"].tolist()] for row in range(len(dataset))]


# ---- compact arrays -------------------------------------------------------------------------------------


def test_the_data_lives_in_flat_int32_arrays(reviews_file, cache):
    dm = module(reviews_file, max_length=20)
    corpus = dm.corpus
    assert corpus.ids.dtype == np.int32 and corpus.offsets.dtype == np.int64 and len(corpus) == 30_000
    assert corpus.offsets[-1] == len(corpus.ids) and 15 < len(corpus.ids) / len(corpus) < 30  # ~22 tokens a row
    train = dm.training_set()
    assert train.ids.dtype == np.int32 and train.ids.nbytes == corpus.ids.nbytes  # one encoded copy for all splits
    tokenizer = Tokenizer()
    texts = [example.text for example in read_user_data(reviews_file).examples]
    for row in (0, 17, 29_999):
        assert [corpus.words[i] for i in corpus.ids[corpus.offsets[row]:corpus.offsets[row + 1]]] == tokenizer(texts[row])
    ids, offsets = train.ragged()
    assert np.diff(offsets).max() <= 20 and len(offsets) == len(train) + 1


# ---- the preprocessing cache ----------------------------------------------------------------------------


def test_a_second_run_loads_the_cache_and_gets_the_same_data(reviews_file, cache, caplog):
    with caplog.at_level(logging.INFO):
        first = module(reviews_file)
    assert "cached the tokenized data set" in caplog.text
    entries = [path for path in cache.iterdir() if path.is_dir()]
    assert len(entries) == 1
    assert sorted(path.name.split("-")[0] if path.name.startswith(("encoded-", "vocabulary-")) else path.name
                  for path in entries[0].iterdir()) == [  # and the split's order, the vocabulary, the ids encoded with it
        "encoded", "ids.npy", "labels.npy", "meta.json", "offsets.npy", "order-30000-seed-42.npy", "vocabulary",
        "words.json"]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        started = time.perf_counter()
        second = module(reviews_file)
        seconds = time.perf_counter() - started
    assert "loaded from the cache" in caplog.text and "30000 labelled row(s) read" in caplog.text  # the read report again
    assert second.vocab == first.vocab and second.label_names == first.label_names
    assert all(np.array_equal(second.splits[name], first.splits[name]) for name in first.splits)
    assert rows_of(second, "val") == rows_of(first, "val")
    assert seconds < 5


def test_the_cache_key_follows_the_content_and_the_settings(tmp_path, cache):
    data = tmp_path / "d.tsv"
    data.write_text("1\tgood film\n0\tbad film\n" * 20, encoding="utf-8")
    module(data)
    module(data, lowercase=False)
    module(data, limit=30)
    module(data, batch_size=4, min_freq=1)  # not a setting of the tokenized data: the same entry
    assert len([path for path in cache.iterdir() if path.is_dir()]) == 3
    data.write_text("1\tgood film\n0\tdull film\n" * 20, encoding="utf-8")  # same size, other content
    dm = module(data, min_freq=1)
    assert "dull" in dm.vocab and len([path for path in cache.iterdir() if path.is_dir()]) == 4


def test_the_cache_holds_no_pickles_and_a_damaged_entry_is_built_again(tmp_path, cache, caplog):
    data = tmp_path / "d.tsv"
    data.write_text("1\tgood film\n0\tbad film\n" * 20, encoding="utf-8")
    first = module(data)
    entry = next(path for path in cache.iterdir() if path.is_dir())
    for name in ("ids", "offsets", "labels"):
        assert np.load(entry / f"{name}.npy", allow_pickle=False).dtype != object
    json.loads((entry / "words.json").read_text(encoding="utf-8"))
    np.save(entry / "ids.npy", np.array([object()], dtype=object), allow_pickle=True)  # a pickle is refused
    with caplog.at_level(logging.WARNING):
        second = module(data)
    assert "cannot be read" in caplog.text and second.vocab == first.vocab
    assert np.load(entry / "ids.npy", allow_pickle=False).dtype == np.int32


def _build_in_a_process(root: str, marker: str) -> None:
    def build() -> TokenizedCorpus:
        with open(marker, "a", encoding="utf-8") as file:
            file.write("built\n")
        time.sleep(1.0)
        return TokenizedCorpus(["a"], np.zeros(1, np.int32), np.array([0, 1]), np.zeros(1, np.int64), ["x"])

    preprocessed.load_or_build(Path(root), "key", "data", build)


def test_processes_starting_together_build_the_cache_once(tmp_path):
    marker = tmp_path / "builds.txt"
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_build_in_a_process, args=(str(tmp_path / "root"), str(marker)))
                 for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    assert marker.read_text(encoding="utf-8") == "built\n"


def test_no_cache_with_cache_preprocessed_false(tmp_path, cache):
    data = tmp_path / "d.tsv"
    data.write_text("1\tgood film\n0\tbad film\n" * 20, encoding="utf-8")
    module(data, cache_preprocessed=False)
    assert not cache.exists()


# ---- progress -------------------------------------------------------------------------------------------


def test_each_stage_of_loading_shows_rows_per_second_and_an_eta(reviews_file, cache, caplog, monkeypatch):
    monkeypatch.setattr(progress, "MIN_ROWS", 1000)
    monkeypatch.setattr("lightning_module.corpus.BLOCK_ROWS", 1000)
    monkeypatch.setattr("lightning_module.corpus.SCAN_ROWS", 1000)
    monkeypatch.setattr("lightning_module.sources._PROGRESS_LINES", 1000)
    with caplog.at_level(logging.INFO):
        module(reviews_file)
    for stage in ("reading reviews.tsv", "tokenizing", "vocabulary", "encoding"):
        lines = [line for line in caplog.text.splitlines() if f"{stage}: " in line]
        assert any("/s, ETA " in line for line in lines), stage
        assert any(" in " in line and "/s)" in line for line in lines), stage  # the stage's summary


def test_small_data_loads_quietly(tmp_path, cache, caplog):
    data = tmp_path / "d.tsv"
    data.write_text("1\tgood film\n0\tbad film\n" * 20, encoding="utf-8")
    with caplog.at_level(logging.INFO):
        module(data)
    assert "ETA" not in caplog.text


# ---- the vocabulary -------------------------------------------------------------------------------------


def test_from_counts_is_build():
    token_lists = [["b", "a", "c", "a", PAD], ["c", "a", "d", UNK, "e", "e"], ["b"]]
    counts = Counter(token for tokens in token_lists for token in tokens)
    for min_freq, max_size in [(1, None), (2, None), (1, 2), (1, 4), (3, 1)]:
        assert Vocabulary.from_counts(list(counts), list(counts.values()), min_freq, max_size) == \
            Vocabulary.build(token_lists, min_freq, max_size)


def test_the_vocabulary_is_bounded_by_default_and_says_what_it_left_out(reviews_file, cache, caplog):
    dm = SentimentDataModule(path=str(reviews_file))
    assert (dm.hparams.min_freq, dm.hparams.max_size) == (2, 50_000)
    with caplog.at_level(logging.INFO):
        dm = module(reviews_file, max_size=1000)
    assert len(dm.vocab) == 1002
    train = dm.corpus.ids[np.concatenate([np.arange(dm.corpus.offsets[r], dm.corpus.offsets[r + 1])
                                          for r in dm.splits["train"]])]
    counts = Counter(dm.corpus.words[i] for i in train.tolist())
    unknown = sum(count for word, count in counts.items() if word not in dm.vocab)
    left_out = sum(word not in dm.vocab for word in counts)
    line = next(line for line in caplog.text.splitlines() if "left out" in line)
    assert f"{left_out:,} words left out" in line and f"{100 * unknown / len(train):.2f}% of its {len(train):,} tokens" in line


# ---- batches ----------------------------------------------------------------------------------------------


def test_a_batch_is_cut_to_its_longest_row_and_padding_steps_change_nothing(tmp_path, cache):
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{i % 2}\t{'good ' * (1 + i % 5)}film\n" for i in range(40)), encoding="utf-8")
    dm = module(data, max_length=50, batch_size=8, val_fraction=0, test_fraction=0, min_freq=1)
    for batch in dm.train_dataloader():
        lengths = batch["mask"].sum(1)
        assert batch["tokens"].shape[1] == int(lengths.max()) <= 6
        assert torch.equal(batch["mask"], (batch["tokens"] != 0).float())
    model = SentimentClassifier(vocab_size=dm.vocab_size, hidden_size=8, fc_size=8, embedding_dim=4,
                                bidirectional=True).eval()
    padded = {name: torch.nn.functional.pad(batch[name], (0, 44)) for name in ("tokens", "mask")}
    with torch.no_grad():
        torch.testing.assert_close(model(batch["tokens"], batch["mask"]), model(padded["tokens"], padded["mask"]))


def test_collate_pads_to_the_longest_row():
    batch = collate([{"tokens": torch.tensor([3, 4]), "labels": torch.tensor(1)},
                     {"tokens": torch.tensor([5]), "labels": torch.tensor(0)}])
    assert batch["tokens"].tolist() == [[3, 4], [5, 0]] and batch["mask"].tolist() == [[1, 1], [1, 0]]
    assert batch["labels"].tolist() == [1, 0]


# ---- what would not fit in memory -------------------------------------------------------------------------


def test_a_vocabulary_too_big_for_memory_is_one_line_before_allocating():
    started = time.perf_counter()
    with pytest.raises(MemoryLimitError, match=r"a vocabulary of 4,000,000,000 words with embedding input of width "
                                               r"100 .* needs about [\d,.]+ GB of memory but [\d,.]+ GB are "
                                               r"available: bound the vocabulary \(--data.max_size"):
        SentimentClassifier(vocab_size=4_000_000_000)
    assert time.perf_counter() - started < 1


def test_a_file_too_big_to_load_is_one_line_before_reading(tmp_path, cache, monkeypatch):
    data = tmp_path / "d.tsv"
    data.write_text("1\tgood film\n0\tbad film\n" * 20, encoding="utf-8")
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    monkeypatch.setattr("lightning_module.sources.read_user_data", lambda *args: pytest.fail("read anyway"))
    with pytest.raises(MemoryLimitError, match=r"reading and tokenizing .*d.tsv \(0 MB\) needs about 0.0 GB of "
                                               r"memory but 0.0 GB are available: use a smaller file"):
        module(data)
    assert isinstance(MemoryLimitError("x"), DataError)  # the command line prints it as one line


def test_worker_processes_tokenize_to_the_same_corpus(reviews_file, monkeypatch):
    monkeypatch.setattr("lightning_module.corpus.PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr("lightning_module.corpus.BLOCK_ROWS", 700)
    data = read_user_data(reviews_file)
    examples = data.examples[:5000]
    one = tokenize_examples(examples, data.label_names, Tokenizer(), False, "reviews", workers=1)
    two = tokenize_examples(examples, data.label_names, Tokenizer(), False, "reviews", workers=2)
    assert one.words == two.words and np.array_equal(one.ids, two.ids) and np.array_equal(one.offsets, two.offsets)
    assert np.array_equal(one.labels, two.labels)


def test_loading_memory_grows_with_the_tokens_not_rows_times_vocabulary(reviews_file, tmp_path, cache, monkeypatch):
    """Peak Python and numpy allocations while reviews are read, tokenized, counted and encoded: 30,000 rows take
    at most LOAD_BYTES_PER_BYTE more per byte of file than 10,000 (the bound the memory check assumes; a block of
    sentences being tokenized is a fixed part), far below a rows x vocabulary matrix."""
    import tracemalloc

    from lightning_module.datamodule import LOAD_BYTES_PER_BYTE

    monkeypatch.setattr("lightning_module.corpus.BLOCK_ROWS", 5000)  # the same block in both
    small = tmp_path / "small.tsv"
    small.write_text("".join(reviews_file.read_text(encoding="utf-8").splitlines(keepends=True)[:10_000]),
                     encoding="utf-8")
    peaks = []
    for path in (small, reviews_file):
        tracemalloc.start()
        try:
            dm = module(path, cache_preprocessed=False)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] - peaks[0] < LOAD_BYTES_PER_BYTE * (reviews_file.stat().st_size - small.stat().st_size)
    assert peaks[1] < len(dm.splits["train"]) * dm.vocab_size * 4 / 20  # a dense float32 matrix: 20x more
