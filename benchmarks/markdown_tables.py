"""Markdown tables of the benchmarks: columns that name a key of each row's dict and how to print its value."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union


@dataclass(frozen=True)
class Column:
    """A table column: its title, the row key it prints, a ``str.format`` pattern (or a function) for the value,
    and whether it is text (left-aligned) rather than a number (right-aligned)."""

    title: str
    key: str
    fmt: Union[str, Callable[[Any], str]] = "{}"
    left: bool = False

    def cell(self, row: Mapping[str, Any]) -> str:
        """The value of ``row[key]`` as printed; ``-`` for None (a measurement that does not apply to the row)."""
        value = row[self.key]
        if value is None:
            return "-"
        return self.fmt(value) if callable(self.fmt) else self.fmt.format(value)


def markdown_table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The title line, the alignment line and one line per row."""
    return ["| " + " | ".join(column.title for column in columns) + " |",
            "|" + "|".join("---" if column.left else "---:" for column in columns) + "|",
            *("| " + " | ".join(column.cell(row) for column in columns) + " |" for row in rows)]
