"""Benchmark end-to-end training of the default recipe: Lightning vs a plain PyTorch loop, torch_rnn vs nn.RNN.

What is trained: ``configs/default.yaml``'s model and data (the Rotten Tomatoes corpus, a learned embedding,
a bidirectional tanh RNN, batch size 32, length-bucketed batches; fetched once into ``~/.cache/torch_rnn``
by the datamodule's ``prepare_data``), or ``--data-path``'s file with the same settings, for
``--warmup`` + ``--steps`` optimizer steps, in four variants:

- **Lightning, torch_rnn**: ``SentimentClassifier`` as is (its ``training_step`` updates the training
  metrics and calls ``self.log``; its ``on_before_optimizer_step`` logs the gradient norm), fitted by a
  ``pl.Trainer`` on the CPU with ``max_steps``, ``gradient_clip_val`` from the config, no validation
  (``limit_val_batches=0``), no checkpointing, ``logger=False`` (no logger at all), no progress bar and
  no model summary;
- **Lightning, nn.RNN**: the same with ``model.model.rnn`` replaced by :class:`NNRNN`, a
  ``torch.nn.RNN`` holding the same weights (``load_state_dict``) behind our call signature
  ``forward(input, hx=None, lengths=None)``: with lengths it packs (``pack_padded_sequence(batch_first=True,
  enforce_sorted=False)``), runs ``nn.RNN`` and pads back to the full ``T``
  (``pad_packed_sequence(total_length=T)``);
- **plain, torch_rnn** / **plain, nn.RNN**: the same network (``SentimentRNN``), data loader, optimizer
  (the config's AdamW, lr 0.002, weight decay 0.01) and gradient clipping (``clip_grad_norm_``, 5.0) in a
  hand-written loop: ``zero_grad``, forward, ``softmax_loss``, ``backward``, clip, ``step``. No metrics,
  no logging.

The config's learning-rate scheduler is left out of all four (it steps once per epoch). Every variant
starts from the same weights (built under the same seed) and re-seeds torch's generator right before its
loop, so all four see the same batches in the same order (checked: the script compares a fingerprint of
every step's batch across the variants and says whether they agree) and the same dropout masks up to
Lightning's own use of the generator. Before timing, the nn.RNN swap is checked: the network's scores
with ``NNRNN`` must match ours within 1e-4 on a training batch (eval mode), or the run aborts.

What is reported, over the ``--steps`` timed steps that follow ``--warmup`` untimed ones:

- **sentences/s** and **ms/step**: wall-clock time from the end of the last warm-up step to the end of the
  last timed step (``time.perf_counter``), so each step's share includes fetching its batch and
  everything the loop does around it;
- **fwd, bwd, opt ms**: the model's own work per step, timed explicitly and the same way in both loops:
  forward = the network's ``forward`` (a forward pre-hook and a forward hook on ``SentimentRNN``);
  backward = ``loss.backward()`` (in Lightning: the callback hooks ``on_before_backward`` to
  ``on_after_backward``, which bracket only the precision plugin's ``loss.backward()``); opt = gradient
  clipping plus ``optimizer.step()`` (in Lightning: from the start of the module's
  ``configure_gradient_clipping`` hook, wrapped to take a timestamp, to an
  ``Optimizer.register_step_post_hook``, which fires when the AdamW update is done);
- **outside**: step time minus fwd + bwd + opt, per step and as a share of the step: data loading and
  collation, the loss (a two-class softmax, a few microseconds), ``zero_grad`` and, in Lightning, the loop
  itself (hooks, closures, ``training_step``'s metric updates and ``self.log``, the gradient-norm log).

Then: Lightning's overhead over the plain loop on the same RNN, ``(Lightning ms/step) / (plain ms/step) -
1``, for both RNNs, and the end-to-end speedup of torch_rnn over nn.RNN (``nn.RNN ms/step / torch_rnn
ms/step``) in both loops. With ``--rounds`` > 1 the four variants run that many times, in an order that
rotates from round to round, and the numbers pool all rounds (ms/step: total time over total steps).

Run from the repository root::

    python benchmarks/bench_train.py                      # defaults: 3 rounds of 10 warm-up + 200 timed steps
    python benchmarks/bench_train.py --steps 300 --rounds 5 --threads 1
    python benchmarks/bench_train.py --json               # the same numbers as JSON
    python benchmarks/bench_train.py --data-path my.tsv   # a user data file instead of the default corpus
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import pytorch_lightning as pl
import torch
import yaml
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import torch_rnn  # noqa: E402
from lightning_module.datamodule import SentimentDataModule  # noqa: E402
from lightning_module.module import SentimentClassifier  # noqa: E402
from torch_rnn.models import softmax_loss  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
TOLERANCE = 1e-4
VARIANTS = (("lightning", "torch_rnn"), ("lightning", "nn.RNN"), ("plain", "torch_rnn"), ("plain", "nn.RNN"))


class MismatchError(RuntimeError):
    """The nn.RNN swap changes the network's scores, or the variants did not see the same batches."""


