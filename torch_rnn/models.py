"""The sentiment classifier of the original report: RNN -> temporal affine -> masked average -> affine."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from . import functional, ops
from .autograd import SoftmaxLossFunction
from .head import Affine, TemporalAffine, TemporalAverage, check_mask_rows
from .modules import RNN

INPUT_MODES = ("onehot", "embedding", "pretrained")
INITS = ("pytorch", "assignment")


class SentimentRNN(nn.Module):
    """Token ids ``(N, T)`` and their mask -> class scores ``(N, C)``.

    ``x_t -> RNN -> h_t (H) -> temporal affine -> (A) -> average over the real steps -> affine -> (C)``,
    trained with softmax cross-entropy (:func:`softmax_loss`).

    Args:
        vocab_size: ``V + 1`` token ids including the padding id 0.
        hidden_size: RNN hidden size ``H``. Default 128.
        fc_size: temporal affine output size ``A``. Default 128.
        num_classes: ``C``. Default 2.
        input_mode: how a token becomes the RNN input ``x_t``:
            ``"onehot"`` (the report's model): ``x_t = e_{k-1}`` for token id ``k``, the zero vector for
            padding; the RNN's input size is ``V``. Computed as a gather of weight columns, never as one-hot
            tensors. ``"embedding"``: a learned ``nn.Embedding(vocab_size, embedding_dim)``.
            ``"pretrained"``: ``pretrained_vectors`` as the embedding (trainable unless ``freeze_embedding``).
        embedding_dim: size of the learned embedding. Default 100.
        pretrained_vectors: ``(vocab_size, E)`` word vectors for ``input_mode="pretrained"``.
        freeze_embedding: keep pretrained vectors fixed. Default False.
        num_layers, bidirectional, nonlinearity: passed to :class:`torch_rnn.RNN`.
        dropout: dropout between RNN layers and on the averaged features, in training. Default 0.
        embedding_dropout: dropout on the embedded words (learned or pretrained input), in training.
            Default 0.
        skip_padding: run every sentence only over its real steps (lengths read off the mask, which must be
            1s then 0s). Only the average reads the mask, so for a one-directional RNN the scores are the same
            as running over all ``T`` steps, only faster; a bidirectional RNN's reverse direction then starts at
            the last real token. Default True.
        init: ``"pytorch"`` (the layers' defaults) or ``"assignment"``: the original assignment's deterministic
            ``linspace`` initialisation (one-hot input, one tanh layer, one direction), which repeats the
            report's run exactly.

    Inputs: tokens, mask
        - **tokens**: ``(N, T)`` int64 token ids, 0 = padding.
        - **mask**: ``(N, T)`` 1 for real tokens, 0 for padding (bool, integer or floating dtype); at least one
          real token per row.

    Outputs: scores ``(N, C)`` (logits).

    Raises:
        ValueError: an unknown ``input_mode`` or ``init``, a ``vocab_size`` below 2, pretrained vectors of the
            wrong shape, a mask row without a real token (named), or (``skip_padding``) a mask that is not 1s
            then 0s.

    Examples::

        >>> model = SentimentRNN(vocab_size=100, hidden_size=16, fc_size=8, input_mode="embedding")
        >>> tokens = torch.tensor([[5, 7, 9], [3, 0, 0]])  # (N, T), 0 = padding
        >>> scores = model(tokens, (tokens > 0).float())  # (2, 2) logits
        >>> loss = softmax_loss(scores, torch.tensor([1, 0]))
        >>> loss.backward()
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int = 128,
        fc_size: int = 128,
        num_classes: int = 2,
        input_mode: str = "onehot",
        embedding_dim: int = 100,
        pretrained_vectors: Optional[Tensor] = None,
        freeze_embedding: bool = False,
        num_layers: int = 1,
        bidirectional: bool = False,
        nonlinearity: str = "tanh",
        dropout: float = 0.0,
        skip_padding: bool = True,
        init: str = "pytorch",
        embedding_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if input_mode not in INPUT_MODES:
            raise ValueError(f"SentimentRNN: unknown input_mode {input_mode!r}; choose one of {INPUT_MODES}")
        if init not in INITS:
            raise ValueError(f"SentimentRNN: unknown init {init!r}; choose one of {INITS}")
        if vocab_size < 2:
            raise ValueError(f"SentimentRNN: vocab_size must count padding and at least one word, got {vocab_size}")
        self.input_mode = input_mode
        self.skip_padding = skip_padding
        if input_mode == "onehot":
            self.embedding = None
            input_size = vocab_size - 1
        elif input_mode == "embedding":
            self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
            input_size = embedding_dim
        else:
            if pretrained_vectors is None or pretrained_vectors.dim() != 2 or pretrained_vectors.shape[0] != vocab_size:
                shape = None if pretrained_vectors is None else tuple(pretrained_vectors.shape)
                raise ValueError(
                    f"SentimentRNN: input_mode='pretrained' needs pretrained_vectors of shape ({vocab_size}, E), "
                    f"got {shape}"
                )
            self.embedding = nn.Embedding.from_pretrained(pretrained_vectors, freeze=freeze_embedding, padding_idx=0)
            input_size = pretrained_vectors.shape[1]
        rnn_dropout = dropout if num_layers > 1 else 0.0
        self.rnn = RNN(input_size, hidden_size, num_layers, nonlinearity, batch_first=True,
                       dropout=rnn_dropout, bidirectional=bidirectional)
        self.temporal_affine = TemporalAffine(hidden_size * (2 if bidirectional else 1), fc_size)
        self.average = TemporalAverage()
        self.dropout = nn.Dropout(dropout)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.classifier = Affine(fc_size, num_classes)
        if init == "assignment":
            self._assignment_init(nonlinearity)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        h = self._hidden_states(tokens, mask)  # (N, T, H * dirs)
        features = self.average(self.temporal_affine(h), mask)  # (N, A)
        return self.classifier(self.dropout(features))  # (N, C)

    def _hidden_states(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """The RNN's output ``h (N, T, H * dirs)`` for ``tokens (N, T)`` and ``mask (N, T)``."""
        if tokens.dim() != 2 or tokens.is_floating_point():
            raise ValueError(f"SentimentRNN: tokens must be an (N, T) integer tensor, got {tokens.dtype} {tuple(tokens.shape)}")
        if mask.shape != tokens.shape:
            raise ValueError(f"SentimentRNN: mask must have the shape of tokens {tuple(tokens.shape)}, got {tuple(mask.shape)}")
        if self.embedding is None:
            inputs = tokens - 1  # (N, T) one-hot indices, -1 (padding) = the zero vector
        else:
            inputs = self.embedding_dropout(self._embed(tokens))  # (N, T, E)
        lengths = self._lengths(mask) if self.skip_padding else None
        h, _ = self.rnn(inputs, lengths=lengths)
        return h

    def contributions(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        r"""Every step's exact share of the class scores: ``scores = bias + contributions.sum(1)``.

        With ``h_t`` the RNN's output at step ``t``, ``L`` the row's number of real steps (``mask``'s sum),
        ``W_a, b_a`` the temporal affine layer and ``W_fc, b_fc`` the last one, the model computes (dropout is
        off in eval mode)

        .. math:: s = W_{fc} \Big(\frac{1}{L} \sum_t m_t (W_a h_t + b_a)\Big) + b_{fc}
                    = \underbrace{b_{fc} + W_{fc} b_a}_{\text{bias}} + \sum_t \underbrace{\frac{m_t}{L} W_{fc} W_a h_t}_{\text{step } t}

        so step ``t``'s contribution is ``(m_t / L) W_fc W_a h_t``: its word in the context of the words before
        it (for a bidirectional RNN, of the whole sentence). Padding steps contribute 0.

        Args:
            tokens: ``(N, T)`` int64 token ids; mask: ``(N, T)`` 1 at real tokens, 0 at padding.

        Returns:
            contributions: ``(N, T, C)`` float, each step's share of every class score (logit).
            bias: ``(N, C)`` float, the part that does not depend on the words.

        Raises:
            ValueError: as :meth:`forward` for bad shapes and masks.
        """
        h = self._hidden_states(tokens, mask)  # (N, T, H')
        weights = mask.to(h.dtype) / mask.to(h.dtype).sum(1, keepdim=True)  # (N, T): m_t / L
        projected = h @ self.temporal_affine.weight.T  # (N, T, A): W_a h_t
        per_step = projected @ self.classifier.weight.T  # (N, T, C): W_fc W_a h_t
        contributions = weights.unsqueeze(-1) * per_step  # (N, T, C)
        bias = h.new_zeros(self.classifier.out_features)  # (C,): b_fc + W_fc b_a
        if self.temporal_affine.bias is not None:
            bias = bias + self.classifier.weight @ self.temporal_affine.bias
        if self.classifier.bias is not None:
            bias = bias + self.classifier.bias
        return contributions, bias.expand(h.shape[0], -1)

    def _embed(self, tokens: Tensor) -> Tensor:
        """``self.embedding(tokens)``; in compiled code the same lookup as the op ``torch_rnn::embedding``, whose
        backward is one ``index_add`` (inductor's own lowering of it is several times slower on the CPU)."""
        if not torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
            return self.embedding(tokens)
        padding_idx = self.embedding.padding_idx
        return ops.embedding(self.embedding.weight, tokens, -1 if padding_idx is None else padding_idx)

    @staticmethod
    def _lengths(mask: Tensor) -> Tensor:
        """Per-row count of real steps, checking that the mask is real steps first, then padding."""
        check_mask_rows(mask, "SentimentRNN")  # before the RNN, whose error would only name the lengths
        lengths = mask.sum(1).long()  # (N,)
        prefix = torch.arange(mask.shape[1], device=mask.device) < lengths.unsqueeze(1)  # (N, T)
        if torch.compiler.is_compiling():  # checked when the graph runs
            torch._assert_async((prefix == mask.bool()).all(), "SentimentRNN: with skip_padding=True the mask "
                                "must be 1s followed by 0s in every row")
        elif not torch.equal(prefix, mask.bool()):
            raise ValueError("SentimentRNN: with skip_padding=True the mask must be 1s followed by 0s in every row")
        return lengths.cpu()

    @torch.no_grad()
    def _assignment_init(self, nonlinearity: str) -> None:
        """The original assignment's deterministic initialisation (see ``shared/datasets/cs5242-si650``).

        Each array is built in the original ``(in, out)`` layout with numpy's ``linspace`` and transposed to
        the equations' ``(out, in)`` layout. The original RNN has a single bias ``b``: it is ``bias_ih``, and
        ``bias_hh`` is fixed at zero (``requires_grad=False``); training both would move ``b`` twice as fast.
        """
        rnn = self.rnn
        if self.input_mode != "onehot" or rnn.num_layers != 1 or rnn.bidirectional or nonlinearity != "tanh":
            raise ValueError("SentimentRNN: init='assignment' needs input_mode='onehot' and one tanh layer in one direction")
        V, H = rnn.input_size, rnn.hidden_size
        A, O = self.temporal_affine.out_features, self.classifier.out_features

        def linspace(start: float, stop: float, *shape: int) -> Tensor:
            return torch.from_numpy(np.linspace(start, stop, math.prod(shape)).reshape(shape))

        values = {
            rnn.weight_ih_l0: linspace(-0.2, 0, V, H).T / math.sqrt(V),
            rnn.weight_hh_l0: linspace(0.2, 0.5, H, H).T / math.sqrt(H),
            rnn.bias_ih_l0: linspace(0.2, 0.5, H),
            rnn.bias_hh_l0: torch.zeros(H),
            self.temporal_affine.weight: linspace(-0.3, 0.3, H, A).T / math.sqrt(2 * H),
            self.temporal_affine.bias: linspace(-0.1, -0.3, A),
            self.classifier.weight: linspace(-0.5, 0.5, A, O).T / math.sqrt(A),
            self.classifier.bias: linspace(-0.5, 0.5, O),
        }
        for parameter, value in values.items():
            parameter.copy_(value)
        rnn.bias_hh_l0.requires_grad_(False)


def softmax_loss(scores: Tensor, labels: Tensor) -> Tensor:
    """Softmax cross-entropy averaged over the batch, with the hand-written gradient.

    Args:
        scores: ``(N, C)`` logits. labels: ``(N,)`` int64 in ``[0, C)``.

    Returns: scalar loss, equal to ``torch.nn.functional.cross_entropy(scores, labels)``.
    """
    if scores.dim() != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"softmax_loss: expected scores (N, C) and labels (N,), got {tuple(scores.shape)} and {tuple(labels.shape)}")
    return ops.dispatch(SoftmaxLossFunction, ops.softmax_loss, lambda s, y: functional.softmax_loss(s, y)[0],
                        scores, labels)
