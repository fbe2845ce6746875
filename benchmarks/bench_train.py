"""Benchmark end-to-end training of the default recipe: Lightning vs a plain PyTorch loop, torch_rnn vs nn.RNN.

What is trained: ``configs/default.yaml``'s model and data (the Rotten Tomatoes corpus, a learned embedding,
a bidirectional tanh RNN, batch size 32, length-bucketed batches; fetched once into ``~/.cache/torch_rnn``
by the datamodule's ``prepare_data``), or ``--data-path``'s file with the same settings, for
``--warmup`` + ``--steps`` optimizer steps. The recipe is read as ``train.py`` reads it, by the project's
LightningCLI (``lightning_module.cli.SentimentCLI`` with ``run=False`` and ``--config``, plus ``--data.path``
and ``--seed_everything`` for ``--data-path`` and ``--seed``): its model, its datamodule, and its parsed
trainer settings (gradient clipping, logging interval). Four variants:

- **Lightning, torch_rnn**: ``SentimentClassifier`` as is (its ``training_step`` updates the training
  metrics and calls ``self.log``; its ``on_before_optimizer_step`` logs the gradient norm; its
  ``configure_optimizers`` gives the config's optimizer and learning-rate scheduler), fitted by a
  ``pl.Trainer`` on the CPU with ``max_steps``, the config's ``gradient_clip_val``, no validation
  (``limit_val_batches=0``), no checkpointing, ``logger=False`` (no logger at all), no progress bar and
  no model summary;
- **Lightning, nn.RNN**: the same with ``model.model.rnn`` replaced by ``NNRNN`` (:mod:`nn_rnn_swap`), a
  ``torch.nn.RNN`` holding the same weights (``load_state_dict``) behind our call signature
  ``forward(input, hx=None, lengths=None)``: with lengths it packs (``pack_padded_sequence(batch_first=True,
  enforce_sorted=False)``), runs ``nn.RNN`` and pads back to the full ``T``
  (``pad_packed_sequence(total_length=T)``);
- **plain, torch_rnn** / **plain, nn.RNN**: the same network (``SentimentRNN``), data loader, optimizer and
  learning-rate scheduler (the module's own ``configure_optimizers()``: the config's AdamW, lr 0.002, weight
  decay 0.01, and its cosine schedule, stepped at each epoch's end as Lightning steps it) and gradient
  clipping (``clip_grad_norm_``, 5.0) in a hand-written loop: ``zero_grad``, the training step's inputs
  (``SentimentClassifier.training_inputs``: word dropout, sentences of unknown words), forward,
  ``softmax_loss``, ``backward``, clip, ``step``. No metrics, no logging.

Every variant starts from a deep copy of the CLI's one initial module (so from the same weights) and
re-seeds torch's generator right before its loop, so all four see the same batches in the same order
(checked: the script compares a fingerprint of every step's batch across the variants and says whether they
agree) and the same dropout masks up to Lightning's own use of the generator. Before timing, the nn.RNN swap
is checked: the network's scores with ``NNRNN`` must match ours within 1e-4 on a training batch (eval mode),
or the run aborts. The step timers are in :mod:`train_timing`.

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
import copy
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import pytorch_lightning as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lightning_module.cli import SentimentCLI  # noqa: E402
from lightning_module.datamodule import SentimentDataModule  # noqa: E402
from lightning_module.module import SentimentClassifier  # noqa: E402
from markdown_tables import Column, markdown_table  # noqa: E402
from nn_rnn_swap import MismatchError, swap_in_nn_rnn  # noqa: E402
from torch_rnn.models import softmax_loss  # noqa: E402
from train_timing import LightningTiming, Record, StepTimer  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
VARIANTS = (("lightning", "torch_rnn"), ("lightning", "nn.RNN"), ("plain", "torch_rnn"), ("plain", "nn.RNN"))
Scheduler = torch.optim.lr_scheduler.LRScheduler


# ---------------------------------------------------------------------------------------- the recipe
def build_cli(config: Path, data_path: Optional[str], seed: Optional[int]) -> SentimentCLI:
    """The recipe as ``train.py`` reads it, with ``run=False`` (nothing is fitted): ``cli.model``, its weights drawn
    under the config's ``seed_everything`` (or ``seed``); ``cli.datamodule`` (``data_path`` replacing the data
    set), read and set up; the parsed settings in ``cli.config``."""
    args = ["--config", str(config)]
    if data_path is not None:
        args += ["--data.path", data_path]
    if seed is not None:
        args += ["--seed_everything", str(seed)]
    return SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, run=False,
                        auto_configure_optimizers=False, save_config_callback=None)


def optimizer_and_scheduler(module: SentimentClassifier) -> tuple[torch.optim.Optimizer, Optional[Scheduler], str]:
    """The module's own ``configure_optimizers()``: the optimizer, the learning-rate scheduler (or None) and when
    it steps (``"epoch"`` or ``"step"``)."""
    configured = module.configure_optimizers()
    if isinstance(configured, torch.optim.Optimizer):
        return configured, None, "epoch"
    scheduler = configured["lr_scheduler"]
    if "monitor" in scheduler:
        raise ValueError(f"bench_train: the plain loop has no validation to give {scheduler['monitor']} to the "
                         "learning-rate scheduler")
    return configured["optimizer"], scheduler["scheduler"], scheduler["interval"]


# --------------------------------------------------------------------------------------------- loops
def run_lightning(module: SentimentClassifier, datamodule: SentimentDataModule, trainer_config: Any,
                  total_steps: int, seed: int) -> tuple[Record, int]:
    """Fit ``module`` for ``total_steps`` steps with the clipping and logging interval of ``trainer_config`` (the
    CLI's parsed ``trainer`` settings); the record and the thread count seen inside the loop."""
    timer = StepTimer()
    callback = LightningTiming(timer)
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, max_steps=total_steps, max_epochs=-1, limit_val_batches=0,
            num_sanity_val_steps=0, enable_checkpointing=False, logger=False, enable_progress_bar=False,
            enable_model_summary=False, gradient_clip_val=trainer_config.gradient_clip_val,
            gradient_clip_algorithm=trainer_config.gradient_clip_algorithm,
            log_every_n_steps=trainer_config.log_every_n_steps, callbacks=[callback], default_root_dir=root,
        )
        torch.manual_seed(seed)
        with timer.timing_forward(module.model):
            trainer.fit(module, datamodule=datamodule)
    return timer.record, callback.threads


