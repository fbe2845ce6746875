"""Shared helpers of the tests: a central-difference gradient, tolerances, module copying, script loading."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

# Tolerances for comparisons against a trusted reference, by dtype.
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


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
