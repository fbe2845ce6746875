"""Progress of the stages of loading a data set (reading, tokenizing, vocabulary, encoding): rows/s and an ETA.

On a terminal it is a tqdm bar on stderr; otherwise (a log file, CI) a log line every 10% of the stage. Stages of
fewer than :data:`MIN_ROWS` rows say nothing: they end before anyone would look.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, Optional

log = logging.getLogger(__name__)

#: A stage with fewer rows than this shows no progress.
MIN_ROWS = 20_000


class Progress:
    """Count the rows of one stage of loading and show how far it is, how fast and how long is left.

    Use as a context manager; :meth:`update` adds rows done.

    Args:
        stage: what is being done ("reading data.tsv", "tokenizing", ...).
        total: how many rows (or lines) the stage has.
        unit: what is counted, for the messages ("rows", "lines").
    """

    def __init__(self, stage: str, total: int, unit: str = "rows") -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self.done = 0
        self.shown = total >= MIN_ROWS
        self._bar: Optional[Any] = None
        self._next_percent = 10
        self._start = time.perf_counter()
        if self.shown and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=stage, unit=f" {unit}", unit_scale=True, file=sys.stderr,
                             dynamic_ncols=True, mininterval=0.5)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(failed=exc[0] is not None)

    def update(self, rows: int) -> None:
        """``rows`` more rows are done."""
        self.done += rows
        if not self.shown:
            return
        if self._bar is not None:
            self._bar.update(rows)
            return
        percent = 100 * self.done // max(1, self.total)
        if percent >= self._next_percent and self.done < self.total:
            seconds = time.perf_counter() - self._start
            rate = self.done / seconds if seconds > 0 else float("inf")
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            log.info("%s: %d%% (%s of %s %s), %s %s/s, ETA %.0f s", self.stage, percent, f"{self.done:,}",
                     f"{self.total:,}", self.unit, f"{rate:,.0f}", self.unit, eta)
            self._next_percent = (percent // 10 + 1) * 10

    def close(self, failed: bool = False) -> None:
        """End the stage: the bar closes, or one line says how many rows took how long."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.shown and not failed:
            seconds = time.perf_counter() - self._start
            rate = f"{self.done / seconds:,.0f}" if seconds > 0 else "inf"
            log.info("%s: %s %s in %.1f s (%s %s/s)", self.stage, f"{self.done:,}", self.unit, seconds, rate,
                     self.unit)
        self.shown = False
