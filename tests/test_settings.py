"""lightning_module.settings: the setting types, checked the same way in Python as LightningCLI checks them."""
from __future__ import annotations

from typing import Literal, Optional

import pytest

from lightning_module.callbacks import TrainingSummary
from lightning_module.settings import Fraction, NonNegativeInt, PositiveInt, check_settings


def configure(choice: Literal["a", "b"] = "a", size: PositiveInt = 1, count: NonNegativeInt = 0,
              share: Fraction = 0.0, limit: Optional[PositiveInt] = None, name: str = "x") -> None:
    """A signature with one setting of every checked kind, and one that is not checked."""


@pytest.mark.parametrize("values, problem", [
    (dict(choice="c"), "s.choice must be one of 'a', 'b', got 'c'"),
    (dict(size=0), "s.size must be at least 1, got 0"),
    (dict(count=-1), "s.count must be at least 0, got -1"),
    (dict(share=1.0), "s.share must be in [0, 1), got 1.0"),
    (dict(share=-0.1), "s.share must be in [0, 1), got -0.1"),
    (dict(limit=0), "s.limit must be at least 1 (or null), got 0"),
])
def test_a_value_outside_its_type_is_named(values, problem):
    assert check_settings(configure, values, "s") == [problem]


def test_allowed_values_and_unchecked_annotations_pass():
    values = dict(choice="b", size=3, count=0, share=0.5, limit=None, name=123)
    assert check_settings(configure, values, "s") == []
    assert check_settings(configure, dict(limit=7), "s") == []


def test_every_problem_is_listed():
    assert len(check_settings(configure, dict(choice="z", size=0, share=2.0), "s")) == 3


def test_summary_mode_is_checked():
    with pytest.raises(ValueError, match="summary.mode must be one of 'max', 'min', got 'up'"):
        TrainingSummary(mode="up")
