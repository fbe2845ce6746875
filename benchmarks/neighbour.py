"""Neighbour processes, for timing on a busy machine (``bench_rnn.py --neighbour``).

A neighbour is another program on the same cores while the benchmark runs, of one of two kinds:

- ``python``: two pure-Python busy loops (two processes), as a web server or a tokenizer pool would be;
- ``torch``: one process running its own 2-thread PyTorch training loop (an ``nn.RNN`` and a linear layer on
  random data, SGD), as another job, a DataLoader worker or a second DDP rank would be.

Multi-threaded code suffers most from them: threads that meet at every step wait, at every step, for whichever
of them the scheduler has just taken off its core.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from typing import Iterator

KINDS = ("python", "torch")

_BUSY_LOOP = "while True:\n    pass\n"

_TRAINING_LOOP = """
import torch
torch.set_num_threads(2)
torch.manual_seed(0)
rnn, head = torch.nn.RNN(64, 128, batch_first=True), torch.nn.Linear(128, 2)
parameters = list(rnn.parameters()) + list(head.parameters())
optimizer = torch.optim.SGD(parameters, lr=1e-3)
x, y = torch.randn(64, 50, 64), torch.randint(0, 2, (64,))
print("ready", flush=True)
while True:
    optimizer.zero_grad()
    output, _ = rnn(x)
    torch.nn.functional.cross_entropy(head(output.mean(1)), y).backward()
    optimizer.step()
"""


@contextlib.contextmanager
def neighbours(kind: str) -> Iterator[None]:
    """Runs the neighbour ``kind`` (one of :data:`KINDS`) for the duration of the block, then kills it.

    Raises:
        ValueError: for an unknown kind.
        RuntimeError: when a neighbour process exits on its own (its error output is included).
    """
    if kind not in KINDS:
        raise ValueError(f"neighbour: expected one of {', '.join(KINDS)}, got {kind!r}")
    programs = [_BUSY_LOOP, _BUSY_LOOP] if kind == "python" else [_TRAINING_LOOP]
    processes = [subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for program in programs]
    try:
        if kind == "torch":  # wait until it trains (importing torch takes a few seconds)
            line = processes[0].stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"neighbour: the training loop did not start:\n{processes[0].stderr.read()}")
        time.sleep(1.0)  # let the scheduler see them running
        yield
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"neighbour: a {kind} process exited with {process.returncode} while timing:\n"
                                   f"{process.stderr.read()}")
    finally:
        for process in processes:
            process.kill()
            process.wait()


def describe(kind: str) -> str:
    """One line saying what the neighbour ``kind`` runs."""
    return {"python": "two pure-Python busy loops", "torch": "a 2-thread nn.RNN training loop"}[kind]
