"""Every test (and every process a test starts) keeps its tokenized-data caches in one temporary folder of the
session, not in the user's ``~/.cache/torch_rnn/preprocessed``."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def preprocessed_cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    before = os.environ.get("TORCH_RNN_PREPROCESSED")
    os.environ["TORCH_RNN_PREPROCESSED"] = str(tmp_path_factory.mktemp("preprocessed"))
    yield
    if before is None:
        del os.environ["TORCH_RNN_PREPROCESSED"]
    else:
        os.environ["TORCH_RNN_PREPROCESSED"] = before
