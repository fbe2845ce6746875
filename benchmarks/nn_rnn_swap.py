"""``torch.nn.RNN`` in place of ``torch_rnn.RNN`` inside the sentiment network, for ``bench_train.py``'s nn.RNN
variants: :class:`NNRNN` holds the same weights behind ``torch_rnn.RNN``'s call, and :func:`swap_in_nn_rnn` puts
it in and checks that the network's scores do not change."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import torch_rnn
from lightning_module.module import SentimentClassifier

TOLERANCE = 1e-4


class MismatchError(RuntimeError):
    """The nn.RNN swap changes the network's scores: timing it would not compare like with like."""


class NNRNN(nn.Module):
    """``torch.nn.RNN`` behind ``torch_rnn.RNN``'s call ``forward(input, hx=None, lengths=None)``.

    ``batch_first=True`` float input ``(N, T, D)``; with ``lengths`` the batch is packed
    (``enforce_sorted=False``), run, and padded back to ``T`` steps. Returns ``(output (N, T, dirs * H), h_n)``.
    """

    def __init__(self, ours: torch_rnn.RNN) -> None:
        super().__init__()
        if not ours.batch_first:
            raise ValueError("NNRNN: expected a batch_first torch_rnn.RNN")
        self.rnn = nn.RNN(ours.input_size, ours.hidden_size, ours.num_layers, ours.nonlinearity, ours.bias,
                          batch_first=True, dropout=ours.dropout, bidirectional=ours.bidirectional)
        self.rnn.load_state_dict(ours.state_dict())
        for name, parameter in ours.named_parameters():  # e.g. a frozen bias stays frozen
            getattr(self.rnn, name).requires_grad_(parameter.requires_grad)

    def forward(self, input: Tensor, hx: Optional[Tensor] = None,
                lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        if not input.is_floating_point():
            raise ValueError("NNRNN: nn.RNN needs a float input (input_mode 'embedding' or 'pretrained')")
        if lengths is None:
            return self.rnn(input, hx)
        packed = pack_padded_sequence(input, torch.as_tensor(lengths).cpu(), batch_first=True,
                                      enforce_sorted=False)
        output, h_n = self.rnn(packed, hx)
        return pad_packed_sequence(output, batch_first=True, total_length=input.shape[1])[0], h_n


def swap_in_nn_rnn(module: SentimentClassifier, batch: dict[str, Tensor]) -> None:
    """Replace ``module.model.rnn`` by :class:`NNRNN` and check the scores on ``batch`` (eval mode)."""
    net = module.model
    was_training = net.training
    net.eval()
    with torch.no_grad():
        before = net(batch["tokens"], batch["mask"])
        net.rnn = NNRNN(net.rnn)
        after = net(batch["tokens"], batch["mask"])
    net.train(was_training)
    error = (after - before).abs().max().item()
    if not error <= TOLERANCE:
        raise MismatchError(f"the network's scores with nn.RNN differ from torch_rnn's by {error:.2e} > {TOLERANCE:g}")
