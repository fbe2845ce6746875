"""``predict.py``: print each sentence's label and probability, as text or JSON Lines."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from lightning_module.errors import DataError
from lightning_module.inference import SentimentPredictor


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predict.py", description="Classify sentences with a checkpoint "
                                     "written by `python train.py`; it needs nothing else.")
    parser.add_argument("checkpoint", help="a .ckpt file from train.py")
    parser.add_argument("sentences", nargs="*", help="sentences to classify")
    parser.add_argument("--file", type=Path, help="a text file with one sentence per line (blank lines skipped)")
    parser.add_argument("--json", action="store_true",
                        help='print one JSON object per line: {"text": ..., "label": ..., "probability": ...}')
    return parser


def _read_sentences(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(f"{path}: cannot read the sentence file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    return [line.strip() for line in lines if line.strip()]


def main(args: Optional[Sequence[str]] = None) -> None:
    options = _parser().parse_args(args)
    try:
        sentences = list(options.sentences)
        if options.file is not None:
            sentences += _read_sentences(options.file)
        if not sentences:
            raise DataError("no sentences to classify: pass them as arguments or with --file")
        predictions = SentimentPredictor.from_checkpoint(options.checkpoint).predict(sentences)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    for prediction in predictions:
        if options.json:
            print(json.dumps({"text": prediction.text, "label": prediction.label,
                              "probability": round(prediction.probability, 6)}))
        else:
            print(f"{prediction.label}\t{prediction.probability:.4f}\t{prediction.text}")
