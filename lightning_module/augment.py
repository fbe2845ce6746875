"""Training-time changes to a batch that teach the model what unknown words say: nothing."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn


def unknown_sentences(tokens: Tensor, mask: Tensor, unk_index: int, rate: float) -> tuple[Tensor, Tensor]:
    """Replace each sentence, with probability ``rate``, by ``k`` unknown tokens, ``k`` uniform in ``1 .. L``
    (``L`` its number of real tokens): the sentences a model should give the class prior.

    Random numbers come from torch's global generator (two draws of ``(N,)``).

    Args:
        tokens: ``(N, T)`` int64 token ids, 0 = padding. mask: ``(N, T)`` 1s (real tokens) then 0s, any dtype.
        unk_index: the vocabulary's unknown token. rate: the probability, in ``[0, 1]``.

    Returns:
        ``(tokens, mask)``: new tensors of the inputs' shapes and dtypes; a replaced row is ``unk_index`` at
        its first ``k`` steps and padding (mask 0) after them, the other rows are unchanged.

    Raises:
        ValueError: ``rate`` outside ``[0, 1]`` or shapes that differ.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"unknown_sentences: rate must be in [0, 1], got {rate}")
    if tokens.dim() != 2 or tokens.shape != mask.shape:
        raise ValueError(f"unknown_sentences: tokens and mask must be (N, T) of one shape, got "
                         f"{tuple(tokens.shape)} and {tuple(mask.shape)}")
    n, steps = tokens.shape
    chosen = torch.rand(n, device=tokens.device) < rate  # (N,)
    lengths = mask.bool().sum(1)  # (N,)
    kept = (torch.rand(n, device=tokens.device) * lengths).long().clamp(max=steps - 1) + 1  # (N,) in 1 .. L
    real = torch.arange(steps, device=tokens.device) < kept.unsqueeze(1)  # (N, T)
    replaced_tokens = torch.where(real, torch.full_like(tokens, unk_index), torch.zeros_like(tokens))
    rows = chosen.unsqueeze(1)  # (N, 1)
    return torch.where(rows, replaced_tokens, tokens), torch.where(rows, real.to(mask.dtype), mask)


def keep_row_zero(embedding: nn.Embedding, row: int) -> Optional[torch.utils.hooks.RemovableHandle]:
    """Set ``embedding.weight[row]`` to zero and, when the weight is trained, drop that row's gradient on every
    backward, so it stays zero under any optimizer whose update of a zero gradient is zero (SGD, Adam, AdamW:
    its moments stay 0, and weight decay of a zero weight is 0).

    Used for the unknown-word token: an unknown word then adds no input to the RNN, as padding does.

    Returns: the gradient hook's handle (``handle.remove()`` undoes it), or None for a frozen weight.

    Raises:
        IndexError: ``row`` outside ``[0, num_embeddings)``.
    """
    if not 0 <= row < embedding.num_embeddings:
        raise IndexError(f"keep_row_zero: row {row} outside [0, {embedding.num_embeddings})")
    with torch.no_grad():
        embedding.weight[row] = 0.0
    if not embedding.weight.requires_grad:
        return None

    def drop_row(grad: Tensor) -> Tensor:
        grad = grad.clone()
        grad[row] = 0.0
        return grad

    return embedding.weight.register_hook(drop_row)
