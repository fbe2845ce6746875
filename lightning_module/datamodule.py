"""The LightningDataModule for sentiment classification, and the text encoder a checkpoint carries.

A batch is a dict:

- ``tokens``: LongTensor (N, T), vocabulary indices, 0 = padding, padding only at the end;
- ``mask``: float32 (N, T), 1.0 at the sentence's real tokens, 0.0 at padding;
- ``labels``: LongTensor (N,), class indices into ``label_names``.

T is always ``max_length``: longer sentences are cut, shorter ones padded at the end (the report's model
runs over all T steps). With a built vocabulary ``mask == (tokens != 0)``. With a dictionary vocabulary
(no ``<unk>``) an unknown word is index 0 as well, the zero input vector, but it is still a real
position of the sentence, so its mask is 1; how many such words each split has is logged.

Checkpoints: Lightning stores :meth:`SentimentDataModule.state_dict` (the vocabulary, class names and
tokenizer settings) in every checkpoint under the key ``"SentimentDataModule"``;
:meth:`TextEncoder.from_checkpoint` rebuilds the encoder from a checkpoint alone, without the data.
"""
from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any, Iterator, Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lightning_module import sources
from lightning_module.errors import BadRows, DataError
from lightning_module.sources import Example, LabeledData
from lightning_module.tokenizer import Tokenizer
from lightning_module.vocabulary import Vocabulary

log = logging.getLogger(__name__)

#: The data set names ``dataset`` accepts: the VADER corpora and the report's data.
DATASETS = (*sources.VADER_CORPORA, "cs5242")
#: How many distinct unknown words a warning names.
_SHOWN_UNKNOWN = 5


