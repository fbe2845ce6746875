"""The trained sentiment network's forward pass in numpy, and a predictor built on it: predict.py without torch.

``import torch`` alone takes longer than predict.py may take for one sentence, so a plain prediction runs the
network here, on weights read by :mod:`lightning_module.checkpoint_reader` (no torch, no code run from the
file). It computes what :class:`torch_rnn.models.SentimentRNN` computes in eval mode (dropout off), in float32:

- the input: an embedding row per token (``input_mode`` embedding or pretrained), or for one-hot input the
  column ``k - 1`` of the first layer's input weights (padding, id 0, the zero vector);
- every layer and direction: ``h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, ``f`` tanh or relu, from
  ``h = 0``; with ``skip_padding`` (the default) each row runs over its own tokens only, the reverse direction
  from its last token; the next layer reads both directions' outputs side by side;
- the head: ``z_t = W_a h_t + b_a``, its mean over the real steps, ``scores = W_fc mean + b_fc``; probabilities
  ``softmax(scores / temperature)``;
- with ``ngram_order`` (:class:`lightning_module.ngrams.NgramSentimentRNN`), plus ``scale`` times the NBSVM's
  scores: its bias and the weights of the sentence's distinct n-grams, looked up by the same keys.

The tests check the scores against the torch model's to 1e-5 (one and several layers, both directions, each
input mode and nonlinearity, batches of different lengths).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from lightning_module.checkpoint_reader import TensorRef, UnreadableCheckpoint, read_checkpoint
from lightning_module.prediction import CHECKPOINT_KEY, FOLD_CHECKPOINT_KEY, Prediction, describe
from lightning_module.tokenizer import Tokenizer
from lightning_module.vocabulary import Vocabulary

class NumpySentimentRNN:
    """:class:`torch_rnn.models.SentimentRNN`'s eval-mode forward from its ``state_dict`` (numpy arrays, without
    the ``model.`` prefix) and its ``input_mode``, ``nonlinearity`` and ``skip_padding``; with ``ngram_order``
    (and the ``vocab_size`` the keys are written in), :class:`lightning_module.ngrams.NgramSentimentRNN`'s."""

    def __init__(self, weights: Mapping[str, np.ndarray], input_mode: str = "embedding", nonlinearity: str = "tanh",
                 skip_padding: bool = True, ngram_order: int = 0, vocab_size: int = 0) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}")
        self.ngram_order, self.vocab_size = ngram_order, vocab_size
        self.ngram_keys = np.asarray(weights["ngrams.keys"], np.int64) if ngram_order else None  # (K,) sorted
        self.weights = {name: np.asarray(value, np.float32) for name, value in weights.items() if name != "ngrams.keys"}
        self.input_mode, self.nonlinearity, self.skip_padding = input_mode, nonlinearity, skip_padding
        self.num_layers = 1 + max(int(name.split("_l")[1].split("_")[0]) for name in self.weights
                                  if name.startswith("rnn.weight_ih_l"))
        self.directions = 2 if "rnn.weight_ih_l0_reverse" in self.weights else 1

    def scores(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Class scores ``(N, C)`` for token ids ``(N, T)`` (0 = padding, at the end) with ``lengths (N,)`` >= 1."""
        w = self.weights
        steps = tokens.shape[1]
        mask = (np.arange(steps)[None, :] < lengths[:, None]).astype(np.float32)  # (N, T)
        run_lengths = lengths if self.skip_padding else np.full_like(lengths, steps)
        if self.input_mode == "onehot":
            inputs = None  # the first layer gathers its input weights' columns
        else:
            inputs = w["embedding.weight"][tokens]  # (N, T, E)
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                W_ih, W_hh = w["rnn.weight_ih" + suffix], w["rnn.weight_hh" + suffix]
                bias = w.get("rnn.bias_ih" + suffix, 0) + w.get("rnn.bias_hh" + suffix, 0)
                if inputs is None:
                    columns = np.concatenate([np.zeros((W_ih.shape[0], 1), np.float32), W_ih], axis=1)  # id 0: zero
                    projected = columns.T[tokens] + bias  # (N, T, H)
                else:
                    projected = inputs @ W_ih.T + bias
                outputs.append(self._recurrence(projected, W_hh, run_lengths, reverse=bool(direction)))
            inputs = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=2)  # (N, T, H * dirs)
        hidden = inputs
        projected = hidden @ w["temporal_affine.weight"].T + w.get("temporal_affine.bias", 0)  # (N, T, A)
        mean = (projected * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)  # (N, A)
        scores = mean @ w["classifier.weight"].T + w.get("classifier.bias", 0)  # (N, C)
        if self.ngram_keys is None:
            return scores
        return scores + w["ngrams.scale"] * self._ngram_scores(tokens, lengths)

    def _ngram_scores(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The NBSVM's scores ``(N, C)``: its bias plus the weights of each row's distinct n-grams
        (:func:`lightning_module.ngrams.ngram_keys`' keys)."""
        w, base = self.weights, self.vocab_size + 1
        scores = np.repeat(w["ngrams.bias"][None, :], len(tokens), axis=0)  # (N, C)
        for row, (ids, length) in enumerate(zip(tokens, lengths)):
            digits = ids[:length].astype(np.int64) + 1
            keys = np.concatenate([sum(digits[n - j: length - j] * base ** j for j in range(n + 1))
                                   for n in range(min(self.ngram_order, length))])
            keys = np.unique(keys)
            found = np.searchsorted(self.ngram_keys, keys).clip(max=max(len(self.ngram_keys) - 1, 0))
            known = found[self.ngram_keys[found] == keys] if len(self.ngram_keys) else found[:0]
            scores[row] += w["ngrams.weights"][known].sum(0)
        return scores

    def _recurrence(self, projected: np.ndarray, W_hh: np.ndarray, lengths: np.ndarray, reverse: bool) -> np.ndarray:
        """``h_t = f(projected_t + W_hh h_{t-1})`` over each row's first ``lengths`` steps (from its last one when
        ``reverse``); 0 past a row's end."""
        rows, steps, size = projected.shape
        out = np.zeros((rows, steps, size), np.float32)
        h = np.zeros((rows, size), np.float32)
        W_hh_T = W_hh.T
        for t in range(steps):
            if reverse:  # row n's step t runs once its own last step is reached: position lengths[n] - 1 - t
                positions = lengths - 1 - t
                active = positions >= 0
                index = np.where(active, positions, 0)
                x = projected[np.arange(rows), index]
            else:
                active = t < lengths
                index = np.full(rows, t)
                x = projected[:, t]
            pre = x + h @ W_hh_T
            new = np.tanh(pre) if self.nonlinearity == "tanh" else np.maximum(pre, 0)
            h = np.where(active[:, None], new, h)
            out[np.arange(rows)[active], index[active]] = new[active]
        return out


class NumpyPredictor:
    """:class:`lightning_module.inference.SentimentPredictor`'s :meth:`predict` (without ``explain``) on
    :class:`NumpySentimentRNN`, from a checkpoint read by :func:`read_checkpoint`."""

    def __init__(self, network: NumpySentimentRNN, vocab: Vocabulary, tokenizer: Tokenizer, max_length: int,
                 label_names: list[str], temperature: float = 1.0) -> None:
        self.network, self.vocab, self.tokenizer = network, vocab, tokenizer
        self.max_length, self.label_names, self.temperature = max_length, list(label_names), temperature

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path]) -> "NumpyPredictor":
        """Raises :class:`UnreadableCheckpoint` for anything but one of our checkpoints in a form it reads (the
        caller then loads it with torch, which says what is wrong, if anything)."""
        checkpoint = read_checkpoint(path)
        if not isinstance(checkpoint, dict):
            raise UnreadableCheckpoint("not a torch-rnn sentiment checkpoint")
        encoder = checkpoint.get(CHECKPOINT_KEY, checkpoint.get(FOLD_CHECKPOINT_KEY))  # a fold's keeps it elsewhere
        if not all(isinstance(part, dict) for part in (encoder, checkpoint.get("state_dict"),
                                                        checkpoint.get("hyper_parameters"))):
            raise UnreadableCheckpoint("not a torch-rnn sentiment checkpoint")
        state, settings = checkpoint["state_dict"], checkpoint["hyper_parameters"]
        weights = {key[len("model."):]: _array(value) for key, value in state.items() if key.startswith("model.")}
        if not any(key.startswith("rnn.weight_ih_l") for key in weights):
            raise UnreadableCheckpoint("no SentimentRNN weights")
        temperature = state.get("temperature")
        network = NumpySentimentRNN(weights, settings.get("input_mode", "embedding"),
                                    settings.get("nonlinearity", "tanh"), settings.get("skip_padding", True),
                                    int(settings.get("ngram_order", 0)), int(settings.get("vocab_size", 0)))
        return cls(network, Vocabulary.from_dict(encoder["vocab"]), Tokenizer(lowercase=encoder["lowercase"]),
                   int(encoder["max_length"]), list(encoder["label_names"]),
                   1.0 if temperature is None else float(_array(temperature)))

    def probabilities(self, token_lists: list[list[str]]) -> np.ndarray:
        """``softmax(scores / temperature)`` ``(N, C)`` of tokenized sentences (each with at least one token)."""
        rows = [self.vocab.encode(words[: self.max_length]) for words in token_lists]
        lengths = np.array([len(row) for row in rows], np.int64)
        tokens = np.zeros((len(rows), int(lengths.max())), np.int64)
        for number, row in enumerate(rows):
            tokens[number, : len(row)] = row
        scores = self.network.scores(tokens, lengths) / np.float32(self.temperature)
        scores = np.exp(scores - scores.max(1, keepdims=True))
        return scores / scores.sum(1, keepdims=True)

    def predict(self, texts: list[str], batch_size: int = 256) -> list[Prediction]:
        """Every text's :class:`Prediction`, in order (a text without tokens gets one with ``error`` set)."""
        token_lists = [self.tokenizer(text) for text in texts]
        predictions = [describe(text, words, self.vocab, self.max_length) for text, words in zip(texts, token_lists)]
        classifiable = [i for i, words in enumerate(token_lists) if words]
        for start in range(0, len(classifiable), batch_size):
            chosen = classifiable[start:start + batch_size]
            probabilities = self.probabilities([token_lists[i] for i in chosen])
            for i, row in zip(chosen, probabilities):
                label = int(row.argmax())
                predictions[i].label, predictions[i].probability = self.label_names[label], float(row[label])
        return predictions


def _array(value: Any) -> np.ndarray:
    if not isinstance(value, TensorRef):
        raise UnreadableCheckpoint(f"a weight is a {type(value).__name__}, not a tensor")
    return value.numpy()


def load_predictor(path: Union[str, Path]) -> Optional[NumpyPredictor]:
    """A :class:`NumpyPredictor` for the checkpoint, or None when it must be loaded with torch."""
    try:
        return NumpyPredictor.from_checkpoint(path)
    except (UnreadableCheckpoint, KeyError, ValueError, TypeError):
        return None
