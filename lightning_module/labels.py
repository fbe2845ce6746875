"""Class labels as user files write them: integers, sentiment words, or arbitrary class names, turned into class
indices and names (:func:`label_examples`)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from lightning_module.errors import BadRows
from lightning_module.records import Example, LabeledData, require_examples



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


def label_examples(rows: list[tuple[str, str, str]], path: Path, bad: BadRows) -> LabeledData:
    """Turn ``(where, raw label, text)`` rows into examples, checking every label and text."""
    if not rows:
        require_examples([], path, bad)
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
    require_examples(examples, path, bad)
    return LabeledData(examples, scheme.names)
