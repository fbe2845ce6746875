"""pytest's shared setup for tests/: the tests import their helpers as ``helpers`` (tests/helpers.py) whatever
pytest's import mode (the markers, slow, network and cuda, are declared in pytest.ini with --strict-markers); and
every test (and every process a test starts) keeps its tokenized-data caches in one temporary folder of the
session, not in the user's ``~/.cache/torch_rnn/preprocessed``; and ``trained``, a small fit shared by the tests
of one module."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session", autouse=True)
def preprocessed_cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    before = os.environ.get("TORCH_RNN_PREPROCESSED")
    os.environ["TORCH_RNN_PREPROCESSED"] = str(tmp_path_factory.mktemp("preprocessed"))
    yield
    if before is None:
        del os.environ["TORCH_RNN_PREPROCESSED"]
    else:
        os.environ["TORCH_RNN_PREPROCESSED"] = before


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """One small fit through the CLI (tests/fit_helpers.py): its CLI object (in-memory model and data) and log
    directory."""
    from fit_helpers import small_fit_args, write_tsv
    from lightning_module.cli import SentimentCLI
    from lightning_module.datamodule import SentimentDataModule
    from lightning_module.module import SentimentClassifier

    root = tmp_path_factory.mktemp("fit")
    data = write_tsv(root / "small.tsv")
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, args=small_fit_args(data, root),
                       auto_configure_optimizers=False, save_config_kwargs={"overwrite": True})
    return cli, Path(cli.trainer.logger.log_dir)
