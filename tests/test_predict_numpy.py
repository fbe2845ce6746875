"""predict.py without torch: the safe checkpoint reader (lightning_module.checkpoint_reader) and the numpy forward
pass (lightning_module.numpy_model) agree with torch.load and the torch model; a plain prediction imports no torch."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_module.checkpoint_reader import UnreadableCheckpoint, read_checkpoint
from lightning_module.encoder import TextEncoder
from lightning_module.inference import SentimentPredictor
from lightning_module.network import build_network
from lightning_module.ngrams import ngram_keys
from lightning_module.numpy_model import NumpyPredictor, load_predictor
from lightning_module.predict_cli import main as predict_main
from lightning_module.prediction import CHECKPOINT_KEY, FOLD_CHECKPOINT_KEY
from lightning_module.tokenizer import Tokenizer
from lightning_module.vocabulary import Vocabulary

ROOT = Path(__file__).resolve().parents[1]
WORDS = "a the film movie great good bad dull boring wonderful plot cast is was and but not , . !".split()
SENTENCES = ["a wonderful film", "boring and dull , but the cast is great !", "zzyzzq", "the plot . " * 30,
             "not good", "A Great FILM!"]


def write_checkpoint(path: Path, seed: int = 0, temperature: float = 1.7, **settings) -> Path:
    """A checkpoint shaped like train.py's: random weights of build_network(**settings), an encoder, a temperature,
    and an optimizer state the reader does not need."""
    torch.manual_seed(seed)
    vocab = Vocabulary(["<pad>", "<unk>", *WORDS], unk_token="<unk>")
    settings = {"vocab_size": len(vocab), "hidden_size": 6, "fc_size": 5, "embedding_dim": 4, **settings}
    network = build_network(**settings)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.uniform_(-0.8, 0.8)
    encoder = TextEncoder(vocab, Tokenizer(), max_length=12, label_names=["negative", "positive", "neutral"][:settings.get("num_classes", 2)])
    if settings.get("ngram_order"):  # an NBSVM table: the n-grams of the test sentences, random weights
        batch = encoder.encode(SENTENCES[:3] + SENTENCES[4:])
        keys = ngram_keys(batch["tokens"], batch["mask"], settings["ngram_order"], len(vocab)).unique()[1:]
        network.ngrams.set(keys[::2], torch.randn(len(keys[::2]), settings.get("num_classes", 2)), torch.randn(settings.get("num_classes", 2)))
        network.ngrams.scale.fill_(0.8)
    state = {f"model.{key}": value for key, value in network.state_dict().items()}
    state["temperature"] = torch.tensor(temperature)
    torch.save({"state_dict": state, "hyper_parameters": settings, CHECKPOINT_KEY: encoder.state(),
                "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(3, 2).T}}}]}, path)
    return path


SETTINGS = [
    dict(input_mode="embedding", bidirectional=True),
    dict(input_mode="embedding", bidirectional=True, num_layers=2, nonlinearity="relu"),
    dict(input_mode="onehot", num_layers=2, num_classes=3),
    dict(input_mode="pretrained", pretrained="glove-6b-50d", bidirectional=True, skip_padding=False),
    dict(input_mode="embedding", num_layers=3, bidirectional=True, skip_padding=False, nonlinearity="relu"),
    dict(input_mode="embedding", bidirectional=True, ngram_order=2),
    dict(input_mode="onehot", num_classes=3, ngram_order=3),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_numpy_forward_agrees_with_the_torch_model(tmp_path, settings):
    path = write_checkpoint(tmp_path / "model.ckpt", **settings)
    torch_predictor = SentimentPredictor.from_checkpoint(path)
    numpy_predictor = NumpyPredictor.from_checkpoint(path)
    assert numpy_predictor.temperature == pytest.approx(1.7)
    classifiable = [text for text in SENTENCES if text.strip()]
    expected = torch_predictor.probabilities(classifiable).numpy()
    actual = numpy_predictor.probabilities([Tokenizer()(text) for text in classifiable])
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)
    for ours, theirs in zip(numpy_predictor.predict(SENTENCES + [" "]), torch_predictor.predict(SENTENCES + [" "])):
        assert (ours.label, ours.unknown, ours.truncated, ours.tokens, ours.error) == \
            (theirs.label, theirs.unknown, theirs.truncated, theirs.tokens, theirs.error)
        assert ours.probability == pytest.approx(theirs.probability, abs=1e-5) if theirs.error is None else True


def test_the_reader_gives_torch_loads_values(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    values = {"view": base[1:, ::2], "transposed": base.T, "whole": base, "long": torch.arange(5),
              "half": torch.linspace(0, 1, 7, dtype=torch.float16), "double": torch.ones(2, 3, dtype=torch.float64),
              "flag": torch.tensor([True, False]), "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5),
              "parameter": torch.nn.Parameter(torch.randn(3))}
    torch.save({"tensors": values, "plain": {"a": [1, 2.5, "x", None, (True,)]}}, tmp_path / "t.ckpt")
    read = read_checkpoint(tmp_path / "t.ckpt")
    assert read["plain"] == {"a": [1, 2.5, "x", None, (True,)]}
    for name, tensor in values.items():
        np.testing.assert_array_equal(read["tensors"][name].numpy(), tensor.detach().numpy(), err_msg=name)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_reader_refuses_code_and_what_it_cannot_read(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = write_checkpoint(tmp_path / "model.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["payload"] = _RunsCode(marker)
    torch.save(checkpoint, tmp_path / "crafted.ckpt")
    with pytest.raises(UnreadableCheckpoint, match="system"):
        read_checkpoint(tmp_path / "crafted.ckpt")
    assert load_predictor(tmp_path / "crafted.ckpt") is None and not marker.exists()
    with pytest.raises(SystemExit):  # predict.py falls back to torch.load(weights_only=True), which refuses it too
        predict_main([str(tmp_path / "crafted.ckpt"), "a sentence"])
    assert "refused to load" in capsys.readouterr().err and not marker.exists()
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"] = {k: v.to(torch.bfloat16) if v.is_floating_point() else v
                                for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, tmp_path / "bf16.ckpt")
    assert load_predictor(tmp_path / "bf16.ckpt") is None  # numpy has no bfloat16: torch loads it
    predict_main([str(tmp_path / "bf16.ckpt"), "a great film"])
    assert capsys.readouterr().out.split("\t")[0] in ("positive", "negative")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    assert load_predictor(tmp_path / "text.ckpt") is None


def test_predict_py_rows_are_the_torch_predictors(tmp_path, capsys):
    path = write_checkpoint(tmp_path / "model.ckpt", input_mode="embedding", bidirectional=True)
    predict_main([str(path), *SENTENCES])
    fast = capsys.readouterr().out.splitlines()
    torch_rows = SentimentPredictor.from_checkpoint(path).predict(SENTENCES)
    assert fast == [f"{p.label}\t{p.probability:.4f}\t{p.text}" for p in torch_rows]


def test_a_cross_validation_folds_checkpoint_is_read_without_torch(tmp_path):
    path = write_checkpoint(tmp_path / "model.ckpt", input_mode="embedding", bidirectional=True)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint[FOLD_CHECKPOINT_KEY] = checkpoint.pop(CHECKPOINT_KEY)  # where a fold's checkpoint keeps the encoder
    fold = tmp_path / "fold.ckpt"
    torch.save(checkpoint, fold)
    fast = load_predictor(fold)
    assert isinstance(fast, NumpyPredictor)
    assert [(p.label, round(p.probability, 5)) for p in fast.predict(SENTENCES)] == \
        [(p.label, round(p.probability, 5)) for p in load_predictor(path).predict(SENTENCES)]


def _predict_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_one_sentence_imports_neither_torch_nor_lightning(tmp_path):
    path = write_checkpoint(tmp_path / "model.ckpt", input_mode="embedding", bidirectional=True)
    result = _predict_py("-X", "importtime", "predict.py", str(path), "a wonderful film")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t")[0] in ("positive", "negative")
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert {"lightning_module", "numpy", "regex"} <= imported
    assert not imported & {"torch", "torch_rnn", "pytorch_lightning", "lightning", "torchmetrics", "tensorboard",
                           "nltk", "matplotlib", "jsonargparse", "pyarrow", "sklearn"}


@pytest.mark.slow
def test_predict_py_starts_in_a_second_and_a_half(tmp_path):
    """The median of five runs of ``python predict.py CKPT "a sentence"`` (loaded machines: the median of three
    tries of that)."""
    path = write_checkpoint(tmp_path / "model.ckpt", input_mode="embedding", bidirectional=True)
    medians = []
    for _ in range(3):
        seconds = []
        for _ in range(5):
            started = time.perf_counter()
            assert _predict_py("predict.py", str(path), "a wonderful film").returncode == 0
            seconds.append(time.perf_counter() - started)
        medians.append(statistics.median(seconds))
        if medians[-1] <= 1.5:
            break
    assert min(medians) <= 1.5, f"medians {medians} s, load average {os.getloadavg()}"
