"""Looking inside a trained :class:`~torch_rnn.models.SentimentRNN`: the gradient that backpropagation through
time carries to every hidden state."""
from __future__ import annotations

import torch
from torch import Tensor

from .functional import activation_derivative
from .models import SentimentRNN


@torch.no_grad()
def bptt_hidden_gradients(model: SentimentRNN, tokens: Tensor, mask: Tensor, labels: Tensor) -> Tensor:
    r"""The total gradient ``dL_n/dh_{n,t}`` reaching every hidden state of the RNN's last layer.

    ``L_n`` is sentence ``n``'s own softmax cross-entropy (not divided by the batch size, so the values do not
    depend on how many sentences are in the batch), computed in eval mode (no dropout). For one direction with
    hidden-to-hidden weights ``W_h`` and nonlinearity ``f``, backpropagation through time gives, from the last
    real step down to the first,

    .. math::
        \frac{\partial L}{\partial h_t} = \underbrace{\frac{m_t}{L} W_a^T W_{fc}^T (p - y)}_{\text{head}}
            + \underbrace{W_h^T\, da_{t+1}}_{\text{recurrence}}, \qquad
        da_t = \frac{\partial L}{\partial h_t} \odot f'(h_t),

    with ``p = softmax(s)``, ``y`` the one-hot label, ``W_a`` the temporal affine and ``W_fc`` the last
    layer's weights, ``L`` the number of real steps and ``da_{L} = 0`` past the last one: the loop of
    :func:`torch_rnn.functional.recurrence_backward`, keeping the total gradient of each ``h_t`` that it
    otherwise only passes on. The reverse direction of a bidirectional RNN runs the same loop from the first
    step up (its ``da_{t-1}`` takes the place of ``da_{t+1}``). Layers below the last are not covered.

    Args:
        model: the network; its mode (train or eval) is restored afterwards, and no random numbers are drawn.
        tokens: ``(N, T)`` int64 token ids; mask: ``(N, T)`` 1 at real tokens, then 0 at padding.
        labels: ``(N,)`` int64 classes in ``[0, C)``.

    Returns:
        ``(N, T, D * H)`` float, ``D`` the number of directions, laid out like the RNN's output (forward
        direction first); 0 at padding.

    Raises:
        ValueError: ``labels`` is not ``(N,)`` with values in ``[0, C)``; bad tokens or mask as in
        :meth:`SentimentRNN.forward`.
    """
    classes = model.classifier.out_features
    if labels.shape != tokens.shape[:1] or labels.is_floating_point():
        raise ValueError(f"bptt_hidden_gradients: labels must be an ({tokens.shape[0]},) integer tensor, got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"bptt_hidden_gradients: labels must lie in [0, {classes}), got values "
                         f"{int(labels.min())}..{int(labels.max())}")
    was_training = model.training
    model.eval()
    try:
        h = model._hidden_states(tokens, mask)  # (N, T, D * H)
        scores = model.classifier(model.average(model.temporal_affine(h), mask))  # (N, C)
    finally:
        model.train(was_training)
    m = mask.to(h.dtype)  # (N, T)
    weights = m / m.sum(1, keepdim=True)  # (N, T): m_t / L
    dscores = scores.softmax(1) - torch.nn.functional.one_hot(labels, classes).to(h.dtype)  # (N, C): p - y
    head = weights.unsqueeze(-1) * (dscores @ model.classifier.weight @ model.temporal_affine.weight).unsqueeze(1)
    rnn = model.rnn
    H, T = rnn.hidden_size, h.shape[1]
    total = torch.zeros_like(h)  # (N, T, D * H)
    layer = rnn.num_layers - 1
    for direction, suffix in enumerate(["", "_reverse"][: 2 if rnn.bidirectional else 1]):
        Wh = getattr(rnn, f"weight_hh_l{layer}{suffix}")  # (H, H)
        columns = slice(direction * H, (direction + 1) * H)
        carry = h.new_zeros(h.shape[0], H)  # (N, H): W_h^T da from the step processed just before
        for t in (reversed(range(T)) if direction == 0 else range(T)):
            total[:, t, columns] = (head[:, t, columns] + carry) * m[:, t : t + 1]
            da = total[:, t, columns] * activation_derivative(h[:, t, columns], rnn.nonlinearity)  # (N, H)
            carry = da @ Wh
    return total


def mean_over_rows(values: Tensor, mask: Tensor) -> Tensor:
    """The mean of ``values (N, T)`` at each step over the rows that have that step (``mask (N, T)`` is 1);
    ``(T,)``, NaN at steps no row has."""
    m = mask.to(values.dtype)
    return (values * m).sum(0) / m.sum(0)
