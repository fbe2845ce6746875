"""The data sources: user files (csv, tsv, sst2, jsonl, IMDB folders) with bad rows named by file and line,
the VADER corpora (read, and downloaded with pip), and the report's cs5242 data."""
from __future__ import annotations

import logging
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from lightning_module import sources, vader
from lightning_module.datamodule import SentimentDataModule
from lightning_module.errors import DataError, DownloadError
from lightning_module.sources import read_cs5242, read_user_data
from lightning_module.tokenizer import Tokenizer
from lightning_module.vader import read_vader
from lightning_module.vocabulary import Vocabulary

CS5242 = sources.CS5242_DIR
needs_cs5242 = pytest.mark.skipif(not (CS5242 / "train.csv").is_file(), reason=f"the report's data is not in {CS5242}")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def labels_and_texts(data: sources.LabeledData) -> list[tuple[int, str]]:
    return [(example.label, example.text) for example in data.examples]


@pytest.mark.parametrize("name, text", [
    ("tab.tsv", "1\tgood film\n0\tbad film\n"),
    ("comma.csv", "1,good film\n0,bad film\n"),
    ("header.csv", "text,label\ngood film,1\nbad film,0\n"),
    ("sst2.tsv", "sentence\tlabel\ngood film\t1\nbad film\t0\n"),
    ("extra.csv", "id,Sentiment,Review\n7,1,good film\n8,0,bad film\n"),
    ("text_first.tsv", "good film\t1\nbad film\t0\n"),
    ("words.csv", "positive,good film\nnegative,bad film\n"),
    ("data.jsonl", '{"text": "good film", "label": 1}\n\n{"text": "bad film", "label": 0}\n'),
    ("strings.jsonl", '{"sentence": "good film", "sentiment": "pos"}\n{"sentence": "bad film", "sentiment": "neg"}\n'),
])
def test_user_formats_are_detected(tmp_path, name, text):
    data = read_user_data(write(tmp_path / name, text))
    assert labels_and_texts(data) == [(1, "good film"), (0, "bad film")]
    assert data.label_names == ["negative", "positive"]


def test_explicit_formats(tmp_path):
    assert len(read_user_data(write(tmp_path / "a.txt", "sentence\tlabel\nok\t1\n"), format="sst2").examples) == 1
    assert len(read_user_data(write(tmp_path / "b.txt", "1,ok\n"), format="csv").examples) == 1
    with pytest.raises(DataError, match="a.txt:1: an SST-2 file starts with the header"):
        read_user_data(write(tmp_path / "a.txt", "text\tlabel\nok\t1\n"), format="sst2")


def test_quoted_field_spans_lines_and_line_numbers_follow(tmp_path):
    path = write(tmp_path / "train.csv", '1\t"first line\nsecond line"\n0\tthird\n1\t\n')
    with pytest.raises(DataError, match=r"train.csv:4: empty text"):
        read_user_data(path)
    data = read_user_data(path, skip_bad_rows=True)
    assert labels_and_texts(data) == [(1, "first line\nsecond line"), (0, "third")]
    assert [example.source for example in data.examples] == [f"{path}:1", f"{path}:3"]


def test_string_and_multiclass_labels(tmp_path):
    data = read_user_data(write(tmp_path / "a.csv", "label,text\nsport,x\nart,y\nnews,z\n"))
    assert data.label_names == ["art", "news", "sport"]
    assert [e.label for e in data.examples] == [2, 0, 1]
    data = read_user_data(write(tmp_path / "b.csv", "label,text\n0,x\n2,y\n1,z\n"))
    assert data.label_names == ["0", "1", "2"]
    data = read_user_data(write(tmp_path / "c.csv", "label,text\npos,x\nneutral,y\nNEG,z\n"))
    assert data.label_names == ["negative", "neutral", "positive"]
    assert [e.label for e in data.examples] == [2, 1, 0]


def test_imdb_folder(tmp_path):
    for label, texts in (("pos", ["great", "fine"]), ("neg", ["awful"])):
        (tmp_path / label).mkdir()
        for i, text in enumerate(texts):
            write(tmp_path / label / f"{i}.txt", text)
    data = read_user_data(tmp_path)
    assert sorted(labels_and_texts(data)) == [(0, "awful"), (1, "fine"), (1, "great")]
    with pytest.raises(DataError, match="pos/ and neg/"):
        read_user_data(tmp_path / "pos", format="imdb")


