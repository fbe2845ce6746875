"""Bad inputs to torch_rnn's modules: the same exception type as torch.nn with a message that names the problem
(tensor and shape), and the checks torch.nn does not have (lengths, one-hot indices, masks, the affine layers'
shapes); and the docstring examples of the public API run."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from helpers import pair, raised, seeded
from torch_rnn import RNN, Affine, RNNCell, TemporalAffine, TemporalAverage

D, H = 3, 4


def assert_raises_like_torch(ours_fn, theirs_fn, *keywords):
    theirs_error = raised(theirs_fn)
    assert theirs_error is not None, "the reference torch.nn call was expected to raise"
    with pytest.raises(type(theirs_error)) as ours_error:
        ours_fn()
    message = str(ours_error.value)
    for keyword in keywords:
        assert keyword in message, f"{keyword!r} not in {message!r}"


x3 = torch.randn(5, 2, D, generator=seeded(20))


@pytest.mark.parametrize("call,keywords", [
    pytest.param(lambda m: m(torch.randn(5, 2, D, 1)), ("4D", "3D"), id="input_rank"),
    pytest.param(lambda m: m(torch.randn(5, 2, D + 2)), ("input_size", str(D), str(D + 2)), id="feature_size"),
    pytest.param(lambda m: m(x3, torch.randn(1, 3, H)), ("(1, 2, 4)", "[1, 3, 4]"), id="hx_shape_batched"),
    pytest.param(lambda m: m(torch.randn(5, D), torch.randn(2, H)), ("(1, 1, 4)", "[2, 1, 4]"),
                 id="hx_shape_unbatched"),
    pytest.param(lambda m: m(x3, torch.randn(2, H)), ("3-D", "2-D"), id="hx_rank_batched"),
    pytest.param(lambda m: m(torch.randn(5, D), torch.randn(1, 1, H)), ("2-D", "3-D"), id="hx_rank_unbatched"),
    pytest.param(lambda m: m(x3.double()), ("float64", "float32", "dtype"), id="input_dtype"),
    pytest.param(lambda m: m(x3, torch.zeros(1, 2, H, dtype=torch.float64)), ("hx", "float64", "dtype"),
                 id="hx_dtype"),
    pytest.param(lambda m: m(torch.randn(0, 2, D)), ("sequence length", "larger than 0"), id="no_steps"),
])
def test_rnn_forward_bad_inputs_raise_like_torch(call, keywords):
    ours, theirs = pair(RNN, nn.RNN, D, H)
    assert_raises_like_torch(lambda: call(ours), lambda: call(theirs), *keywords)


@pytest.mark.parametrize("kwargs,keywords", [
    (dict(nonlinearity="gelu"), ("gelu", "tanh", "relu")),
    (dict(dropout=-0.1), ("dropout", "-0.1")),
    (dict(dropout=1.5), ("dropout", "1.5")),
    (dict(dropout="a"), ("dropout", "'a'")),
    (dict(input_size=0), ("input_size", "greater than zero")),
    (dict(hidden_size=0), ("hidden_size", "greater than zero")),
    (dict(num_layers=0), ("num_layers", "greater than zero")),
    (dict(hidden_size=2.5), ("hidden_size", "int", "float")),
], ids=["nonlinearity", "dropout_negative", "dropout_above_one", "dropout_string", "input_size_0", "hidden_size_0",
        "num_layers_0", "hidden_size_float"])
def test_rnn_constructor_bad_arguments_raise_like_torch(kwargs, keywords):
    args = dict(input_size=D, hidden_size=H) | kwargs
    assert_raises_like_torch(lambda: RNN(**args), lambda: nn.RNN(**args), *keywords)


@pytest.mark.parametrize("call,keywords", [
    pytest.param(lambda m: m(torch.randn(2, 3, D)), ("3D", "1D or 2D"), id="input_rank"),
    pytest.param(lambda m: m(torch.randn(2, D + 1)), ("input_size", str(D + 1), str(D)), id="feature_size"),
    pytest.param(lambda m: m(torch.randn(2, D), torch.randn(3, H)), ("batch size", "2", "3"), id="hx_batch"),
    pytest.param(lambda m: m(torch.randn(2, D), torch.randn(2, H + 1)), ("hidden_size", str(H + 1)),
                 id="hx_hidden_size"),
    pytest.param(lambda m: m(torch.randn(D), torch.randn(H + 1)), ("hidden_size", str(H + 1)),
                 id="hx_unbatched"),
    pytest.param(lambda m: m(torch.randn(2, D), torch.randn(1, 2, H)), ("hidden", "3D"), id="hx_rank_3d"),
    # hx of the other rank: the message names both ranks, like nn.RNN's "For batched 3-D input, hx should also be 3-D"
    pytest.param(lambda m: m(torch.randn(2, D), torch.randn(H)), ("2-D", "1-D"), id="hx_rank_batched"),
    pytest.param(lambda m: m(torch.randn(D), torch.randn(1, H)), ("1-D", "2-D"), id="hx_rank_unbatched"),
    pytest.param(lambda m: m(torch.randn(2, D, dtype=torch.float64)), ("float64", "float32"), id="input_dtype"),
    pytest.param(lambda m: m(torch.randn(2, D), torch.randn(2, H, dtype=torch.float64)), ("hx", "float64", "float32"),
                 id="hx_dtype"),
])
def test_rnn_cell_forward_bad_inputs_raise_like_torch(call, keywords):
    ours, theirs = pair(RNNCell, nn.RNNCell, D, H)
    assert_raises_like_torch(lambda: call(ours), lambda: call(theirs), *keywords)


@pytest.mark.parametrize("kwargs,keywords", [
    (dict(nonlinearity="gelu"), ("gelu",)),
    (dict(input_size=0), ("input_size", "greater than zero")),
    (dict(hidden_size=0), ("hidden_size", "greater than zero")),
    (dict(hidden_size=2.5), ("hidden_size", "int", "float")),
], ids=["nonlinearity", "input_size_0", "hidden_size_0", "hidden_size_float"])
def test_rnn_cell_constructor_bad_arguments_raise_like_torch_rnn(kwargs, keywords):
    """nn.RNNCell accepts these at construction (and fails, if at all, later); ours refuses them up front, with
    nn.RNN's exception type for the same argument."""
    args = dict(input_size=D, hidden_size=H) | kwargs
    assert_raises_like_torch(lambda: RNNCell(**args), lambda: nn.RNN(**args), *keywords)


