"""The training stack end to end: train.py's CLI, the report's run, TensorBoard logs, predict.py, DDP, bad input.

Most tests run the CLI in-process (``lightning_module.cli.main``) to save start-up time; the exit-status and
DDP tests run ``python train.py`` / ``python predict.py`` as real subprocesses.
"""
from __future__ import annotations

import json
import math
import random
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_module import sources, vader
from lightning_module.cli import SentimentCLI, main
from lightning_module.datamodule import SentimentDataModule, TextEncoder
from lightning_module.errors import DataError, DownloadError
from lightning_module.module import SentimentClassifier
from lightning_module.predict_cli import main as predict_main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
REPORT_LOSSES = ["0.315483", "0.277323", "0.243838", "0.212798", "0.183810",
                 "0.157254", "0.133639", "0.113249", "0.096055", "0.081789"]

POSITIVE = ["a wonderful , moving film", "great acting and a great story", "i loved every minute of it",
            "funny , warm and smart", "a beautiful and touching movie", "brilliant direction , superb cast"]
NEGATIVE = ["a dull , lifeless mess", "boring and far too long", "i hated every minute of it",
            "the plot is stupid and the acting is bad", "a tedious , ugly film", "awful writing , weak cast"]


def write_tsv(path: Path, repeat: int = 4) -> Path:
    rows = [f"1\t{s}" for s in POSITIVE] + [f"0\t{s}" for s in NEGATIVE]
    path.write_text("\n".join(rows * repeat) + "\n", encoding="utf-8")
    return path


