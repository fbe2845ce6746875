"""``RNNCell``: one step of the recurrence, a drop-in replacement for :class:`torch.nn.RNNCell`."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from . import ops
from .autograd import RNNCellFunction
from .base import RNNBase, autocast_inputs, check_dtype
from .functional import rnn_step_forward


class RNNCell(RNNBase):
    r"""Drop-in replacement for :class:`torch.nn.RNNCell`: one step, ``h' = tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})``.

    Args:
        input_size: features ``D`` of the input.
        hidden_size: features ``H`` of the hidden state.
        bias: whether to use ``bias_ih`` and ``bias_hh``. Default True.
        nonlinearity: ``"tanh"`` or ``"relu"``. Default ``"tanh"``.
        device, dtype: where and how the parameters are created.

    Inputs: input, hidden
        - **input**: ``(N, D)`` or ``(D,)``.
        - **hidden**: ``(N, H)`` or ``(H,)``; zeros when None.

    Outputs: h'
        - **h'**: ``(N, H)`` or ``(H,)``, the next hidden state.

    Attributes: weight_ih ``(H, D)``, weight_hh ``(H, H)``, bias_ih ``(H,)``, bias_hh ``(H,)``, all from
    ``U(-1/sqrt(H), 1/sqrt(H))``.

    Raises:
        ValueError: an input or hidden state that is not 1-D or 2-D; a bad constructor argument.
        RuntimeError: ``nn.RNNCell``'s errors: the input's feature size, ``hx``'s rank, batch or hidden size.
        DtypeMismatchError: an input or ``hx`` whose dtype is not the parameters'.

    Examples::

        >>> cell = torch_rnn.RNNCell(10, 20)
        >>> h = torch.zeros(3, 20)
        >>> for x_t in torch.randn(6, 3, 10):  # (T, N, D)
        ...     h = cell(x_t, h)  # (3, 20)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, nonlinearity)
        self._add_weights("", input_size, {"device": device, "dtype": dtype})
        if not bias:  # nn.RNNCell's attributes exist either way
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.nonlinearity != "tanh":
            s += ", nonlinearity={nonlinearity}"
        return s.format(**self.__dict__)

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        if input.dim() not in (1, 2):
            raise ValueError(f"RNNCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"RNNCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        is_batched = input.dim() == 2
        if hx is not None and hx.dim() != input.dim():
            raise RuntimeError(
                f"For {'batched 2-D' if is_batched else 'unbatched 1-D'} input, hx should also be "
                f"{input.dim()}-D but got {hx.dim()}-D tensor"
            )
        x = input if is_batched else input.unsqueeze(0)  # (N, D)
        x, hx, Wx, Wh = autocast_inputs(x, hx, self.weight_ih, self.weight_hh)
        check_dtype("input", x, Wx)
        if x.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {x.shape[1]} expected {self.input_size}")
        if hx is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            h = hx if is_batched else hx.unsqueeze(0)
            if h.shape[0] != x.shape[0]:
                raise RuntimeError(
                    f"Input batch size {x.shape[0]} doesn't match hidden0 batch size {h.shape[0]} "
                    f"(input {tuple(input.shape)}, hx {tuple(hx.shape)})"
                )
            if h.shape[1] != self.hidden_size:
                raise RuntimeError(
                    f"hidden0 has inconsistent hidden_size: got {h.shape[1]}, expected {self.hidden_size}"
                )
            check_dtype("hx", h, Wx)
        b = autocast_inputs(self.bias_ih + self.bias_hh)[0] if self.bias else None
        next_h = ops.dispatch(RNNCellFunction, ops.rnn_cell, _reference_cell, x, h, Wx, Wh, b, self.nonlinearity)
        return next_h if is_batched else next_h.squeeze(0)


def _reference_cell(x: Tensor, h: Tensor, Wx: Tensor, Wh: Tensor, b: Optional[Tensor], nonlinearity: str) -> Tensor:
    return rnn_step_forward(x, h, Wx, Wh, b, nonlinearity)[0]
