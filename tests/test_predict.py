"""predict.py and the predictor behind it, on a checkpoint of a small fit: the same scores as the in-memory
model, options anywhere, explanations that sum to the log-odds, only the imports prediction needs, and
checkpoints that are refused (not ours, or crafted to run code)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fit_helpers import CONFIGS, ROOT, cli_error, run_script, write_tsv
from lightning_module.datamodule import TextEncoder
from lightning_module.errors import DataError
from lightning_module.module import SentimentClassifier
from lightning_module.predict_cli import main as predict_main


def test_predict_py_matches_the_in_memory_model(trained, tmp_path, capsys):
    cli, log_dir = trained
    checkpoint = log_dir / "checkpoints" / "last.ckpt"
    sentences = ["a wonderful film", "boring and ugly", "the cast is great but the plot is dull"]
    model = cli.model.eval()
    batch = cli.datamodule.encode_texts(sentences)
    with torch.no_grad():
        expected = (model(batch["tokens"], batch["mask"]) / model.temperature).softmax(dim=1)
    (tmp_path / "sentences.txt").write_text("\n".join(sentences[1:]) + "\n", encoding="utf-8")
    predict_main([str(checkpoint), sentences[0], "--file", str(tmp_path / "sentences.txt"), "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["text"] for row in rows] == sentences
    names = cli.datamodule.label_names
    for row, probabilities in zip(rows, expected):
        label = int(probabilities.argmax())
        assert row["label"] == names[label]
        assert row["probability"] == pytest.approx(float(probabilities[label]), abs=1e-6)


def test_checkpoint_that_is_not_ours(tmp_path, capsys):
    data = write_tsv(tmp_path / "small.tsv")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2)}}, foreign)
    err = cli_error(["test", "--config", str(CONFIGS / "default.yaml"), "--data.path", str(data),
                     "--ckpt_path", str(foreign)], capsys)
    assert "foreign.ckpt" in err and "not a torch-rnn sentiment checkpoint" in err
    not_a_checkpoint = tmp_path / "notes.ckpt"
    not_a_checkpoint.write_text("hello", encoding="utf-8")
    with pytest.raises(SystemExit):
        predict_main([str(not_a_checkpoint), "a sentence"])
    assert "notes.ckpt: not a PyTorch checkpoint" in capsys.readouterr().err


class _RunsCode:
    """Unpickling this calls ``os.system``: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_everywhere(trained, tmp_path, capsys):
    marker = tmp_path / "pwned"
    _, log_dir = trained
    checkpoint = torch.load(log_dir / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["payload"] = _RunsCode(marker)  # a real checkpoint with one crafted object
    crafted = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, crafted)
    refused = f"{crafted}: refused to load: it holds Python objects other than tensors and plain data"

    with pytest.raises(SystemExit):  # predict.py
        predict_main([str(crafted), "a sentence"])
    assert refused in capsys.readouterr().err
    data = write_tsv(tmp_path / "small.tsv")
    for subcommand in ("fit", "test"):  # train.py --ckpt_path
        err = cli_error([subcommand, "--config", str(CONFIGS / "default.yaml"), "--data.path", str(data),
                         "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(crafted)], capsys)
        assert refused in err
    with pytest.raises(DataError, match="refused to load"):  # the DataModule's encoder
        TextEncoder.from_checkpoint(crafted)
    with pytest.raises(Exception):  # Lightning's own loader, as the predictor and the Trainer call it
        SentimentClassifier.load_from_checkpoint(crafted, weights_only=True)
    assert not marker.exists()
    # The payload is real: an unrestricted load runs it.
    torch.load(crafted, weights_only=False)
    assert marker.exists()


def test_predict_py_options_anywhere_and_every_sentence_gets_a_row(trained, capsys):
    _, log_dir = trained
    checkpoint = str(log_dir / "checkpoints" / "last.ckpt")
    long_text = " ".join(["great"] * 60)  # default max_length is 50 tokens
    with pytest.raises(SystemExit) as exit_info:  # one sentence cannot be classified: exit status 1
        predict_main([checkpoint, "--json", "a great film", "", "a zzyzzq film", long_text])
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [row["text"] for row in rows] == ["a great film", "", "a zzyzzq film", long_text]
    assert "label" in rows[0] and rows[0]["unknown"] == [] and rows[0]["truncated"] is False
    assert rows[1]["error"].startswith("no tokens") and "label" not in rows[1]
    assert rows[2]["unknown"] == ["zzyzzq"] and "label" in rows[2]
    assert rows[3]["truncated"] is True
    assert "1 of 4 sentence(s) could not be classified" in captured.err
    predict_main([checkpoint, "a great film", "--json", "a dull film"])  # an option between the sentences
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["a great film",
                                                                                          "a dull film"]
    predict_main([checkpoint, "a zzyzzq film", long_text])  # text rows: notes on stderr
    captured = capsys.readouterr()
    assert "note: sentence 1: 1 unknown word(s): zzyzzq" in captured.err
    assert "note: sentence 2: cut to its first 50 of 60 tokens" in captured.err


def test_predict_py_reports_a_missing_checkpoint_quickly(tmp_path):
    import time

    start = time.perf_counter()
    result = run_script("predict.py", "--json", str(tmp_path / "missing.ckpt"), "a sentence", cwd=ROOT)
    elapsed = time.perf_counter() - start
    assert result.returncode == 1 and "no such checkpoint file" in result.stderr
    assert elapsed < 2.0, f"took {elapsed:.1f} s"


def test_predict_py_imports_only_what_predicting_needs(trained):
    """One sentence: the project's light modules and numpy, not torch, Lightning, torchmetrics, TensorBoard or NLTK."""
    _, log_dir = trained
    result = run_script("-X", "importtime", "predict.py", str(log_dir / "checkpoints" / "last.ckpt"), "a wonderful film",
                        cwd=ROOT)
    assert result.returncode == 0 and result.stdout.split("\t")[0] in ("positive", "negative")
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "lightning_module" in imported
    assert not imported & {"torch", "torch_rnn", "pytorch_lightning", "lightning", "lightning_fabric", "torchmetrics", "tensorboard", "nltk",
                           "matplotlib", "jsonargparse"}


def test_predict_py_explain_shares_sum_to_the_log_odds(trained, capsys):
    _, log_dir = trained
    predict_main([str(log_dir / "checkpoints" / "last.ckpt"), "--json", "--explain", "a wonderful film",
                  "boring and far too long"])
    for row in map(json.loads, capsys.readouterr().out.splitlines()):
        words = [word for word, _ in row["contributions"]]
        assert words == row["text"].split()
        p = row["probability"]
        assert row["bias"] + sum(value for _, value in row["contributions"]) == pytest.approx(
            math.log(p / (1 - p)), abs=1e-4)
    predict_main([str(log_dir / "checkpoints" / "last.ckpt"), "--explain", "a wonderful film"])
    assert "| bias " in capsys.readouterr().out


def test_explain_with_three_classes_sums_to_the_log_odds():
    """More than two classes: the first-order shares plus the bias still give log p / (1 - p) exactly."""
    from lightning_module.datamodule import TextEncoder
    from lightning_module.inference import SentimentPredictor
    from lightning_module.tokenizer import Tokenizer
    from lightning_module.vocabulary import Vocabulary

    torch.manual_seed(0)
    vocab = Vocabulary.build([["good", "bad", "film", "ok"]] * 2)
    model = SentimentClassifier(vocab_size=len(vocab), num_classes=3, hidden_size=8, fc_size=6, embedding_dim=4,
                                bidirectional=True)
    predictor = SentimentPredictor(model, TextEncoder(vocab, Tokenizer(), 10, ["neg", "neu", "pos"]))
    for prediction in predictor.predict(["good film", "bad ok film", "film"], explain=True):
        log_odds = math.log(prediction.probability / (1 - prediction.probability))
        assert prediction.bias + sum(v for _, v in prediction.contributions) == pytest.approx(log_odds, abs=1e-5)


def test_a_checkpoint_loaded_for_inference_does_not_reseed_a_later_fit(trained):
    """Loading a checkpoint (load_from_checkpoint) and then fitting afresh: the fit's own seed decides."""
    _, log_dir = trained
    model = SentimentClassifier.load_from_checkpoint(log_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert model._resume_state is not None  # kept for a fit from this checkpoint only
    model.trainer = None
    import pytorch_lightning as pl
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(model)
    model.trainer = trainer
    before = torch.get_rng_state()
    model.on_fit_start()  # trainer.ckpt_path is None: not a resume
    assert torch.equal(torch.get_rng_state(), before) and model._resume_state is None