# ------------------------------------------------------------------------------------------- the swap
class NNRNN(nn.Module):
    """``torch.nn.RNN`` behind ``torch_rnn.RNN``'s call ``forward(input, hx=None, lengths=None)``.

    ``batch_first=True`` float input ``(N, T, D)``; with ``lengths`` the batch is packed
    (``enforce_sorted=False``), run, and padded back to ``T`` steps. Returns ``(output (N, T, dirs * H), h_n)``.
    """

    def __init__(self, ours: torch_rnn.RNN) -> None:
        super().__init__()
        if not ours.batch_first:
            raise ValueError("NNRNN: expected a batch_first torch_rnn.RNN")
        self.rnn = nn.RNN(ours.input_size, ours.hidden_size, ours.num_layers, ours.nonlinearity, ours.bias,
                          batch_first=True, dropout=ours.dropout, bidirectional=ours.bidirectional)
        self.rnn.load_state_dict(ours.state_dict())
        for name, parameter in ours.named_parameters():  # e.g. a frozen bias stays frozen
            getattr(self.rnn, name).requires_grad_(parameter.requires_grad)

    def forward(self, input: Tensor, hx: Optional[Tensor] = None,
                lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        if not input.is_floating_point():
            raise ValueError("NNRNN: nn.RNN needs a float input (input_mode 'embedding' or 'pretrained')")
        if lengths is None:
            return self.rnn(input, hx)
        packed = pack_padded_sequence(input, torch.as_tensor(lengths).cpu(), batch_first=True,
                                      enforce_sorted=False)
        output, h_n = self.rnn(packed, hx)
        return pad_packed_sequence(output, batch_first=True, total_length=input.shape[1])[0], h_n


def swap_in_nn_rnn(module: SentimentClassifier, batch: dict[str, Tensor]) -> None:
    """Replace ``module.model.rnn`` by :class:`NNRNN` and check the scores on ``batch`` (eval mode)."""
    net = module.model
    was_training = net.training
    net.eval()
    with torch.no_grad():
        before = net(batch["tokens"], batch["mask"])
        net.rnn = NNRNN(net.rnn)
        after = net(batch["tokens"], batch["mask"])
    net.train(was_training)
    error = (after - before).abs().max().item()
    if not error <= TOLERANCE:
        raise MismatchError(f"the network's scores with nn.RNN differ from torch_rnn's by {error:.2e} > {TOLERANCE:g}")


# ---------------------------------------------------------------------------------------- the config
def load_config(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as file:
        return yaml.safe_load(file)


def _class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def optimizer_factory(config: dict[str, Any]) -> Callable[..., torch.optim.Optimizer]:
    """The config's ``model.optimizer`` (class_path + init_args) as a parameters -> optimizer callable."""
    spec = config["model"].get("optimizer") or {"class_path": "torch.optim.Adam"}
    return functools.partial(_class(spec["class_path"]), **spec.get("init_args", {}))


def build_data(config: dict[str, Any], data_path: Optional[str]) -> SentimentDataModule:
    """The config's datamodule (``data_path`` replacing the data set), downloaded if needed and set up."""
    settings = dict(config.get("data", {}))
    if data_path is not None:
        settings["path"] = data_path
    datamodule = SentimentDataModule(**settings)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def build_module(config: dict[str, Any], datamodule: SentimentDataModule, seed: int) -> SentimentClassifier:
    """The config's model (without its learning-rate scheduler), weights drawn under ``seed``."""
    settings = {k: v for k, v in config["model"].items() if k not in ("optimizer", "lr_scheduler",
                                                                      "lr_scheduler_interval")}
    torch.manual_seed(seed)
    return SentimentClassifier(vocab_size=datamodule.vocab_size, num_classes=datamodule.num_classes,
                               optimizer=optimizer_factory(config), **settings)


# -------------------------------------------------------------------------------------------- timing
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
    """Feeds a :class:`StepTimer` from Lightning's hooks; see the module docstring for what brackets what."""

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


# --------------------------------------------------------------------------------------------- loops
def run_lightning(module: SentimentClassifier, datamodule: SentimentDataModule, config: dict[str, Any],
                  total_steps: int, seed: int) -> tuple[Record, int]:
    """Fit ``module`` for ``total_steps`` steps; the record and the thread count seen inside the loop."""
    timer = StepTimer()
    callback = LightningTiming(timer)
    trainer_config = config.get("trainer", {})
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_steps=total_steps, max_epochs=-1, limit_val_batches=0,
            num_sanity_val_steps=0, enable_checkpointing=False, logger=False, enable_progress_bar=False,
            enable_model_summary=False, gradient_clip_val=trainer_config.get("gradient_clip_val"),
            gradient_clip_algorithm=trainer_config.get("gradient_clip_algorithm"),
            log_every_n_steps=trainer_config.get("log_every_n_steps", 50), callbacks=[callback],
            default_root_dir=root,
        )
        torch.manual_seed(seed)
        with timer.timing_forward(module.model):
            trainer.fit(module, datamodule=datamodule)
    return timer.record, callback.threads


def run_plain(module: SentimentClassifier, datamodule: SentimentDataModule, config: dict[str, Any],
              total_steps: int, seed: int) -> tuple[Record, int]:
    """The same network, data, optimizer and clipping in a hand-written loop."""
    timer = StepTimer()
    net = module.model
    net.train()
    optimizer = optimizer_factory(config)(net.parameters())
    clip = config.get("trainer", {}).get("gradient_clip_val")
    if config.get("trainer", {}).get("gradient_clip_algorithm", "norm") not in (None, "norm"):
        raise ValueError("bench_train: the plain loop clips by norm only")
    loader = datamodule.train_dataloader()
    torch.manual_seed(seed)
    batches = iter(loader)
    with timer.timing_forward(net):
        for _ in range(total_steps):
            try:
                batch = next(batches)
            except StopIteration:  # next epoch
                batches = iter(loader)
                batch = next(batches)
            timer.begin_step(batch)
            optimizer.zero_grad()
            tokens = batch["tokens"]
            if module.hparams.word_dropout > 0:  # as the LightningModule's training step does
                tokens = module.drop_words(tokens, batch["mask"], datamodule.vocab.unk_index)
            loss = softmax_loss(net(tokens, batch["mask"]), batch["labels"])
            timer.start("backward")
            loss.backward()
            timer.stop("backward")
            timer.start("optimizer")
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
            timer.stop("optimizer")
            timer.end_step()
    return timer.record, torch.get_num_threads()


# ------------------------------------------------------------------------------------------- results
def summarize(records: Sequence[Record], warmup: int) -> dict[str, float]:
    """Pooled numbers over the timed steps (those after ``warmup``) of every round of one variant."""
    seconds = steps = sentences = forward = backward = optim = 0.0
    timed = slice(warmup, None)
    for record in records:
        seconds += record.ends[-1] - record.ends[warmup - 1]
        steps += len(record.ends[timed])
        sentences += sum(record.sentences[timed])
        forward += sum(record.forward[timed])
        backward += sum(record.backward[timed])
        optim += sum(record.optimizer[timed])
    model = forward + backward + optim
    return {
        "sentences_per_s": sentences / seconds,
        "ms_per_step": 1e3 * seconds / steps,
        "forward_ms": 1e3 * forward / steps,
        "backward_ms": 1e3 * backward / steps,
        "optimizer_ms": 1e3 * optim / steps,
        "outside_ms": 1e3 * (seconds - model) / steps,
        "outside_percent": 100 * (seconds - model) / seconds,
        "ms_per_step_rounds": [1e3 * (r.ends[-1] - r.ends[warmup - 1]) / len(r.ends[timed]) for r in records],
        "timed_steps": int(steps),
        "timed_sentences": int(sentences),
    }


def run(config: dict[str, Any], data_path: Optional[str], steps: int, warmup: int, rounds: int,
        seed: int) -> dict[str, Any]:
    """Every variant ``rounds`` times (rotating order); the result dict that ``--json`` prints."""
    if steps < 1 or warmup < 1 or rounds < 1:
        raise ValueError("bench_train: --steps, --warmup and --rounds must be at least 1 (the clock starts at the "
                         "end of the last warm-up step)")
    datamodule = build_data(config, data_path)
    check_batch = next(iter(datamodule.train_dataloader()))
    total = warmup + steps
    records: dict[tuple[str, str], list[Record]] = {variant: [] for variant in VARIANTS}
    threads_seen = set()
    for round_ in range(rounds):
        shift = round_ % len(VARIANTS)
        for loop, rnn in VARIANTS[shift:] + VARIANTS[:shift]:
            module = build_module(config, datamodule, seed)
            if rnn == "nn.RNN":
                swap_in_nn_rnn(module, check_batch)
            runner = run_lightning if loop == "lightning" else run_plain
            record, threads = runner(module, datamodule, config, total, seed)
            if len(record.ends) != total:
                raise RuntimeError(f"bench_train: {loop} / {rnn} ran {len(record.ends)} steps, expected {total}")
            records[loop, rnn].append(record)
            threads_seen.add(threads)
    reference = records[VARIANTS[0]][0].fingerprints
    same_batches = all(record.fingerprints == reference for rs in records.values() for record in rs)
    rows = [{"loop": loop, "rnn": rnn, **summarize(records[loop, rnn], warmup)} for loop, rnn in VARIANTS]
    by = {(row["loop"], row["rnn"]): row for row in rows}
    lightning_overhead = {rnn: 100 * (by["lightning", rnn]["ms_per_step"] / by["plain", rnn]["ms_per_step"] - 1)
                          for rnn in ("torch_rnn", "nn.RNN")}
    extra_outside = {rnn: by["lightning", rnn]["outside_ms"] - by["plain", rnn]["outside_ms"]
                     for rnn in ("torch_rnn", "nn.RNN")}
    speedup = {loop: by[loop, "nn.RNN"]["ms_per_step"] / by[loop, "torch_rnn"]["ms_per_step"]
               for loop in ("lightning", "plain")}
    data = datamodule.hparams
    return {
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "threads": torch.get_num_threads(),
        "threads_in_loops": sorted(threads_seen),
        "cpus": os.cpu_count(),
        "steps": steps,
        "warmup": warmup,
        "rounds": rounds,
        "batch_size": data.batch_size,
        "data": data.path if data.path is not None else data.dataset,
        "train_sentences": len(datamodule.splits["train"]),
        "seed": seed,
        "same_batches": same_batches,
        "rows": rows,
        "lightning_overhead_percent": lightning_overhead,
        "lightning_extra_outside_ms": extra_outside,
        "torch_rnn_speedup": speedup,
        "load_average": os.getloadavg()[0],
    }


COLUMNS = [
    ("loop", "loop", "{}"),
    ("RNN", "rnn", "{}"),
    ("sentences/s", "sentences_per_s", "{:.0f}"),
    ("ms/step", "ms_per_step", "{:.2f}"),
    ("fwd ms", "forward_ms", "{:.2f}"),
    ("bwd ms", "backward_ms", "{:.2f}"),
    ("opt ms", "optimizer_ms", "{:.2f}"),
    ("outside ms", "outside_ms", "{:.2f}"),
    ("outside the model", "outside_percent", "{:.1f}%"),
]


def markdown(result: dict[str, Any]) -> str:
    """The header line, a markdown table (one row per variant) and the comparisons."""
    r = result
    threads = f"{r['threads']} threads" + ("" if r["threads_in_loops"] == [r["threads"]]
                                           else f" (inside the loops: {r['threads_in_loops']})")
    lines = [
        f"torch {r['torch']}, Lightning {r['lightning']}, CPU, {threads}; {r['steps']} timed steps after "
        f"{r['warmup']} warm-up, {r['rounds']} round(s); batch size {r['batch_size']}; data {r['data']} "
        f"({r['train_sentences']} training sentences); seed {r['seed']}; same batches in every variant: "
        f"{'yes' if r['same_batches'] else 'NO'}; 1-min load average at the end: {r['load_average']:.1f} on "
        f"{r['cpus']} CPUs",
        "",
        "| " + " | ".join(title for title, _, _ in COLUMNS) + " |",
        "|" + "|".join("---" if key in ("loop", "rnn") else "---:" for _, key, _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(fmt.format(row[key]) for _, key, fmt in COLUMNS) + " |" for row in r["rows"]]
    overhead, speedup = r["lightning_overhead_percent"], r["torch_rnn_speedup"]
    lines += [
        "",
        "ms/step in each round (in the order the rounds ran): " + "; ".join(
            f"{row['loop']} {row['rnn']} " + ", ".join(f"{ms:.2f}" for ms in row["ms_per_step_rounds"])
            for row in r["rows"]) + ".",
        f"Lightning over the plain loop (ms/step ratio - 1): torch_rnn {overhead['torch_rnn']:+.1f}%, "
        f"nn.RNN {overhead['nn.RNN']:+.1f}%; of which outside the model (Lightning outside ms - plain outside ms): "
        f"torch_rnn {r['lightning_extra_outside_ms']['torch_rnn']:+.2f} ms/step, "
        f"nn.RNN {r['lightning_extra_outside_ms']['nn.RNN']:+.2f} ms/step.",
        f"torch_rnn speedup over nn.RNN end to end (nn.RNN ms/step / torch_rnn ms/step): "
        f"Lightning {speedup['lightning']:.2f}x, plain loop {speedup['plain']:.2f}x.",
        "",
        "ms/step: wall clock from the end of the last warm-up step to the end of the last timed step, per step. "
        "fwd = SentimentRNN.forward (forward pre-hook to forward hook); bwd = loss.backward() (Lightning: "
        "on_before_backward to on_after_backward); opt = gradient clipping + optimizer.step() (Lightning: "
        "start of configure_gradient_clipping to the optimizer's step post-hook). outside = ms/step - fwd - bwd "
        "- opt: data loading, loss, zero_grad and, in Lightning, the loop, training_step's metrics and "
        "self.log, the grad-norm log.",
    ]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed optimizer steps per variant (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before them, at least 1 (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="run the four variants this many times, rotating the order (default 3)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument("--data-path", help="a user data file to train on instead of the config's data set")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the recipe (default configs/default.yaml)")
    parser.add_argument("--seed", type=int, help="the seed of every variant (default: the config's seed_everything)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of the table")
    args = parser.parse_args(argv)
    for name in ("steps", "warmup", "rounds"):
        if getattr(args, name) < 1:
            why = " (the clock starts at the end of the last warm-up step)" if name == "warmup" else ""
            parser.error(f"--{name} must be at least 1{why}")
    return args


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's info lines and its warnings about CPU-only / no workers / no logger are not the benchmark."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric",
                                                    "lightning.fabric", "lightning_module")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    seed = args.seed if args.seed is not None else int(config.get("seed_everything") or 0)
    start = time.perf_counter()
    try:
        with _quiet():
            result = run(config, args.data_path, args.steps, args.warmup, args.rounds, seed)
    except MismatchError as error:
        sys.exit(f"bench_train: {error}")
    result["seconds"] = time.perf_counter() - start
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(markdown(result))
        print(f"\n({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
