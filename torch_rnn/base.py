"""What the modules share: argument checks, ``nn.RNN``'s dtype policy under autocast, and :class:`RNNBase`, the
sizes and weights of :class:`~torch_rnn.RNN` and :class:`~torch_rnn.RNNCell`."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from .functional import NONLINEARITIES


def check_nonlinearity(nonlinearity: str) -> None:
    """ValueError (``nn.RNN``'s message) unless ``nonlinearity`` is ``"tanh"`` or ``"relu"``."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")


def check_size(name: str, value: int) -> None:
    """TypeError unless ``value`` is an int (not a bool), ValueError unless it is positive (``nn.RNN``'s messages)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value}")


class DtypeMismatchError(ValueError, RuntimeError):
    """A tensor's dtype differs from the weights'. ``nn.RNN`` raises ValueError for this and ``nn.RNNCell``
    RuntimeError, so this is both: ``except`` clauses written for either keep working."""


def check_dtype(name: str, tensor: Tensor, weight: Tensor) -> None:
    """:class:`DtypeMismatchError` when ``tensor`` (called ``name`` in the message) and ``weight`` differ in dtype."""
    if tensor.dtype != weight.dtype:
        raise DtypeMismatchError(
            f"RNN {name} dtype ({tensor.dtype}) does not match weight dtype ({weight.dtype}). "
            f"Convert {name}: {name}.to({weight.dtype}), or convert model: model.to({tensor.dtype})"
        )


class RNNBase(nn.Module):
    """What :class:`RNN` and :class:`RNNCell` share, as ``nn.RNNBase`` and ``nn.RNNCellBase`` do: the sizes, the
    nonlinearity, the weights ``weight_ih{suffix} (H, D_in)``, ``weight_hh{suffix} (H, H)`` and the biases
    ``bias_ih{suffix}``, ``bias_hh{suffix} (H,)``, all initialised from ``U(-1/sqrt(H), 1/sqrt(H))`` in
    ``nn.RNN``'s order, so seeds agree.

    Raises:
        ValueError: for a nonlinearity other than ``"tanh"`` / ``"relu"``, or a size that is not a positive int.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool, nonlinearity: str) -> None:
        super().__init__()
        check_nonlinearity(nonlinearity)
        check_size("input_size", input_size)
        check_size("hidden_size", hidden_size)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.nonlinearity = nonlinearity

    def _add_weights(self, suffix: str, layer_input_size: int, factory: dict) -> list[str]:
        """Registers one layer and direction's parameters (no biases without ``bias``); returns their names."""
        H = self.hidden_size
        shapes = {"weight_ih": (H, layer_input_size), "weight_hh": (H, H)}
        if self.bias:
            shapes.update(bias_ih=(H,), bias_hh=(H,))
        for name, shape in shapes.items():
            self.register_parameter(name + suffix, nn.Parameter(torch.empty(shape, **factory)))
        return [name + suffix for name in shapes]

    def reset_parameters(self) -> None:
        """``U(-1/sqrt(H), 1/sqrt(H))`` for every parameter, in ``nn.RNN``'s order (so seeds agree)."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)


def autocast_inputs(*tensors: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
    """The tensors as ``torch.autocast`` would hand them to ``nn.RNN``'s kernel: inside an autocast region of
    their device, float16/bfloat16/float32 tensors in the region's dtype (float64, complex and integer tensors
    unchanged); outside one, unchanged. The casts are differentiable, so the parameters keep their dtype and
    get gradients of it, as with ``nn.RNN``."""
    return tuple(_autocast_one(t) for t in tensors)


def _autocast_one(t: Optional[Tensor]) -> Optional[Tensor]:
    if t is None or not t.is_floating_point() or t.dtype == torch.float64:
        return t
    device = t.device.type
    if not torch.amp.is_autocast_available(device) or not torch.is_autocast_enabled(device):
        return t
    return t.to(torch.get_autocast_dtype(device))
