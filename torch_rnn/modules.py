"""The drop-in ``torch.nn.RNN``: :class:`RNN` around the hand-written Functions and the custom op of one layer."""
from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import ContextManager, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import ops
from .autograd import RNNFunction, reference_layer_forward
from .base import RNNBase, autocast_inputs, check_dtype, check_size
from .layout import Packing, cat_features, length_order, rows_as_they_lie
from .threads import own_threads

# A sequence's running rows per step (PackedSequence's batch_sizes): a list in eager mode, where the loops read
# it, and a (T,) int64 tensor under torch.compile / torch.export, where a list's values would be baked into
# the graph (one recompilation per length pattern).
BatchSizes = Union[list[int], Tensor]


class RNN(RNNBase):
    r"""Drop-in replacement for :class:`torch.nn.RNN`, with every gradient written by hand.

    Each layer computes, for every element of the sequence,

    .. math:: h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    which is the report's ``a_t = W_x x_t + W_h h_{t-1} + b``, ``h_t = tanh(a_t)`` with ``W_x = W_{ih}``,
    ``W_h = W_{hh}`` and ``b = b_{ih} + b_{hh}``. Layer ``k > 0`` takes the (dropped-out, in training)
    output of layer ``k - 1`` as its input.

    Args:
        input_size: features ``D`` of the input.
        hidden_size: features ``H`` of the hidden state.
        num_layers: stacked layers. Default 1.
        nonlinearity: ``"tanh"`` or ``"relu"``. Default ``"tanh"``.
        bias: whether to use ``bias_ih`` and ``bias_hh``. Default True.
        batch_first: input and output are ``(N, T, *)`` instead of ``(T, N, *)`` (not ``h_n``). Default False.
        dropout: dropout probability on the outputs of every layer but the last, in training. Default 0.
        bidirectional: run a second RNN over the reversed sequence and concatenate. Default False.
        device, dtype: where and how the parameters are created.

    Inputs: input, hx, lengths
        - **input**: ``(T, N, D)`` (``(N, T, D)`` with batch_first), ``(T, D)`` unbatched, or a
          :class:`~torch.nn.utils.rnn.PackedSequence`. Beyond ``nn.RNN``: an integer tensor holds one-hot
          indices instead, ``(T, N)`` / ``(N, T)`` / ``(T,)``, index ``k`` standing for the unit vector
          ``e_k`` and ``-1`` for the zero vector; the first layer then gathers weight columns instead of
          multiplying by one-hot vectors.
        - **hx**: ``(num_layers * num_directions, N, H)`` (``(num_layers * num_directions, H)`` unbatched)
          initial hidden states; zeros when None.
        - **lengths** (beyond ``nn.RNN``): ``(N,)`` lengths of padded sequences, each in ``1..T``. Each
          sequence's state stops at its last real step, as with a PackedSequence, without the caller
          packing: the rows are packed inside (one gather) and the output unpacked (one scatter), so the
          padding is neither stored nor computed.

    Outputs: output, h_n
        - **output**: ``(T, N, num_directions * H)`` (``(N, T, ...)`` with batch_first), the last layer's
          hidden states; a PackedSequence for a PackedSequence input; zero at padded steps.
        - **h_n**: ``(num_layers * num_directions, N, H)`` each sequence's final hidden state, at its last
          real step.

    Attributes:
        weight_ih_l[k]: ``(H, D)`` for k = 0, else ``(H, num_directions * H)``.
        weight_hh_l[k]: ``(H, H)``.
        bias_ih_l[k], bias_hh_l[k]: ``(H,)``.
        ``..._reverse`` for the reverse direction. All initialised from ``U(-1/sqrt(H), 1/sqrt(H))``.

    Dtypes: the input and ``hx`` in the parameters' floating or complex dtype (under ``torch.autocast``, what
    autocast makes of them, as for ``nn.RNN``); one-hot indices in any integer dtype; ``lengths`` an integer
    tensor on any device or a sequence of ints.

    Raises:
        ValueError: a wrong rank for the input, one-hot indices outside ``[-1, D)``, lengths of the wrong shape or
            outside ``1..T``, lengths with a PackedSequence, a bad constructor argument (``nonlinearity``,
            ``dropout``, a size).
        RuntimeError: ``nn.RNN``'s errors and messages: the input's feature size, ``hx``'s rank or shape, an empty
            sequence (``T = 0``).
        DtypeMismatchError (a ValueError and a RuntimeError): an input or ``hx`` whose dtype is not the
            parameters' (complex input to a real RNN included).

    Examples::

        >>> rnn = torch_rnn.RNN(10, 20, num_layers=2, batch_first=True)
        >>> x = torch.randn(3, 5, 10)  # (N, T, D)
        >>> output, h_n = rnn(x)  # (3, 5, 20), (2, 3, 20)
        >>> output, h_n = rnn(x, lengths=[5, 2, 4])  # each row stops at its own length; zeros past it
        >>> output.sum().backward()  # the hand-written backpropagation through time
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, nonlinearity)
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an element being "
                f"zeroed, got {dropout!r}"
            )
        check_size("num_layers", num_layers)
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout expects "
                f"num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}"
            )
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = 0  # nn.RNN's attribute, for code that reads it; RNNs have no projection

        factory = {"device": device, "dtype": dtype}
        num_directions = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            layer_input_size = input_size if layer == 0 else hidden_size * num_directions
            for direction in range(num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                self._flat_weights_names += self._add_weights(suffix, layer_input_size, factory)
        self.reset_parameters()

    def flatten_parameters(self) -> None:
        """No-op: there is no cuDNN weight buffer to compact. Kept so code written for ``nn.RNN`` runs."""

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters grouped per layer and direction, as ``nn.RNN.all_weights``."""
        per_group = 4 if self.bias else 2
        weights = [getattr(self, name) for name in self._flat_weights_names]
        return [weights[i : i + per_group] for i in range(0, len(weights), per_group)]

    def extra_repr(self) -> str:
        s = "{input_size}, {hidden_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        return s.format(**self.__dict__)

    # ------------------------------------------------------------------------------------------------------
    def forward(
        self,
        input: Union[Tensor, PackedSequence],
        hx: Optional[Tensor] = None,
        lengths: Optional[Union[Tensor, Sequence[int]]] = None,
    ) -> tuple[Union[Tensor, PackedSequence], Tensor]:
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("RNN: pass lengths only with a padded input, not with a PackedSequence")
            return self._forward_packed(input, hx)

        x, hx, is_batched = self._time_major(input, hx)  # (T, N, D) or (T, N) indices; hx (L * dirs, N, H)
        lengths = None if lengths is None else self._check_lengths(lengths, *x.shape[1::-1])
        with self._own_threads(hx):
            output, h_n = self._run_padded(x, hx, lengths)
        if not is_batched:
            return output.squeeze(1), h_n.squeeze(1)
        return (output.transpose(0, 1) if self.batch_first else output), h_n

    def _time_major(self, input: Tensor, hx: Optional[Tensor]) -> tuple[Tensor, Tensor, bool]:
        """A padded input as the loops take it, checked: ``x (T, N, D)`` (or ``(T, N)`` one-hot indices),
        time-major or batch-first memory seen time-major (never transposed in memory), under autocast's dtype;
        the initial states ``(L * dirs, N, H)``; and whether the input was batched."""
        one_hot = not (input.is_floating_point() or input.is_complex())
        step_dims = 1 if one_hot else 2  # rank of an unbatched input
        if input.dim() not in (step_dims, step_dims + 1):
            raise ValueError(
                f"RNN: Expected input to be {step_dims}D or {step_dims + 1}D, got {input.dim()}D tensor instead"
                + (" (an integer input holds one-hot indices)" if one_hot else "")
            )
        is_batched = input.dim() == step_dims + 1
        if not is_batched:
            input = input.unsqueeze(1)
            if hx is not None:
                if hx.dim() != 2:
                    raise RuntimeError(f"For unbatched {step_dims}-D input, hx should also be 2-D but got {hx.dim()}-D tensor")
                hx = hx.unsqueeze(1)
        elif hx is not None and hx.dim() != 3:
            raise RuntimeError(
                f"For batched {step_dims + 1}-D input, hx should also be 3-D but got {hx.dim()}-D tensor"
            )
        elif self.batch_first:
            input = input.transpose(0, 1)
        x, hx = autocast_inputs(input, hx)
        self._check_input(x)
        if x.shape[0] == 0:  # nn.RNN's rule and message: there is no step to run
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        return x, self._initial_state(hx, x.shape[1], x), is_batched

    def _own_threads(self, hx: Tensor) -> ContextManager[None]:
        """torch_rnn's own threads (:func:`torch_rnn.threads.own_threads`) for the module's operations around the
        layers' loops (packing, bias sums, concatenating directions, stacking ``h_n``): one on a busy machine.
        Compiled code leaves threads to the graph."""
        if torch.compiler.is_compiling():
            return contextlib.nullcontext()
        return own_threads(hx.shape[1], self.input_size, self.hidden_size)

    def _run_padded(self, x: Tensor, hx: Tensor, lengths: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """All layers over the padded ``x (T, N, ...)``, every row for ``T`` steps or for its ``lengths (N,)``;
        the output ``(T, N, dirs * H)`` laid out like ``x`` (zero past each length) and ``h_n``."""
        T, N = x.shape[0], x.shape[1]
        if lengths is None or N == 0:
            return self._run_layers(rows_as_they_lie(x), hx, None)
        if torch.compiler.is_exporting() or (torch.compiler.is_compiling() and not _unbacked_sizes_traced()):
            # each layer's op takes the lengths and packs inside: static shapes (ONNX: the RNN's sequence_lens)
            return self._run_layers(rows_as_they_lie(x), hx, None, lengths)
        if torch.compiler.is_compiling():  # packed once by operators: only R, the packed rows, is dynamic
            x = rows_as_they_lie(x)
            order, batch_sizes = length_order(lengths, T)  # (N,), (T,)
            packed_output, h_n = self._run_layers(ops.pack_by_lengths(x, lengths), hx.index_select(1, order),
                                                  batch_sizes)
            return ops.unpack_by_lengths(packed_output, lengths, x), h_n.index_select(1, torch.argsort(order))
        packing = Packing(lengths)  # packed once for all layers: padding is neither stored nor computed
        packed_output, h_n = self._run_layers(packing.pack(x), packing.sort(hx), packing.batch_sizes)
        return packing.unpack(packed_output, x), packing.unsort(h_n)

    def _forward_packed(self, packed: PackedSequence, hx: Optional[Tensor]) -> tuple[PackedSequence, Tensor]:
        """PackedSequence in, PackedSequence out, run packed; rows stay in the packed (sorted) order inside."""
        if packed.data.dim() != 2:
            raise RuntimeError(f"input must have 2 dimensions, got {packed.data.dim()}")
        data, hx = autocast_inputs(packed.data, hx)
        self._check_input(data)
        batch_sizes = packed.batch_sizes if torch.compiler.is_compiling() else packed.batch_sizes.tolist()
        if hx is not None:
            if hx.dim() != 3:
                raise RuntimeError(f"For a PackedSequence input, hx should be 3-D but got {hx.dim()}-D tensor")
            if packed.sorted_indices is not None:
                hx = hx.index_select(1, packed.sorted_indices)
        hx = self._initial_state(hx, int(batch_sizes[0]), data)
        with self._own_threads(hx):
            output, h_n = self._run_layers(data, hx, batch_sizes)
        if packed.unsorted_indices is not None:
            h_n = h_n.index_select(1, packed.unsorted_indices)
        return PackedSequence(output, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices), h_n

    def _run_layers(self, x: Tensor, hx: Tensor, batch_sizes: Optional[BatchSizes],
                    lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """All layers and directions over ``x (T, N, D)`` (or ``(T, N)`` indices), or packed ``x (R, D)``
        (or ``(R,)``) with ``batch_sizes``, the rows running at each step; or padded ``x`` with ``lengths``,
        which each layer packs itself. The reverse direction runs each row from its own last step inside the
        layer (:func:`rnn_layer`), on the same input.
        """
        num_directions = 2 if self.bidirectional else 1
        h_n = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                Wx, Wh = getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix)
                b = getattr(self, "bias_ih" + suffix) + getattr(self, "bias_hh" + suffix) if self.bias else None
                Wx, Wh, b = autocast_inputs(Wx, Wh, b)
                h0 = hx[layer * num_directions + direction]  # (N, H)
                out, h_last = rnn_layer(layer_input, h0, Wx, Wh, b, self.nonlinearity, batch_sizes,
                                        direction == 1, lengths)  # (T, N, H), (N, H)
                h_n.append(h_last)
                outputs.append(out)
            layer_input = outputs[0] if len(outputs) == 1 else cat_features(outputs)  # (T, N, dirs * H)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = nn.functional.dropout(layer_input, self.dropout, training=True)
        return layer_input, torch.stack(h_n)

    def _check_input(self, x: Tensor) -> None:
        weight = autocast_inputs(self.weight_ih_l0)[0]
        if x.is_floating_point() or x.is_complex():
            check_dtype("input", x, weight)
            if x.shape[-1] != self.input_size:
                raise RuntimeError(
                    f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.shape[-1]}"
                )
        elif x.numel() > 0 and not torch.compiler.is_compiling():  # compiled: the op checks the values
            low, high = (int(v) for v in torch.aminmax(x))
            if low < -1 or high >= self.input_size:
                raise ValueError(
                    f"RNN: one-hot indices must lie in [-1, input_size={self.input_size}), got values in [{low}, {high}]"
                )

    def _initial_state(self, hx: Optional[Tensor], N: int, x: Tensor) -> Tensor:
        weight = autocast_inputs(self.weight_ih_l0)[0]
        expected = (self.num_layers * (2 if self.bidirectional else 1), N, self.hidden_size)
        if hx is None:
            return torch.zeros(expected, dtype=weight.dtype, device=x.device)
        if tuple(hx.shape) != expected:
            raise RuntimeError(f"Expected hidden size {expected}, got {list(hx.shape)}")
        check_dtype("hx", hx, weight)
        return hx.contiguous()

    @staticmethod
    def _check_lengths(lengths: Union[Tensor, Sequence[int]], N: int, T: int) -> Tensor:
        lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
        if lengths.shape != (N,):
            raise ValueError(f"RNN: lengths must have shape ({N},) (one per sequence), got {tuple(lengths.shape)}")
        if torch.compiler.is_compiling():  # the values are not known while tracing: checked when the graph runs
            torch._assert_async(((lengths >= 1) & (lengths <= T)).all(), "RNN: every length must lie in 1..T")
        elif N > 0 and (int(lengths.min()) < 1 or int(lengths.max()) > T):
            raise ValueError(f"RNN: every length must lie in 1..T={T}, got values in [{int(lengths.min())}, {int(lengths.max())}]")
        return lengths


