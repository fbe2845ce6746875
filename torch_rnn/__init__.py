"""torch_rnn: a vanilla RNN for PyTorch with every gradient written by hand.

``from torch_rnn import RNN`` is a drop-in replacement for ``torch.nn.RNN`` (and ``RNNCell`` for
``torch.nn.RNNCell``). The equations live in :mod:`torch_rnn.functional`, the autograd Functions in
:mod:`torch_rnn.autograd`, the RNN modules in :mod:`torch_rnn.modules` and :mod:`torch_rnn.cell`, the sentiment model's head layers in
:mod:`torch_rnn.head`, the model in :mod:`torch_rnn.models`; how sequences lie in memory in
:mod:`torch_rnn.layout`.
"""
from .cell import RNNCell
from .head import Affine, TemporalAffine, TemporalAverage
from .modules import RNN

__all__ = ["RNN", "RNNCell", "TemporalAffine", "TemporalAverage", "Affine"]
__version__ = "0.1.0"
