"""Shared helpers of the tests: a central-difference gradient, tolerances, random inputs, module copying, a small
tagger model, script loading."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

import torch_rnn

# Tolerances for comparisons against a trusted reference, by dtype.
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}
NONLINEARITIES = ["tanh", "relu"]
DTYPES = [torch.float32, torch.float64]
BATCH_SIZES = [4, 3, 3, 1, 1]  # T = 5, N = 4: rows of lengths 5, 3, 3, 1 (PackedSequence's convention)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, dtype: torch.dtype = torch.float64, gen: Optional[torch.Generator] = None,
          requires_grad: bool = False) -> Tensor:
    return torch.randn(*shape, dtype=dtype, generator=gen).requires_grad_(requires_grad)


def numeric_grads(f: Callable[..., Tensor], inputs: Sequence[Optional[Tensor]], douts: Sequence[Tensor],
                  eps: float = 1e-6) -> list[Optional[Tensor]]:
    """Central differences of ``L = sum_k <f(*inputs)[k], douts[k]>`` with respect to every floating input.

    ``f`` returns a tensor or a tuple of tensors (matched with ``douts``). Integer inputs and None get None.
    """
    def loss(values: Sequence[Optional[Tensor]]) -> float:
        out = f(*values)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return sum(float((o * d).sum()) for o, d in zip(outs, douts))

    values = [None if v is None else v.detach().clone() for v in inputs]
    grads: list[Optional[Tensor]] = []
    with torch.no_grad():
        for v in values:
            if v is None or not v.is_floating_point():
                grads.append(None)
                continue
            g = torch.zeros_like(v)
            flat_v, flat_g = v.view(-1), g.view(-1)
            for i in range(flat_v.numel()):
                old = flat_v[i].item()
                flat_v[i] = old + eps
                plus = loss(values)
                flat_v[i] = old - eps
                minus = loss(values)
                flat_v[i] = old
                flat_g[i] = (plus - minus) / (2 * eps)
            grads.append(g)
    return grads


def autograd_grads(f: Callable[..., Tensor], inputs: Sequence[Optional[Tensor]],
                   douts: Sequence[Tensor]) -> list[Optional[Tensor]]:
    """Gradients of ``L = sum_k <f(*inputs)[k], douts[k]>`` by torch autograd applied to ``f``."""
    leaves = [None if v is None or not v.is_floating_point() else v.detach().clone().requires_grad_()
              for v in inputs]
    args = [leaf if leaf is not None else v for leaf, v in zip(leaves, inputs)]
    out = f(*args)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    loss = sum((o * d).sum() for o, d in zip(outs, douts))
    wrt = [leaf for leaf in leaves if leaf is not None]
    grads = iter(torch.autograd.grad(loss, wrt, allow_unused=True))
    return [None if leaf is None else next(grads) for leaf in leaves]


def assert_grads_close(actual: Sequence[Optional[Tensor]], expected: Sequence[Optional[Tensor]], **tol) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        if e is None:
            assert a is None, f"gradient {i}: expected None"
            continue
        assert a is not None, f"gradient {i}: got None"
        torch.testing.assert_close(a, e, msg=lambda m: f"gradient {i}: {m}", **tol)


def copy_into(target: nn.Module, source: nn.Module) -> nn.Module:
    """``target.load_state_dict(source.state_dict())`` with ``strict=True``; returns ``target``."""
    target.load_state_dict(source.state_dict())
    return target


def pair(cls_ours: type, cls_theirs: type, *args: Any, dtype: torch.dtype = torch.float32,
         **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """Our module and torch's, built with the same arguments, torch's weights loaded into ours."""
    theirs = cls_theirs(*args, dtype=dtype, **kwargs)
    ours = copy_into(cls_ours(*args, dtype=dtype, **kwargs), theirs)
    return ours, theirs


def raised(fn: Callable[[], object]) -> Optional[BaseException]:
    """The exception ``fn()`` raises, or None."""
    try:
        fn()
    except Exception as error:  # noqa: BLE001 - the point is to capture whatever torch raises
        return error
    return None


def load_script(path: Path) -> Iterator[ModuleType]:
    """Import a script that is not in a package (the benchmarks) as a module, for a pytest fixture to yield."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def recurrence_inputs(dtype: torch.dtype, batch_sizes: Optional[Sequence[int]], seed: int = 5,
                      shape: Optional[tuple[int, int, int]] = None) -> tuple[Tensor, ...]:
    """Random ``p (T, N, H)``, ``h0 (N, H)``, ``W_h (H, H)``, ``dh (T, N, H)``, ``dh_last (N, H)`` for the recurrence:
    of ``shape`` (T, N, H), else (len(batch_sizes), batch_sizes[0], 3) with batch sizes, else (4, 3, 4)."""
    g = seeded(seed)
    T_, N_, H_ = shape if shape is not None else ((len(batch_sizes), batch_sizes[0], 3) if batch_sizes else (4, 3, 4))
    p, h0, Wh = randn(T_, N_, H_, dtype=dtype, gen=g), randn(N_, H_, dtype=dtype, gen=g), \
        randn(H_, H_, dtype=dtype, gen=g) / H_ ** 0.5
    dh, dh_last = randn(T_, N_, H_, dtype=dtype, gen=g), randn(N_, H_, dtype=dtype, gen=g)
    return p, h0, Wh, dh, dh_last


class Tagger(nn.Module):
    """A tagger as PyTorch 2 users build one: Embedding -> RNN (2 layers, bidirectional, batch_first) -> Linear,
    summed with the final states into ``(N, 3)`` scores."""

    def __init__(self, rnn_class=torch_rnn.RNN, dtype=torch.float32, **rnn_options):
        super().__init__()
        options = dict(num_layers=2, bidirectional=True, batch_first=True) | rnn_options
        self.embedding = nn.Embedding(50, 8, dtype=dtype)
        self.rnn = rnn_class(8, 16, dtype=dtype, **options)
        directions = 2 if options["bidirectional"] else 1
        self.head = nn.Linear(16 * directions, 3, dtype=dtype)

    def forward(self, tokens, lengths=None):
        inputs = self.embedding(tokens)
        output, h_n = self.rnn(inputs) if lengths is None else self.rnn(inputs, lengths=lengths)
        return self.head(output).sum(1) + h_n.sum(0).sum(1, keepdim=True)


def tokens(N: int, T: int, seed: int = 0) -> Tensor:
    """Seeded token ids ``(N, T)`` int64 in [0, 50), :class:`Tagger`'s vocabulary."""
    return torch.randint(0, 50, (N, T), generator=torch.Generator().manual_seed(seed))
