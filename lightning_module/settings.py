"""Types of the settings the DataModule and the LightningModule take, and their check.

LightningCLI (jsonargparse) reads these annotations and rejects a bad value on the command line or in YAML with
the setting's name. :func:`check_settings` applies the same annotations when a class is built in Python, so both
ways of building it refuse the same values with the same kind of message.
"""
from __future__ import annotations

import typing
from typing import Any, Callable, Literal, Mapping, Optional, Union

from jsonargparse.typing import NonNegativeInt, PositiveInt, restricted_number_type

#: A share in [0, 1): a dropout probability, a split's fraction of the data.
Fraction = restricted_number_type("Fraction", float, [(">=", 0), ("<", 1)])

#: What each restricted type means, in the words of an error message.
_MEANING = {PositiveInt: "at least 1", NonNegativeInt: "at least 0", Fraction: "in [0, 1)"}


def check_settings(function: Callable[..., Any], values: Mapping[str, Any], prefix: str) -> list[str]:
    """One problem per value in ``values`` that its annotation on ``function`` (a ``Literal``, or one of
    :data:`_MEANING`'s types, possibly ``Optional``) does not allow, e.g. ``"data.max_length must be at least 1,
    got 0"``; an empty list when all are allowed. Other annotations are not checked here."""
    hints = typing.get_type_hints(function)
    problems = []
    for name, value in values.items():
        allowed = _allowed(hints.get(name), value)
        if allowed is not None:
            problems.append(f"{prefix}.{name} must be {allowed}, got {value!r}")
    return problems


def _allowed(hint: Any, value: Any) -> Optional[str]:
    """None when ``value`` fits ``hint``, else what the hint allows, in words."""
    optional = typing.get_origin(hint) is Union and type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint, = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if value in choices:
            return None
        return "one of " + ", ".join(map(repr, choices)) + (" (or null)" if optional else "")
    if hint in _MEANING:
        try:
            hint(value)
            return None
        except (TypeError, ValueError):
            return _MEANING[hint] + (" (or null)" if optional else "")
    return None