def small_fit_args(data: Path, root: Path, *extra: str) -> list[str]:
    """A short fit of the default recipe on a small file."""
    return ["fit", "--config", str(CONFIGS / "default.yaml"), "--data.path", str(data),
            "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "2",
            "--trainer.enable_progress_bar", "false", "--model.hidden_size", "16", "--model.fc_size", "16",
            "--model.embedding_dim", "8", "--model.naive_bayes_dims", "4", "--data.batch_size", "8",
            "--trainer.log_every_n_steps", "1", *extra]


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def event_tags(log_dir: Path) -> set[str]:
    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small fit through the CLI; its CLI object (in-memory model and data) and log directory."""
    root = tmp_path_factory.mktemp("fit")
    data = write_tsv(root / "small.tsv")
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, args=small_fit_args(data, root),
                       auto_configure_optimizers=False, save_config_kwargs={"overwrite": True})
    return cli, Path(cli.trainer.logger.log_dir)


def test_fit_on_a_small_file_writes_checkpoints(trained):
    cli, log_dir = trained
    assert cli.trainer.global_step == 2 * len(cli.datamodule.train_dataloader())  # two epochs
    checkpoints = sorted(p.name for p in (log_dir / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(name.startswith("best-") for name in checkpoints)


def test_tensorboard_events_hold_train_loss_and_validation_metrics(trained):
    _, log_dir = trained
    tags = event_tags(log_dir)
    assert {"train/loss", "train/loss_epoch", "val/loss", "val/acc", "val/f1", "val/auroc", "grad_norm/total"} <= tags
    assert any(tag.startswith("lr-") for tag in tags)  # the LearningRateMonitor


def test_step_values_are_logged_on_the_steps_the_logger_writes(tmp_path):
    """train/loss and grad_norm/total on every log_every_n_steps-th step (Lightning writes those), and
    train/loss_epoch once per epoch."""
    data = write_tsv(tmp_path / "small.tsv")
    args = small_fit_args(data, tmp_path)
    args[args.index("--trainer.log_every_n_steps") + 1] = "3"
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, auto_configure_optimizers=False,
                       save_config_kwargs={"overwrite": True})
    steps_per_epoch = len(cli.datamodule.train_dataloader())
    accumulator = EventAccumulator(cli.trainer.logger.log_dir)
    accumulator.Reload()
    logged = {tag: [event.step for event in accumulator.Scalars(tag)]
              for tag in ("train/loss", "grad_norm/total", "train/loss_epoch")}
    every_third = list(range(2, cli.trainer.global_step, 3))
    assert logged["train/loss"] == logged["grad_norm/total"] == every_third
    assert logged["train/loss_epoch"] == [steps_per_epoch - 1, 2 * steps_per_epoch - 1]


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


def test_seed_report_reproduces_the_report_to_six_decimals(tmp_path, capsys):
    if not (sources.CS5242_DIR / "train.csv").is_file():
        pytest.skip(f"the report's data is not at {sources.CS5242_DIR}")
    main(["fit", "--config", str(CONFIGS / "seed_report.yaml"), "--trainer.default_root_dir", str(tmp_path)])
    out = capsys.readouterr().out
    printed = [line for line in out.splitlines() if line.startswith("(Iteration")]
    expected = [f"(Iteration {10 * i + 1} / 100) loss: {loss}" for i, loss in enumerate(REPORT_LOSSES)]
    assert printed == expected
    log_dir = next((tmp_path / "lightning_logs").iterdir())
    assert (log_dir / "loss_history.png").stat().st_size > 0
    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    losses = [event.value for event in accumulator.Scalars("train/loss")]
    assert len(losses) == 100
    assert f"{losses[0]:f}" == REPORT_LOSSES[0]


@pytest.mark.network
def test_fit_on_the_default_corpus(tmp_path, capsys):
    try:
        vader.fetch_vader_corpus("rotten_tomatoes")
    except DownloadError as error:
        pytest.skip(f"no package index reachable to fetch the default corpus: {error}")
    main(["fit", "--config", str(CONFIGS / "default.yaml"), "--trainer.default_root_dir", str(tmp_path),
          "--trainer.max_steps", "5", "--trainer.val_check_interval", "5", "--trainer.limit_val_batches", "2",
          "--trainer.enable_progress_bar", "false"])
    out = capsys.readouterr().out
    assert "Best validation" in out and "-m tensorboard.main --logdir" in out


@pytest.mark.slow
def test_ddp_fit_in_two_processes(tmp_path):
    data = write_tsv(tmp_path / "small.tsv")
    result = run_script("train.py", "fit", "--config", str(CONFIGS / "default.yaml"),
                        "--config", str(CONFIGS / "ddp_cpu.yaml"), "--data.path", str(data),
                        "--trainer.default_root_dir", str(tmp_path), "--trainer.max_epochs", "1",
                        "--trainer.enable_progress_bar", "false", "--model.hidden_size", "16",
                        "--model.fc_size", "16", "--model.embedding_dim", "8", "--model.naive_bayes_dims", "4",
                        cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training finished" in result.stdout
    assert (next((tmp_path / "lightning_logs").iterdir()) / "checkpoints" / "last.ckpt").is_file()


# ---- bad input: one line on stderr, exit status 1 ------------------------------------------------------
def cli_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    *reports, error = err.splitlines()  # the data's reports (rows read per file) may come first
    assert error.startswith("error: ") and "Traceback" not in err
    assert all(not line.startswith(("error", " ")) for line in reports), err
    return error


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


def test_cli_exit_status_in_a_real_process(tmp_path):
    result = run_script("predict.py", str(tmp_path / "missing.ckpt"), "a sentence", cwd=ROOT)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.ckpt'}: no such checkpoint file"


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


def run_all_stages(data: Path, root: Path, *extra: str) -> dict[str, object]:
    """Fit, then validate, test and predict with the fitted model; every logged number and the predictions."""
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, auto_configure_optimizers=False,
                       save_config_kwargs={"overwrite": True},
                       args=small_fit_args(data, root, "--seed_everything", "7",
                                           *extra))
    numbers: dict[str, object] = {f"fit {k}": float(v) for k, v in cli.trainer.callback_metrics.items()}
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    numbers.update({f"validate {k}": v for k, v in trainer.validate(model, datamodule=datamodule, verbose=False)[0].items()})
    numbers.update({f"test {k}": v for k, v in trainer.test(model, datamodule=datamodule, verbose=False)[0].items()})
    numbers["predict"] = torch.cat(trainer.predict(model, dataloaders=datamodule.test_dataloader()))
    return numbers


@pytest.mark.parametrize("backend, no_dropout", [("aot_eager", False),
                                                 pytest.param("inductor", True, marks=pytest.mark.slow)])
def test_compiled_model_gives_the_eager_numbers_in_every_stage(tmp_path, backend, no_dropout):
    """Equal within float32 rounding (compiled, a batch with lengths runs its rows padded rather than packed, so
    the matmuls see other shapes). Inductor draws dropout masks from its own generator: compared without dropout."""
    data = write_tsv(tmp_path / "small.tsv")
    extra = ("--model.dropout", "0", "--model.embedding_dropout", "0") if no_dropout else ()
    eager = run_all_stages(data, tmp_path / "eager", *extra)
    compiled = run_all_stages(data, tmp_path / "compiled", "--model.compile", "true", "--model.compile_backend",
                              backend, *extra)
    assert eager.keys() == compiled.keys() and len(eager) > 8
    tolerance = dict(rtol=1e-5, atol=1e-6)
    for key in eager:
        torch.testing.assert_close(torch.as_tensor(compiled[key]), torch.as_tensor(eager[key]), **tolerance,
                                   msg=lambda m: f"{key}: {m}")


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
    assert resume("--trainer.max_epochs", "2") == (
        f"error: {checkpoint}: the checkpoint has trained 2 epoch(s) and --trainer.max_epochs is 2: nothing is left "
        "to train; raise --trainer.max_epochs")
    other = tmp_path / "other.tsv"
    other.write_text("\n".join(f"{i % 2}\tword{i} another{i} film" for i in range(40)) + "\n", encoding="utf-8")
    err = cli_error(small_fit_args(other, tmp_path, "--ckpt_path", checkpoint), capsys)
    assert err.startswith(f"error: {checkpoint}: the checkpoint's model has a vocabulary size (padding included) "
                          "of 45, the data gives") and err.endswith("resume with the data it was trained on")


def test_resume_with_a_setting_safe_to_change_warns_and_trains_on(trained, tmp_path):
    _, log_dir = trained
    data = write_tsv(tmp_path / "small.tsv")
    args = small_fit_args(data, tmp_path, "--ckpt_path", str(log_dir / "checkpoints" / "last.ckpt"),
                          "--trainer.max_epochs", "3", "--model.naive_bayes_scale", "3.0")
    with pytest.warns(UserWarning, match="--model.naive_bayes_scale is 3.0 but the checkpoint .* trained with 2.0"):
        cli = SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, auto_configure_optimizers=False,
                           save_config_kwargs={"overwrite": True})
    assert cli.trainer.current_epoch == 3


@pytest.mark.slow
def test_the_summary_commands_run_as_printed_in_a_plain_shell(trained, tmp_path, capsys):
    """The closing summary's commands name this environment's python by its path, so they work in a shell
    where no virtual environment is active (PATH without it), from the directory the fit ran in."""
    data = write_tsv(tmp_path / "small.tsv")
    main(small_fit_args(data, tmp_path, "--trainer.max_epochs", "1"))
    out = capsys.readouterr().out
    predict_line = next(line for line in out.splitlines() if line.startswith("Classify sentences: "))
    tensorboard_line = next(line for line in out.splitlines() if line.startswith("View them with:"))
    shell_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(predict_line.split(": ", 1)[1], shell=True, capture_output=True, text=True, env=shell_env,
                         timeout=300)
    assert run.returncode == 0 and run.stdout.split("\t")[2].strip() == "a sentence to classify", run.stderr
    help_run = subprocess.run(tensorboard_line.split(":", 1)[1].strip() + " --help", shell=True, capture_output=True,
                              text=True, env=shell_env, timeout=300)
    assert help_run.returncode == 0 and "--logdir" in help_run.stdout, help_run.stderr


def test_a_run_logged_to_a_file_writes_progress_lines_and_no_library_noise(tmp_path):
    data = write_tsv(tmp_path / "small.tsv")
    args = [a for a in small_fit_args(data, tmp_path) if a not in ("--trainer.enable_progress_bar", "false")]
    result = run_script(str(ROOT / "train.py"), *args, cwd=tmp_path)  # stdout and stderr are pipes, not a terminal
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "\r" not in output and "Tip" not in output and "LeafSpec" not in output
    assert "No negative samples" not in output and "No positive samples" not in output
    assert re.search(r"^epoch 2/2: 100% \(\d+/\d+ batches\), loss \d\.\d{4}$", result.stdout, re.MULTILINE), output


def test_bad_row_hint_spells_the_cli_flag(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\tgood film\n0\tbad film\nmaybe\tso so\n", encoding="utf-8")
    err = cli_error(small_fit_args(bad, tmp_path), capsys)
    assert "--data.skip_bad_rows true" in err


RESUME_CALLBACKS = """
trainer:
  callbacks:
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {monitor: val/acc, mode: max, filename: "best-epoch{epoch:02d}", auto_insert_metric_name: false}
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {filename: last, enable_version_counter: false}
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {filename: last, enable_version_counter: false, every_n_train_steps: 1}
"""


def resumable_fit_args(data: Path, root: Path, overlay: Path) -> list[str]:
    """Three epochs of 5 batches with dropout, shuffled and bucketed, a checkpoint after every step."""
    return ["fit", "--config", str(CONFIGS / "default.yaml"), "--config", str(overlay), "--data.path", str(data),
            "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "3", "--model.hidden_size", "16",
            "--model.fc_size", "16", "--model.embedding_dim", "8", "--model.naive_bayes_dims", "4",
            "--data.batch_size", "8", "--data.bucket_by_length", "true", "--trainer.log_every_n_steps", "1"]


def final_state(root: Path) -> tuple[dict, dict]:
    """The last checkpoint's weights and optimizer state, and the last value of every logged scalar."""
    [version] = list((root / "lightning_logs").iterdir())
    checkpoint = torch.load(version / "checkpoints" / "last.ckpt", weights_only=True)
    accumulator = EventAccumulator(str(version))
    accumulator.Reload()
    scalars = {tag: accumulator.Scalars(tag)[-1].value for tag in accumulator.Tags()["scalars"]}
    return {**checkpoint["state_dict"], **{f"optimizer {k}": v for k, v in
                                           checkpoint["optimizer_states"][0]["state"].items()}}, scalars


