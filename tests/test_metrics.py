"""The values of every metric SentimentClassifier logs, per stage, binary and multiclass, against values worked
out by hand on small fixed batches: accuracy, F1, AUROC and the epoch's mean loss weighted by batch size.

The network is replaced by fixed class scores (each batch carries its own in ``tokens``), so the expected
numbers follow from the scores alone, by the formulas written out below.
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_module.module import SentimentClassifier


class FixedScores(SentimentClassifier):
    """Its class scores are the batch's ``tokens`` (a float tensor here); a zero term keeps a gradient path."""

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return tokens + 0 * self.model.classifier.bias.sum()


BINARY = [  # two batches of different sizes: (scores (N, 2), labels (N,))
    (torch.tensor([[0.0, 1.0], [5.0, 2.0]]), torch.tensor([1, 0])),  # the smallest exposing batch
    (torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.5]]), torch.tensor([1, 1, 0])),
]
MULTICLASS = [  # (scores (N, 3), labels (N,)): every class predicted and present
    (torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]]), torch.tensor([0, 1, 1])),
    (torch.tensor([[0.0, 0.0, 4.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.2], [0.2, 0.1, 0.0]]), torch.tensor([2, 0, 2, 1])),
]


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def expected_metrics(batches) -> dict[str, float]:
    """Accuracy, F1 (binary: the positive class's; multiclass: the mean over classes), AUROC (binary: the share
    of positive-negative pairs the positive probability orders right, ties half) and the mean cross-entropy
    over all rows (the per-batch means weighted by batch size)."""
    rows = [(scores.tolist(), int(label)) for batch, labels in batches for scores, label in zip(batch, labels)]
    probabilities = [softmax(scores) for scores, _ in rows]
    labels = [label for _, label in rows]
    classes = len(rows[0][0])
    loss = sum(-math.log(p[y]) for p, y in zip(probabilities, labels)) / len(rows)
    if classes == 2:
        positive = [p[1] for p in probabilities]
        predicted = [int(p > 0.5) for p in positive]
        pairs = [(a, b) for a, ya in zip(positive, labels) if ya == 1 for b, yb in zip(positive, labels) if yb == 0]
        auroc = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
        f1 = f1_of(1, predicted, labels)
        return {"acc": mean_equal(predicted, labels), "f1": f1, "auroc": auroc, "loss": loss}
    predicted = [max(range(classes), key=p.__getitem__) for p in probabilities]
    f1 = sum(f1_of(c, predicted, labels) for c in range(classes)) / classes
    return {"acc": mean_equal(predicted, labels), "f1": f1, "loss": loss}


def mean_equal(a: list[int], b: list[int]) -> float:
    return sum(x == y for x, y in zip(a, b)) / len(a)


def f1_of(cls: int, predicted: list[int], labels: list[int]) -> float:
    tp = sum(p == cls and y == cls for p, y in zip(predicted, labels))
    fp = sum(p == cls and y != cls for p, y in zip(predicted, labels))
    fn = sum(p != cls and y == cls for p, y in zip(predicted, labels))
    return 2 * tp / (2 * tp + fp + fn)


def loader(batches) -> DataLoader:
    items = [{"tokens": scores, "mask": torch.ones(len(scores), 1), "labels": labels} for scores, labels in batches]
    return DataLoader(items, batch_size=None)


@pytest.mark.parametrize("batches", [BINARY, MULTICLASS], ids=["binary", "multiclass"])
def test_every_logged_metric_has_the_value_worked_out_by_hand(batches, tmp_path):
    classes = batches[0][0].shape[1]
    model = FixedScores(vocab_size=5, num_classes=classes, hidden_size=4, fc_size=4, embedding_dim=4)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(model, train_dataloaders=loader(batches), val_dataloaders=loader(batches))
    logged = {name: float(value) for name, value in trainer.callback_metrics.items()}
    logged.update({name: float(value) for name, value in trainer.test(model, loader(batches), verbose=False)[0].items()})
    expected = expected_metrics(batches)
    names = {"train": "train/loss_epoch", "val": "val/loss", "test": "test/loss"}
    for stage in ("train", "val", "test"):
        for metric, value in expected.items():
            name = names[stage] if metric == "loss" else f"{stage}/{metric}"
            assert logged[name] == pytest.approx(value, abs=1e-6), name
    if classes == 2:  # the numbers: with probabilities AUROC and accuracy are 1.0 on the first batch
        assert expected_metrics(BINARY[:1])["auroc"] == expected_metrics(BINARY[:1])["acc"] == 1.0
