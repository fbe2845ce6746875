"""torch_rnn: a vanilla RNN for PyTorch with every gradient written by hand.

``from torch_rnn import RNN`` is a drop-in replacement for ``torch.nn.RNN`` (and ``RNNCell`` for
``torch.nn.RNNCell``). The equations live in :mod:`torch_rnn.functional`, the autograd Functions in
:mod:`torch_rnn.autograd`, the modules in :mod:`torch_rnn.modules`, the sentiment model in
:mod:`torch_rnn.models`.
"""
from .modules import RNN, Affine, RNNCell, TemporalAffine, TemporalAverage

__all__ = ["RNN", "RNNCell", "TemporalAffine", "TemporalAverage", "Affine"]
__version__ = "0.1.0"
