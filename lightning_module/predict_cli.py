"""``predict.py``: print each sentence's label and probability, as text or JSON Lines.

Options may stand anywhere on the command line, before, between or after the sentences. Every sentence gets
a row, in order: one that cannot be classified (it has no tokens) gets a row saying why, the others are still
classified, and the exit status is then 1. Each row says which words the vocabulary does not know and whether
the sentence was cut to the model's ``max_length`` tokens.

Text rows are ``label<TAB>probability<TAB>sentence``, or ``error<TAB>reason<TAB>sentence``; unknown words and
cutting are noted on stderr. ``--explain`` adds each word's exact share of the predicted class's log-odds
(:meth:`lightning_module.inference.SentimentPredictor.explain`): a line under the row (coloured in a
terminal), or the JSON fields ``contributions`` and ``bias``; ``--html FILE`` also writes them as a page of shaded
words (:func:`lightning_module.explanations.explanation_html`). JSON rows are ``{"text", "label", "probability", "unknown", "truncated"}`` or
``{"text", "error", "unknown", "truncated"}``.

Plain text rows come from :class:`lightning_module.numpy_model.NumpyPredictor`, which needs neither torch nor
Lightning; ``--json``, ``--explain`` and ``--html`` (and a checkpoint the numpy reader does not take) use the
torch model, :class:`lightning_module.inference.SentimentPredictor`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

from lightning_module.errors import DataError

if TYPE_CHECKING:
    from lightning_module.inference import SentimentPredictor
    from lightning_module.numpy_model import NumpyPredictor
    from lightning_module.prediction import Prediction

#: How many unknown words a text note names.
_SHOWN_UNKNOWN = 8


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predict.py", description="Classify sentences with a checkpoint "
                                     "written by `python train.py`; it needs nothing else.")
    parser.add_argument("checkpoint", help="a .ckpt file from train.py")
    parser.add_argument("sentences", nargs="*", help="sentences to classify")
    parser.add_argument("--file", type=Path, help="a text file with one sentence per line (blank lines skipped)")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object per line: {"text": ..., "label": ..., "probability": ..., '
                             '"unknown": [...], "truncated": ...}')
    parser.add_argument("--explain", action="store_true",
                        help="show each word's exact share of the predicted class's log-odds (JSON: "
                             '"contributions": [[word, value], ...] and "bias", which sum to log p / (1 - p))')
    parser.add_argument("--html", type=Path, metavar="FILE",
                        help="also write the explanations as a self-contained HTML page, each word shaded by its "
                             "share (green for the predicted class, red against; the value in its tooltip); "
                             "implies --explain")
    return parser


def _read_sentences(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(f"{path}: cannot read the sentence file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return [line.strip() for line in lines if line.strip()]


def _row(prediction: "Prediction", as_json: bool) -> str:
    if as_json:
        fields = ({"error": prediction.error} if prediction.error else
                  {"label": prediction.label, "probability": round(prediction.probability, 6)})
        if prediction.contributions is not None:
            fields["contributions"] = [[word, round(value, 6)] for word, value in prediction.contributions]
            fields["bias"] = round(prediction.bias, 6)
        return json.dumps({"text": prediction.text, **fields, "unknown": prediction.unknown,
                           "truncated": prediction.truncated})
    if prediction.error:
        return f"error\t{prediction.error}\t{prediction.text}"
    return f"{prediction.label}\t{prediction.probability:.4f}\t{prediction.text}"


def _explanation(prediction: "Prediction", color: bool) -> str:
    """``  word +0.123  word -0.045 ... | bias +0.2 = log-odds +1.3``, shares green (for) and red (against) in a
    terminal."""
    def shown(word: str, value: float) -> str:
        text = f"{word} {value:+.3f}"
        return f"\033[{32 if value > 0 else 31}m{text}\033[0m" if color else text

    log_odds = prediction.bias + sum(value for _, value in prediction.contributions)
    words = "  ".join(shown(word, value) for word, value in prediction.contributions)
    return f"  {words}  | bias {prediction.bias:+.3f} = log-odds {log_odds:+.3f} for {prediction.label}"


def _note(number: int, prediction: "Prediction", max_length: int) -> Optional[str]:
    """A stderr line on what the model did not see of the sentence, or None when it saw every word."""
    parts = []
    if prediction.unknown:
        shown = ", ".join(prediction.unknown[:_SHOWN_UNKNOWN])
        more = len(prediction.unknown) - _SHOWN_UNKNOWN
        parts.append(f"{len(prediction.unknown)} unknown word(s): {shown}" + (f" and {more} more" if more > 0 else ""))
    if prediction.truncated:
        parts.append(f"cut to its first {max_length} of {prediction.tokens} tokens")
    return f"note: sentence {number}: " + "; ".join(parts) if parts else None


def _write_html(path: Path, predictions: list["Prediction"]) -> None:
    from lightning_module.explanations import explanation_html

    try:
        path.write_text(explanation_html(predictions), encoding="utf-8")
    except OSError as error:
        raise DataError(f"{path}: cannot write the HTML page ({error.strerror})") from None


def _predictor(checkpoint: str, fast: bool) -> "Union[NumpyPredictor, SentimentPredictor]":
    """The checkpoint's predictor. ``fast``: the numpy one, which needs neither torch nor Lightning (importing
    torch alone takes more than a second and a half), when the checkpoint's weights can be read without torch
    (:mod:`lightning_module.checkpoint_reader`); else, or for ``--json`` and ``--explain``, whose numbers are
    the torch model's to the last digit, :class:`~lightning_module.inference.SentimentPredictor`."""
    if fast:
        from lightning_module.numpy_model import load_predictor

        predictor = load_predictor(checkpoint)
        if predictor is not None:
            return predictor
    from lightning_module.inference import SentimentPredictor

    return SentimentPredictor.from_checkpoint(checkpoint)


def main(args: Optional[Sequence[str]] = None) -> None:
    options = _parser().parse_intermixed_args(args)
    try:
        if not Path(options.checkpoint).is_file():  # before the imports of torch and Lightning (seconds)
            raise DataError(f"{options.checkpoint}: no such checkpoint file")
        sentences = list(options.sentences)
        if options.file is not None:
            sentences += _read_sentences(options.file)
        if not sentences:
            raise DataError("no sentences to classify: pass them as arguments or with --file")
        explain = options.explain or options.html is not None
        predictor = _predictor(options.checkpoint, fast=not (explain or options.json))
        predictions = predictor.predict(sentences, explain=True) if explain else predictor.predict(sentences)
        if options.html is not None:
            _write_html(options.html, predictions)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    for number, prediction in enumerate(predictions, start=1):
        print(_row(prediction, options.json))
        if options.explain and not options.json and prediction.contributions is not None:
            print(_explanation(prediction, color=sys.stdout.isatty()))
        note = None if options.json else _note(number, prediction, predictor.max_length)
        if note:
            print(note, file=sys.stderr)
    failed = sum(prediction.error is not None for prediction in predictions)
    if failed:
        print(f"error: {failed} of {len(predictions)} sentence(s) could not be classified", file=sys.stderr)
        sys.exit(1)