@pytest.mark.parametrize("name, text, problem", [
    ("bad.csv", "label,text\n1,good\npos,bad\n0,ok\n", r"bad.csv:3: invalid label 'pos'"),
    ("bad.csv", "label,text\npos,good\npostive,bad\nneg,ok\n", r"bad.csv:3: unknown label 'postive'"),
    ("bad.csv", "label,text\n1,good\n,bad\n", r"bad.csv:3: missing label"),
    ("bad.tsv", "1\tgood\n0\tbad\n1\tan\textra field\n", r"bad.tsv:3: expected 2 tab-separated fields, found 3"),
    ("bad.csv", "label,text\n1,good\n0,   \n", r"bad.csv:3: empty text"),
    ("bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0\n',
     r"bad.jsonl:2: unreadable row: invalid JSON"),
    ("bad.jsonl", '{"text": "a", "label": 1}\n{"txt": "b", "label": 0}\n',
     r"bad.jsonl:2: no text key: found keys \['txt', 'label'\]"),
    ("bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0.5}\n', r"bad.jsonl:2: invalid label 0.5"),
    ("bad.csv", "label,text\n1," + "x" * 140_000 + "\n0,fine\n", r"bad.csv:2: unreadable row: field larger"),
])
def test_bad_rows_name_file_and_line(tmp_path, caplog, name, text, problem):
    path = write(tmp_path / name, text)
    with pytest.raises(DataError, match=problem):
        read_user_data(path)
    with caplog.at_level(logging.WARNING):
        data = read_user_data(path, skip_bad_rows=True)
    assert len(data.examples) >= 1
    assert "skipped 1 bad row(s)" in caplog.text and problem.split(":", 1)[0] in caplog.text


def test_wrong_columns_are_named(tmp_path):
    with pytest.raises(DataError, match=r"w.csv:1: the header has no text column: found columns \['label', 'body'\]"):
        read_user_data(write(tmp_path / "w.csv", "label,body\n1,x\n"))
    with pytest.raises(DataError, match=r"three.csv: without a header row .* 2 columns .* most rows have 3"):
        read_user_data(write(tmp_path / "three.csv", "1,a,b\n0,c,d\n"))


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file or folder not found"):
        read_user_data(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="empty.csv: the data set is empty"):
        read_user_data(write(tmp_path / "empty.csv", "\n\n"))
    with pytest.raises(DataError, match=r"only.csv: the data set is empty.*all 1 rows were bad"):
        read_user_data(write(tmp_path / "only.csv", "label,text\n1,\n"), skip_bad_rows=True)
    with pytest.raises(DataError, match=r"latin.csv:2: not UTF-8"):
        (tmp_path / "latin.csv").write_bytes(b"1,ok\n0,caf\xe9\n")
        read_user_data(tmp_path / "latin.csv")


VADER_SAMPLE = "1\t2.5\tGreat fun\r\n2\t-1.5\tDull\r\n3\t0.0\tA film\r\n4\t0.5\tFine\r\n5\t-3.6\tAwful\r\n"


def test_read_vader_binary_drops_and_reports_neutral(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        data = read_vader(write(tmp_path / "v.txt", VADER_SAMPLE))
    assert labels_and_texts(data) == [(1, "Great fun"), (0, "Dull"), (1, "Fine"), (0, "Awful")]
    assert "dropped 1 neutral" in caplog.text


def test_read_vader_fine_grained_rounds_half_away_from_zero(tmp_path):
    data = read_vader(write(tmp_path / "v.txt", VADER_SAMPLE), fine_grained=True)
    assert data.label_names == ["-4", "-3", "-2", "-1", "0", "1", "2", "3", "4"]
    assert [data.label_names[e.label] for e in data.examples] == ["3", "-2", "0", "1", "-4"]


def test_read_vader_bad_line(tmp_path):
    with pytest.raises(DataError, match=r"v.txt:2: the rating 'x' is not a number"):
        read_vader(write(tmp_path / "v.txt", "1\t1.0\tok\n2\tx\tbad\n"))


@needs_cs5242
def test_cs5242_rows_labels_and_dictionary():
    data = read_cs5242()
    labels = [e.label for e in data.examples]
    assert len(labels) == 800 and sum(labels) == 472 and all(labels[:100])
    vocab = Vocabulary.from_dictionary_file(CS5242 / "dictionary.csv")
    assert len(vocab) == 875
    words = (CS5242 / "dictionary.csv").read_text(encoding="utf-8").split("\n")
    tokens = Tokenizer()(data.examples[0].text)
    assert tokens[:3] == ["to", "night", ":"]
    assert vocab.encode(tokens) == [words.index(token) + 1 for token in tokens]


@needs_cs5242
def test_cs5242_datamodule_is_the_reports_batch(caplog):
    dm = SentimentDataModule(dataset="cs5242", limit=100, val_fraction=0, test_fraction=0,
                             batch_size=100, shuffle=False)
    with caplog.at_level(logging.WARNING):
        assert (dm.vocab_size, dm.num_classes) == (875, 2)
    assert "not in the dictionary" not in caplog.text  # the first 100 rows have no unknown words
    batch = next(iter(dm.train_dataloader()))
    longest = int(batch["mask"].sum(1).max())  # the batch is cut to its longest sentence (at most max_length)
    assert batch["tokens"].shape == (100, longest) and longest <= 50 and bool(batch["labels"].all())
    assert len(dm.val_dataloader()) == 0 and len(dm.test_dataloader()) == 0


@needs_cs5242
def test_cs5242_unknown_words_are_reported(caplog):
    with caplog.at_level(logging.WARNING):
        SentimentDataModule(dataset="cs5242").setup()
    assert "are not in the dictionary; they map to index 0" in caplog.text


def test_cs5242_missing_folder_says_where(tmp_path):
    with pytest.raises(DataError, match=f"not in {tmp_path}.*put train.csv and dictionary.csv"):
        read_cs5242(tmp_path)


@pytest.mark.network
def test_vader_corpus_download_and_cache(tmp_path, monkeypatch, caplog):
    try:
        path = vader.fetch_vader_corpus("rotten_tomatoes", tmp_path)
    except DownloadError as error:
        pytest.skip(f"pip cannot reach a package index: {error}")
    assert path == tmp_path / "vader" / "movieReviewSnippets_GroundTruth.txt"
    assert len(path.read_text(encoding="utf-8").split("\n")) == 10605
    with caplog.at_level(logging.WARNING):
        data = read_vader(path)
    assert Counter(e.label for e in data.examples) == {1: 5242, 0: 5326}
    assert "dropped 37 neutral" in caplog.text
    assert len(read_vader(path, fine_grained=True).examples) == 10605

    def no_pip(*args, **kwargs):
        raise AssertionError("pip ran again although the corpus is cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert vader.fetch_vader_corpus("rotten_tomatoes", tmp_path) == path
    dm = SentimentDataModule(cache_dir=str(tmp_path), dataset="tweets")
    assert dm.num_classes == 2 and len(dm.splits["train"]) == 4196 - 2 * round(0.1 * 4196)


def test_a_quote_left_open_is_reported_and_the_rows_it_swallowed_are_read(tmp_path, caplog):
    rows = ["label,text"] + [f"{i % 2},sentence number {i} is {'good' if i % 2 else 'bad'}" for i in range(40)]
    rows[12] = '1,"this movie is great'  # line 13: the quote is never closed
    path = tmp_path / "open_quote.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}:13: a quote opened on this line is not closed until line 41"):
        read_user_data(path)
    with caplog.at_level(logging.INFO):
        data = read_user_data(path, skip_bad_rows=True)
    assert len(data.examples) == 39  # all 40 rows but the one with the open quote
    assert data.examples[11].text == "sentence number 12 is bad" and data.examples[11].source == f"{path}:14"
    assert f"{path}: 39 labelled row(s) read from 41 line(s); 1 bad row(s) skipped (at 13)" in caplog.text


def test_a_quoted_text_over_a_few_lines_is_one_row(tmp_path):
    path = tmp_path / "paragraphs.csv"
    path.write_text('label,text\n1,"a fine film.\n\nthe second paragraph\nand a third line"\n0,a dull one\n',
                    encoding="utf-8")
    data = read_user_data(path)
    assert [example.text for example in data.examples] == ["a fine film.\n\nthe second paragraph\nand a third line",
                                                           "a dull one"]


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "imdb"])
def test_every_format_says_how_many_rows_were_read_and_skipped(tmp_path, caplog, fmt):
    if fmt == "tsv":
        path = tmp_path / "d.tsv"
        path.write_text("1\tgood film\n0\tbad film\n1\t\n0\ta dull film\n", encoding="utf-8")
        out_of, at = "4 line(s)", " (at 3)"
    elif fmt == "jsonl":
        path = tmp_path / "d.jsonl"
        path.write_text('{"label": 1, "text": "good"}\n{"label": 0, "text": "bad"}\n{"label": 1}\n', encoding="utf-8")
        out_of, at = "3 line(s)", " (at 3)"
    else:
        path = tmp_path / "imdb"
        for name, texts in (("pos", ["great", "fine"]), ("neg", ["awful", ""])):
            (path / name).mkdir(parents=True)
            for i, text in enumerate(texts):
                (path / name / f"{i}.txt").write_text(text, encoding="utf-8")
        out_of, at = "4 .txt file(s)", f" (at {path / 'neg' / '1.txt'}:1)"
    with caplog.at_level(logging.INFO):
        data = read_user_data(path, skip_bad_rows=True)
    assert f"{path}: {len(data.examples)} labelled row(s) read from {out_of}; 1 bad row(s) skipped{at}" in caplog.text
