"""Per-step timing of a training loop for ``bench_train.py``: a :class:`StepTimer` that the plain loop calls
directly and :class:`LightningTiming` feeds from Lightning's hooks, and the :class:`Record` they fill: the end of
every step, its forward, backward and optimizer seconds, and a fingerprint of its batch."""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import pytorch_lightning as pl
import torch
from torch import Tensor, nn


@dataclass
class Record:
    """Per-step timestamps and model times of one run."""

    ends: list[float] = field(default_factory=list)  # perf_counter at the end of every step
    forward: list[float] = field(default_factory=list)
    backward: list[float] = field(default_factory=list)
    optimizer: list[float] = field(default_factory=list)
    sentences: list[int] = field(default_factory=list)
    fingerprints: list[tuple[int, ...]] = field(default_factory=list)


class StepTimer:
    """Collects, per step: forward, backward and optimizer seconds, the end time, the batch's fingerprint."""

    def __init__(self) -> None:
        self.record = Record()
        self._marks: dict[str, float] = {}
        self._current = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}

    def begin_step(self, batch: dict[str, Tensor]) -> None:
        self._current = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        tokens = batch["tokens"]
        self.record.sentences.append(len(tokens))
        self.record.fingerprints.append((*tokens.shape, int(tokens.sum()), int((tokens * tokens).sum() % 1_000_003),
                                         int(batch["labels"].sum())))

    def start(self, what: str) -> None:
        self._marks[what] = time.perf_counter()

    def stop(self, what: str) -> None:
        start = self._marks.pop(what, None)
        if start is not None:  # e.g. a forward outside a step (the swap check) has no start mark here
            self._current[what] += time.perf_counter() - start

    def end_step(self) -> None:
        self.record.ends.append(time.perf_counter())
        for what, seconds in self._current.items():
            getattr(self.record, what).append(seconds)

    @contextlib.contextmanager
    def timing_forward(self, net: nn.Module) -> Iterator[None]:
        """Time every ``net.forward`` into the current step's forward time."""
        handles = [net.register_forward_pre_hook(lambda *_: self.start("forward")),
                   net.register_forward_hook(lambda *_: self.stop("forward"))]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


class LightningTiming(pl.Callback):
    """Feeds a :class:`StepTimer` from Lightning's hooks; ``bench_train.py``'s docstring says what brackets
    what."""

    def __init__(self, timer: StepTimer) -> None:
        self.timer = timer
        self.threads: Optional[int] = None
        self._handle = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.threads = torch.get_num_threads()
        original = pl_module.configure_gradient_clipping

        @functools.wraps(original)
        def configure_gradient_clipping(*args: Any, **kwargs: Any) -> None:
            self.timer.start("optimizer")  # after the module's on_before_optimizer_step (grad-norm log)
            return original(*args, **kwargs)

        pl_module.configure_gradient_clipping = configure_gradient_clipping  # an instance attribute
        self._handle = trainer.optimizers[0].register_step_post_hook(lambda *_: self.timer.stop("optimizer"))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        del pl_module.configure_gradient_clipping
        self._handle.remove()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.timer.begin_step(batch)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        self.timer.start("backward")

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.timer.stop("backward")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.timer.end_step()
