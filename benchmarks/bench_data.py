"""Data loading at scale: rows, seconds from start to the first training step, peak memory and sentences/s.

For every size (``--rows``, default 10,000, 100,000 and 1,000,000) it writes synthetic reviews
(:mod:`synthetic_reviews`: about 22 tokens per sentence, a Zipf vocabulary; the same file every time) into a
temporary folder and runs ``train.py fit --config configs/default.yaml --data.path FILE`` twice, each in a fresh
process: first with an empty preprocessing cache (it reads, tokenizes and caches), then again (it loads the cache).
The process stops at its first training step and reports the seconds since it started, how many of them went
to starting Python and importing (``pytorch_lightning`` and the project's modules, which import torch), and its
peak resident memory; sentences/s is rows over the seconds to the first step. It also times the tokenizer on the
first 20,000 sentences: NLTK's ``TreebankWordTokenizer`` (when NLTK is installed), :class:`lightning_module.tokenizer.Tokenizer` one
sentence at a time, and its ``encode_many`` on the whole block, checking that all three give the same tokens.

    python benchmarks/bench_data.py                       # 10k, 100k and 1M rows; a Markdown table
    python benchmarks/bench_data.py --rows 2000 --json    # one small size, JSON
    python benchmarks/bench_data.py --python ENV/bin/python  # the runs in another environment

The imports depend on the environment: with scipy installed (scikit-learn of the ``dev`` extra brings it),
torchmetrics, which Lightning imports, imports ``scipy.signal`` too, most of a second here. ``--python`` runs the
two fits with another interpreter, for example that of a virtual environment with the project alone
(``pip install -e .``); the table's header says which, and whether it has scipy.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from markdown_tables import Column, markdown_table  # noqa: E402
from synthetic_reviews import write_reviews  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)
#: Sentences the tokenizer comparison times.
TOKENIZER_ROWS = 20_000


def first_step(start: float, config: str, data: Path, root: Path, extra: Sequence[str]) -> None:
    """In the child process: fit until the first training step starts, then print one JSON line and exit."""
    import pytorch_lightning as pl

    from lightning_module.cli import SentimentCLI, show_data_reports, silence_library_noise
    from lightning_module.datamodule import SentimentDataModule
    from lightning_module.module import SentimentClassifier

    imported = time.time() - start

    class FirstStep(pl.Callback):
        def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
            seconds = time.time() - start
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            datamodule = trainer.datamodule
            print(json.dumps({"seconds": seconds, "import_seconds": imported, "peak_mb": peak_mb,
                              "vocab_size": datamodule.vocab_size, "train_rows": len(datamodule.splits["train"])}),
                  flush=True)
            os._exit(0)

    class CLI(SentimentCLI):
        def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[pl.Callback]) -> pl.Trainer:
            return super()._instantiate_trainer(config, [*callbacks, FirstStep()])

    silence_library_noise()
    show_data_reports()
    CLI(SentimentClassifier, SentimentDataModule, auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        args=["fit", "--config", config, "--data.path", str(data), "--trainer.default_root_dir", str(root),
              "--trainer.enable_progress_bar", "false", *extra])
    raise SystemExit("the fit ended before its first training step")


def run_to_first_step(config: str, data: Path, root: Path, cache: Path, extra: Sequence[str],
                      python: str = sys.executable) -> dict[str, Any]:
    """A fresh process of ``python`` that fits ``config`` on ``data`` until its first step; its report, plus
    ``stderr``."""
    env = {**os.environ, "TORCH_RNN_PREPROCESSED": str(cache)}
    command = [python, __file__, "--child", str(time.time()), config, str(data), str(root), *extra]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the run failed (exit status {done.returncode}):\n{done.stderr[-3000:]}")
    return {**json.loads(lines[-1]), "stderr": done.stderr}


def time_tokenizers(data: Path, rows: int) -> dict[str, Any]:
    """Microseconds per sentence of NLTK's Treebank tokenizer and of ours (one by one, and in a block)."""
    from lightning_module.tokenizer import Tokenizer, TokenTable

    with data.open(encoding="utf-8") as file:
        texts = [line.rstrip("\n").split("\t", 1)[1] for _, line in zip(range(rows), file)]
    result: dict[str, Any] = {"sentences": len(texts)}
    started = time.perf_counter()
    ours = [Tokenizer()(text) for text in texts]
    result["ours_us"] = (time.perf_counter() - started) / len(texts) * 1e6
    table = TokenTable()
    started = time.perf_counter()
    ids, lengths = Tokenizer().encode_many(texts, table)
    result["ours_block_us"] = (time.perf_counter() - started) / len(texts) * 1e6
    ends = lengths.cumsum()
    block = [[table.words[i] for i in ids[end - length:end]] for end, length in zip(ends, lengths)]
    result["same_tokens"] = block == ours
    try:
        from nltk.tokenize import TreebankWordTokenizer
    except ImportError:
        return result
    treebank = TreebankWordTokenizer()
    started = time.perf_counter()
    reference = [treebank.tokenize(text.lower()) for text in texts]
    result["nltk_us"] = (time.perf_counter() - started) / len(texts) * 1e6
    result["same_tokens"] = result["same_tokens"] and reference == ours
    return result


