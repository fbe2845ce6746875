"""The training stack end to end: train.py's CLI, the report's run, TensorBoard logs, DDP, compile, resuming,
config overlays. tests/test_predict.py covers predict.py and tests/test_cli_errors.py bad input.

Most tests run the CLI in-process (``lightning_module.cli.main``) to save start-up time; the DDP test and a few
others run ``python train.py`` as a real subprocess.
"""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fit_helpers import CONFIGS, REPORT_LOSSES, ROOT, event_tags, run_script, small_fit_args, write_tsv
from lightning_module import sources, vader
from lightning_module.cli import SentimentCLI, main
from lightning_module.datamodule import SentimentDataModule
from lightning_module.errors import DownloadError
from lightning_module.module import SentimentClassifier


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


# A different step on every run; its number is in the test id. From step 2: step k's progress line comes after
# step k - 1's checkpoint, so there is one to resume from (a kill at step 1 may come before the first).
_RANDOM_KILL_STEP = random.Random().randint(2, 14)


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
    # SIGINT as Python's default (a KeyboardInterrupt) even when this process ignores it: a non-interactive shell
    # starts background jobs ignoring SIGINT, and a child process would inherit that and never stop.
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *resumable_fit_args(data, killed_root, overlay)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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


def test_validate_with_a_checkpoint_needs_no_training_settings_and_keeps_its_logs(trained, tmp_path, capsys):
    """validate/test take the checkpoint's model (no resume checks), and log into their own root."""
    cli, log_dir = trained
    data = write_tsv(tmp_path / "small.tsv")
    config_before = (log_dir / "config.yaml").read_text(encoding="utf-8")
    main(["validate", "--data.path", str(data), "--trainer.default_root_dir", str(tmp_path / "v"),
          "--trainer.enable_progress_bar", "false", "--ckpt_path", str(log_dir / "checkpoints" / "last.ckpt")])
    assert (tmp_path / "v" / "lightning_logs").is_dir()
    assert (log_dir / "config.yaml").read_text(encoding="utf-8") == config_before


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