def run_plain(module: SentimentClassifier, datamodule: SentimentDataModule, trainer_config: Any,
              total_steps: int, seed: int) -> tuple[Record, int]:
    """The same network, data, optimizer, scheduler and clipping in a hand-written loop."""
    timer = StepTimer()
    net = module.model
    net.train()
    optimizer, scheduler, interval = optimizer_and_scheduler(module)
    clip = trainer_config.gradient_clip_val
    if trainer_config.gradient_clip_algorithm not in (None, "norm"):
        raise ValueError("bench_train: the plain loop clips by norm only")
    loader = datamodule.train_dataloader()
    torch.manual_seed(seed)
    batches = iter(loader)
    with timer.timing_forward(net):
        for _ in range(total_steps):
            try:
                batch = next(batches)
            except StopIteration:  # the epoch has ended: Lightning steps an epoch scheduler here
                if scheduler is not None and interval == "epoch":
                    scheduler.step()
                batches = iter(loader)
                batch = next(batches)
            timer.begin_step(batch)
            optimizer.zero_grad()
            # The inputs of the LightningModule's training step: word dropout, sentences of unknown words.
            tokens, mask = module.training_inputs(batch["tokens"], batch["mask"], datamodule.vocab.unk_index)
            loss = softmax_loss(net(tokens, mask), batch["labels"])
            timer.start("backward")
            loss.backward()
            timer.stop("backward")
            timer.start("optimizer")
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            optimizer.step()
            timer.stop("optimizer")
            if scheduler is not None and interval == "step":
                scheduler.step()
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


def run(cli: SentimentCLI, steps: int, warmup: int, rounds: int) -> dict[str, Any]:
    """Every variant ``rounds`` times (rotating order); the result dict that ``--json`` prints."""
    if steps < 1 or warmup < 1 or rounds < 1:
        raise ValueError("bench_train: --steps, --warmup and --rounds must be at least 1 (the clock starts at the "
                         "end of the last warm-up step)")
    datamodule, initial, trainer_config = cli.datamodule, cli.model, cli.config.trainer
    seed = int(cli.config.seed_everything or 0)
    check_batch = next(iter(datamodule.train_dataloader()))
    total = warmup + steps
    records: dict[tuple[str, str], list[Record]] = {variant: [] for variant in VARIANTS}
    threads_seen = set()
    for round_ in range(rounds):
        shift = round_ % len(VARIANTS)
        for loop, rnn in VARIANTS[shift:] + VARIANTS[:shift]:
            module = copy.deepcopy(initial)
            if rnn == "nn.RNN":
                swap_in_nn_rnn(module, check_batch)
            runner = run_lightning if loop == "lightning" else run_plain
            record, threads = runner(module, datamodule, trainer_config, total, seed)
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
    Column("loop", "loop", left=True), Column("RNN", "rnn", left=True),
    Column("sentences/s", "sentences_per_s", "{:.0f}"),
    *(Column(title, key, "{:.2f}") for title, key in [("ms/step", "ms_per_step"), ("fwd ms", "forward_ms"),
                                                       ("bwd ms", "backward_ms"), ("opt ms", "optimizer_ms"),
                                                       ("outside ms", "outside_ms")]),
    Column("outside the model", "outside_percent", "{:.1f}%"),
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
        *markdown_table(COLUMNS, r["rows"]),
    ]
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
    start = time.perf_counter()
    try:
        with _quiet():
            cli = build_cli(args.config, args.data_path, args.seed)
            result = run(cli, args.steps, args.warmup, args.rounds)
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