_RANDOM_KILL_STEP = random.Random().randint(1, 14)  # a different step on every run; its number is in the test id


@pytest.mark.slow
@pytest.mark.parametrize("kill_after, kill_signal", [(3, "SIGKILL"), (7, "SIGINT"), (11, "SIGKILL"),
                                                     (_RANDOM_KILL_STEP, "SIGKILL")],
                         ids=["epoch 1", "epoch 2 part way, SIGINT", "epoch 3, first step",
                              f"random step {_RANDOM_KILL_STEP}"])
def test_a_killed_fit_resumed_from_last_equals_an_uninterrupted_one(tmp_path, kill_after, kill_signal):
    """Kill after the kill_after-th training step's progress line (the step's checkpoint may or may not be
    written by then), resume with --ckpt_path last: the final weights, optimizer state and logged metrics equal
    an uninterrupted run's, bit for bit, and the resumed run's summary counts the whole run."""
    import signal

    data = write_tsv(tmp_path / "small.tsv")
    overlay = tmp_path / "resume.yaml"
    overlay.write_text(RESUME_CALLBACKS, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    whole = subprocess.run([sys.executable, str(ROOT / "train.py"), *resumable_fit_args(data, tmp_path / "whole", overlay)],
                           cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert whole.returncode == 0, whole.stderr

    killed_root = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *resumable_fit_args(data, killed_root, overlay)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    steps = 0
    for line in process.stdout:
        if line.startswith("epoch "):
            steps += 1
            if steps == kill_after:
                process.send_signal(getattr(signal, kill_signal))
                break
    process.wait(timeout=300)
    assert steps == kill_after
    resumed = subprocess.run([sys.executable, str(ROOT / "train.py"), *resumable_fit_args(data, killed_root, overlay),
                              "--ckpt_path", "last"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "Training finished: 3 epoch(s), 15 step(s)" in resumed.stdout

    (weights, scalars), (expected_weights, expected_scalars) = final_state(killed_root), final_state(tmp_path / "whole")
    assert weights.keys() == expected_weights.keys()
    for name in weights:
        for a, b in zip(torch.utils._pytree.tree_leaves(weights[name]), torch.utils._pytree.tree_leaves(expected_weights[name])):
            assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), name
    assert scalars == expected_scalars


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


def test_validate_with_a_checkpoint_needs_no_training_settings_and_keeps_its_logs(trained, tmp_path, capsys):
    """validate/test take the checkpoint's model (no resume checks), and log into their own root."""
    cli, log_dir = trained
    data = write_tsv(tmp_path / "small.tsv")
    config_before = (log_dir / "config.yaml").read_text(encoding="utf-8")
    main(["validate", "--data.path", str(data), "--trainer.default_root_dir", str(tmp_path / "v"),
          "--trainer.enable_progress_bar", "false", "--ckpt_path", str(log_dir / "checkpoints" / "last.ckpt")])
    assert (tmp_path / "v" / "lightning_logs").is_dir()
    assert (log_dir / "config.yaml").read_text(encoding="utf-8") == config_before


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


def test_resume_from_last_with_no_run_yet_gets_one_line(tmp_path, capsys):
    data = write_tsv(tmp_path / "small.tsv")
    err = cli_error(small_fit_args(data, tmp_path / "empty", "--ckpt_path", "last"), capsys)
    assert err == (f"error: --ckpt_path last: no lightning_logs/version_*/checkpoints/last.ckpt under "
                   f"{tmp_path / 'empty'}")


@pytest.mark.parametrize("overlay, expected", [
    ("glove.yaml", {"model.input_mode": "pretrained", "model.embedding_init": "random", "data.batch_size": 32}),
    ("ddp_cpu.yaml", {"trainer.devices": 2, "data.batch_size": 16, "model.input_mode": "embedding"}),
])
def test_config_overlays_change_only_their_keys(overlay, expected):
    """configs/glove.yaml and ddp_cpu.yaml are overlays on default.yaml: the keys they set, default's for the rest."""
    from lightning_module.cli import SentimentCLI, SentimentClassifier, SentimentDataModule

    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, auto_configure_optimizers=False, run=False,
                       args=["--config", str(CONFIGS / "default.yaml"), "--config", str(CONFIGS / overlay)])
    for key, value in expected.items():
        assert cli.config[key] == value, key
    assert cli.config["model.hidden_size"] == 128 and cli.config["summary.monitor"] == "val/loss"
