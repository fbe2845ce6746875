"""Where labelled sentences come from: user files and the original report's data (the VADER corpora:
:mod:`lightning_module.vader`).

Every reader returns a :class:`LabeledData`: the examples in file order (each remembers its ``file:line``
for error messages) and the class names. Bad rows raise :class:`DataError` naming ``file:line``, or, with
``skip_bad_rows=True``, are skipped and reported in a warning; nothing is dropped without a word.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from pathlib import Path
import typing
from typing import Literal, Optional

from lightning_module.errors import BadRows, DataError
from lightning_module.labels import label_examples
from lightning_module.progress import Progress
from lightning_module.records import (Example, LabeledData, log_read_summary, read_text, require_examples,
                                      text_lines)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------------
# User files: delimited (csv/tsv/sst2), JSON Lines, IMDB-style folders
# --------------------------------------------------------------------------------------------------------

#: The formats of a user's data file (``data.format``).
Format = Literal["csv", "tsv", "sst2", "jsonl", "imdb"]
#: The formats ``read_user_data`` takes; None detects the format.
FORMATS = (None, *typing.get_args(Format))
#: Column names (case-insensitive) recognised in a header row or as JSON keys.
LABEL_COLUMNS = ("label", "labels", "sentiment", "polarity", "target", "class", "rating")
TEXT_COLUMNS = ("text", "sentence", "review", "content", "tweet", "document", "comment", "phrase", "snippet")


def read_user_data(
    path: str | Path, format: Optional[str] = None, skip_bad_rows: bool = False
) -> LabeledData:
    """Read a labelled data set from a file or folder.

    Formats (``format=None`` detects it: a folder is ``imdb``, ``.jsonl``/``.json`` or a first character
    ``{`` is ``jsonl``, anything else is delimited, tab-separated if the first line has a tab, else comma):

    - ``csv`` / ``tsv``: comma / tab separated, label and text columns, quoted fields may span lines.
      With a header row the columns are found by name (label/sentiment/polarity/target/... and
      text/sentence/review/...; other columns are ignored); without one there must be exactly two columns
      and the label column is the one whose values look like short labels.
    - ``sst2``: tab separated with the header ``sentence<tab>label`` (GLUE's SST-2 files).
    - ``jsonl``: one JSON object per line with a text and a label key (same names as above).
    - ``imdb``: a folder with ``pos/`` and ``neg/`` subfolders of ``.txt`` files (one review each).

    Labels may be integers (0/1 are named negative/positive), sentiment words (pos/neg/positive/negative/
    neutral) or any short class names (sorted into classes).
    """
    path = Path(path)
    if format not in FORMATS:
        raise DataError(f"unknown data format {format!r}; choose one of {', '.join(map(str, FORMATS))}")
    if not path.exists():
        raise DataError(f"{path}: file or folder not found")
    bad = BadRows(skip_bad_rows)
    if format == "imdb" or (format is None and path.is_dir()):
        return _read_imdb(path, bad)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, but format {format!r} reads a file")
    text = read_text(path)
    if format is None:
        format = _detect_format(path, text)
    if format == "jsonl":
        data = _read_jsonl(path, text, bad)
    else:
        delimiter = "," if format == "csv" else "\t"
        data = _read_delimited(path, text, delimiter, bad, require_sst2_header=format == "sst2")
    log_read_summary(path, len(data.examples), f"{len(text_lines(text))} line(s)", bad)
    return data


def _detect_format(path: Path, text: str) -> str:
    first = next((line for line in text_lines(text) if line.strip()), "")
    if path.suffix.lower() in (".jsonl", ".json") or first.lstrip().startswith("{"):
        return "jsonl"
    return "tsv" if "\t" in first else "csv"


#: Lines read between two updates of the reading progress.
_PROGRESS_LINES = 50_000
#: A quoted field may span lines (a review with paragraphs), but one that runs over this many lines, or over
#: two lines or more that look like rows of their own (a label, then the delimiter), is a quote left open.
MAX_FIELD_LINES = 100


def _read_records(path: Path, text: str, delimiter: str, bad: BadRows,
                  open_quotes_are_bad: bool = True) -> list[tuple[int, list[str]]]:
    """CSV records with the line each starts on; blank lines are skipped (they hold no row).

    A record whose quoted field swallows what look like further rows (a quote left open) is reported at the
    line it starts on; skipped, reading resumes on the next line, so the rows it swallowed are read after all.
    ``open_quotes_are_bad=False`` reads such a record as the csv module does (the report's ``train.csv``).
    """
    lines = text.split("\n")
    with Progress(f"reading {path.name}", len(lines), "lines") as progress:
        return _read_records_with(path, text, lines, delimiter, bad, open_quotes_are_bad, progress)


def _read_records_with(path: Path, text: str, lines: list[str], delimiter: str, bad: BadRows, open_quotes_are_bad: bool,
                       progress: Progress) -> list[tuple[int, list[str]]]:
    records: list[tuple[int, list[str]]] = []
    first_line = 1  # the file line the reader's line 1 is
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    next_line = 1
    while True:
        start = next_line
        if start - progress.done > _PROGRESS_LINES:
            progress.update(start - 1 - progress.done)
        try:
            row = next(reader)
        except StopIteration:
            progress.update(len(lines) - progress.done)
            return records
        except csv.Error as error:
            next_line = first_line + reader.line_num
            bad.add(f"{path}:{start}", f"unreadable row: {error}")
            continue
        end = first_line + reader.line_num - 1  # the record's last line
        next_line = end + 1
        swallowed = _rows_inside(lines[start:end], delimiter) if end > start else 0
        if open_quotes_are_bad and (end - start + 1 > MAX_FIELD_LINES or swallowed >= 2):
            bad.add(f"{path}:{start}", f"a quote opened on this line is not closed until line {end} "
                                       f"({end - start + 1} lines, {swallowed} of them look like rows of their own); "
                                       f"close the quote, or double a quote inside a quoted text (\"\")")
            first_line = next_line = start + 1  # read on from the next line
            reader = csv.reader(io.StringIO("\n".join(lines[start:]), newline=""), delimiter=delimiter)
            continue
        if row and not (len(row) == 1 and not row[0].strip()):
            records.append((start, row))


def _rows_inside(lines: list[str], delimiter: str) -> int:
    """How many of a multi-line field's continuation lines look like rows: a short label, then the delimiter."""
    return sum(1 for line in lines if delimiter in line and _looks_like_label(line.split(delimiter, 1)[0])
               and line.split(delimiter, 1)[1].strip())


def _find_column(header: list[str], names: tuple[str, ...]) -> Optional[int]:
    for name in names:
        if name in header:
            return header.index(name)
    return None


def _looks_like_label(value: str) -> bool:
    value = value.strip()
    return 0 < len(value) <= 20 and not any(c.isspace() for c in value)


def _read_delimited(
    path: Path, text: str, delimiter: str, bad: BadRows, require_sst2_header: bool = False
) -> LabeledData:
    records = _read_records(path, text, delimiter, bad)
    if not records:
        require_examples([], path, bad)
    separated = "tab" if delimiter == "\t" else "comma"
    header = [cell.strip().lower() for cell in records[0][1]]
    has_header = any(cell in LABEL_COLUMNS or cell in TEXT_COLUMNS for cell in header)
    if require_sst2_header and not {"sentence", "label"} <= set(header):
        raise DataError(f"{path}:{records[0][0]}: an SST-2 file starts with the header 'sentence<tab>label'; "
                        f"found columns {records[0][1]}")
    if has_header:
        label_column = _find_column(header, LABEL_COLUMNS)
        text_column = _find_column(header, TEXT_COLUMNS)
        if label_column is None or text_column is None:
            missing = "label" if label_column is None else "text"
            expected = LABEL_COLUMNS if label_column is None else TEXT_COLUMNS
            raise DataError(f"{path}:{records[0][0]}: the header has no {missing} column: found columns "
                            f"{records[0][1]}, expected one named {', '.join(expected)}")
        width = len(header)
        records = records[1:]
    else:
        width = Counter(len(row) for _, row in records).most_common(1)[0][0]
        if width != 2:
            raise DataError(f"{path}: without a header row a {separated}-separated file needs 2 columns "
                            f"(label and text), but most rows have {width}; add a header row naming the "
                            f"label and text columns")
        label_column = _detect_label_column([row for _, row in records if len(row) == 2])
        text_column = 1 - label_column
    rows = []
    for line, row in records:
        if len(row) != width:
            bad.add(f"{path}:{line}", f"expected {width} {separated}-separated fields, found {len(row)} "
                                      f"(quote a text that holds the delimiter)")
        else:
            rows.append((f"{path}:{line}", row[label_column], row[text_column]))
    return label_examples(rows, path, bad)


def _detect_label_column(rows: list[list[str]]) -> int:
    """The column whose values most often look like short labels; ties go to fewer distinct values."""

    def score(column: int) -> tuple[float, int, int]:
        values = [row[column] for row in rows]
        labelish = sum(_looks_like_label(v) for v in values) / max(1, len(values))
        return (-labelish, len(set(values)), column)

    return min((0, 1), key=score)


def _read_jsonl(path: Path, text: str, bad: BadRows) -> LabeledData:
    rows = []
    for number, line in enumerate(text_lines(text), start=1):
        where = f"{path}:{number}"
        if not line.strip():
            continue  # a blank line holds no row
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            bad.add(where, f"unreadable row: invalid JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(record, dict):
            bad.add(where, f"expected a JSON object, found {type(record).__name__}")
            continue
        keys = {key.lower(): key for key in record if isinstance(key, str)}
        label_key = next((keys[name] for name in LABEL_COLUMNS if name in keys), None)
        text_key = next((keys[name] for name in TEXT_COLUMNS if name in keys), None)
        if label_key is None or text_key is None:
            missing, expected = ("label", LABEL_COLUMNS) if label_key is None else ("text", TEXT_COLUMNS)
            bad.add(where, f"no {missing} key: found keys {list(record)}, expected one of {', '.join(expected)}")
            continue
        label, sentence = record[label_key], record[text_key]
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            bad.add(where, f"invalid label {label!r}: a label is an integer or a string")
            continue
        if not isinstance(sentence, str):
            bad.add(where, f"the {text_key!r} value is {type(sentence).__name__}, not a string")
            continue
        rows.append((where, str(label), sentence))
    return label_examples(rows, path, bad)


def _read_imdb(path: Path, bad: BadRows) -> LabeledData:
    folders = {"neg": path / "neg", "pos": path / "pos"}
    if not all(folder.is_dir() for folder in folders.values()):
        found = sorted(child.name + "/" for child in path.iterdir() if child.is_dir()) if path.is_dir() else []
        raise DataError(f"{path}: an IMDB-style folder needs pos/ and neg/ subfolders of .txt files; "
                        f"found subfolders {found}")
    examples = []
    for label, name in enumerate(("neg", "pos")):
        for file in sorted(folders[name].glob("*.txt")):
            text = read_text(file).strip()
            if text:
                examples.append(Example(text, label, f"{file}:1"))
            else:
                bad.add(f"{file}:1", "empty text")
    bad.report(str(path))
    require_examples(examples, path, bad)
    log_read_summary(path, len(examples), f"{len(examples) + len(bad.rows)} .txt file(s)", bad)
    return LabeledData(examples, ["negative", "positive"])


# --------------------------------------------------------------------------------------------------------
# The original report's data (CS5242 assignment 3: a sample of the SI650 sentences)
# --------------------------------------------------------------------------------------------------------

#: ``../shared/datasets/cs5242-si650`` relative to the project root; never copied into the repository.
CS5242_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cs5242-si650"


def cs5242_dir(root: str | Path | None = None) -> Path:
    """The folder holding ``train.csv`` and ``dictionary.csv``; raises a DataError saying where to put them."""
    folder = Path(root) if root is not None else CS5242_DIR
    missing = [name for name in ("train.csv", "dictionary.csv") if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"the cs5242 data set is not in {folder} (missing {', '.join(missing)}): put train.csv and "
            "dictionary.csv from the CS5242 assignment 3 code_base/datasets/ folder there, "
            "or pass that folder as --data.path")
    return folder


def read_cs5242(root: str | Path | None = None, skip_bad_rows: bool = False) -> LabeledData:
    """The report's ``train.csv``: tab-separated, no header, label (0/1) then sentence; 800 rows.

    Quoted fields span lines (829 physical lines hold 800 rows), so it is read with the csv module, like
    the original. Label 1 is positive.
    """
    path = cs5242_dir(root) / "train.csv"
    bad = BadRows(skip_bad_rows)
    rows = []
    # Line 381 opens a quote that line 410 closes, so one row holds 30 physical lines: the report's own reader
    # (the csv module) read it so, and its 800 rows and their order are the report's data.
    text = read_text(path)
    for line, row in _read_records(path, text, "\t", bad, open_quotes_are_bad=False):
        if len(row) != 2:
            bad.add(f"{path}:{line}", f"expected 2 tab-separated fields (label, sentence), found {len(row)}")
        else:
            rows.append((f"{path}:{line}", row[0], row[1]))
    data = label_examples(rows, path, bad)
    log_read_summary(path, len(data.examples), f"{len(text_lines(text))} line(s)", bad)
    return data
