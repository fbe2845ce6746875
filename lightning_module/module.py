"""The LightningModule: trains :class:`torch_rnn.models.SentimentRNN` with softmax cross-entropy."""
from __future__ import annotations

import random
from typing import Any, Literal, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.utilities import grad_norm
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import AUROC, Accuracy, F1Score

from lightning_module.augment import keep_row_zero, unknown_sentences
from lightning_module.calibration import expected_calibration_error, fit_temperature, fit_temperature_and_weight
from lightning_module.network import build_network, start_embedding
from lightning_module.panels import log_validation_panels
from lightning_module.settings import Fraction, NonNegativeInt, PositiveInt, check_settings
from torch_rnn.models import softmax_loss

STAGES = ("train", "val", "test")
#: Constructor arguments the checkpoint's hyperparameters leave out (YAML builds them; they are not settings).
NOT_SAVED = ("optimizer", "lr_scheduler")


class SentimentClassifier(pl.LightningModule):
    """Sentence -> sentiment class, with the hand-written RNN.

    Logs ``train/loss`` and ``grad_norm/total`` on the training steps the logger writes (every
    ``trainer.log_every_n_steps`` steps, ``1`` for every step; the progress bar's loss refreshes then too) and,
    per epoch and stage (``train``, ``val``, ``test``), the mean loss (``train/loss_epoch`` for training),
    accuracy, macro F1 and (two classes) AUROC; with the configs' LearningRateMonitor, also the learning rate.
    The optimizer and the learning-rate scheduler are injected from YAML (``model.optimizer``,
    ``model.lr_scheduler``).

    Args:
        vocab_size: vocabulary size including padding (LightningCLI links it from the data).
        num_classes: number of classes (linked from the data).
        hidden_size, fc_size, num_layers, bidirectional, nonlinearity, dropout, embedding_dropout,
        skip_padding, init:
            see :class:`torch_rnn.models.SentimentRNN`.
        input_mode: ``"onehot"``, ``"embedding"`` or ``"pretrained"``.
        embedding_dim: size of the learned embedding.
        embedding_init: how the learned embedding starts: ``"random"`` (``nn.Embedding``'s N(0, 1)), or
            ``"naive_bayes"``: its first ``naive_bayes_dims`` columns hold each word's naive-Bayes log-count
            ratios on the training split (:mod:`lightning_module.naive_bayes`), set in :meth:`setup` at the
            start of a fresh fit, the rest random; every column is trained. With ``input_mode="pretrained"``
            the ``naive_bayes_dims`` columns come before the pretrained vectors' (the embedding is wider).
        naive_bayes_dims: how many columns ``"naive_bayes"`` sets: the ``C`` ratios of the ``C`` classes,
            repeated (so embedding dropout rarely removes all of them).
        naive_bayes_scale: the factor on those ratios (the random columns are N(0, 1); a ratio of 1 means a
            word is e times more frequent in one class).
        pretrained: which word vectors for ``input_mode="pretrained"``: ``"glove-6b-50d"``. They are read
            in :meth:`setup`, once the data's vocabulary is known (a checkpoint then restores its own).
        freeze_embedding: keep the pretrained vectors fixed.
        optimizer: a callable that builds the optimizer from the parameters (default Adam, lr 1e-3).
        lr_scheduler: a callable that builds the scheduler from the optimizer, or None.
        lr_scheduler_interval: ``"epoch"`` or ``"step"``: when the scheduler steps.
        compile: run the network under ``torch.compile`` (``nn.Module.compile``: in place, so parameter names
            and checkpoints stay those of the eager model). torch_rnn's layers compile without a graph break,
            each one node with its hand-written backward; the first steps of each stage (training, evaluation)
            take longer while it compiles. Fit, validate, test and predict give the eager run's numbers
            (within float32 rounding).
        compile_backend: ``torch.compile``'s backend: ``"inductor"`` (generated code) or, for example,
            ``"aot_eager"`` (no code generation, so it compiles in seconds).
        word_dropout: in training, each real token becomes the vocabulary's unknown token with this
            probability, so that the model learns what a sentence of unknown words says: little (its
            probabilities then stay near the class prior). Needs a vocabulary with ``<unk>``.
        unknown_sentences: in training, each sentence becomes, with this probability, a sentence of ``k``
            unknown tokens (``k`` uniform in ``1 .. its length``), its label kept. Word dropout alone almost never
            makes a sentence all unknown (``word_dropout ** L``), so what the model says about one is
            extrapolation; on these its label is independent of the input, and the cross-entropy is lowest when
            their probabilities are the class prior. Needs a vocabulary with ``<unk>``.
        zero_unknown: the unknown token's embedding row is zero and stays zero in a fit
            (:func:`lightning_module.augment.keep_row_zero`): an unknown word adds no input, as padding does,
            so a sentence of unknown words is the same input whatever its words and (eval mode) whatever
            dropout, and ``unknown_sentences`` trains what it says directly. Needs an embedding and ``<unk>``.
        log_bptt: at every validation epoch of a fit, log the mean norm of the total gradient ``dL/dh_t``
            reaching each step's hidden state (:func:`torch_rnn.diagnostics.bptt_hidden_gradients`) over the
            first validation batch: the figure ``bptt/grad_norm`` and the scalars ``bptt/grad_norm_first``
            (step 0) and ``bptt/grad_norm_last`` (each sentence's last step).
        explain_sentences: at every validation epoch of a fit, log an image ``explanations/validation`` of
            this many sentences of the first validation batch, each word shaded by its share of the predicted
            class's log-odds (:mod:`lightning_module.explanations`); 0 for none.
        ngram_order: 0 for the RNN alone; ``n >= 1`` adds an NBSVM over the sentence's 1- to n-grams
            (:mod:`lightning_module.ngrams`): fitted on the training split (its C chosen on the validation
            split) in :meth:`setup` at the start of a fresh fit, then fixed; its scores are added to the RNN's
            with a weight ``beta`` fitted with the temperature at every validation (``val/ngram_weight``).
            Training optimises the RNN's own scores, and ``{stage}/loss`` stays the RNN's (so the best
            checkpoint by validation loss is the RNN's best epoch); accuracy, F1, AUROC, ECE and the
            predictions are those of the sum.

    Calibration: at every validation of a fit, the temperature ``T`` that minimises the validation NLL of
    ``softmax(scores / T)`` is fitted (:func:`lightning_module.calibration.fit_temperature`; with
    ``ngram_order``, together with the NBSVM's weight, :func:`~lightning_module.calibration.fit_temperature_and_weight`)
    and kept in the buffer ``temperature``, so every checkpoint carries the one fitted for its own weights; predictions
    (:meth:`predict_step`, ``predict.py``) use it. Logged per validation and test: ``{stage}/ece`` (15-bin
    expected calibration error of ``softmax(scores)``) and ``{stage}/ece_calibrated`` (of
    ``softmax(scores / T)``; on validation with the ``T`` fitted on it), and ``val/temperature``.

    Raises:
        ValueError: every setting outside its annotated type (:mod:`lightning_module.settings`), named, e.g.
            ``model.word_dropout must be in [0, 1), got 1.0``; ``naive_bayes`` settings that do not fit together.
        MemoryLimitError: the vocabulary-sized weights would not fit in memory.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        hidden_size: PositiveInt = 128,
        fc_size: PositiveInt = 128,
        input_mode: Literal["onehot", "embedding", "pretrained"] = "embedding",
        embedding_dim: PositiveInt = 100,
        embedding_init: Literal["random", "naive_bayes"] = "random",
        naive_bayes_dims: PositiveInt = 10,
        naive_bayes_scale: float = 1.0,
        pretrained: Optional[Literal["glove-6b-50d"]] = None,
        freeze_embedding: bool = False,
        num_layers: PositiveInt = 1,
        bidirectional: bool = False,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
        dropout: Fraction = 0.0,
        embedding_dropout: Fraction = 0.0,
        skip_padding: bool = True,
        init: Literal["pytorch", "assignment"] = "pytorch",
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        compile: bool = False,
        compile_backend: str = "inductor",
        word_dropout: Fraction = 0.0,
        unknown_sentences: Fraction = 0.0,
        zero_unknown: bool = False,
        log_bptt: bool = True,
        explain_sentences: NonNegativeInt = 6,
        ngram_order: NonNegativeInt = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(NOT_SAVED))
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        problems = check_settings(SentimentClassifier.__init__, self.hparams, "model")
        if zero_unknown and input_mode == "onehot":
            problems.append("model.zero_unknown needs an embedding (input_mode 'embedding' or 'pretrained')")
        if problems:
            raise ValueError("bad model settings: " + "; ".join(problems))
        width = embedding_dim if input_mode == "embedding" else naive_bayes_dims  # pretrained: columns added
        if embedding_init == "naive_bayes" and (input_mode == "onehot" or not 1 <= naive_bayes_dims <= width):
            raise ValueError(f"model.embedding_init 'naive_bayes' needs input_mode 'embedding' (and 1 <= "
                             f"naive_bayes_dims <= embedding_dim) or 'pretrained' (and 1 <= naive_bayes_dims), got "
                             f"input_mode {input_mode!r}, naive_bayes_dims {naive_bayes_dims} and embedding_dim "
                             f"{embedding_dim}")
        self.model = build_network(
            vocab_size=vocab_size, num_classes=num_classes, hidden_size=hidden_size, fc_size=fc_size,
            input_mode=input_mode, embedding_dim=embedding_dim, pretrained=pretrained, embedding_init=embedding_init,
            naive_bayes_dims=naive_bayes_dims,
            freeze_embedding=freeze_embedding, num_layers=num_layers, bidirectional=bidirectional,
            nonlinearity=nonlinearity, dropout=dropout, embedding_dropout=embedding_dropout,
            skip_padding=skip_padding, init=init, ngram_order=ngram_order,
        )
        if compile:
            self.model.compile(backend=compile_backend)
        task = "binary" if num_classes == 2 else "multiclass"
        metrics = {"acc": Accuracy(task=task, num_classes=num_classes),
                   "f1": F1Score(task=task, num_classes=num_classes, average="macro")}
        if num_classes == 2:
            metrics["auroc"] = AUROC(task="binary")
        # ModuleDict keys cannot be "train" (an nn.Module method), hence the "_metrics" suffix.
        self.metrics = torch.nn.ModuleDict(
            {f"{stage}_metrics": MetricCollection(metrics, prefix=f"{stage}/").clone() for stage in STAGES}
        )
        self.loss_means = torch.nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in STAGES})
        # Every step's (probabilities, labels, loss), measured once per epoch: a torchmetrics update or a
        # self.log call costs Lightning some hundreds of microseconds each, per step (self.log moves the logged
        # value's record to its device every call), where the model's whole step takes about 18 ms.
        self._epoch_outputs: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {stage: [] for stage in STAGES}
        self._resume_state: Optional[tuple[Any, Optional[list], bool]] = None  # from a checkpoint, until a fit goes on
        self.register_buffer("temperature", torch.tensor(1.0))  # fitted at each validation of a fit
        self._scores: dict[str, list[Tensor]] = {"val": [], "test": []}  # the epoch's class scores, for calibration
        self._ngram_scores: dict[str, list[Tensor]] = {"val": [], "test": []}  # ... and the NBSVM's (ngram_order)
        self._first_val_batch: Optional[dict[str, Tensor]] = None  # for the BPTT and explanation panels
        self._unk_index: Optional[int] = None  # the vocabulary's unknown token, for word_dropout
        self._unknown_hook: Optional[Any] = None  # zero_unknown's gradient hook

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """Class scores (logits) ``(N, C)`` for ``tokens (N, T)`` and ``mask (N, T)``."""
        return self.model(tokens, mask)

    def setup(self, stage: str) -> None:
        """For a fit, the vocabulary's unknown token (``word_dropout``, ``unknown_sentences``, ``zero_unknown``);
        at the start of a fresh fit, fill in pretrained word vectors for the data's vocabulary, or the
        naive-Bayes columns of the learned embedding (a checkpoint restores its own); then, with
        ``zero_unknown``, zero the unknown token's row and keep it zero."""
        hp = self.hparams
        if stage == "fit" and (hp.word_dropout > 0 or hp.unknown_sentences > 0 or hp.zero_unknown):
            vocab = getattr(self.trainer.datamodule, "vocab", None)
            self._unk_index = None if vocab is None else vocab.unk_index
            if self._unk_index is None:
                raise ValueError("model.word_dropout and unknown_sentences need a vocabulary with an unknown token "
                                 "(<unk>); this data's has none (a --data.dictionary maps unknown words to padding)")
        if stage != "fit":
            return
        if self.trainer.ckpt_path is None:
            self._initialise_embedding()
            if hp.ngram_order > 0:
                self._fit_ngrams()
        if hp.zero_unknown and self._unknown_hook is None:
            self._unknown_hook = keep_row_zero(self.model.embedding, self._unk_index)

    def _initialise_embedding(self) -> None:
        """A fresh fit's pretrained vectors and naive-Bayes columns (:func:`~lightning_module.network.start_embedding`)."""
        hp = self.hparams
        start_embedding(self.model.embedding, self.trainer.datamodule, hp.input_mode, hp.embedding_init,
                        hp.naive_bayes_dims, hp.naive_bayes_scale, hp.num_classes)

    def _fit_ngrams(self) -> None:
        """A fresh fit's NBSVM (:func:`lightning_module.ngrams.fit_nbsvm`) on the data's training split, its C
        chosen on the validation split."""
        from lightning_module.ngrams import fit_nbsvm

        datamodule, hp = self.trainer.datamodule, self.hparams
        splits = [datamodule.training_set(), datamodule.validation_set()]
        train, val = [(*dataset.ragged(), np.asarray(dataset.labels)) for dataset in splits]
        keys, weights, bias, c = fit_nbsvm(train, val, hp.ngram_order, hp.vocab_size, hp.num_classes)
        self.model.ngrams.set(keys, weights, bias)
        print(f"NBSVM over 1- to {hp.ngram_order}-grams: {len(keys):,} n-grams of the training split, C = {c:g} "
              f"(chosen on the validation split)")

    def _ngrams(self) -> Optional[torch.nn.Module]:
        """The NBSVM (:class:`~lightning_module.ngrams.NgramScores`) when ``ngram_order > 0``, else None."""
        return getattr(self.model, "ngrams", None)

    # ---- steps ----------------------------------------------------------------------------------------
    def _shared_step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        tokens, mask = batch["tokens"], batch["mask"]
        if stage == "train":
            tokens, mask = self.training_inputs(tokens, mask, self._unk_index)
        ngrams = self._ngrams()
        scores = self(tokens, mask) if ngrams is None else self.model.rnn_scores(tokens, mask)  # (N, C): trained
        loss = softmax_loss(scores, batch["labels"])
        if ngrams is not None and stage in self._ngram_scores:  # summed with the RNN's at the epoch's end
            self._ngram_scores[stage].append(ngrams(tokens, mask))  # (N, C)
        self._epoch_outputs[stage].append((self._metric_input(scores), batch["labels"], loss.detach()))
        if stage in self._scores:
            self._scores[stage].append(scores.detach())
        if stage == "train" and self._logger_writes_this_step():  # the epoch's mean is train/loss_epoch
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def training_inputs(self, tokens: Tensor, mask: Tensor, unk_index: Optional[int]) -> tuple[Tensor, Tensor]:
        """A training step's ``tokens (N, T)`` and ``mask (N, T)``: word dropout (:meth:`drop_words`), then sentences
        of unknown words (:func:`~lightning_module.augment.unknown_sentences`), as ``word_dropout`` and
        ``unknown_sentences`` ask; random draws from torch's global generator."""
        if self.hparams.word_dropout > 0:
            tokens = self.drop_words(tokens, mask, unk_index)
        if self.hparams.unknown_sentences > 0:
            tokens, mask = unknown_sentences(tokens, mask, unk_index, self.hparams.unknown_sentences)
        return tokens, mask

    def drop_words(self, tokens: Tensor, mask: Tensor, unk_index: int) -> Tensor:
        """``tokens (N, T)`` (int64) with each real token (``mask (N, T)`` nonzero) replaced by ``unk_index`` with
        probability ``word_dropout``, drawn from torch's global generator: the training steps' word dropout."""
        dropped = (torch.rand(tokens.shape, device=tokens.device) < self.hparams.word_dropout) & mask.bool()
        return tokens.masked_fill(dropped, unk_index)

    def _logger_writes_this_step(self) -> bool:
        """Whether Lightning sends this training step's logged values to the logger: on every
        ``trainer.log_every_n_steps``-th optimizer step (Lightning's own rule) and when training stops.

        Step values are logged only then: each ``self.log`` call costs Lightning some hundreds of microseconds
        of an 18 ms step, and on other steps it would only refresh the progress bar.
        """
        every = self.trainer.log_every_n_steps
        return every > 0 and ((self.global_step + 1) % every == 0 or self.trainer.should_stop)

    def _log_epoch_metrics(self, stage: str, to_loggers_now: bool = False) -> None:
        """The stage's metrics and mean loss over the epoch (synchronised across processes): logged, then reset.

        The loss is ``{stage}/loss``, ``train/loss_epoch`` for training (``train/loss`` is the per-step one).
        ``to_loggers_now`` writes them to the loggers at the current step instead of through ``self.log``
        (which, outside an epoch-end hook, would hold them until the current epoch ends and its own values
        replace them).
        """
        metrics, loss_mean, outputs = self.metrics[f"{stage}_metrics"], self.loss_means[f"{stage}_loss"], self._epoch_outputs[stage]
        if outputs:
            probabilities, labels, losses = zip(*outputs)
            calibration = self._calibration(stage, torch.cat(labels)) if stage in self._scores else {}
            if calibration and self._ngrams() is not None:  # the sum with the NBSVM's weight fitted just now
                probabilities = [self._metric_input(self._summed_scores(stage))]
            metrics.update(torch.cat(probabilities), torch.cat(labels))
            loss_mean.update(torch.stack(losses), weight=torch.tensor([len(y) for y in labels], dtype=losses[0].dtype,
                                                                      device=losses[0].device))
            loss_name = "train/loss_epoch" if stage == "train" else f"{stage}/loss"
            values = {loss_name: loss_mean.compute(), **metrics.compute(), **calibration}
            if to_loggers_now:
                for logger in self.loggers:
                    logger.log_metrics({name: float(value) for name, value in values.items()}, step=self.global_step)
            else:
                self.log_dict(values, prog_bar=stage != "train")
        metrics.reset()
        loss_mean.reset()
        outputs.clear()
        self._scores.get(stage, []).clear()
        self._ngram_scores.get(stage, []).clear()

    def _summed_scores(self, stage: str) -> Tensor:
        """The epoch's ``(N, C)`` RNN scores plus the NBSVM's times its weight (this process's)."""
        ngrams = self._ngrams()
        return torch.cat(self._scores[stage]) + ngrams.scale * torch.cat(self._ngram_scores[stage])

    def _calibration(self, stage: str, labels: Tensor) -> dict[str, Tensor]:
        """``{stage}/ece`` and ``{stage}/ece_calibrated`` over the epoch's scores (gathered from every
        process); during a fit's validation, first fit :attr:`temperature` on them (``val/temperature``) and,
        with ``ngram_order``, the NBSVM's weight (``val/ngram_weight``)."""
        scores = torch.cat(self._scores[stage]).float()  # (N, C)
        ngrams = self._ngrams()
        extra = None if ngrams is None else torch.cat(self._ngram_scores[stage]).float()  # (N, C)
        if self.trainer.world_size > 1:
            scores, labels = self.all_gather(scores).flatten(0, 1), self.all_gather(labels).flatten(0, 1)
            extra = None if extra is None else self.all_gather(extra).flatten(0, 1)
        values = {}
        if stage == "val" and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            if extra is None:
                self.temperature.fill_(fit_temperature(scores, labels))
            else:
                temperature, weight = fit_temperature_and_weight(scores, extra, labels)
                self.temperature.fill_(temperature)
                ngrams.scale.fill_(weight)
                values["val/ngram_weight"] = ngrams.scale.detach().clone()
            values["val/temperature"] = self.temperature.detach().clone()
        if extra is not None:
            scores = scores + ngrams.scale * extra
        temperature = float(self.temperature)
        for name, t in ((f"{stage}/ece", 1.0), (f"{stage}/ece_calibrated", temperature)):
            values[name] = torch.tensor(expected_calibration_error((scores / t).softmax(1), labels),
                                        device=self.device)
        return values

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    # ---- exact resume -------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The random generators' states and, part way through a training epoch, the epoch's outputs so far:
        with the DataModule's batch order, what a fit resumed from this checkpoint needs to go on exactly as
        if it had never stopped."""
        numpy_state = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        }
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "fit":  # also at validation inside a fit (best-*.ckpt)
            done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            checkpoint["train_epoch_outputs"] = list(self._epoch_outputs["train"])
            checkpoint["mid_epoch"] = trainer.training and 0 < done < trainer.num_training_batches

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the generator states and epoch outputs until a fit from this checkpoint starts
        (:meth:`on_fit_start`). A checkpoint written without a temperature gets ``T = 1``."""
        checkpoint.get("state_dict", {}).setdefault("temperature", torch.tensor(1.0))
        self._resume_state = (checkpoint.get("rng_states"), checkpoint.get("train_epoch_outputs"),
                              bool(checkpoint.get("mid_epoch")))

    def on_fit_start(self) -> None:
        """A resumed fit: the checkpoint's generator states, before the training data iterator is made (it
        draws a seed) and the next epoch draws its batch order; part way through an epoch, again before its
        next batch (the iterator was made to go on where the epoch stopped), and the epoch's outputs so far,
        so that its metrics cover the whole epoch."""
        state, self._resume_state = self._resume_state, None
        if state is None or self.trainer.ckpt_path is None:  # a checkpoint loaded for another use than resuming
            return
        rng_states, outputs, mid_epoch = state
        self._set_rng_states(rng_states)
        self._epoch_outputs["train"] = list(outputs or [])
        if mid_epoch:
            self._resume_state = state

    def on_train_epoch_start(self) -> None:
        """An epoch starts afresh. Outputs still here came with a checkpoint written after an epoch's last
        batch but before its end (``best-*.ckpt``, at validation): Lightning does not end that epoch again, so
        its training metrics are logged now, at the same step."""
        if self._epoch_outputs["train"]:
            self._log_epoch_metrics("train", to_loggers_now=True)
        self._epoch_outputs["train"] = []

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._resume_state is not None:  # resumed part way through an epoch: its first batch
            self._set_rng_states(self._resume_state[0])
            self._resume_state = None

    @staticmethod
    def _set_rng_states(rng_states: Optional[dict[str, Any]]) -> None:
        if rng_states is None:
            return
        torch.set_rng_state(rng_states["torch"])
        random.setstate(rng_states["python"])
        name, keys, *rest = rng_states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")
        fitting = self.trainer.state.fn == "fit" and not self.trainer.sanity_checking
        if fitting and self._first_val_batch is not None and self.trainer.is_global_zero:
            log_validation_panels(self, self._first_val_batch)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def _metric_input(self, scores: Tensor) -> Tensor:
        """Positive-class probability (binary) or the class probabilities (multiclass)."""
        probabilities = scores.detach().softmax(dim=1)
        return probabilities[:, 1] if self.hparams.num_classes == 2 else probabilities

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and self._first_val_batch is None:
            self._first_val_batch = {key: batch[key].detach().clone() for key in ("tokens", "mask", "labels")}
        self._shared_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Class probabilities ``(N, C)``: ``softmax(scores / temperature)``."""
        return self.calibrated_scores(batch["tokens"], batch["mask"]).softmax(dim=1)

    def calibrated_scores(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """``scores / temperature`` ``(N, C)``: the class scores whose softmax is the calibrated probabilities."""
        return self(tokens, mask) / self.temperature

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Only on the steps the logger writes: the norm reads every gradient, a cost worth skipping otherwise.
        if self._logger_writes_this_step():
            self.log("grad_norm/total", grad_norm(self, norm_type=2)["grad_2.0_norm_total"])

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {"scheduler": self.scheduler_factory(optimizer), "interval": self.hparams.lr_scheduler_interval}
        if isinstance(scheduler["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
