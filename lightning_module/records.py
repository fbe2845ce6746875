"""What every reader of labelled sentences returns (:class:`LabeledData` of :class:`Example`), and the helpers
they share for reading text files and reporting what they read."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lightning_module.errors import BadRows, DataError

log = logging.getLogger("lightning_module.sources")


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


def read_text(path: Path) -> str:
    """The file's text as UTF-8 (a byte-order mark is dropped); undecodable bytes name their line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text ({error.reason} at byte {error.start})") from None


def text_lines(text: str) -> list[str]:
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


def require_examples(examples: list[Example], path: Path, bad: BadRows) -> None:
    if not examples:
        skipped = f" (all {len(bad.rows)} rows were bad and skipped)" if bad.rows else ""
        raise DataError(f"{path}: the data set is empty: no labelled sentences found{skipped}")
