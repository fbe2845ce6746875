"""The command line: a LightningCLI over SentimentClassifier and SentimentDataModule.

``python train.py`` fits ``configs/default.yaml``; ``python train.py fit|validate|test|predict --config X``
and every ``--model.*``, ``--data.*``, ``--trainer.*`` override work as in any LightningCLI. Bad input
(data, settings, checkpoints) ends with one line on stderr and exit status 1 instead of a traceback.
"""
from __future__ import annotations

import inspect
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from lightning_module.callbacks import TrainingSummary
from lightning_module.datamodule import SentimentDataModule
from lightning_module.errors import DataError
from lightning_module.inference import load_checkpoint
from lightning_module.module import NOT_SAVED, SentimentClassifier


class SentimentCLI(LightningCLI):
    """Links the data's vocabulary size and class count into the model, and always adds the summary.

    Only the subcommand named on the command line (``fit``, ``validate``, ``test``, ``predict``) gets its parser
    built: each takes jsonargparse a tenth of a second or more of every start. Without one (``--help``, a
    typo, arguments given as a dict) all four are built, as LightningCLI does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        given = sys.argv[1:] if kwargs.get("args") is None else kwargs["args"]
        first = given[0] if isinstance(given, (list, tuple)) and given else None
        self._requested_subcommand = first if first in LightningCLI.subcommands() else None
        super().__init__(*args, **kwargs)

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        requested = self._requested_subcommand
        if requested is None:
            super()._add_subcommands(parser, **kwargs)
            return
        every = LightningCLI.subcommands()
        self.subcommands = lambda: {requested: every[requested]}  # what the parent's loop goes through
        try:
            super()._add_subcommands(parser, **kwargs)
        finally:
            del self.subcommands

    def before_instantiate_classes(self) -> None:
        """A resumed fit logs into its checkpoint's ``version_K`` folder; output that is not a terminal gets
        :class:`LineProgress` instead of the redrawn progress bar."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config["trainer"]
        ckpt_path = config.get("ckpt_path") if self.subcommand == "fit" else None  # a resumed fit, not a test
        if ckpt_path is not None and trainer.get("logger") in (None, True):
            version_dir = Path(ckpt_path).resolve().parent.parent  # .../lightning_logs/version_K/checkpoints/x.ckpt
            if version_dir.name.startswith("version_") and version_dir.name[len("version_"):].isdigit():
                trainer["logger"] = {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                                     "init_args": {"save_dir": str(version_dir.parent.parent),
                                                   "name": version_dir.parent.name, "version": version_dir.name}}
        if trainer.get("enable_progress_bar") is not False and not sys.stdout.isatty():
            trainer["enable_progress_bar"] = False
            self._line_progress = True
        else:
            self._line_progress = False

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[pl.Callback]) -> pl.Trainer:
        extra = [LineProgress()] if getattr(self, "_line_progress", False) else []
        return super()._instantiate_trainer(config, [*callbacks, *extra])

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_lightning_class_args(TrainingSummary, "summary")

    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path`` must be one of our checkpoints, checked (with a weights-only load) before Lightning
        reads its hyperparameters (its own errors would be tracebacks), and the settings must not contradict
        it: Lightning would silently replace them with the checkpoint's."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path == "last":  # the latest last.ckpt of this root's runs (Lightning's own "last" looks
            ckpt_path = self.config[subcommand]["ckpt_path"] = str(latest_last_checkpoint(  # in a new version_K)
                self.config[subcommand]["trainer"].get("default_root_dir") or "."))
        self._checkpoint = None
        if ckpt_path not in (None, "best", "last", "hpc", "registry"):
            self._checkpoint = load_checkpoint(ckpt_path)
            if subcommand == "fit":  # other subcommands just use the checkpoint's model
                defaults = self._parser(subcommand).get_defaults()
                check_settings_against_checkpoint(self.config[subcommand], self._checkpoint, ckpt_path, defaults)
        super()._parse_ckpt_path()

    def _check_resume(self) -> None:
        """After instantiation: the data must give the checkpoint's vocabulary size and classes, and a resumed
        fit must have epochs left to train."""
        if self._checkpoint is None:
            return
        ckpt_path = self.config_init[self.subcommand]["ckpt_path"]
        trained = self._checkpoint["hyper_parameters"]
        model = self.model.hparams
        for name, what in (("vocab_size", "vocabulary size (padding included)"), ("num_classes", "number of classes")):
            if name in trained and model[name] != trained[name]:
                raise DataError(f"{ckpt_path}: the checkpoint's model has a {what} of {trained[name]}, the data "
                                f"gives {model[name]}: resume with the data it was trained on")
        if self.subcommand == "fit":
            done = self._checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get(
                "current", {}).get("processed", 0)
            max_epochs = self.trainer.max_epochs
            if max_epochs is not None and 0 <= max_epochs <= done:
                raise DataError(f"{ckpt_path}: the checkpoint has trained {done} epoch(s) and --trainer.max_epochs "
                                f"is {max_epochs}: nothing is left to train; raise --trainer.max_epochs")

    before_fit = before_validate = before_test = before_predict = _check_resume

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        """The Trainer loads ``--ckpt_path`` with ``weights_only=True`` too: no checkpoint can run code."""
        return {**super()._prepare_subcommand_kwargs(subcommand), "weights_only": True}


def latest_last_checkpoint(root: str) -> Path:
    """The newest ``lightning_logs/version_K/checkpoints/last.ckpt`` under ``root`` (``--ckpt_path last``).

    Raises:
        DataError: there is none.
    """
    candidates = sorted(Path(root).glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise DataError(f"--ckpt_path last: no lightning_logs/version_*/checkpoints/last.ckpt under {root}")
    return candidates[-1]


#: Model settings that a resumed run may change: they only act at the start of a fresh fit, on speed, or on what
#: is logged.
SAFE_MODEL_SETTINGS = {"compile", "compile_backend", "embedding_init", "naive_bayes_dims", "naive_bayes_scale",
                       "log_bptt", "explain_sentences"}
#: The DataModule settings a checkpoint carries (its encoder) and overrides on resume.
CHECKPOINT_DATA_SETTINGS = ("max_length", "lowercase")


def check_settings_against_checkpoint(config: Any, checkpoint: dict[str, Any], ckpt_path: str,
                                      defaults: Any = None) -> None:
    """One line for every ``--model.*`` / ``--data.*`` setting of a resumed fit that differs from the
    checkpoint's: a DataError for the first that would be silently replaced (the network's shape, the
    encoding), a warning for those safe to change (``SAFE_MODEL_SETTINGS``, which act only on a fresh fit or
    on speed). Settings left at the parser's ``defaults`` are not the user's: Lightning fills them in from the
    checkpoint. A setting the checkpoint does not record (it came later) was trained at its default."""
    signature = inspect.signature(SentimentClassifier.__init__).parameters
    trained = {name: parameter.default for name, parameter in signature.items()
               if parameter.default is not inspect.Parameter.empty and name not in NOT_SAVED}
    trained.update(checkpoint.get("hyper_parameters", {}))
    model_config = config.get("model") or {}
    model_defaults = (defaults.get("model") if defaults is not None else None) or {}
    for name, value in sorted(model_config.items()):
        if name in ("vocab_size", "num_classes") or name not in trained or trained[name] == value:
            continue  # the data sets the first two (checked once the data is read)
        if name in model_defaults and model_defaults[name] == value:
            continue
        line = (f"--model.{name} is {value!r} but the checkpoint {ckpt_path} was trained with {trained[name]!r}")
        if name in SAFE_MODEL_SETTINGS:
            warnings.warn(f"{line}; it only acts on a fresh fit, so the resumed run keeps the checkpoint's",
                          UserWarning, stacklevel=2)
        else:
            raise DataError(f"{line}: a resumed run keeps the checkpoint's model; drop the setting, or train a new "
                            "model without --ckpt_path")
    encoder = checkpoint.get(SentimentDataModule.__qualname__) or {}
    data_config = config.get("data") or {}
    data_defaults = (defaults.get("data") if defaults is not None else None) or {}
    for name in CHECKPOINT_DATA_SETTINGS:
        if name in data_defaults and data_defaults[name] == data_config.get(name):
            continue
        if name in encoder and name in data_config and data_config[name] != encoder[name]:
            raise DataError(f"--data.{name} is {data_config[name]!r} but the checkpoint {ckpt_path} encodes text "
                            f"with {encoder[name]!r}: a resumed run keeps the checkpoint's; drop the setting")


def silence_library_noise() -> None:
    """Quiet what is not the user's business: Lightning's advertisement for its cloud logger, a deprecation
    inside Lightning's own code (printed twice a run), and torchmetrics' note that a one-class validation
    split has no AUROC (the logged value then says 0)."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(
        lambda record: not str(record.getMessage()).startswith("💡 Tip"))
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"No (negative|positive) samples in targets")


class LineProgress(pl.Callback):
    """Progress as lines, for output that is not a terminal (a log file, CI): one line every ``every``
    percent of an epoch's training batches, with the running loss, instead of a bar redrawn with carriage
    returns (hundreds of KB in a log)."""

    def __init__(self, every: int = 10) -> None:
        self.every = every
        self._next = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._next = self.every

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        total = trainer.num_training_batches
        if not isinstance(total, int) or total <= 0 or trainer.global_rank != 0:
            return
        percent = 100 * (batch_idx + 1) // total
        if percent >= self._next or batch_idx + 1 == total:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            loss_text = f", loss {float(loss):.4f}" if loss is not None else ""
            epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
            print(f"epoch {trainer.current_epoch + 1}{epochs}: {percent}% ({batch_idx + 1}/{total} batches){loss_text}",
                  flush=True)
            self._next = (percent // self.every + 1) * self.every


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a test's capture, a redirected stream)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def show_data_reports() -> None:
    """The data's own reports (rows read and skipped per file, the splits, the vocabulary) on stderr, like
    Lightning's: INFO and above of the ``lightning_module`` loggers."""
    logger = logging.getLogger("lightning_module")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(args: Optional[Sequence[str]] = None, default_config: Optional[Path] = None) -> None:
    """Run the CLI on ``args`` (default: the command line); with no arguments at all, fit ``default_config``."""
    silence_library_noise()
    show_data_reports()
    if args is None and len(sys.argv) == 1 and default_config is not None:
        args = ["fit", "--config", str(default_config)]
    try:
        SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, auto_configure_optimizers=False,
                     save_config_kwargs={"overwrite": True})
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
