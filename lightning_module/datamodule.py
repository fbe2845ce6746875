"""The LightningDataModule for sentiment classification.

Batches are dicts of ``tokens`` (N, T) long, ``mask`` (N, T) float32 and ``labels`` (N,) long, T the longest
sentence of the batch (at most ``max_length``); see :mod:`lightning_module.encoder`. The data lives in compact
arrays (:class:`~lightning_module.corpus.TokenizedCorpus`: int32 token ids and offsets), tokenized once and
cached on disk (:mod:`lightning_module.preprocessed`) in :meth:`SentimentDataModule.prepare_data`, which
Lightning runs in one process per node before the others load the cache in :meth:`~SentimentDataModule.setup`.

Checkpoints: Lightning stores :meth:`SentimentDataModule.state_dict` (the vocabulary, class names and
tokenizer settings) in every checkpoint under the key ``"SentimentDataModule"``;
:meth:`TextEncoder.from_checkpoint` rebuilds the encoder from a checkpoint alone, without the data.
"""
from __future__ import annotations

import hashlib
import logging
import typing
from itertools import repeat
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lightning_module import derived, preprocessed, sources, vader
from lightning_module.corpus import TokenizedCorpus, tokenize_examples
from lightning_module.encoder import EncodedDataset, TextEncoder, collate
from lightning_module.errors import DataError
from lightning_module.memory import check_fits
from lightning_module.records import LabeledData
from lightning_module.sampler import ShuffledBatchSampler
from lightning_module.settings import Fraction, NonNegativeInt, PositiveInt, check_settings
from lightning_module.sources import Format
from lightning_module.splits import shuffled_rows, split_rows
from lightning_module.tokenizer import Tokenizer
from lightning_module.vocabulary import Vocabulary

__all__ = ["DATASETS", "EncodedDataset", "SentimentDataModule", "ShuffledBatchSampler", "TextEncoder"]

log = logging.getLogger(__name__)

#: The data set names ``dataset`` accepts: the VADER corpora and the report's data.
Dataset = Literal["rotten_tomatoes", "tweets", "amazon", "nyt", "cs5242"]
DATASETS = typing.get_args(Dataset)
#: Peak memory of reading and tokenizing, per byte of the input file (measured: about 9 on review-like text).
LOAD_BYTES_PER_BYTE = 10


