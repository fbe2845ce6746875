# Two commands on a fresh machine: `make train` runs the main job, `make test` runs the test suite.
# Each creates the virtual environment .venv on first use and installs the project into it.
# torch is pinned to the 2.13.0 CPU wheel first, so the unpinned range in setup.py does not pull a CUDA build.
# Then the RNN's C++ loops are compiled against that torch (about a minute; torch_rnn runs without them if that fails).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: train test bench tensorboard

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,glove]'
	$(PY) -m torch_rnn.build_native
	touch $@

train: $(VENV)/.installed
	$(PY) train.py

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_rnn.py

tensorboard: $(VENV)/.installed
	$(PY) -m tensorboard.main --logdir lightning_logs