@torch._dynamo.assume_constant_result
def _unbacked_sizes_traced() -> bool:
    """Whether the graph being traced may hold a size that depends on tensor data (``fullgraph=True``, or
    ``capture_dynamic_output_shape_ops``): then the packed rows are one unbacked size; otherwise Dynamo would
    break the graph at the packing operator, so each layer packs inside its own operator instead."""
    context = torch._guards.TracingContext.try_get()
    shape_env = None if context is None or context.fake_mode is None else context.fake_mode.shape_env
    return shape_env is not None and shape_env.allow_dynamic_output_shape_ops


def rnn_layer(x: Tensor, h0: Tensor, Wx: Tensor, Wh: Tensor, b: Optional[Tensor], nonlinearity: str,
              batch_sizes: Optional[BatchSizes], reverse: bool, lengths: Optional[Tensor] = None
              ) -> tuple[Tensor, Tensor]:
    """One layer and direction (:func:`torch_rnn.ops.dispatch`): :class:`RNNFunction` in eager mode, the custom op
    ``torch_rnn::rnn_layer`` under ``torch.compile`` and ``torch.export``, which see one opaque node with a fake
    kernel and a registered backward; the same kernels either way. ``batch_sizes`` travels as a list to the
    loops and as a tensor to the op (a list's values would be baked into the graph); ``lengths (N,)`` of a
    padded ``x`` goes to the op, which packs the rows inside, and is packed here otherwise."""
    if torch.compiler.is_compiling() and not torch._C._are_functorch_transforms_active():
        if batch_sizes is not None and not isinstance(batch_sizes, Tensor):
            batch_sizes = torch.tensor(batch_sizes, dtype=torch.int64)
        return ops.rnn_layer(x, h0, Wx, Wh, b, nonlinearity, batch_sizes, lengths, reverse)
    if lengths is not None:  # a torch.func transform inside compiled code
        packing = Packing(lengths)
        h, h_last = rnn_layer(packing.pack(x), packing.sort(h0), Wx, Wh, b, nonlinearity, packing.batch_sizes,
                              reverse)
        return packing.unpack(h, x), packing.unsort(h_last)
    if isinstance(batch_sizes, Tensor):
        batch_sizes = batch_sizes.tolist()
    return ops.dispatch(RNNFunction, ops.rnn_layer, reference_layer_forward, x, h0, Wx, Wh, b, nonlinearity,
                        batch_sizes, reverse)