class SentimentDataModule(pl.LightningDataModule):
    """Labelled sentences -> token batches, split into train/val/test.

    Args:
        dataset: a built-in data set: ``rotten_tomatoes`` (VADER movie-review snippets, the default),
            ``tweets``, ``amazon``, ``nyt`` (the other VADER corpora; downloaded once with pip into
            ``cache_dir``) or ``cs5242`` (the original report's 800 sentences, read from
            ``../shared/datasets/cs5242-si650``).
        path: a user data file or IMDB-style folder; it replaces ``dataset``. With ``dataset: cs5242`` a
            folder holding ``train.csv`` and ``dictionary.csv`` is read as the cs5242 data instead.
        format: the format of ``path``: ``csv``, ``tsv``, ``sst2``, ``jsonl``, ``imdb``, or null to detect it.
        cache_dir: where downloaded corpora and tokenized data sets are kept (``preprocessed/`` under it, or
            ``$TORCH_RNN_PREPROCESSED``); default ``$TORCH_RNN_CACHE`` or ``~/.cache/torch_rnn``.
        cache_preprocessed: keep the tokenized data set on disk and use it on later runs (see
            :mod:`lightning_module.preprocessed`); False reads and tokenizes every time.
        max_length: the most time steps: longer sentences are cut; a batch is padded to its longest sentence.
        lowercase: lowercase sentences before tokenizing.
        min_freq: a built vocabulary keeps words seen at least this often in the training split.
        max_size: a built vocabulary keeps at most this many words (plus ``<pad>`` and ``<unk>``), the most
            frequent; null keeps every word seen ``min_freq`` times. How many words were left out and what
            share of the training tokens became ``<unk>`` is logged.
        dictionary: a word list (one word per line, line i is index i + 1) to use instead of building a
            vocabulary; unknown words then map to index 0. ``dataset: cs5242`` defaults to its dictionary.csv.
        fine_grained: VADER corpora: nine classes (the rating rounded, -4..4) instead of negative/positive.
        limit: keep only the first ``limit`` examples, in file order, before splitting (the report: 100).
        val_fraction: the share of examples in the validation split; 0 means no validation.
        test_fraction: the share of examples in the test split; 0 means no test split.
        seed: the seed of the random split (the same seed gives the same split).
        batch_size: examples per batch.
        shuffle: shuffle the training batches every epoch; False keeps file order.
        bucket_by_length: when shuffling, batch sentences of similar length together.
        num_workers: DataLoader worker processes (0 loads in the main process).
        tokenize_workers: processes that tokenize a data set of 200,000 sentences or more (null: one per CPU
            core); smaller ones are tokenized in this process.
        skip_bad_rows: skip unusable rows (and report them in a warning) instead of stopping with an error.

    Raises:
        DataError: at construction, every setting outside its annotated type (:mod:`lightning_module.settings`),
            named, e.g. ``data.max_length must be at least 1, got 0``; later, unreadable or unusable data (file
            and line).
    """

    def __init__(
        self,
        dataset: Dataset = "rotten_tomatoes",
        path: Optional[str] = None,
        format: Optional[Format] = None,
        cache_dir: Optional[str] = None,
        cache_preprocessed: bool = True,
        max_length: PositiveInt = 50,
        lowercase: bool = True,
        min_freq: PositiveInt = 2,
        max_size: Optional[PositiveInt] = 50_000,
        dictionary: Optional[str] = None,
        fine_grained: bool = False,
        limit: Optional[PositiveInt] = None,
        val_fraction: Fraction = 0.1,
        test_fraction: Fraction = 0.1,
        seed: int = 42,
        batch_size: PositiveInt = 32,
        shuffle: bool = True,
        bucket_by_length: bool = False,
        num_workers: NonNegativeInt = 0,
        tokenize_workers: Optional[PositiveInt] = 1,
        skip_bad_rows: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        problems = check_settings(SentimentDataModule.__init__, self.hparams, "data")
        if val_fraction + test_fraction >= 1:
            problems.append(f"data.val_fraction + data.test_fraction must be below 1, got {val_fraction + test_fraction}")
        if problems:
            raise DataError("bad data settings: " + "; ".join(problems))
        self.tokenizer = Tokenizer(lowercase=lowercase)
        self.vocab: Optional[Vocabulary] = None
        self.label_names: list[str] = []
        self.corpus: Optional[TokenizedCorpus] = None
        self._cache_entry: Optional[Path] = None  # the corpus' folder in the preprocessing cache
        self.splits: dict[str, np.ndarray] = {}  # split name -> its corpus rows (int64, in file order)
        self._datasets: dict[str, EncodedDataset] = {}
        self._train_sampler: Optional[ShuffledBatchSampler] = None
        self._sampler_to_resume: Optional[tuple[int, int]] = None  # (seed, batches done) from a checkpoint

    # ---- what the model needs before training -------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """``len(vocab)``, padding included; reads the data on first use (LightningCLI links it early)."""
        self._ensure_setup()
        return len(self.vocab)

    @property
    def num_classes(self) -> int:
        """The number of classes; reads the data on first use."""
        self._ensure_setup()
        return len(self.label_names)

    @property
    def encoder(self) -> TextEncoder:
        """The text encoder of this data (vocabulary, tokenizer, T, class names)."""
        self._ensure_setup()
        return TextEncoder(self.vocab, self.tokenizer, self.hparams.max_length, self.label_names)

    @property
    def cache_entry(self) -> Optional[Path]:
        """The corpus' folder in the preprocessing cache (None when it was not cached): derived arrays live there."""
        return self._cache_entry

    def encode_texts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``tokens`` (N, T) and ``mask`` (N, T) for new sentences; DataError for a text with no tokens."""
        return self.encoder.encode(texts)

    def _ensure_setup(self) -> None:
        if self.vocab is None or not self._datasets:
            self.prepare_data()
            self.setup()

    # ---- Lightning hooks -------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download the VADER corpus if it is the data set and not cached yet, and build the tokenized data
        set's cache if there is none. Lightning runs this in one process per node (``prepare_data_per_node``)
        before :meth:`setup` runs in every process; those then load the cache."""
        if self._vader_name() is not None:
            vader.fetch_vader_corpus(self._vader_name(), self.hparams.cache_dir)
        if self._cached():
            self._load_corpus()

    def setup(self, stage: Optional[str] = None) -> None:
        """Load (or read and tokenize) the data, split it, build the vocabulary on the training split (or read the
        dictionary) and encode.

        Runs once; later calls (fit then test, or the properties above) reuse the result.
        """
        if self._datasets:
            return
        hp = self.hparams
        corpus = self.corpus if self.corpus is not None else self._load_corpus()
        self.label_names = corpus.label_names
        self.splits = self._make_splits(corpus)
        dictionary = self._dictionary_path()
        if self.vocab is None and dictionary is not None:
            self.vocab = Vocabulary.from_dictionary_file(dictionary)
        elif self.vocab is None:  # else load_state_dict has set the checkpoint's vocabulary
            training_rows = hashlib.sha256(np.ascontiguousarray(self.splits["train"], np.int64).tobytes()).hexdigest()
            depends_on = {"training_rows": training_rows[:32], "min_freq": hp.min_freq, "max_size": hp.max_size}
            self.vocab, report = derived.vocabulary(self._cache_entry, depends_on, self._build_vocabulary)
            log.info("%s", report)
        self._encode_splits()
        log.info("data: %s; %d classes %s; vocabulary of %d; splits %s", self._describe(), len(self.label_names),
                 self.label_names, len(self.vocab), {name: len(rows) for name, rows in self.splits.items()})

    def _make_splits(self, corpus: TokenizedCorpus) -> dict[str, np.ndarray]:
        """The rows (int64, file order) of each split: ``"train"``, ``"val"``, ``"test"``; a seeded random split
        here (subclasses such as :class:`~lightning_module.folds.CrossValidationDataModule` split otherwise)."""
        hp = self.hparams
        order = preprocessed.cached_array(self._cache_entry, f"order-{len(corpus)}-seed-{hp.seed}",
                                          lambda: shuffled_rows(len(corpus), hp.seed))
        return split_rows(order, hp.val_fraction, hp.test_fraction)

    def training_set(self) -> EncodedDataset:
        """The encoded training split, for statistics a model starts from (:meth:`EncodedDataset.ragged`)."""
        return self._dataset("train")

    def validation_set(self) -> EncodedDataset:
        """The encoded validation split, on which a model chooses its settings (:meth:`EncodedDataset.ragged`)."""
        return self._dataset("val")

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:  # Lightning shards the data with a DistributedSampler
            if self.hparams.bucket_by_length:
                log.warning("data.bucket_by_length is not used with %d processes (each gets a DistributedSampler "
                            "shard); an interrupted fit resumes from its last epoch-end checkpoint", trainer.world_size)
            return self._loader(dataset, batch_size=self.hparams.batch_size, shuffle=self.hparams.shuffle)
        if not self.hparams.shuffle:
            return self._loader(dataset, batch_size=self.hparams.batch_size)
        self._train_sampler = ShuffledBatchSampler(dataset.lengths(), self.hparams.batch_size,
                                                   self.hparams.bucket_by_length)
        if self._sampler_to_resume is not None:
            self._train_sampler.resume(*self._sampler_to_resume)
            self._sampler_to_resume = None
        return self._loader(dataset, batch_sampler=self._train_sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("val"), batch_size=self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("test"), batch_size=self.hparams.batch_size)

    def predict_dataloader(self) -> DataLoader:
        """The test split."""
        return self.test_dataloader()

    def state_dict(self) -> dict[str, Any]:
        """The encoding state (see :meth:`encoding_state`); Lightning saves it in every checkpoint. Written part
        way through a training epoch, also ``"train_sampler"``: the epoch's seed and how many of its batches
        are done, so that a resumed fit goes on with the same batches."""
        state = self.encoding_state()
        trainer = getattr(self, "trainer", None)
        sampler = getattr(self, "_train_sampler", None)
        if trainer is not None and trainer.training and sampler is not None and sampler.epoch_seed is not None:
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed  # at on_train_batch_end
            if 0 < done < len(sampler):
                state["train_sampler"] = {"epoch_seed": sampler.epoch_seed, "batches_done": done}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the checkpoint's vocabulary and class names (when resuming), re-encoding any loaded data, and
        the training epoch's order and progress when it was written part way through one."""
        if not state_dict:
            return
        sampler = state_dict.get("train_sampler")
        if sampler is not None:
            self._sampler_to_resume = (int(sampler["epoch_seed"]), int(sampler["batches_done"]))
        encoder = TextEncoder.from_state(state_dict)
        if self.label_names and encoder.label_names != self.label_names:
            raise DataError(f"the checkpoint's classes {encoder.label_names} differ from the data's "
                            f"{self.label_names}")
        if self.corpus is not None and encoder.tokenizer.lowercase != self.tokenizer.lowercase:
            self.corpus, self._datasets = None, {}  # tokenized the other way: setup() loads it again
        self.vocab, self.tokenizer, self.label_names = encoder.vocab, encoder.tokenizer, encoder.label_names
        self.hparams.max_length, self.hparams.lowercase = encoder.max_length, encoder.tokenizer.lowercase
        if self._datasets:
            self._encode_splits()

    def encoding_state(self) -> dict[str, Any]:
        """Everything needed to encode new text, as a plain dict; ``TextEncoder.from_state`` inverts it."""
        return self.encoder.state()

    # ---- internals -------------------------------------------------------------------------------------

    def _vader_name(self) -> Optional[str]:
        hp = self.hparams
        return hp.dataset if hp.path is None and hp.dataset in vader.VADER_CORPORA else None

    def _cs5242_folder(self) -> Optional[Path]:
        """The cs5242 folder when the data is cs5242 (DataError if its files are missing), else None."""
        hp = self.hparams
        if hp.dataset != "cs5242":
            return None
        if hp.path is None:
            return sources.cs5242_dir()
        return sources.cs5242_dir(hp.path) if Path(hp.path).is_dir() else None  # a file: user data

    def _read(self) -> LabeledData:
        hp = self.hparams
        folder = self._cs5242_folder()
        if folder is not None:
            return sources.read_cs5242(folder, hp.skip_bad_rows)
        if hp.path is not None:
            return sources.read_user_data(hp.path, hp.format, hp.skip_bad_rows)
        corpus = vader.vader_corpus_path(hp.dataset, hp.cache_dir)
        if not corpus.is_file():  # setup() without prepare_data(): fetch now rather than fail
            vader.fetch_vader_corpus(hp.dataset, hp.cache_dir)
        return vader.read_vader(corpus, hp.fine_grained, hp.skip_bad_rows)

    def _describe(self) -> str:
        hp = self.hparams
        return hp.path if hp.path is not None else hp.dataset

    def _dictionary_path(self) -> Optional[Path]:
        if self.hparams.dictionary is not None:
            return Path(self.hparams.dictionary)
        folder = self._cs5242_folder()
        return None if folder is None else folder / "dictionary.csv"

    def _cached(self) -> bool:
        """Whether the tokenized data set goes through the disk cache (not with a replaced tokenizer)."""
        return self.hparams.cache_preprocessed and type(self.tokenizer) is Tokenizer

    def _load_corpus(self) -> TokenizedCorpus:
        """The tokenized data set: from the cache (built first if missing), or read and tokenized now."""
        if self.corpus is None:
            if self._cached():
                files = preprocessed.input_files(self._input_path())
                settings = {name: self.hparams[name] for name in ("format", "fine_grained", "limit", "skip_bad_rows")}
                settings.update(lowercase=self.tokenizer.lowercase, reader=self._reader_name())
                root = preprocessed.default_root(self.hparams.cache_dir)
                key = preprocessed.cache_key(files, settings, root)
                self.corpus = preprocessed.load_or_build(root, key, self._describe(), self._read_and_tokenize)
                self._cache_entry = root / key
            else:
                self.corpus = self._read_and_tokenize()
        return self.corpus

    def _read_and_tokenize(self) -> TokenizedCorpus:
        hp = self.hparams
        files = preprocessed.input_files(self._input_path())
        size = sum(file.stat().st_size for file in files)
        check_fits(f"reading and tokenizing {self._describe()} ({size / 2**20:,.0f} MB)", size * LOAD_BYTES_PER_BYTE,
                   "use a smaller file (or --data.limit), or a machine with more memory")
        data = self._read()
        examples = data.examples[: hp.limit] if hp.limit is not None else data.examples
        return tokenize_examples(examples, data.label_names, self.tokenizer, hp.skip_bad_rows, self._describe(),
                                 hp.tokenize_workers)

    def _input_path(self) -> Path:
        """The file (or folder) the data is read from."""
        hp = self.hparams
        folder = self._cs5242_folder()
        if folder is not None:
            return folder / "train.csv"
        if hp.path is not None:
            if not Path(hp.path).exists():
                raise DataError(f"{hp.path}: file or folder not found")
            return Path(hp.path)
        corpus = vader.vader_corpus_path(hp.dataset, hp.cache_dir)
        if not corpus.is_file():
            vader.fetch_vader_corpus(hp.dataset, hp.cache_dir)
        return corpus

    def _reader_name(self) -> str:
        return "cs5242" if self._cs5242_folder() is not None else "user" if self.hparams.path is not None else "vader"

    def _build_vocabulary(self) -> tuple[Vocabulary, str]:
        """The training split's words (``min_freq``, ``max_size``), and the line that says what was left out."""
        counts = self.corpus.word_counts(self.splits["train"])
        return Vocabulary.from_training_counts(self.corpus.words, counts, self.hparams.min_freq, self.hparams.max_size)

    def _encode_splits(self) -> None:
        """Map the corpus' token ids to vocabulary indices (int32) and make one dataset per split."""
        corpus, vocab, hp = self.corpus, self.vocab, self.hparams

        def encode() -> np.ndarray:
            fallback = vocab.pad_index if vocab.unk_index is None else vocab.unk_index
            to_vocab = np.fromiter(map(vocab.stoi.get, corpus.words, repeat(fallback)), np.int32, len(corpus.words))
            return corpus.encode(to_vocab)

        encoded = derived.encoded(self._cache_entry, vocab, encode)  # kept next to a cached corpus
        labels = torch.from_numpy(corpus.labels)
        self._datasets = {name: EncodedDataset(encoded, corpus.offsets, rows, labels[rows], hp.max_length)
                          for name, rows in self.splits.items()}
        if vocab.unk_index is None:  # a dictionary: unknown words map to padding, so say which, never silently
            for name, rows in self.splits.items():
                unknown = vocab.unknown_words(corpus.words, corpus.token_ids(rows, hp.max_length))
                if unknown:
                    log.warning("%s in the %s split are not in the dictionary; they map to index 0, the zero input "
                                "vector", unknown, name)
        cut = int((corpus.lengths()[self.splits["train"]] > hp.max_length).sum())
        if cut:
            log.info("%d training sentence(s) are longer than max_length=%d and were cut", cut, hp.max_length)

    def _dataset(self, split: str) -> EncodedDataset:
        self._ensure_setup()
        return self._datasets[split]

    def _loader(self, dataset: EncodedDataset, **kwargs: Any) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(dataset, num_workers=workers, persistent_workers=workers > 0, collate_fn=collate, **kwargs)

