"""torch_rnn.diagnostics: the total gradient of every hidden state against autograd through an unrolled
reference, where each h_t is its own graph node (its .grad is then the whole dL/dh_t: through the head and
through every later step)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

from torch_rnn.diagnostics import bptt_hidden_gradients, mean_over_rows
from torch_rnn.models import SentimentRNN

V, H, A, C = 9, 6, 5, 3
LENGTHS = [5, 2, 4, 1]


def unrolled_gradients(net: SentimentRNN, tokens, mask, labels) -> torch.Tensor:
    """Row by row, the RNN unrolled with the model's weights (float64) over the row's real steps (without
    skip_padding the reverse direction starts at step T - 1, over the padding's zero vectors), the head by hand,
    the row's cross-entropy backpropagated by autograd."""
    rnn = net.rnn
    directions = 2 if rnn.bidirectional else 1
    f = torch.tanh if rnn.nonlinearity == "tanh" else torch.relu
    N, T = tokens.shape
    expected = torch.zeros(N, T, directions * H, dtype=torch.float64)
    for n in range(N):
        L = int(mask[n].sum())
        x = net.embedding.weight[tokens[n]].detach().double().requires_grad_()  # (T, E); padding: zeros
        states = []  # per direction: the L hidden states, each a leaf of the graph's unrolled loop
        for d, suffix in enumerate(["", "_reverse"][:directions]):
            Wx, Wh = (getattr(rnn, f"weight_{k}_l0{suffix}").detach().double() for k in ("ih", "hh"))
            b = (getattr(rnn, f"bias_ih_l0{suffix}") + getattr(rnn, f"bias_hh_l0{suffix}")).detach().double()
            steps = L if d == 0 or net.skip_padding else T
            h, hs = torch.zeros(H, dtype=torch.float64), [None] * steps
            for t in (range(steps) if d == 0 else reversed(range(steps))):
                h = f(Wx @ x[t] + Wh @ h + b)
                h.retain_grad()
                hs[t] = h
            states.append(hs)
        Wa, ba = net.temporal_affine.weight.detach().double(), net.temporal_affine.bias.detach().double()
        Wfc, bfc = net.classifier.weight.detach().double(), net.classifier.bias.detach().double()
        features = sum(Wa @ torch.cat([hs[t] for hs in states]) + ba for t in range(L)) / L
        TF.cross_entropy((Wfc @ features + bfc).unsqueeze(0), labels[n : n + 1]).backward()
        for t in range(L):
            expected[n, t] = torch.cat([hs[t].grad for hs in states])
    return expected


@pytest.mark.parametrize("bidirectional", [False, True], ids=["forward", "bidirectional"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("skip_padding", [True, False], ids=["skip_padding", "all_steps"])
def test_bptt_gradients_equal_autograd_through_an_unrolled_rnn(bidirectional, nonlinearity, skip_padding):
    torch.manual_seed(0)
    net = SentimentRNN(V, H, A, C, input_mode="embedding", embedding_dim=4, bidirectional=bidirectional,
                       nonlinearity=nonlinearity, skip_padding=skip_padding, dropout=0.5).double()
    mask = (torch.arange(5).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)).long()
    tokens = torch.randint(1, V, mask.shape) * mask
    labels = torch.tensor([0, 2, 1, 2])
    net.train()
    got = bptt_hidden_gradients(net, tokens, mask, labels)
    assert net.training  # its mode is restored
    assert got.shape == (4, 5, (2 if bidirectional else 1) * H)
    real = mask == 1
    torch.testing.assert_close(got[real], unrolled_gradients(net, tokens, mask, labels)[real], rtol=1e-10, atol=1e-12)
    assert (got[~real] == 0).all() and got[real].abs().sum(-1).gt(0).all()


def test_bad_labels_are_named():
    net = SentimentRNN(V, H, A, C, input_mode="embedding", embedding_dim=4)
    tokens, mask = torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        bptt_hidden_gradients(net, tokens, mask, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"labels must be an \(2,\) integer tensor"):
        bptt_hidden_gradients(net, tokens, mask, torch.tensor([0.0, 1.0]))


def test_mean_over_rows_counts_only_the_rows_that_have_the_step():
    values = torch.tensor([[1.0, 2.0, 3.0], [5.0, 6.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert torch.equal(mean_over_rows(values, mask), torch.tensor([3.0, 4.0, 3.0]))