def test_rnn_cell_unknown_nonlinearity_fails_in_torch_only_at_forward():
    """Documents the difference above: torch.nn.RNNCell constructs, then raises at the first forward."""
    cell = nn.RNNCell(D, H, nonlinearity="gelu")
    with pytest.raises(RuntimeError, match="gelu"):
        cell(torch.randn(2, D))


# ours only ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths,keywords", [
    ([3, 3], ("lengths", "(3,)", "(2,)")),
    ([[3, 3, 3]], ("lengths", "(3,)", "(1, 3)")),
    ([0, 2, 3], ("1..T=5", "[0, 3]")),
    ([6, 2, 3], ("1..T=5", "[2, 6]")),
], ids=["too_short", "2d", "zero", "beyond_T"])
def test_rnn_bad_lengths_raise(lengths, keywords):
    with pytest.raises(ValueError) as error:
        RNN(D, H)(torch.randn(5, 3, D), lengths=lengths)
    for keyword in keywords:
        assert keyword in str(error.value)


def test_rnn_lengths_with_packed_sequence_raises():
    packed = pack_padded_sequence(torch.randn(5, 3, D), torch.tensor([5, 3, 2]))
    with pytest.raises(ValueError, match="lengths.*PackedSequence"):
        RNN(D, H)(packed, lengths=[5, 3, 2])


@pytest.mark.parametrize("bad", [D, -2], ids=["too_large", "below_minus_one"])
def test_rnn_onehot_indices_out_of_range_raise(bad):
    idx = torch.zeros(4, 2, dtype=torch.int64)
    idx[1, 1] = bad
    with pytest.raises(ValueError, match=rf"one-hot indices.*\[-1, input_size={D}\).*{bad}"):
        RNN(D, H)(idx)


def test_temporal_average_bad_masks_raise():
    x = torch.randn(3, 4, D)
    with pytest.raises(ValueError, match=r"mask rows \[1\] have no real step"):
        TemporalAverage()(x, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]))
    with pytest.raises(ValueError, match=r"mask \(N, T\).*mask \(3, 5\)"):
        TemporalAverage()(x, torch.ones(3, 5))


def test_affine_layers_bad_shapes_raise():
    with pytest.raises(ValueError, match=rf"\(N, T, {D}\).*\(2, 3, {D + 1}\)"):
        TemporalAffine(D, H)(torch.randn(2, 3, D + 1))
    with pytest.raises(ValueError, match=rf"\(N, {D}\).*\(2, 3, {D}\)"):
        Affine(D, H)(torch.randn(2, 3, D))



def test_the_docstring_examples_run():
    """The Examples sections of the public modules (torch_rnn.modules, cell, head, models) run as written."""
    import doctest

    import torch_rnn
    from torch_rnn import cell, head, models, modules

    for module in (modules, cell, head, models):
        result = doctest.testmod(module, extraglobs={"torch": torch, "torch_rnn": torch_rnn}, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0, module.__name__
