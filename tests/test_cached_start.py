"""What a cached run skips on its way to the first step: reading the data file again to find it unchanged (its
digest is remembered by size, time and inode) and counting the naive-Bayes ratios again (kept in the entry)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_module import naive_bayes, preprocessed
from lightning_module.datamodule import SentimentDataModule
from lightning_module.encoder import EncodedDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic_reviews import write_reviews  # noqa: E402


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_files_digest_is_remembered_until_it_changes(tmp_path, monkeypatch):
    data, root = tmp_path / "data.tsv", tmp_path / "cache"
    data.write_text("1\tgood film\n0\tbad film\n", encoding="utf-8")
    _age(data, 60)
    key = preprocessed.cache_key([data], {"a": 1}, root)
    assert key == preprocessed.cache_key([data], {"a": 1})  # the same key with or without the memo
    assert len(list(root.glob("digest-*.json"))) == 1
    reads = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: reads.append(self) or real_open(self, *a, **k))
    assert preprocessed.cache_key([data], {"a": 1}, root) == key and data not in reads  # not read again
    assert preprocessed.cache_key([data], {"a": 2}, root) != key  # the settings still count
    data.write_text("1\tgood film\n0\tbad movi\n", encoding="utf-8")  # the same size, a new time
    _age(data, 30)
    assert preprocessed.cache_key([data], {"a": 1}, root) != key and data in reads


def test_a_file_written_just_now_is_not_remembered(tmp_path):
    data, root = tmp_path / "data.tsv", tmp_path / "cache"
    data.write_text("1\tgood film\n", encoding="utf-8")  # within the file system's timestamp resolution
    preprocessed.cache_key([data], {}, root)
    assert not list(root.glob("digest-*.json"))


def test_the_naive_bayes_ratios_are_kept_in_the_cache_entry(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, 200)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(1, 30, offsets[-1]).astype(np.int32)
    labels = torch.from_numpy(rng.integers(0, 2, 200))
    train = EncodedDataset(ids, offsets, np.arange(0, 200, 2), labels[::2], max_length=6)
    words = ["<pad>", "<unk>"] + [f"w{i}" for i in range(28)]
    entry = tmp_path / "entry"
    entry.mkdir()
    fresh = naive_bayes.training_split_ratios(train, words, 30, 2, entry)
    ragged_ids, ragged_offsets = train.ragged()
    expected = naive_bayes.log_count_ratios(ragged_ids, ragged_offsets, train.labels, 30, 2)
    torch.testing.assert_close(fresh, expected)
    assert len(list(entry.glob("naive-bayes-*.npy"))) == 1
    monkeypatch.setattr(naive_bayes, "log_count_ratios", lambda *args, **kwargs: pytest.fail("counted again"))
    torch.testing.assert_close(naive_bayes.training_split_ratios(train, words, 30, 2, entry), expected)
    monkeypatch.undo()
    naive_bayes.training_split_ratios(train, words[:-1] + ["other"], 30, 2, entry)  # another vocabulary
    shorter = EncodedDataset(ids, offsets, np.arange(0, 200, 2), labels[::2], max_length=3)
    naive_bayes.training_split_ratios(shorter, words, 30, 2, entry)  # another max_length
    assert len(list(entry.glob("naive-bayes-*.npy"))) == 3
    assert naive_bayes.training_split_ratios(train, words, 30, 2, None).shape == (30, 2)  # no entry: counted


def test_a_cached_fit_reads_its_ratios(tmp_path, monkeypatch):
    from lightning_module.network import start_embedding

    monkeypatch.setenv("TORCH_RNN_PREPROCESSED", str(tmp_path / "cache"))
    data = write_reviews(tmp_path / "reviews.tsv", 2000, seed=3)
    weights = []
    for _ in range(2):
        dm = SentimentDataModule(path=str(data))
        dm.prepare_data()
        dm.setup()
        embedding = torch.nn.Embedding(dm.vocab_size, 12)
        start_embedding(embedding, dm, "embedding", "naive_bayes", naive_bayes_dims=4, naive_bayes_scale=1.0,
                        num_classes=dm.num_classes)
        weights.append(embedding.weight[:, :4].detach().clone())
        assert len(list(dm.cache_entry.glob("naive-bayes-*.npy"))) == 1
        monkeypatch.setattr(naive_bayes, "log_count_ratios", lambda *a, **k: pytest.fail("counted again"))
    torch.testing.assert_close(weights[0], weights[1])


def test_a_cached_run_reads_its_vocabulary_and_encoded_ids(tmp_path, monkeypatch, caplog):
    import logging

    monkeypatch.setenv("TORCH_RNN_PREPROCESSED", str(tmp_path / "cache"))
    data = write_reviews(tmp_path / "reviews.tsv", 3000, seed=4)
    first = SentimentDataModule(path=str(data), max_size=500)
    first.prepare_data()
    first.setup()
    entry = first.cache_entry
    assert len(list(entry.glob("vocabulary-*.json"))) == 1 and len(list(entry.glob("encoded-*.npy"))) == 1
    monkeypatch.setattr(SentimentDataModule, "_build_vocabulary", lambda self: pytest.fail("counted again"))
    with caplog.at_level(logging.INFO):
        second = SentimentDataModule(path=str(data), max_size=500)
        second.prepare_data()
        second.setup()
    assert "left out" in caplog.text  # the vocabulary's report, logged again
    assert second.vocab == first.vocab
    for name in first.splits:
        a, b = first._datasets[name], second._datasets[name]
        assert all(torch.equal(a[i]["tokens"], b[i]["tokens"]) for i in range(0, len(a), 7))
    assert isinstance(second._datasets["train"].ids, np.memmap)
    monkeypatch.undo()
    monkeypatch.setenv("TORCH_RNN_PREPROCESSED", str(tmp_path / "cache"))
    other = SentimentDataModule(path=str(data), max_size=400)  # another vocabulary: built and kept beside
    other.prepare_data()
    other.setup()
    assert len(other.vocab) == 402 and len(list(entry.glob("vocabulary-*.json"))) == 2
    assert len(list(entry.glob("encoded-*.npy"))) == 2


def test_a_built_extension_loads_without_cpp_extension(tmp_path):
    """The C++ loops' library is recorded after a build and loaded directly later (no setuptools, no ninja run),
    unless the file has changed since."""
    import json
    import subprocess

    from torch_rnn import native

    if native.ops() is None:
        pytest.skip("the C++ loops are not available here")
    script = ("import sys, torch_rnn.native as n; assert n.ops() is not None; "
              "print('torch.utils.cpp_extension' in sys.modules)")
    env = {**os.environ, "TORCH_RNN_CACHE": str(tmp_path)}

    def run() -> str:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                              cwd=Path(__file__).resolve().parents[1])
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run() == "True"  # checked with cpp_extension, then recorded
    stamps = list((tmp_path / "native").glob("*.json"))
    assert len(stamps) == 1
    assert run() == "False"  # loaded from the record
    record = json.loads(stamps[0].read_text())
    record["stat"][1] += 1  # the library changed since: checked again (and recorded again)
    stamps[0].write_text(json.dumps(record))
    assert run() == "True" and run() == "False"
