"""k-fold cross-validated accuracy of the RNN recipes beside TF-IDF and bag-of-words baselines, on the same folds.

    python benchmarks/cross_validate.py                                   # default.yaml, 5 folds
    python benchmarks/cross_validate.py --rnn default=configs/default.yaml \\
        --rnn nbsvm=configs/default.yaml+configs/nbsvm.yaml             # the README's table
    python benchmarks/cross_validate.py --rnn default=configs/default.yaml \\
        --rnn glove=configs/default.yaml+configs/glove.yaml [--folds 5] [--seed 42] [--json] [-- --trainer.X ...]

Every row is measured on the same stratified folds (:func:`lightning_module.folds.stratified_folds`, seeded):
fold ``i`` is tested by a model fitted on the other folds. Inside those, a stratified ``data.val_fraction`` of
the rows is held out for validation (the RNN's best checkpoint by validation loss and its temperature; the
baselines' regularisation strength), never the test fold. An RNN row is built by the project's LightningCLI
(``run=False``) from its config files with :class:`~lightning_module.folds.CrossValidationDataModule`, so it
trains what ``python train.py fit --config ...`` trains, then tests its fold from the best checkpoint (the
configs' first ModelCheckpoint). The baselines (scikit-learn, ``pip install -e .[dev]``) read the same
tokenized sentences, choose their setting on the validation rows, then are refitted on training + validation.
Arguments after ``--`` (``--trainer.*``, ``--model.*``, ``--data.*``) go to every RNN row, and the ``--data.*``
ones also choose the baselines' data.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_module.folds import CrossValidationDataModule, fold_splits  # noqa: E402

#: The inverse regularisation strengths (C) the logistic regressions choose from on the validation rows.
C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
#: The additive smoothing (alpha) multinomial naive Bayes chooses from on the validation rows.
ALPHA_GRID = (0.1, 0.25, 0.5, 1.0, 2.0)


def rnn_cli(configs: Sequence[str], folds: int, fold: int, seed: int, root: Path, extra: Sequence[str] = ()) -> Any:
    """The project's :class:`~lightning_module.cli.SentimentCLI` (``run=False``) for fold ``fold``: the model,
    the :class:`CrossValidationDataModule` and the trainer of ``python train.py fit --config ...`` with those
    configs, logging under ``root``."""
    from lightning_module.cli import SentimentCLI
    from lightning_module.module import SentimentClassifier

    args = [item for config in configs for item in ("--config", config)]
    args += ["--data.folds", str(folds), "--data.fold", str(fold), "--data.fold_seed", str(seed),
             "--trainer.default_root_dir", str(root), *extra]
    return SentimentCLI(SentimentClassifier, CrossValidationDataModule, args=args, run=False,
                        auto_configure_optimizers=False, save_config_kwargs={"overwrite": True})


def run_rnn_fold(configs: Sequence[str], folds: int, fold: int, seed: int, root: Path,
                 extra: Sequence[str] = ()) -> dict[str, float]:
    """Fit fold ``fold`` of an RNN row and test its best checkpoint: ``{"acc", "ece", "ece_calibrated",
    "temperature", "epoch", "seconds"}`` (test accuracy and 15-bin ECE on the fold)."""
    start = time.perf_counter()
    cli = rnn_cli(configs, folds, fold, seed, root, extra)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    checkpoint = cli.trainer.checkpoint_callback
    path = checkpoint.best_model_path or None
    result = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=path, weights_only=True,
                              verbose=False)[0]
    best_epoch = -1
    if path:
        import torch

        best_epoch = int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    return {"acc": float(result["test/acc"]), "ece": float(result["test/ece"]),
            "ece_calibrated": float(result["test/ece_calibrated"]), "temperature": float(cli.model.temperature),
            "epoch": best_epoch, "seconds": time.perf_counter() - start}


def corpus_texts(configs: Sequence[str], seed: int, extra: Sequence[str] = ()) -> tuple[list[str], np.ndarray, dict]:
    """The data of an RNN row's configs as the model sees it: each sentence's tokens (the data module's
    tokenizer) joined by spaces ``(N,)``, the int64 labels ``(N,)`` and the data settings."""
    with tempfile.TemporaryDirectory() as root:
        settings = dict(rnn_cli(configs, 2, 0, seed, Path(root), extra).datamodule.hparams)
    settings = {key: value for key, value in settings.items() if not key.startswith("_")}
    data = CrossValidationDataModule(**settings)
    data.prepare_data()
    data.setup()
    corpus = data.corpus
    words = np.asarray(corpus.words, dtype=object)
    texts = [" ".join(words[corpus.ids[corpus.offsets[i]:corpus.offsets[i + 1]]]) for i in range(len(corpus))]
    return texts, np.asarray(corpus.labels, np.int64), settings


def _split_words(text: str) -> list[str]:
    return text.split(" ")


class NaiveBayesScaling:
    """NBSVM's features (Wang & Manning 2012) as a scikit-learn transformer: binary features ``X (N, K)``
    scaled by their naive-Bayes log-count ratios of class 1 against class 0
    (:func:`lightning_module.naive_bayes.log_count_ratios`, what the model's NBSVM uses too)."""

    def fit(self, x: Any, y: np.ndarray) -> "NaiveBayesScaling":
        from lightning_module.naive_bayes import log_count_ratios

        x = x.tocsr()  # a row's feature columns are its "word ids", shifted past the padding id 0
        ratios = log_count_ratios(x.indices + 1, x.indptr, y, x.shape[1] + 1, 2)  # (K + 1, 2)
        self.ratios_ = ratios[1:, 1].double().numpy()
        return self

    def transform(self, x: Any) -> Any:
        return x.multiply(self.ratios_).tocsr()

    def fit_transform(self, x: Any, y: np.ndarray) -> Any:
        return self.fit(x, y).transform(x)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}


