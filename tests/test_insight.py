"""Seeing inside a trained model: the HTML explanation page against the contributions, the calibration
functions, and what a fit logs and stores (BPTT and explanation panels, ECE, the temperature in the checkpoint
and its use by predict.py)."""
from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_module.calibration import expected_calibration_error, fit_temperature, reliability_bins
from lightning_module.cli import SentimentCLI
from lightning_module.datamodule import SentimentDataModule, TextEncoder
from lightning_module.explanations import AGAINST_RGB, FOR_RGB, explanation_html
from lightning_module.inference import SentimentPredictor, load_checkpoint
from lightning_module.module import SentimentClassifier
from lightning_module.predict_cli import main as predict_main
from lightning_module.tokenizer import Tokenizer
from lightning_module.vocabulary import Vocabulary
from fit_helpers import small_fit_args, write_tsv


class Spans(HTMLParser):
    """The page's word spans: (text, style, title, data-value), and every text outside them."""

    def __init__(self) -> None:
        super().__init__()
        self.words: list[dict] = []
        self.texts: list[str] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "span" and attrs.get("class") == "w":
            self._open = {**attrs, "text": ""}

    def handle_endtag(self, tag):
        if tag == "span" and self._open is not None:
            self.words.append(self._open)
            self._open = None

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data
        else:
            self.texts.append(data)


def predictor(temperature: float = 1.0) -> SentimentPredictor:
    torch.manual_seed(0)
    vocab = Vocabulary.build([["good", "bad", "film", "<b>", "&", '"quoted"', "ok"]] * 2)
    model = SentimentClassifier(vocab_size=len(vocab), num_classes=2, hidden_size=8, fc_size=6, embedding_dim=4,
                                bidirectional=True)
    model.temperature.fill_(temperature)
    return SentimentPredictor(model, TextEncoder(vocab, Tokenizer(), 20, ["neg", "pos"]))


def test_html_page_shades_every_word_by_its_contribution_and_escapes_the_text():
    sentences = ["good film", "bad ok film good", "<script>alert(1)</script> & good", "   "]
    predictions = predictor().predict(sentences, explain=True)
    page = explanation_html(predictions)
    assert "<script" not in page.lower() and "</script" not in page.lower()
    parser = Spans()
    parser.feed(page)
    explained = [p for p in predictions if p.error is None]
    expected = [(word, value) for p in explained for word, value in p.contributions]
    assert [span["text"] for span in parser.words] == [word for word, _ in expected]
    scale = max(abs(value) for _, value in expected)
    for span, (_, value) in zip(parser.words, expected):
        assert float(span["data-value"]) == pytest.approx(value, abs=1e-6)
        assert span["title"] == f"{value:+.3f}"
        rgb, alpha = FOR_RGB if value > 0 else AGAINST_RGB, round(min(1.0, abs(value) / scale), 3)
        assert span["style"] == f"background:rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha})"
    assert {span["style"].endswith(",1.0)") for span in parser.words} == {True, False}  # the largest is full colour
    assert sum(value > 0 for _, value in expected) and sum(value < 0 for _, value in expected)  # both colours used
    text = "".join(parser.texts)
    assert "error: no tokens" in text  # the blank sentence's row
    assert {"<", "&"} <= {span["text"] for span in parser.words} and "&lt;" in page and "&amp;" in page  # escaped
    for p in explained:  # the caption's log-odds is the words' sum plus the bias
        assert f"log-odds {p.bias + sum(v for _, v in p.contributions):+.3f}" in text


def test_html_page_needs_explanations():
    [prediction] = predictor().predict(["good film"])
    with pytest.raises(ValueError, match="has no contributions: predict with explain=True"):
        explanation_html([prediction])


def test_temperature_divides_the_scores_and_the_explanations_follow():
    plain, hot = predictor(1.0), predictor(3.0)
    sentences = ["good film", "bad ok film"]
    for a, b in zip(plain.predict(sentences, explain=True), hot.predict(sentences, explain=True)):
        assert a.label == b.label
        log_odds = lambda p: math.log(p.probability / (1 - p.probability))
        assert log_odds(b) == pytest.approx(log_odds(a) / 3, abs=1e-5)
        assert b.bias + sum(v for _, v in b.contributions) == pytest.approx(log_odds(b), abs=1e-5)
        assert [v for _, v in b.contributions] == pytest.approx([v / 3 for _, v in a.contributions], abs=1e-6)


def test_fit_temperature_recovers_the_temperature_that_made_the_labels():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20000, 3, generator=generator)
    labels = torch.multinomial((logits / 2.5).softmax(1), 1, generator=generator).squeeze(1)
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)
    assert fit_temperature(logits / 2.5, labels) == pytest.approx(1.0, rel=0.05)
    assert fit_temperature(logits / 5, labels) == 1.0  # it would sharpen (T = 0.5): kept at 1


