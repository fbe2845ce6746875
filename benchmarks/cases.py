"""The RNN cases the benchmarks time: their shapes, and ``torch.nn.RNN``, ``torch_rnn.RNN`` and a naive autograd
loop built on the same weights and input, checked to agree before anything is timed.

Used by ``bench_rnn.py`` and ``busy.py``, ``bench_compile.py``, ``bench_peers.py`` and ``plot_cost_growth.py``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import torch_rnn
from timing import Forward

TOLERANCE = 1e-4
SEED = 0


@dataclass(frozen=True)
class Case:
    """One row: shape, layers, directions, and whether the sequences have random lengths."""

    N: int
    T: int
    D: int
    H: int
    num_layers: int = 1
    bidirectional: bool = False
    varlen: bool = False

    @property
    def label(self) -> str:
        label = f"({self.N},{self.T},{self.D},{self.H})"
        if self.num_layers > 1:
            label += f" L{self.num_layers}"
        if self.bidirectional:
            label += " bi"
        if self.varlen:
            label += " len 1..T"
        return label

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1


MAIN_CASES = [
    Case(32, 50, 64, 128),
    Case(64, 100, 128, 256),
    Case(16, 200, 300, 512),
    Case(100, 30, 50, 64),
    Case(1, 1000, 32, 32),
    Case(256, 50, 128, 128),
]
EXTRA_CASES = [
    Case(32, 50, 64, 128, num_layers=2, bidirectional=True),
    Case(32, 50, 64, 128, num_layers=2, bidirectional=True, varlen=True),
]
# Large hidden sizes, where W_h (4-16 MB) no longer stays in a core's cache from step to step.
LARGE_CASES = [
    Case(16, 100, 1024, 1024),
    Case(64, 50, 1024, 1024),
    Case(16, 50, 2048, 2048),
    Case(128, 50, 512, 512),
]
class MismatchError(RuntimeError):
    """``torch_rnn.RNN`` or the naive loop disagree with ``nn.RNN``: timing them would be meaningless."""


# ---------------------------------------------------------------------------------------------- setup
@dataclass
class Bench:
    """The three implementations of one case, as forward closures over a shared input."""

    case: Case
    x: Tensor  # (N, T, D), requires grad
    steps: int  # real (not padded) time steps over the batch
    forwards: dict[str, Forward]  # "nn.RNN", "torch_rnn", and "naive" for one-layer rows
    leaves: dict[str, list[Tensor]]  # what each implementation's training step accumulates gradients into


def build(case: Case) -> Bench:
    """Seeded weights and input; ``torch_rnn.RNN`` gets ``nn.RNN``'s weights."""
    torch.manual_seed(SEED)
    kwargs = {"num_layers": case.num_layers, "bidirectional": case.bidirectional, "batch_first": True}
    ref = nn.RNN(case.D, case.H, **kwargs)
    ours = torch_rnn.RNN(case.D, case.H, **kwargs)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(case.N, case.T, case.D, requires_grad=True)
    if case.varlen:
        lengths = torch.randint(1, case.T + 1, (case.N,))
        forwards = {"nn.RNN": _packed_forward(ref, x, lengths), "torch_rnn": lambda: ours(x, lengths=lengths)}
        steps = int(lengths.sum())
    else:
        forwards = {"nn.RNN": lambda: ref(x), "torch_rnn": lambda: ours(x)}
        steps = case.N * case.T
    leaves = {"nn.RNN": [x, *ref.parameters()], "torch_rnn": [x, *ours.parameters()]}
    if case.num_layers == 1 and not case.bidirectional and not case.varlen:
        params = [p.detach().clone().requires_grad_() for p in (ref.weight_ih_l0, ref.weight_hh_l0)]
        bias = (ref.bias_ih_l0 + ref.bias_hh_l0).detach().requires_grad_()
        forwards["naive"] = _naive_forward(x, params[0], params[1], bias)
        leaves["naive"] = [x, *params, bias]
    return Bench(case, x, steps, forwards, leaves)


def _packed_forward(rnn: nn.RNN, x: Tensor, lengths: Tensor) -> Forward:
    """``nn.RNN`` on a padded batch with lengths: pack, run, pad back to ``T`` steps."""

    def forward() -> tuple[Tensor, Tensor]:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, h_n = rnn(packed)
        return pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])[0], h_n

    return forward


def _naive_forward(x: Tensor, Wx: Tensor, Wh: Tensor, b: Tensor) -> Forward:
    """The textbook loop, differentiated by autograd step by step; returns ``h_n`` as ``(1, N, H)``."""

    def forward() -> tuple[Tensor, Tensor]:
        h = x.new_zeros(x.shape[0], Wh.shape[0])
        outputs = []
        for t in range(x.shape[1]):
            h = torch.tanh(x[:, t] @ Wx.T + h @ Wh.T + b)
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)

    return forward


# ------------------------------------------------------------------------------------------ agreement
def check_agreement(bench: Bench) -> None:
    """Outputs, ``h_n`` and input gradient of every implementation within :data:`TOLERANCE` of ``nn.RNN``."""
    results = {}
    for name, forward in bench.forwards.items():
        bench.x.grad = None
        output, h_n = forward()
        (output.sum() + h_n.sum()).backward()
        results[name] = (output.detach(), h_n.detach(), bench.x.grad)
    bench.x.grad = None
    expected = results.pop("nn.RNN")
    for name, got in results.items():
        for what, a, b in zip(("output", "h_n", "input gradient"), got, expected):
            error = (a - b).abs().max().item()
            if a.shape != b.shape or not error <= TOLERANCE:
                raise MismatchError(
                    f"{name} disagrees with nn.RNN at {bench.case.label}: {what} shape {tuple(a.shape)} vs "
                    f"{tuple(b.shape)}, max abs error {error:.2e} > {TOLERANCE:g}"
                )


def matmul_flops(case: Case, steps: int) -> int:
    """Matmul FLOPs of a training step: forward, input gradient, weight gradient, each ``2 * steps * D_in * H``
    for the input projection plus ``2 * steps * H * H`` for the recurrence, per layer and direction."""
    total = 0
    for layer in range(case.num_layers):
        d_in = case.D if layer == 0 else case.num_directions * case.H
        total += case.num_directions * (d_in * case.H + case.H * case.H)
    return 3 * 2 * steps * total


def parse_shape(text: str) -> Case:
    """A one-layer case from ``N,T,D,H`` (an argparse type: ``--shapes``)."""
    try:
        N, T, D, H = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N,T,D,H (four integers), got {text!r}") from None
    return Case(N, T, D, H)
