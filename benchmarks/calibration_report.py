"""How well a checkpoint's probabilities are calibrated: ECE on its validation and test splits with and without
its temperature, the probability it gives sentences whose words are all unknown, and a reliability diagram.

    python benchmarks/calibration_report.py CHECKPOINT [--figure docs/reliability.png] [--json]

The splits are rebuilt from the data settings stored in the checkpoint (the same seeded split it was trained
on) and encoded with the checkpoint's own vocabulary.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_module.calibration import expected_calibration_error, reliability_diagram  # noqa: E402
from lightning_module.datamodule import SentimentDataModule  # noqa: E402
from lightning_module.inference import SentimentPredictor, load_checkpoint  # noqa: E402

#: Sentences none of whose words a movie-review vocabulary knows.
UNKNOWN = ["\U0001F600 \U0001F600 \U0001F600", "这部电影很好看", "zorblax quintessor flumph"]


@torch.no_grad()
def split_scores(predictor: SentimentPredictor, loader: torch.utils.data.DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw class scores ``(N, C)`` and labels ``(N,)`` of a split."""
    scores, labels = [], []
    for batch in loader:
        scores.append(predictor.model(batch["tokens"], batch["mask"]))
        labels.append(batch["labels"])
    return torch.cat(scores).float(), torch.cat(labels)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--figure", type=Path, help="write a reliability diagram (PNG) of the test split here")
    parser.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    options = parser.parse_args()
    checkpoint = load_checkpoint(options.checkpoint)
    predictor = SentimentPredictor.from_checkpoint(options.checkpoint)
    settings = {k: v for k, v in checkpoint["datamodule_hyper_parameters"].items() if not k.startswith("_")}
    data = SentimentDataModule(**settings)
    data.load_state_dict(checkpoint[SentimentDataModule.__qualname__])
    data.prepare_data()
    data.setup()
    temperature = float(predictor.model.temperature)
    report: dict[str, object] = {"checkpoint": str(options.checkpoint), "temperature": temperature}
    curves = {}
    for split, loader in (("val", data.val_dataloader()), ("test", data.test_dataloader())):
        scores, labels = split_scores(predictor, loader)
        report[f"{split}_accuracy"] = float((scores.argmax(1) == labels).float().mean())
        for name, t in (("ece", 1.0), ("ece_calibrated", temperature)):
            report[f"{split}_{name}"] = expected_calibration_error((scores / t).softmax(1), labels)
        if split == "test":
            curves = {"test, softmax(s)": ((scores).softmax(1), labels),
                      f"test, softmax(s / T), T = {temperature:.2f}": ((scores / temperature).softmax(1), labels)}
    train_labels = data.training_set().labels
    names = predictor.encoder.label_names
    report["class_prior"] = {str(names[c]): float((train_labels == c).float().mean()) for c in range(len(names))}
    unknown = predictor.probabilities(UNKNOWN)  # (k, C), calibrated
    raw = torch.stack([predictor.model(b["tokens"], b["mask"]).softmax(1)[0]
                       for b in (predictor.encoder.encode([text]) for text in UNKNOWN)])
    report["all_unknown"] = {text: {"calibrated": [round(float(p), 4) for p in row_t],
                                    "uncalibrated": [round(float(p), 4) for p in row_r]}
                             for text, row_t, row_r in zip(UNKNOWN, unknown, raw)}
    if options.figure is not None:
        figure = reliability_diagram(curves)
        figure.savefig(options.figure, dpi=90)
        report["figure"] = str(options.figure)
    if options.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