class TextEncoder:
    """Turns sentences into the model's input: the tokenizer, the vocabulary, T and the class names.

    This is everything needed to encode new text; :meth:`state` / :meth:`from_state` turn it into a plain
    dict and back, so predict.py needs only a checkpoint.

    Args:
        vocab: token -> index.
        tokenizer: sentence -> tokens.
        max_length: T; sentences are cut to T tokens and padded at the end to T.
        label_names: the name of every class (``label_names[label]``).
    """

    def __init__(self, vocab: Vocabulary, tokenizer: Tokenizer, max_length: int, label_names: list[str]) -> None:
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.label_names = list(label_names)

    def state(self) -> dict[str, Any]:
        """A plain, JSON-able dict: ``vocab`` (Vocabulary.to_dict), ``label_names``, ``lowercase``, ``max_length``."""
        return {"vocab": self.vocab.to_dict(), "label_names": list(self.label_names),
                "lowercase": self.tokenizer.lowercase, "max_length": self.max_length}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TextEncoder":
        """Rebuild the encoder from :meth:`state`'s dict (no data access)."""
        return cls(Vocabulary.from_dict(state["vocab"]), Tokenizer(lowercase=state["lowercase"]),
                   int(state["max_length"]), list(state["label_names"]))

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any] | str | Path) -> "TextEncoder":
        """Rebuild the encoder from a Lightning checkpoint (a loaded dict or a path to a ``.ckpt`` file).

        Raises:
            DataError: the checkpoint holds no SentimentDataModule state (it was not trained with it).
        """
        if not isinstance(checkpoint, dict):
            from lightning_module.inference import safe_load  # inference imports this module

            checkpoint = safe_load(checkpoint)
        state = checkpoint.get(SentimentDataModule.__qualname__)
        if not state:
            raise DataError(f"the checkpoint has no {SentimentDataModule.__qualname__!r} entry with the "
                            "vocabulary; it was not saved by a Trainer running SentimentDataModule")
        return cls.from_state(state)

    def encode_tokens(self, token_lists: list[list[str]]) -> dict[str, torch.Tensor]:
        """``tokens`` (N, T) long and ``mask`` (N, T) float32 for already tokenized sentences."""
        tokens = torch.zeros(len(token_lists), self.max_length, dtype=torch.long)
        mask = torch.zeros(len(token_lists), self.max_length, dtype=torch.float32)
        for row, words in enumerate(token_lists):
            words = words[: self.max_length]
            tokens[row, : len(words)] = torch.tensor(self.vocab.encode(words), dtype=torch.long)
            mask[row, : len(words)] = 1.0
        return {"tokens": tokens, "mask": mask}

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``tokens`` (N, T) and ``mask`` (N, T) for new sentences.

        Raises:
            DataError: a text has no tokens (names which one, counting from 1).
        """
        token_lists = [self.tokenizer(text) for text in texts]
        for number, words in enumerate(token_lists, start=1):
            if not words:
                raise DataError(f"text {number} ({texts[number - 1]!r}) has no tokens")
        return self.encode_tokens(token_lists)

    __call__ = encode


class EncodedDataset(Dataset):
    """Encoded examples; item i is a dict of ``tokens`` (T,), ``mask`` (T,) and ``labels`` (a scalar)."""

    def __init__(self, tokens: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> None:
        self.tokens, self.mask, self.labels = tokens, mask, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"tokens": self.tokens[index], "mask": self.mask[index], "labels": self.labels[index]}

    def lengths(self) -> list[int]:
        """The number of real tokens of every example."""
        return self.mask.sum(dim=1).long().tolist()


class ShuffledBatchSampler(Sampler[list[int]]):
    """Random batches, every epoch in a new order, that can resume an epoch part way through.

    Each epoch draws one seed from torch's global generator (so ``seed_everything`` fixes the order) and makes
    its order from that seed alone: without ``bucket_by_length`` exactly what ``shuffle=True`` gives
    (``RandomSampler``'s permutation cut into batches); with it, batches of similar length: shuffle, sort pools
    of 50 batches by length, shuffle the batches (fewer padding steps carry a mask of 0).

    :meth:`resume` makes the next epoch use a given seed and skip the batches already trained on: a checkpoint
    written part way through an epoch holds the seed (:attr:`epoch_seed`) and the count.
    """

    POOL_BATCHES = 50

    def __init__(self, lengths: list[int], batch_size: int, bucket_by_length: bool) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.bucket_by_length = bucket_by_length
        self.epoch_seed: Optional[int] = None
        self._resume: Optional[tuple[int, int]] = None

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def resume(self, epoch_seed: int, batches_done: int) -> None:
        """The next epoch: the order of ``epoch_seed``, without its first ``batches_done`` batches."""
        self._resume = (epoch_seed, batches_done)

    def __iter__(self) -> Iterator[list[int]]:
        seed, skip = self._resume or (int(torch.empty((), dtype=torch.int64).random_().item()), 0)
        self._resume, self.epoch_seed = None, seed
        yield from self._batches(torch.Generator().manual_seed(seed))[skip:]

    def _batches(self, generator: torch.Generator) -> list[list[int]]:
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        if not self.bucket_by_length:
            return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        pool = self.batch_size * self.POOL_BATCHES
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=self.lengths.__getitem__)
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return [batches[index] for index in torch.randperm(len(batches), generator=generator).tolist()]


class SentimentDataModule(pl.LightningDataModule):
    """Labelled sentences -> fixed-length token batches, split into train/val/test.

    Args:
        dataset: a built-in data set: ``rotten_tomatoes`` (VADER movie-review snippets, the default),
            ``tweets``, ``amazon``, ``nyt`` (the other VADER corpora; downloaded once with pip into
            ``cache_dir``) or ``cs5242`` (the original report's 800 sentences, read from
            ``../shared/datasets/cs5242-si650``).
        path: a user data file or IMDB-style folder; it replaces ``dataset``. With ``dataset: cs5242`` a
            folder holding ``train.csv`` and ``dictionary.csv`` is read as the cs5242 data instead.
        format: the format of ``path``: ``csv``, ``tsv``, ``sst2``, ``jsonl``, ``imdb``, or null to detect it.
        cache_dir: where downloaded corpora are kept; default ``$TORCH_RNN_CACHE`` or ``~/.cache/torch_rnn``.
        max_length: T, the number of time steps: longer sentences are cut, shorter ones padded at the end.
        lowercase: lowercase sentences before tokenizing.
        min_freq: a built vocabulary keeps words seen at least this often in the training split.
        max_size: a built vocabulary keeps at most this many words (plus ``<pad>`` and ``<unk>``).
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
        skip_bad_rows: skip unusable rows (and report them in a warning) instead of stopping with an error.
    """

    def __init__(
        self,
        dataset: str = "rotten_tomatoes",
        path: Optional[str] = None,
        format: Optional[str] = None,
        cache_dir: Optional[str] = None,
        max_length: int = 50,
        lowercase: bool = True,
        min_freq: int = 1,
        max_size: Optional[int] = None,
        dictionary: Optional[str] = None,
        fine_grained: bool = False,
        limit: Optional[int] = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 42,
        batch_size: int = 32,
        shuffle: bool = True,
        bucket_by_length: bool = False,
        num_workers: int = 0,
        skip_bad_rows: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        _check_settings(self.hparams)
        self.tokenizer = Tokenizer(lowercase=lowercase)
        self.vocab: Optional[Vocabulary] = None
        self.label_names: list[str] = []
        self.splits: dict[str, list[Example]] = {}
        self._tokens: dict[str, list[list[str]]] = {}
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

    def encode_texts(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``tokens`` (N, T) and ``mask`` (N, T) for new sentences; DataError for a text with no tokens."""
        return self.encoder.encode(texts)

    def _ensure_setup(self) -> None:
        if self.vocab is None:
            self.prepare_data()
            self.setup()

    # ---- Lightning hooks -------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Download the VADER corpus if it is the data set and not cached yet (the only download)."""
        if self._vader_name() is not None:
            sources.fetch_vader_corpus(self._vader_name(), self.hparams.cache_dir)

    def setup(self, stage: Optional[str] = None) -> None:
        """Read, split, build the vocabulary on the training split (or read the dictionary) and encode.

        Runs once; later calls (fit then test, or the properties above) reuse the result.
        """
        if self._datasets:
            return
        hp = self.hparams
        data = self._read()
        examples = data.examples[: hp.limit] if hp.limit is not None else data.examples
        examples, token_lists = self._tokenize(examples)
        self.label_names = data.label_names
        self.splits, self._tokens = _split(examples, token_lists, hp.val_fraction, hp.test_fraction, hp.seed)
        dictionary = self._dictionary_path()
        if self.vocab is None:  # load_state_dict may already have set the checkpoint's vocabulary
            self.vocab = (Vocabulary.from_dictionary_file(dictionary) if dictionary is not None else
                          Vocabulary.build(self._tokens["train"], hp.min_freq, hp.max_size))
        self._encode_splits()
        log.info("data: %s; %d classes %s; vocabulary of %d; splits %s", self._describe(), len(self.label_names),
                 self.label_names, len(self.vocab), {name: len(split) for name, split in self.splits.items()})

    def training_set(self) -> EncodedDataset:
        """The encoded training split (``tokens``, ``mask``, ``labels``), for statistics a model starts from."""
        return self._dataset("train")

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
        return hp.dataset if hp.path is None and hp.dataset in sources.VADER_CORPORA else None

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
        corpus = sources.vader_corpus_path(hp.dataset, hp.cache_dir)
        if not corpus.is_file():  # setup() without prepare_data(): fetch now rather than fail
            sources.fetch_vader_corpus(hp.dataset, hp.cache_dir)
        return sources.read_vader(corpus, hp.fine_grained, hp.skip_bad_rows)

    def _describe(self) -> str:
        hp = self.hparams
        return hp.path if hp.path is not None else hp.dataset

    def _dictionary_path(self) -> Optional[Path]:
        if self.hparams.dictionary is not None:
            return Path(self.hparams.dictionary)
        folder = self._cs5242_folder()
        return None if folder is None else folder / "dictionary.csv"

    def _tokenize(self, examples: list[Example]) -> tuple[list[Example], list[list[str]]]:
        """Tokenize every example; one with no tokens is a bad row (error, or skipped and reported)."""
        bad = BadRows(self.hparams.skip_bad_rows)
        kept, token_lists = [], []
        for example in examples:
            tokens = self.tokenizer(example.text)
            if tokens:
                kept.append(example)
                token_lists.append(tokens)
            else:
                bad.add(example.source, "the sentence has no tokens")
        bad.report(self._describe())
        if not kept:
            raise DataError(f"{self._describe()}: the data set is empty: no sentence has any tokens")
        return kept, token_lists

    def _encode_splits(self) -> None:
        encoder = TextEncoder(self.vocab, self.tokenizer, self.hparams.max_length, self.label_names)
        self._datasets = {}
        for name, examples in self.splits.items():
            token_lists = self._tokens[name]
            self._report_unknown(name, token_lists)
            encoded = encoder.encode_tokens(token_lists)
            labels = torch.tensor([example.label for example in examples], dtype=torch.long)
            self._datasets[name] = EncodedDataset(encoded["tokens"], encoded["mask"], labels)
        cut = sum(len(tokens) > self.hparams.max_length for tokens in self._tokens["train"])
        if cut:
            log.info("%d training sentence(s) are longer than max_length=%d and were cut",
                     cut, self.hparams.max_length)

    def _report_unknown(self, split: str, token_lists: list[list[str]]) -> None:
        """Warn when words map to padding: a dictionary vocabulary has no <unk>, so this is never silent."""
        if self.vocab.unk_index is not None:
            return
        seen = [token for tokens in token_lists for token in tokens[: self.hparams.max_length]]
        unknown = [token for token in seen if token not in self.vocab]
        if unknown:
            distinct = list(dict.fromkeys(unknown))
            shown = ", ".join(map(repr, distinct[:_SHOWN_UNKNOWN]))
            shown += ", ..." if len(distinct) > _SHOWN_UNKNOWN else ""
            log.warning("%d of %d tokens in the %s split (%d distinct: %s) are not in the dictionary; "
                        "they map to index 0, the zero input vector", len(unknown), len(seen), split,
                        len(distinct), shown)

    def _dataset(self, split: str) -> EncodedDataset:
        self._ensure_setup()
        return self._datasets[split]

    def _loader(self, dataset: EncodedDataset, **kwargs: Any) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(dataset, num_workers=workers, persistent_workers=workers > 0, **kwargs)


def _check_settings(hp: Any) -> None:
    """Reject impossible settings at construction, before any data is read."""
    problems = []
    if hp.path is None and hp.dataset not in DATASETS:
        problems.append(f"unknown dataset {hp.dataset!r}; choose one of {', '.join(DATASETS)} or pass a path")
    if hp.format not in sources.FORMATS:
        problems.append(f"unknown format {hp.format!r}; choose one of {', '.join(map(str, sources.FORMATS))}")
    for name in ("max_length", "batch_size", "min_freq"):
        if hp[name] < 1:
            problems.append(f"{name} must be at least 1, got {hp[name]}")
    for name in ("limit", "max_size"):
        if hp[name] is not None and hp[name] < 1:
            problems.append(f"{name} must be at least 1 (or null), got {hp[name]}")
    if hp.num_workers < 0:
        problems.append(f"num_workers must be at least 0, got {hp.num_workers}")
    for name in ("val_fraction", "test_fraction"):
        if not 0 <= hp[name] < 1:
            problems.append(f"{name} must be in [0, 1), got {hp[name]}")
    if hp.val_fraction + hp.test_fraction >= 1:
        problems.append(f"val_fraction + test_fraction must be below 1, got {hp.val_fraction + hp.test_fraction}")
    if problems:
        raise DataError("bad data settings: " + "; ".join(problems))


def _split_size(n: int, fraction: float) -> int:
    """round(n * fraction), but at least 1 when the fraction is not 0."""
    return 0 if fraction == 0 else max(1, round(n * fraction))


def _split(
    examples: list[Example], token_lists: list[list[str]], val_fraction: float, test_fraction: float, seed: int
) -> tuple[dict[str, list[Example]], dict[str, list[list[str]]]]:
    """A seeded random split; each split keeps file order (so shuffle=False trains in file order)."""
    n = len(examples)
    n_val, n_test = _split_size(n, val_fraction), _split_size(n, test_fraction)
    if n - n_val - n_test < 1:
        raise DataError(f"{n} example(s) are too few for val_fraction={val_fraction} and "
                        f"test_fraction={test_fraction}: no training example would be left")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    chosen = {"train": order[n_test + n_val:], "val": order[n_test:n_test + n_val], "test": order[:n_test]}
    splits = {name: [examples[i] for i in sorted(idx)] for name, idx in chosen.items()}
    tokens = {name: [token_lists[i] for i in sorted(idx)] for name, idx in chosen.items()}
    return splits, tokens
