"""Bad input to train.py: one line on stderr naming the problem (file and line, setting), exit status 1, no
traceback."""
from __future__ import annotations

import pytest
import torch

from fit_helpers import ROOT, cli_error, run_script, small_fit_args, write_tsv


@pytest.mark.parametrize(
    "content, expected",
    [
        ("", "empty"),
        ("1\tgood film\n0\tbad film\nmaybe\tso so\n", "bad.tsv:3: invalid label 'maybe'"),
        ("label\ttext\n1\tgood\n0\t\n", "bad.tsv:3"),
        ("score\tcomment\n1\tgood\n0\tbad\n", "column"),
    ],
    ids=["empty", "unknown-label", "empty-text-with-header", "wrong-column"],
)
def test_bad_data_file_gives_one_line_and_exit_1(tmp_path, capsys, content, expected):
    data = tmp_path / "bad.tsv"
    data.write_text(content, encoding="utf-8")
    err = cli_error(small_fit_args(data, tmp_path), capsys)
    assert "bad.tsv" in err and expected in err


def test_missing_data_file(tmp_path, capsys):
    err = cli_error(small_fit_args(tmp_path / "nowhere.tsv", tmp_path), capsys)
    assert "nowhere.tsv" in err


def test_cli_exit_status_in_a_real_process(tmp_path):
    result = run_script("predict.py", str(tmp_path / "missing.ckpt"), "a sentence", cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.ckpt'}: no such checkpoint file"


def test_resume_settings_that_contradict_the_checkpoint_get_one_line(trained, tmp_path, capsys):
    _, log_dir = trained
    checkpoint = str(log_dir / "checkpoints" / "last.ckpt")
    data = write_tsv(tmp_path / "small.tsv")

    def resume(*extra: str) -> str:
        return cli_error(small_fit_args(data, tmp_path, "--ckpt_path", checkpoint, *extra), capsys)

    assert resume("--model.hidden_size", "64") == (
        f"error: --model.hidden_size is 64 but the checkpoint {checkpoint} was trained with 16: a resumed run keeps "
        "the checkpoint's model; drop the setting, or train a new model without --ckpt_path")
    assert resume("--data.max_length", "20").startswith("error: --data.max_length is 20 but the checkpoint")
    older = tmp_path / "older.ckpt"  # written before model.ngram_order existed: trained without n-grams
    state = torch.load(checkpoint, weights_only=True)
    del state["hyper_parameters"]["ngram_order"]
    torch.save(state, older)
    assert cli_error(small_fit_args(data, tmp_path, "--ckpt_path", str(older), "--model.ngram_order", "2"), capsys) == (
        f"error: --model.ngram_order is 2 but the checkpoint {older} was trained with 0: a resumed run keeps "
        "the checkpoint's model; drop the setting, or train a new model without --ckpt_path")
    assert resume("--trainer.max_epochs", "2") == (
        f"error: {checkpoint}: the checkpoint has trained 2 epoch(s) and --trainer.max_epochs is 2: nothing is left "
        "to train; raise --trainer.max_epochs")
    other = tmp_path / "other.tsv"
    other.write_text("\n".join(f"{i % 2}\tword{i} another{i} film" for i in range(40)) + "\n", encoding="utf-8")
    err = cli_error(small_fit_args(other, tmp_path, "--ckpt_path", checkpoint), capsys)
    assert err.startswith(f"error: {checkpoint}: the checkpoint's model has a vocabulary size (padding included) "
                          "of 45, the data gives") and err.endswith("resume with the data it was trained on")


def test_bad_row_hint_spells_the_cli_flag(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\tgood film\n0\tbad film\nmaybe\tso so\n", encoding="utf-8")
    err = cli_error(small_fit_args(bad, tmp_path), capsys)
    assert "--data.skip_bad_rows true" in err


def test_resume_from_last_with_no_run_yet_gets_one_line(tmp_path, capsys):
    data = write_tsv(tmp_path / "small.tsv")
    err = cli_error(small_fit_args(data, tmp_path / "empty", "--ckpt_path", "last"), capsys)
    assert err == (f"error: --ckpt_path last: no lightning_logs/version_*/checkpoints/last.ckpt under "
                   f"{tmp_path / 'empty'}")


def test_only_the_named_subcommand_gets_a_parser_and_help_lists_all_four(capsys, monkeypatch) -> None:
    """Building a subcommand's parser takes a noticeable share of a start, so only the one named is built."""
    from lightning_module.cli import SentimentCLI
    from lightning_module.datamodule import SentimentDataModule
    from lightning_module.module import SentimentClassifier

    built = []
    original = SentimentCLI._prepare_subcommand_parser

    def recording(self, klass, subcommand, **kwargs):
        built.append(subcommand)
        return original(self, klass, subcommand, **kwargs)

    monkeypatch.setattr(SentimentCLI, "_prepare_subcommand_parser", recording)
    for args, expected in ((["validate", "--help"], ["validate"]), (["--help"], ["fit", "validate", "test", "predict"])):
        built.clear()
        with pytest.raises(SystemExit):
            SentimentCLI(SentimentClassifier, SentimentDataModule, args=args)
        assert built == expected
    help_text = capsys.readouterr().out
    assert all(name in help_text for name in ("fit", "validate", "test", "predict")), help_text[-3000:]