def test_expected_calibration_error_by_hand():
    # Top-class probabilities 0.9, 0.9 (bin 14, one right: accuracy 0.5) and 0.6 (bin 9, right: accuracy 1).
    probabilities = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.4, 0.6]])
    labels = torch.tensor([0, 0, 1])
    expected = 2 / 3 * abs(0.5 - 0.9) + 1 / 3 * abs(1.0 - 0.6)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(expected, abs=1e-6)
    confidence, accuracy, counts = reliability_bins(probabilities, labels)
    assert counts[13].item() == 2 and counts[9].item() == 1 and counts.sum().item() == 3
    assert accuracy[13].item() == 0.5 and confidence[9].item() == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"expected scores \(N, C\)"):
        expected_calibration_error(torch.ones(3), labels)
    with pytest.raises(ValueError, match="no examples"):
        fit_temperature(torch.ones(0, 2), torch.ones(0, dtype=torch.long))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small fit of the default recipe (with word dropout), then its test run."""
    root = tmp_path_factory.mktemp("insight")
    data = write_tsv(root / "small.tsv", repeat=6)
    args = small_fit_args(data, root, "--model.word_dropout", "0.1", "--data.val_fraction", "0.25",
                          "--data.test_fraction", "0.25")
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, auto_configure_optimizers=False,
                       save_config_kwargs={"overwrite": True})
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    return cli, Path(cli.trainer.logger.log_dir)


def test_a_fit_logs_bptt_explanations_and_calibration_to_tensorboard(fitted):
    cli, log_dir = fitted
    accumulator = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    accumulator.Reload()
    tags = accumulator.Tags()
    assert {"bptt/grad_norm_first", "bptt/grad_norm_last", "val/ece", "val/ece_calibrated", "val/temperature",
            "test/ece", "test/ece_calibrated"} <= set(tags["scalars"])
    assert {"bptt/grad_norm", "explanations/validation"} <= set(tags["images"])
    epochs = cli.trainer.current_epoch
    for tag in ("bptt/grad_norm_first", "bptt/grad_norm_last", "val/temperature"):
        values = [event.value for event in accumulator.Scalars(tag)]
        assert len(values) == epochs and all(math.isfinite(v) and v > 0 for v in values), tag
    assert [e.step for e in accumulator.Scalars("bptt/grad_norm_first")] == [e.step for e in accumulator.Scalars("val/loss")]
    for tag in ("bptt/grad_norm", "explanations/validation"):
        images = accumulator.Images(tag)
        assert len(images) == epochs and images[-1].encoded_image_string.startswith(b"\x89PNG")
    for tag in ("val/ece", "test/ece_calibrated"):
        assert 0 <= accumulator.Scalars(tag)[-1].value <= 1


def test_the_checkpoint_stores_the_temperature_and_predict_py_uses_it(fitted, tmp_path, capsys):
    cli, log_dir = fitted
    path = log_dir / "checkpoints" / "last.ckpt"
    stored = load_checkpoint(path)["state_dict"]["temperature"]
    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    assert float(stored) == pytest.approx(accumulator.Scalars("val/temperature")[-1].value, rel=1e-6)
    assert float(stored) == float(cli.model.temperature)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["temperature"] = torch.tensor(2.5)
    path = tmp_path / "hot.ckpt"
    torch.save(checkpoint, path)
    sentences = ["a wonderful film", "boring and ugly"]
    batch = cli.datamodule.encode_texts(sentences)
    model = cli.model.eval()
    with torch.no_grad():
        expected = (model(batch["tokens"], batch["mask"]) / 2.5).softmax(1)
    page = tmp_path / "explained.html"
    predict_main([str(path), *sentences, "--json", "--html", str(page)])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for row, probabilities in zip(rows, expected):
        assert row["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)
        assert "contributions" in row  # --html implies --explain
    parser = Spans()
    parser.feed(page.read_text(encoding="utf-8"))
    assert [span["text"] for span in parser.words] == " ".join(sentences).split()
    with pytest.raises(SystemExit):
        predict_main([str(path), "a film", "--html", str(tmp_path / "no such folder" / "x.html")])
    assert "cannot write the HTML page" in capsys.readouterr().err


def test_a_checkpoint_without_a_temperature_loads_with_one(fitted, tmp_path):
    _, log_dir = fitted
    checkpoint = torch.load(log_dir / "checkpoints" / "last.ckpt", weights_only=True)
    del checkpoint["state_dict"]["temperature"]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    assert SentimentPredictor.from_checkpoint(tmp_path / "old.ckpt").temperature == 1.0


def test_log_bptt_false_and_no_explanations_log_neither(tmp_path):
    data = write_tsv(tmp_path / "small.tsv")
    args = small_fit_args(data, tmp_path, "--model.log_bptt", "false", "--model.explain_sentences", "0",
                          "--trainer.max_epochs", "1")
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, auto_configure_optimizers=False,
                       save_config_kwargs={"overwrite": True})
    accumulator = EventAccumulator(cli.trainer.logger.log_dir, size_guidance={"images": 0})
    accumulator.Reload()
    assert not [tag for tag in accumulator.Tags()["scalars"] if tag.startswith("bptt/")]
    assert accumulator.Tags()["images"] == []
    assert "val/ece" in accumulator.Tags()["scalars"]


@pytest.mark.parametrize("setting, message", [("--model.word_dropout=1.0", r"word_dropout.*\n.*1.0 does not conform"),
                                              ("--model.explain_sentences=-1", r"explain_sentences.*\n.*-1 does not")])
def test_bad_settings_are_named(tmp_path, capsys, setting, message):
    from lightning_module.cli import main

    with pytest.raises(SystemExit):
        main(small_fit_args(write_tsv(tmp_path / "small.tsv"), tmp_path, setting))
    assert re.search(message, capsys.readouterr().err)