def baselines() -> dict[str, Callable[[float], Any]]:
    """Name -> (setting -> an unfitted scikit-learn pipeline) of the baselines, each with its setting grid in
    :data:`BASELINE_GRIDS`."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline

    def words(ngrams: tuple[int, int], **kwargs: Any) -> dict[str, Any]:
        return dict(tokenizer=_split_words, token_pattern=None, lowercase=False, ngram_range=ngrams, **kwargs)

    return {
        "TF-IDF uni+bigram, logistic regression": lambda c: make_pipeline(
            TfidfVectorizer(**words((1, 2), sublinear_tf=True)), LogisticRegression(C=c, solver="liblinear")),
        "bag of words (counts), logistic regression": lambda c: make_pipeline(
            CountVectorizer(**words((1, 1))), LogisticRegression(C=c, solver="liblinear")),
        "bag of uni+bigrams (binary), multinomial NB": lambda alpha: make_pipeline(
            CountVectorizer(**words((1, 2), binary=True)), MultinomialNB(alpha=alpha)),
        "NBSVM uni+bigram (NB-scaled, logistic regression)": lambda c: make_pipeline(
            CountVectorizer(**words((1, 2), binary=True)), NaiveBayesScaling(),
            LogisticRegression(C=c, solver="liblinear")),
    }


#: The setting each baseline chooses on the validation rows, and its grid.
BASELINE_GRIDS = {"TF-IDF uni+bigram, logistic regression": ("C", C_GRID),
                  "bag of words (counts), logistic regression": ("C", C_GRID),
                  "bag of uni+bigrams (binary), multinomial NB": ("alpha", ALPHA_GRID),
                  "NBSVM uni+bigram (NB-scaled, logistic regression)": ("C", C_GRID)}


def run_baseline_fold(make: Callable[[float], Any], grid: Sequence[float], texts: Sequence[str], labels: np.ndarray,
                      splits: dict[str, np.ndarray]) -> dict[str, float]:
    """Choose the setting with the best validation accuracy (the first of equals), refit on training +
    validation, and test: ``{"acc", "setting"}``."""
    texts = np.asarray(texts, dtype=object)
    train, val, test = splits["train"], splits["val"], splits["test"]
    best, best_acc = grid[0], -1.0
    if len(val):
        for setting in grid:
            acc = float((make(setting).fit(texts[train], labels[train]).predict(texts[val]) == labels[val]).mean())
            if acc > best_acc:
                best, best_acc = setting, acc
    fit_rows = np.concatenate([train, val])
    model = make(best).fit(texts[fit_rows], labels[fit_rows])
    return {"acc": float((model.predict(texts[test]) == labels[test]).mean()), "setting": float(best)}


def format_table(rows: dict[str, list[dict[str, float]]], folds: Sequence[int]) -> str:
    """The table: per row the mean and per-fold test accuracy over ``folds`` (0-based indices) and, for RNN
    rows, the mean test ECE without and with the temperature."""
    name_width = max(len(name) for name in rows)
    head = f"{'':{name_width}}  {'mean':>7}  " + "  ".join(f"{f'fold {i + 1}':>7}" for i in folds)
    lines = [head + "   test ECE  (T: calibrated)", "-" * (len(head) + 28)]
    for name, results in rows.items():
        accuracies = [r["acc"] for r in results]
        line = f"{name:{name_width}}  {100 * np.mean(accuracies):6.2f}%  " + "  ".join(
            f"{100 * a:6.2f}%" for a in accuracies)
        if "ece" in results[0]:
            line += f"   {np.mean([r['ece'] for r in results]):.3f} -> {np.mean([r['ece_calibrated'] for r in results]):.3f}"
        lines.append(line)
    return "\n".join(lines)


def parse_rnn_rows(values: Optional[Sequence[str]]) -> dict[str, list[str]]:
    """``NAME=CONFIG[+CONFIG...]`` -> ``{NAME: [CONFIG, ...]}`` (default: ``default=configs/default.yaml``).

    Raises:
        ValueError: a value without ``=`` or a config file that does not exist.
    """
    rows = {}
    for value in values or [f"default={ROOT / 'configs' / 'default.yaml'}"]:
        name, sep, configs = value.partition("=")
        if not sep or not configs:
            raise ValueError(f"--rnn takes NAME=CONFIG[+CONFIG...], got {value!r}")
        rows[f"RNN {name}"] = configs.split("+")
        for config in rows[f"RNN {name}"]:
            if not Path(config).is_file():
                raise ValueError(f"--rnn {value}: no config file {config}")
    return rows


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the cross-validation, print the table (or JSON) and return the measurements."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rnn", action="append", metavar="NAME=CONFIG[+CONFIG]",
                        help="an RNN row: its configs (overlays joined by +); repeatable")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42, help="the seed of the fold assignment")
    parser.add_argument("--only-folds", type=int, nargs="+", help="run only these folds (0-based) of the RNN rows")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--baselines-only", action="store_true", help="no RNN rows (the first one's data)")
    parser.add_argument("--workdir", type=Path, help="where the RNN runs log (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the measurements as one JSON object")
    options = parser.parse_args(argv)
    from lightning_module.cli import show_data_reports, silence_library_noise

    silence_library_noise()
    show_data_reports()
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # our args, not the command line's
    rnn_rows = parse_rnn_rows(options.rnn)
    first = next(iter(rnn_rows.values()))
    texts, labels, settings = corpus_texts(first, options.seed, extra)
    fold_rows = [fold_splits(labels, options.folds, fold, options.seed, settings["val_fraction"])
                 for fold in range(options.folds)]
    report: dict[str, Any] = {"sentences": len(labels), "folds": options.folds, "seed": options.seed,
                              "class_counts": np.bincount(labels).tolist(), "load_average_start": os.getloadavg(),
                              "test_sizes": [len(s["test"]) for s in fold_rows], "rows": {}}
    chosen = list(options.only_folds if options.only_folds is not None else range(options.folds))
    report["tested_folds"] = chosen
    if not options.no_baselines:
        for name, make in baselines().items():
            _, grid = BASELINE_GRIDS[name]
            report["rows"][name] = [run_baseline_fold(make, grid, texts, labels, fold_rows[f]) for f in chosen]
            print(f"{name}: {[round(r['acc'], 4) for r in report['rows'][name]]}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = options.workdir or Path(scratch)
        for name, configs in ({} if options.baselines_only else rnn_rows).items():
            results = []
            for fold in chosen:
                root = workdir / name.replace(" ", "_") / f"fold{fold}"
                results.append(run_rnn_fold(configs, options.folds, fold, options.seed, root, extra))
                print(f"{name} fold {fold + 1}/{options.folds}: {results[-1]}", file=sys.stderr, flush=True)
            report["rows"][name] = results
    report["load_average_end"] = os.getloadavg()
    if options.json:
        print(json.dumps(report))
        return report
    print(f"{options.folds}-fold cross-validation, {settings.get('path') or settings['dataset']}: {len(labels):,} "
          f"sentences (classes {report['class_counts']}), stratified folds (seed {options.seed}) of "
          f"{report['test_sizes']} test sentences; validation: {settings['val_fraction']:.0%} of each training part")
    print(format_table(report["rows"], chosen))
    print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}; at the end: {:.2f} {:.2f} {:.2f}".format(
        *report["load_average_start"], *report["load_average_end"]))
    return report


if __name__ == "__main__":
    main()
