"""Where labelled sentences come from: the VADER corpora, the original report's data, and user files.

Every reader returns a :class:`LabeledData`: the examples in file order (each remembers its ``file:line``
for error messages) and the class names. Bad rows raise :class:`DataError` naming ``file:line``, or, with
``skip_bad_rows=True``, are skipped and reported in a warning; nothing is dropped without a word.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lightning_module.errors import BadRows, DataError, DownloadError
from lightning_module.progress import Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One labelled sentence; ``source`` is where it came from (``file:line``), for error messages."""

    text: str
    label: int
    source: str


@dataclass
class LabeledData:
    """The examples of a data set in file order, and the name of every class (``label_names[label]``)."""

    examples: list[Example]
    label_names: list[str]


# --------------------------------------------------------------------------------------------------------
# Reading text files
# --------------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """The file's text as UTF-8 (a byte-order mark is dropped); undecodable bytes name their line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def _lines(text: str) -> list[str]:
    """Split on "\\n" only (str.splitlines also breaks at rarer separators and would shift line numbers)."""
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    return lines


def log_read_summary(path: Path, rows: int, out_of: str, bad: BadRows, dropped: str = "") -> None:
    """One line for every file read: rows read, out of how many lines (or files), and where rows were skipped."""
    where = ", ".join(place.rsplit(":", 1)[-1] if place.startswith(f"{path}:") else place
                      for place, _ in bad.rows[:10]) + (", ..." if len(bad.rows) > 10 else "")
    log.info("%s: %d labelled row(s) read from %s; %d bad row(s) skipped%s%s", path, rows, out_of, len(bad.rows),
             f" (at {where})" if bad.rows else "", f"; {dropped}" if dropped else "")


def _require_examples(examples: list[Example], path: Path, bad: BadRows) -> None:
    if not examples:
        skipped = f" (all {len(bad.rows)} rows were bad and skipped)" if bad.rows else ""
        raise DataError(f"{path}: the data set is empty: no labelled sentences found{skipped}")


# --------------------------------------------------------------------------------------------------------
# The VADER corpora (Hutto & Gilbert, ICWSM 2014), shipped in the vaderSentiment source distribution
# --------------------------------------------------------------------------------------------------------

VADER_SDIST = "vaderSentiment==3.3.2"
VADER_SDIST_FILE = "vaderSentiment-3.3.2.tar.gz"
#: SHA-256 of the sdist on PyPI; a download that does not match it is refused.
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
_VADER_INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_VADER_INNER_FOLDER = "hutto_ICWSM_2014"