def has_scipy(python: str) -> bool:
    """Whether ``python`` can import scipy (torchmetrics then imports ``scipy.signal`` at start)."""
    return subprocess.run([python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('scipy') is None)"],
                          capture_output=True).returncode == 0


def run(sizes: Sequence[int], config: str, folder: Path, extra: Sequence[str],
        python: str = sys.executable) -> dict[str, Any]:
    rows_out = []
    tokenizers = None
    for rows in sizes:
        data = folder / f"reviews_{rows}.tsv"
        if not data.is_file():
            write_reviews(data, rows)
        if tokenizers is None:
            tokenizers = time_tokenizers(data, TOKENIZER_ROWS)
        cache = folder / f"cache_{rows}"
        for run_name in ("first", "cached"):
            report = run_to_first_step(config, data, folder / f"runs_{rows}", cache, extra, python)
            rows_out.append({"rows": rows, "file_mb": data.stat().st_size / 2**20, "run": run_name,
                             "seconds": report["seconds"], "import_seconds": report["import_seconds"],
                             "peak_mb": report["peak_mb"],
                             "sentences_per_s": rows / report["seconds"], "vocab_size": report["vocab_size"],
                             "cache_used": "loaded from the cache" in report["stderr"],
                             "vocabulary_report": next((line for line in report["stderr"].splitlines()
                                                        if line.startswith("vocabulary: ") and "left out" in line), "")})
    return {"config": config, "load_average": os.getloadavg(), "cpus": os.cpu_count(), "rows": rows_out,
            "tokenizer": tokenizers, "python": python, "scipy": has_scipy(python)}


COLUMNS = [
    Column("rows", "rows", "{:,}"), Column("file MB", "file_mb", "{:.1f}"), Column("run", "run", left=True),
    Column("s to first step", "seconds", "{:.1f}"), Column("of it importing", "import_seconds", "{:.1f}"),
    Column("peak MB", "peak_mb", "{:,.0f}"),
    Column("sentences/s", "sentences_per_s", "{:,.0f}"), Column("vocabulary", "vocab_size", "{:,}"),
]


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Runs with {result['python']} (scipy {'installed' if result['scipy'] else 'not installed'}).", "",
             *markdown_table(COLUMNS, result["rows"])]
    tokenizer = result["tokenizer"]
    lines.append("")
    nltk = f"NLTK Treebank {tokenizer['nltk_us']:.1f} us, " if "nltk_us" in tokenizer else ""
    lines.append(f"Tokenizer on {tokenizer['sentences']:,} sentences, per sentence: {nltk}ours one by one "
                 f"{tokenizer['ours_us']:.1f} us, ours in a block {tokenizer['ours_block_us']:.1f} us; same tokens: "
                 f"{tokenizer['same_tokens']}. {result['cpus']} CPUs, 1/5/15-min load average after the runs: "
                 + ", ".join(f"{value:.2f}" for value in result["load_average"]) + ".")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        first_step(float(argv[1]), argv[2], Path(argv[3]), Path(argv[4]), argv[5:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(SIZES), help="data set sizes")
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--data-dir", type=Path, help="keep the data and caches here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter of the timed runs (default: this one), e.g. another environment's")
    parser.add_argument("extra", nargs="*", help="more train.py arguments, after --")
    options = parser.parse_args(argv)
    if options.data_dir is not None:
        options.data_dir.mkdir(parents=True, exist_ok=True)
        result = run(options.rows, options.config, options.data_dir, options.extra, options.python)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_data_") as folder:
            result = run(options.rows, options.config, Path(folder), options.extra, options.python)
    print(json.dumps(result, indent=2) if options.json else markdown(result))


if __name__ == "__main__":
    main()
