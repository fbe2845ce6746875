"""The sentiment model's head as layers with hand-written backward passes (:mod:`torch_rnn.autograd`): the same
affine map at every step, the average over each row's real steps, and the last affine map (the report's
temporal affine -> average -> affine)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from . import ops
from .autograd import AffineFunction, TemporalAverageFunction
from .base import autocast_inputs, check_size
from .functional import average_forward, temporal_affine_forward


class _AffineLayer(nn.Module):
    """``x W^T + b`` over the last dimension, through :class:`AffineFunction`; the parameters of
    :class:`torch.nn.Linear` (weight ``(out, in)``, bias ``(out,)``), initialised like it. ``rank`` is the rank
    of the input the layer takes, named in its error."""

    rank: int
    shape: str

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        check_size("in_features", in_features)
        check_size("out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.reset_parameters()

    reset_parameters = nn.Linear.reset_parameters
    extra_repr = nn.Linear.extra_repr

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.rank or x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: expected x of shape ({self.shape}, {self.in_features}), got "
                             f"{tuple(x.shape)}")
        return ops.dispatch(AffineFunction, ops.affine, _reference_affine, *autocast_inputs(x, self.weight, self.bias))


class TemporalAffine(_AffineLayer):
    """The same affine map at every step: ``(N, T, H) -> (N, T, M)``, ``out_t = W x_t + b``.

    Args:
        in_features: ``H``. out_features: ``M``. bias: default True.

    Inputs: x ``(N, T, H)``. Outputs: ``(N, T, M)``.
    Attributes: weight ``(M, H)``, bias ``(M,)``; initialised like :class:`torch.nn.Linear`.

    Raises:
        ValueError: for a size that is not a positive int, or an x that is not ``(N, T, H)``.

    Examples::

        >>> layer = torch_rnn.TemporalAffine(20, 8)
        >>> layer(torch.randn(3, 5, 20)).shape
        torch.Size([3, 5, 8])
    """

    rank, shape = 3, "N, T"


class Affine(_AffineLayer):
    """``(N, M) -> (N, C)``, ``out = x W^T + b``: :class:`torch.nn.Linear` with a hand-written backward.

    Args:
        in_features: ``M``. out_features: ``C``. bias: default True.

    Inputs: x ``(N, M)``. Outputs: ``(N, C)``.
    Attributes: weight ``(C, M)``, bias ``(C,)``; initialised like :class:`torch.nn.Linear`.

    Raises:
        ValueError: for a size that is not a positive int, or an x that is not ``(N, M)``.
    """

    rank, shape = 2, "N"


class TemporalAverage(nn.Module):
    """Mean over the real (unmasked) steps: ``out_n = sum_t mask_nt x_nt / sum_t mask_nt``.

    Inputs: x ``(N, T, M)``; mask ``(N, T)`` of 0/1 (bool, integer or floating dtype), at least one 1 per row.
    Outputs: ``(N, M)``.

    Raises:
        ValueError: shapes that do not match, or mask rows without a real step (named).

    Examples::

        >>> average = torch_rnn.TemporalAverage()
        >>> mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
        >>> average(torch.ones(2, 3, 4), mask)  # the mean over each row's first steps
        tensor([[1., 1., 1., 1.],
                [1., 1., 1., 1.]])
    """

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if x.dim() != 3 or mask.shape != x.shape[:2]:
            raise ValueError(
                f"TemporalAverage: expected x (N, T, M) and mask (N, T), got x {tuple(x.shape)} and mask {tuple(mask.shape)}"
            )
        check_mask_rows(mask, "TemporalAverage")
        x = autocast_inputs(x)[0]
        return ops.dispatch(TemporalAverageFunction, ops.temporal_average, _reference_average, x, mask.to(x.dtype))


def _reference_affine(x: Tensor, W: Tensor, b: Optional[Tensor]) -> Tensor:
    return temporal_affine_forward(x, W, b)[0]


def _reference_average(x: Tensor, mask: Tensor) -> Tensor:
    return average_forward(x, mask)[0]


def check_mask_rows(mask: Tensor, who: str) -> None:
    """ValueError naming the rows of ``mask (N, T)`` without a single real step: there is nothing to average.

    In compiled code the values are not known while tracing: the check then runs with the graph, as a
    RuntimeError that does not name the rows."""
    if torch.compiler.is_compiling():
        torch._assert_async((mask.sum(1) > 0).all(), f"{who}: a mask row has no real step to average over")
        return
    empty = (mask.sum(1) == 0).nonzero().flatten()
    if empty.numel() > 0:
        raise ValueError(f"{who}: mask rows {empty.tolist()[:10]} have no real step to average over")
