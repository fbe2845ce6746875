"""Errors for bad input on the data side, and the policy for rows that cannot be used.

Every problem with user data (a missing file, an unreadable row, an unknown label, ...) raises
:class:`DataError` with a message that names the file and, where there is one, the 1-based line number.
The command line catches it and prints that one line instead of a traceback.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class DataError(Exception):
    """Bad input data or a bad data setting; the message says what is wrong and where (``file:line``)."""


class DownloadError(DataError):
    """A data set could not be downloaded (no package index reachable, pip failed or timed out)."""


class BadRows:
    """Collects the rows that cannot be used: raises at the first one, or skips them and reports them all.

    Args:
        skip: False raises :class:`DataError` for the first bad row; True keeps going and
            :meth:`report` logs a warning with how many rows were skipped and where.
    """

    #: How many bad rows :meth:`report` names one by one; the rest are only counted.
    SHOWN = 5

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.rows: list[tuple[str, str]] = []

    def add(self, where: str, problem: str) -> None:
        """Record that the row at ``where`` (``file:line``) has ``problem``; raise unless skipping."""
        if not self.skip:
            raise DataError(f"{where}: {problem} (to skip bad rows: --data.skip_bad_rows true, or skip_bad_rows=True in Python)")
        self.rows.append((where, problem))

    def report(self, what: str) -> None:
        """Log a warning naming how many rows of ``what`` were skipped and the first few of them."""
        if not self.rows:
            return
        shown = "; ".join(f"{where}: {problem}" for where, problem in self.rows[: self.SHOWN])
        more = f"; and {len(self.rows) - self.SHOWN} more" if len(self.rows) > self.SHOWN else ""
        log.warning("skipped %d bad row(s) in %s: %s%s", len(self.rows), what, shown, more)


class CheckpointError(DataError):
    """A checkpoint file that is missing, unreadable, or not a torch-rnn sentiment checkpoint."""


class MemoryLimitError(DataError):
    """A setting or an input that would need more memory than the machine has, found before allocating it."""
