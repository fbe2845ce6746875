"""The C++ loops' gradients at every panel remainder, against nn.RNN in float64.

float32 steps on AVX-512 run on panels of 32 columns (16-float vectors, two per panel) and tiles of 8 rows
(``csrc/panels.cpp``); with 32 rows or more the loops split the rows between threads in chunks of whole
groups of 4 (``csrc/team.h``, ``for_row_chunks``), else each step's columns. A wrong column mask or row count
there only shows at some sizes, so the sizes here cover every remainder class of D and H mod 32 (0; 1-15, under
one vector; 16, one vector; 17-31, a vector and a part) and rows below and above the row-split threshold with
every kind of remainder mod 8; in time-major and batch-first memory and with lengths (packed), both directions
(bidirectional), on one and on two threads. Elsewhere (no AVX-512, no C++ loops) the same sizes check the other
paths.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_rnn

T = 3
SIZE_CLASSES = {"0": 32, "1-15": 7, "16": 16, "17-31": 20, "17-31, two panels": 49}  # a size in each class mod 32
ROWS = {"13 rows (under 32)": 13, "32 rows": 32, "39 rows (7 past a tile)": 39}
LAYOUTS = ["time-major", "batch-first", "lengths"]
CASES = [pytest.param(D, 20, id=f"D {name}") for name, D in SIZE_CLASSES.items()]
CASES += [pytest.param(20, H, id=f"H {name}") for name, H in SIZE_CLASSES.items() if H != 20]


def gradients(module: nn.Module, x: torch.Tensor, lengths, layout: str) -> list[torch.Tensor]:
    """The loss's gradients w.r.t. x and every parameter; the loss weighs every output differently."""
    x = x.clone().requires_grad_()
    if lengths is None:
        output, h_n = module(x)
    elif isinstance(module, torch_rnn.RNN):
        output, h_n = module(x, lengths=lengths)
    else:
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=layout == "batch-first",
                                                   enforce_sorted=False)
        output, h_n = module(packed)
        output = nn.utils.rnn.pad_packed_sequence(output, batch_first=layout == "batch-first",
                                                  total_length=T)[0]
    weights = torch.linspace(-1, 1, output.numel(), dtype=output.dtype).view_as(output)
    loss = (output * weights).sum() + h_n.pow(2).sum()
    return list(torch.autograd.grad(loss, [x, *module.parameters()]))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("N", ROWS.values(), ids=ROWS.keys())
@pytest.mark.parametrize("D, H", CASES)
def test_weight_gradients_at_every_panel_remainder(D, H, N, layout, threads):
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(D * 1000 + H * 10 + N)
        ours = torch_rnn.RNN(D, H, bidirectional=True, batch_first=layout == "batch-first")
        reference = nn.RNN(D, H, bidirectional=True, batch_first=layout == "batch-first", dtype=torch.float64)
        reference.load_state_dict({k: v.double() for k, v in ours.state_dict().items()})
        x = torch.randn(N, T, D) if layout == "batch-first" else torch.randn(T, N, D)
        lengths = torch.randint(1, T + 1, (N,)) if layout == "lengths" else None
        got = gradients(ours, x, lengths, layout)
        expected = gradients(reference, x.double(), lengths, layout)
    finally:
        torch.set_num_threads(previous_threads)
    names = ["x", *(name for name, _ in ours.named_parameters())]
    for name, a, e in zip(names, got, expected):
        torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name}: {m}")
