"""How well a checkpoint's probabilities are calibrated: ECE on its validation and test splits with and without
its temperature, the probability it gives sentences whose words are all unknown, and a reliability diagram.

    python benchmarks/calibration_report.py CHECKPOINT [--before OLD_CHECKPOINT] [--figure docs/reliability.png] [--json]

The splits are rebuilt from the data settings stored in the checkpoint (the same seeded split it was trained
on, or the same cross-validation fold for a checkpoint of ``benchmarks/cross_validate.py``) and encoded with
the checkpoint's own vocabulary. The figure's panels are "before" and "after": the test split's
``softmax(s)`` (of ``--before``, a checkpoint of another recipe on the same split, when given) and this
checkpoint's ``softmax(s / T)``. ``--before`` also gets its own ECE and all-unknown probabilities.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_module.calibration import expected_calibration_error, reliability_diagram  # noqa: E402
from lightning_module.datamodule import SentimentDataModule  # noqa: E402
from lightning_module.folds import CrossValidationDataModule  # noqa: E402
from lightning_module.inference import SentimentPredictor, load_checkpoint  # noqa: E402

#: Sentences none of whose words a movie-review vocabulary knows: 1, 1, 3 and 3 unknown tokens.
UNKNOWN = ["zorblax", "这部电影很好看", "\U0001F600 \U0001F600 \U0001F600", "zorblax quintessor flumph"]


@torch.no_grad()
def split_scores(predictor: SentimentPredictor, loader: torch.utils.data.DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw class scores ``(N, C)`` float32 and labels ``(N,)`` int64 of a split."""
    scores, labels = [], []
    for batch in loader:
        scores.append(predictor.model(batch["tokens"], batch["mask"]))
        labels.append(batch["labels"])
    return torch.cat(scores).float(), torch.cat(labels)


def checkpoint_data(checkpoint: dict[str, Any]) -> SentimentDataModule:
    """The data module of a loaded checkpoint's data settings and vocabulary, set up (a
    :class:`CrossValidationDataModule` when the settings name a fold)."""
    settings = {k: v for k, v in checkpoint["datamodule_hyper_parameters"].items() if not k.startswith("_")}
    data = (CrossValidationDataModule if "folds" in settings else SentimentDataModule)(**settings)
    data.load_state_dict(checkpoint[SentimentDataModule.__qualname__])
    data.prepare_data()
    data.setup()
    return data


@torch.no_grad()
def measure(path: Path) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """The report of one checkpoint (temperature; per split accuracy, ECE without and with it; the class prior of
    its training split; the all-unknown sentences' probabilities) and its test scores ``(N, C)`` and labels."""
    checkpoint = load_checkpoint(path)
    predictor = SentimentPredictor.from_checkpoint(path)
    data = checkpoint_data(checkpoint)
    temperature = float(predictor.temperature)
    report: dict[str, Any] = {"checkpoint": str(path), "temperature": temperature}
    for split, loader in (("val", data.val_dataloader()), ("test", data.test_dataloader())):
        scores, labels = split_scores(predictor, loader)
        report[f"{split}_accuracy"] = float((scores.argmax(1) == labels).float().mean())
        for name, t in (("ece", 1.0), ("ece_calibrated", temperature)):
            report[f"{split}_{name}"] = expected_calibration_error((scores / t).softmax(1), labels)
    train_labels = data.training_set().labels
    names = predictor.encoder.label_names
    report["class_prior"] = {str(names[c]): round(float((train_labels == c).float().mean()), 4) for c in range(len(names))}
    unknown = predictor.probabilities(UNKNOWN)  # (k, C), calibrated
    raw = torch.stack([predictor.model(b["tokens"], b["mask"]).softmax(1)[0]
                       for b in (predictor.encoder.encode([text]) for text in UNKNOWN)])
    steps = [int(predictor.encoder.encode([text])["mask"].sum()) for text in UNKNOWN]
    report["all_unknown"] = {text: {"steps": n, "uncalibrated": [round(float(p), 4) for p in row_r],
                                    "calibrated": [round(float(p), 4) for p in row_t]}
                             for text, n, row_t, row_r in zip(UNKNOWN, steps, unknown, raw)}
    return report, scores, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--before", type=Path, help="a checkpoint of an earlier recipe on the same split: the "
                                                    "figure's 'before' panel is its uncalibrated softmax(s)")
    parser.add_argument("--before-name", default="earlier recipe", help="what --before is, for its panel's title")
    parser.add_argument("--after-name", default="this checkpoint", help="what CHECKPOINT is, for its panel's title")
    parser.add_argument("--figure", type=Path, help="write a reliability diagram (PNG) of the test split here")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    options = parser.parse_args()
    report, scores, labels = measure(options.checkpoint)
    temperature = report["temperature"]
    before_scores, before_labels = scores, labels
    before_name = f"before: {options.after_name}, softmax(s)"
    if options.before is not None:
        report["before"], before_scores, before_labels = measure(options.before)
        if not torch.equal(before_labels, labels):
            raise SystemExit(f"error: {options.before} was not tested on the same split as {options.checkpoint}")
        before_name = f"before: {options.before_name}, softmax(s)"
    if options.figure is not None:
        before_accuracy = float((before_scores.argmax(1) == labels).float().mean())
        after_accuracy = float((scores.argmax(1) == labels).float().mean())
        figure = reliability_diagram({
            f"{before_name}\ntest accuracy {before_accuracy:.1%}": (before_scores.softmax(1), labels),
            f"after: {options.after_name}, softmax(s / T)\nT = {temperature:.2f} fitted on validation\ntest "
            f"accuracy {after_accuracy:.1%}": ((scores / temperature).softmax(1), labels)})
        figure.savefig(options.figure, dpi=90)
        report["figure"] = str(options.figure)
    if options.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