#: Data set name -> file in the archive. Each line: id <tab> mean rating (-4..+4) <tab> sentence.
VADER_CORPORA = {
    "rotten_tomatoes": "movieReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
#: Seconds the pip download may take before it is given up.
PIP_TIMEOUT_S = 600
#: The fine-grained classes: the mean rating rounded to an integer, "-4" (class 0) .. "4" (class 8).
FINE_GRAINED_NAMES = [str(rating) for rating in range(-4, 5)]


def default_cache_dir() -> Path:
    """``$TORCH_RNN_CACHE``, else ``~/.cache/torch_rnn``."""
    return Path(os.environ.get("TORCH_RNN_CACHE") or Path.home() / ".cache" / "torch_rnn")


def vader_corpus_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where the corpus ``name`` lives once fetched (it may not exist yet)."""
    if name not in VADER_CORPORA:
        raise DataError(f"unknown VADER corpus {name!r}; choose one of {', '.join(VADER_CORPORA)}")
    return Path(cache_dir or default_cache_dir()) / "vader" / VADER_CORPORA[name]


def fetch_vader_corpus(name: str, cache_dir: str | Path | None = None) -> Path:
    """Return the path of the VADER corpus ``name``, downloading the corpora once if they are not cached.

    The download runs ``pip download`` of the vaderSentiment 3.3.2 source distribution (so it goes
    through the user's pip configuration: index, proxy, certificates), checks its SHA-256 and extracts
    the four corpora into ``<cache_dir>/vader/``. A cached file is never fetched again.

    Args:
        name: one of ``rotten_tomatoes``, ``tweets``, ``amazon``, ``nyt``.
        cache_dir: where to keep the files; default :func:`default_cache_dir`.

    Raises:
        DownloadError: pip failed (e.g. no package index reachable) or the download did not verify.
    """
    target = vader_corpus_path(name, cache_dir)
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="torch_rnn_vader_") as tmp:
        sdist = _pip_download_vader(Path(tmp), target)
        _extract_vader_corpora(sdist, target.parent)
    return target


def _pip_download_vader(folder: Path, target: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", VADER_SDIST, "-d", str(folder)]
    advice = (f"Check the network and pip's index settings, or put {target.name} from the sdist's "
              f"additional_resources/hutto_ICWSM_2014.tar.gz into {target.parent}, or train on your own "
              "file with --data.path.")
    log.warning("downloading the VADER corpora once: python %s", " ".join(command[1:]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DownloadError(f"pip download of {VADER_SDIST} took over {PIP_TIMEOUT_S} s. {advice}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise DownloadError(f"could not download the VADER corpora ({VADER_SDIST} from PyPI): {reason}. {advice}")
    sdist = folder / VADER_SDIST_FILE
    if not sdist.is_file():
        raise DownloadError(f"pip download of {VADER_SDIST} did not produce {VADER_SDIST_FILE}. {advice}")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != VADER_SDIST_SHA256:
        raise DownloadError(f"{VADER_SDIST_FILE} has SHA-256 {digest}, expected {VADER_SDIST_SHA256}; "
                            "refusing to use it")
    return sdist


def _extract_vader_corpora(sdist: Path, folder: Path) -> None:
    """Copy the corpora out of the archive inside the sdist; each file appears whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as outer:
        inner_bytes = outer.extractfile(_VADER_INNER_ARCHIVE).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        for file_name in VADER_CORPORA.values():
            data = inner.extractfile(f"{_VADER_INNER_FOLDER}/{file_name}").read()
            partial = folder / (file_name + ".partial")
            partial.write_bytes(data)
            os.replace(partial, folder / file_name)


def _fine_grained_class(rating: float) -> int:
    """Round half away from zero (Python's round() would send 0.5 to 0 but 1.5 to 2), clip to -4..4."""
    rounded = int(math.copysign(math.floor(abs(rating) + 0.5), rating))
    return min(4, max(-4, rounded)) + 4


def read_vader(path: str | Path, fine_grained: bool = False, skip_bad_rows: bool = False) -> LabeledData:
    """Read a VADER ground-truth file (``id <tab> mean rating <tab> sentence`` per line).

    Binary (default): rating > 0 is positive (1), < 0 negative (0); sentences rated exactly 0 are neutral
    and dropped by design, and how many is logged. ``fine_grained=True`` keeps every sentence and makes
    nine classes: the rating rounded half away from zero, ``"-4"`` (class 0) .. ``"4"`` (class 8).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    bad = BadRows(skip_bad_rows)
    examples: list[Example] = []
    neutral = 0
    lines = _lines(_read_text(path))
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        if not line.strip():
            continue  # a blank line holds no row
        fields = line.split("\t", 2)
        if len(fields) != 3:
            bad.add(where, f"expected 3 tab-separated fields (id, rating, sentence), found {len(fields)}")
            continue
        try:
            rating = float(fields[1])
        except ValueError:
            bad.add(where, f"the rating {fields[1]!r} is not a number")
            continue
        if not math.isfinite(rating):
            bad.add(where, f"the rating {fields[1]!r} is not a finite number")
            continue
        text = fields[2].strip()
        if not text:
            bad.add(where, "empty sentence")
            continue
        if fine_grained:
            examples.append(Example(text, _fine_grained_class(rating), where))
        elif rating == 0:
            neutral += 1
        else:
            examples.append(Example(text, int(rating > 0), where))
    bad.report(str(path))
    if neutral:
        log.warning("%s: dropped %d neutral sentence(s) (mean rating exactly 0) from the binary task; "
                    "use fine_grained=True to keep them", path, neutral)
    _require_examples(examples, path, bad)
    log_read_summary(path, len(examples), f"{len(lines)} line(s)", bad,
                     f"{neutral} neutral sentence(s) left out of the binary task" if neutral else "")
    return LabeledData(examples, FINE_GRAINED_NAMES if fine_grained else ["negative", "positive"])


# --------------------------------------------------------------------------------------------------------
# Labels: integers, sentiment words, or arbitrary class names
# --------------------------------------------------------------------------------------------------------

_INTEGER = re.compile(r"[+-]?\d+")
_SENTIMENT_WORDS = {"neg": "negative", "negative": "negative", "neu": "neutral", "neutral": "neutral",
                    "pos": "positive", "positive": "positive"}
#: A class name longer than this is more likely a sentence in the wrong column than a label.
MAX_LABEL_LENGTH = 40


class _LabelScheme:
    """Decides from all raw labels of a file how they map to classes, then maps each one.

    Most labels decide the kind: integers (classes are the integers themselves when none is negative,
    and 0/1 are named negative/positive), sentiment words (pos/neg/positive/negative/neutral), or else
    arbitrary short names (classes in sorted order). A label that does not fit the kind is invalid.
    """

    def __init__(self, raw_labels: list[str]) -> None:
        values = [value.strip() for value in raw_labels]
        ints = [int(v) for v in values if _INTEGER.fullmatch(v)]
        words = [v for v in values if v.lower() in _SENTIMENT_WORDS]
        if 2 * len(ints) > len(values):
            self.kind = "integer"
            classes = sorted(set(ints))
            if classes[0] >= 0:
                self.index = {str(i): i for i in range(classes[-1] + 1)}
                self.names = ["negative", "positive"] if classes[-1] <= 1 else [str(i) for i in self.index]
            else:  # negative integers (e.g. -1/1): keep their order
                self.index = {str(v): i for i, v in enumerate(classes)}
                self.names = [str(v) for v in classes]
        elif 2 * len(words) > len(values):
            self.kind = "sentiment word"
            used = {_SENTIMENT_WORDS[w.lower()] for w in words} | {"negative", "positive"}
            self.names = [name for name in ("negative", "neutral", "positive") if name in used]
            self.index = {word: self.names.index(name) for word, name in _SENTIMENT_WORDS.items() if name in used}
        else:
            self.kind = "class name"
            self.names = sorted({v for v in values if self._plausible_name(v)})
            self.index = {name: i for i, name in enumerate(self.names)}

    @staticmethod
    def _plausible_name(value: str) -> bool:
        return bool(value) and len(value) <= MAX_LABEL_LENGTH and "\n" not in value

    def __call__(self, raw: str) -> Optional[int]:
        """The class of ``raw``, or None when it is not a valid label (see :meth:`problem`)."""
        value = raw.strip()
        if self.kind == "integer":
            return self.index.get(str(int(value))) if _INTEGER.fullmatch(value) else None
        if self.kind == "sentiment word":
            return self.index.get(value.lower())
        return self.index.get(value)

    def problem(self, raw: str) -> str:
        value = raw.strip()
        if not value:
            return "missing label"
        shown = value if len(value) <= MAX_LABEL_LENGTH else value[:MAX_LABEL_LENGTH] + "..."
        if self.kind == "sentiment word":
            return f"unknown label {shown!r} (the other labels are sentiment words: pos, neg, positive, ...)"
        if self.kind == "integer":
            return f"invalid label {shown!r} (the other labels are integers)"
        return f"invalid label {shown!r} (a label is a class name of at most {MAX_LABEL_LENGTH} characters)"


def _label_examples(rows: list[tuple[str, str, str]], path: Path, bad: BadRows) -> LabeledData:
    """Turn ``(where, raw label, text)`` rows into examples, checking every label and text."""
    if not rows:
        _require_examples([], path, bad)
    scheme = _LabelScheme([label for _, label, _ in rows])
    examples = []
    for where, raw_label, text in rows:
        label = scheme(raw_label)
        if label is None:
            bad.add(where, scheme.problem(raw_label))
        elif not text.strip():
            bad.add(where, "empty text")
        else:
            examples.append(Example(text.strip(), label, where))
    bad.report(str(path))
    _require_examples(examples, path, bad)
    return LabeledData(examples, scheme.names)


# --------------------------------------------------------------------------------------------------------
# User files: delimited (csv/tsv/sst2), JSON Lines, IMDB-style folders
# --------------------------------------------------------------------------------------------------------

FORMATS = (None, "csv", "tsv", "sst2", "jsonl", "imdb")
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
    text = _read_text(path)
    if format is None:
        format = _detect_format(path, text)
    if format == "jsonl":
        data = _read_jsonl(path, text, bad)
    else:
        delimiter = "," if format == "csv" else "\t"
        data = _read_delimited(path, text, delimiter, bad, require_sst2_header=format == "sst2")
    log_read_summary(path, len(data.examples), f"{len(_lines(text))} line(s)", bad)
    return data


def _detect_format(path: Path, text: str) -> str:
    first = next((line for line in _lines(text) if line.strip()), "")
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
        _require_examples([], path, bad)
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
    return _label_examples(rows, path, bad)


def _detect_label_column(rows: list[list[str]]) -> int:
    """The column whose values most often look like short labels; ties go to fewer distinct values."""

    def score(column: int) -> tuple[float, int, int]:
        values = [row[column] for row in rows]
        labelish = sum(_looks_like_label(v) for v in values) / max(1, len(values))
        return (-labelish, len(set(values)), column)

    return min((0, 1), key=score)


def _read_jsonl(path: Path, text: str, bad: BadRows) -> LabeledData:
    rows = []
    for number, line in enumerate(_lines(text), start=1):
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
    return _label_examples(rows, path, bad)


def _read_imdb(path: Path, bad: BadRows) -> LabeledData:
    folders = {"neg": path / "neg", "pos": path / "pos"}
    if not all(folder.is_dir() for folder in folders.values()):
        found = sorted(child.name + "/" for child in path.iterdir() if child.is_dir()) if path.is_dir() else []
        raise DataError(f"{path}: an IMDB-style folder needs pos/ and neg/ subfolders of .txt files; "
                        f"found subfolders {found}")
    examples = []
    for label, name in enumerate(("neg", "pos")):
        for file in sorted(folders[name].glob("*.txt")):
            text = _read_text(file).strip()
            if text:
                examples.append(Example(text, label, f"{file}:1"))
            else:
                bad.add(f"{file}:1", "empty text")
    bad.report(str(path))
    _require_examples(examples, path, bad)
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
    text = _read_text(path)
    for line, row in _read_records(path, text, "\t", bad, open_quotes_are_bad=False):
        if len(row) != 2:
            bad.add(f"{path}:{line}", f"expected 2 tab-separated fields (label, sentence), found {len(row)}")
        else:
            rows.append((f"{path}:{line}", row[0], row[1]))
    data = _label_examples(rows, path, bad)
    log_read_summary(path, len(data.examples), f"{len(_lines(text))} line(s)", bad)
    return data
