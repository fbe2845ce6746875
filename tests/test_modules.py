"""torch_rnn.modules against torch.nn: RNN and RNNCell with identical weights give the same outputs, final states
and gradients over a grid of configurations and input forms; the module API (parameters, initialisation,
repr, state_dict, dtype moves, dropout) matches; bad inputs raise the same exception types as torch.nn with
messages that name the problem; and the model's layers equal their torch equivalents."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from helpers import TOL, copy_into, pair, seeded
from torch_rnn import RNN, Affine, RNNCell, TemporalAffine, TemporalAverage

D, H = 3, 4


def random(*shape, dtype, gen):
    return torch.randn(*shape, dtype=dtype, generator=gen)


def grads_of(module, outputs, douts, inputs):
    """Gradients of ``sum <outputs, douts>`` w.r.t. ``inputs`` and every parameter, in order."""
    loss = sum((o * d).sum() for o, d in zip(outputs, douts))
    wrt = list(inputs) + list(module.parameters())
    return torch.autograd.grad(loss, wrt)


def assert_same(ours_out, theirs_out, ours_grads, theirs_grads, dtype):
    for a, e in zip(ours_out, theirs_out):
        torch.testing.assert_close(a, e, **TOL[dtype])
    assert len(ours_grads) == len(theirs_grads)
    for i, (a, e) in enumerate(zip(ours_grads, theirs_grads)):
        torch.testing.assert_close(a, e, msg=lambda m: f"gradient {i}: {m}", **TOL[dtype])


# ----------------------------------------------------------------------------------------------------------
# RNN vs nn.RNN over a grid
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["no_hx", "hx"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_rnn_matches_torch_nn_rnn(num_layers, bidirectional, batch_first, bias, nonlinearity, with_hx, dtype):
    ours, theirs = pair(RNN, nn.RNN, D, H, num_layers=num_layers, bidirectional=bidirectional,
                        batch_first=batch_first, bias=bias, nonlinearity=nonlinearity, dtype=dtype)
    g = seeded(0)
    T, N = 4, 3
    x = random(*((N, T, D) if batch_first else (T, N, D)), dtype=dtype, gen=g).requires_grad_()
    states = num_layers * (2 if bidirectional else 1)
    hx = random(states, N, H, dtype=dtype, gen=g).requires_grad_() if with_hx else None
    out_shape = (N, T, H * (2 if bidirectional else 1)) if batch_first else (T, N, H * (2 if bidirectional else 1))
    douts = (random(*out_shape, dtype=dtype, gen=g), random(states, N, H, dtype=dtype, gen=g))
    inputs = [x] + ([hx] if with_hx else [])

    ours_out, theirs_out = ours(x, hx), theirs(x, hx)
    assert ours_out[0].shape == theirs_out[0].shape == out_shape
    assert_same(ours_out, theirs_out, grads_of(ours, ours_out, douts, inputs),
                grads_of(theirs, theirs_out, douts, inputs), dtype)


def packed_input(dtype, gen, lengths, enforce_sorted):
    T, N = max(lengths), len(lengths)
    padded = random(T, N, D, dtype=dtype, gen=gen)
    return padded, pack_padded_sequence(padded, torch.tensor(lengths), enforce_sorted=enforce_sorted)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["no_hx", "hx"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])  # ignored for packed input
@pytest.mark.parametrize("lengths,enforce_sorted", [([4, 3, 3, 1], True), ([2, 4, 1, 4], False), ([3, 1, 2], False)],
                         ids=["sorted", "unsorted", "unsorted_short"])
def test_rnn_packed_sequence_matches_torch_nn_rnn(lengths, enforce_sorted, batch_first, num_layers, bidirectional,
                                                  with_hx, dtype):
    ours, theirs = pair(RNN, nn.RNN, D, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                        dtype=dtype)
    g = seeded(1)
    padded, packed = packed_input(dtype, g, lengths, enforce_sorted)
    data = packed.data.detach().requires_grad_()
    packed = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    states = num_layers * (2 if bidirectional else 1)
    hx = random(states, len(lengths), H, dtype=dtype, gen=g).requires_grad_() if with_hx else None
    inputs = [data] + ([hx] if with_hx else [])

    (ours_packed, ours_h), (theirs_packed, theirs_h) = ours(packed, hx), theirs(packed, hx)
    assert isinstance(ours_packed, PackedSequence)
    assert torch.equal(ours_packed.batch_sizes, theirs_packed.batch_sizes)
    for ours_index, theirs_index in ((ours_packed.sorted_indices, theirs_packed.sorted_indices),
                                     (ours_packed.unsorted_indices, theirs_packed.unsorted_indices)):
        assert (ours_index is None and theirs_index is None) or torch.equal(ours_index, theirs_index)
    douts = (random(*theirs_packed.data.shape, dtype=dtype, gen=g), random(*theirs_h.shape, dtype=dtype, gen=g))
    ours_out, theirs_out = (ours_packed.data, ours_h), (theirs_packed.data, theirs_h)
    assert_same(ours_out, theirs_out, grads_of(ours, ours_out, douts, inputs),
                grads_of(theirs, theirs_out, douts, inputs), dtype)


@pytest.mark.parametrize("lengths", [[4, 3, 3, 1], [3, 3, 3]], ids=["R11", "R9_square_when_D_is_9"])
def test_rnn_packed_sequence_with_column_major_data_matches_torch_nn_rnn(lengths):
    """PackedSequence.data in column-major memory (from a transpose, or numpy's Fortran order) is an (R, D)
    sequence like any other, not batch-first memory to be used in place."""
    dtype = torch.float64
    D_ = 9 if sum(lengths) == 9 else D  # R == D as well: a transpose then has the right shape, and must not be taken
    ours, theirs = pair(RNN, nn.RNN, D_, H, num_layers=2, bidirectional=True, dtype=dtype)
    g = seeded(3)
    data = random(D_, sum(lengths), dtype=dtype, gen=g).T.detach().requires_grad_()  # (R, D), strides (1, R)
    assert not data.is_contiguous()
    batch_sizes = pack_padded_sequence(torch.zeros(max(lengths), len(lengths)), lengths).batch_sizes
    packed = PackedSequence(data, batch_sizes)
    (ours_packed, ours_h), (theirs_packed, theirs_h) = ours(packed), theirs(packed)
    douts = (random(*theirs_packed.data.shape, dtype=dtype, gen=g), random(*theirs_h.shape, dtype=dtype, gen=g))
    ours_out, theirs_out = (ours_packed.data, ours_h), (theirs_packed.data, theirs_h)
    assert_same(ours_out, theirs_out, grads_of(ours, ours_out, douts, [data]), grads_of(theirs, theirs_out, douts, [data]),
                dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["no_hx", "hx"])
@pytest.mark.parametrize("config", [dict(), dict(num_layers=2, bidirectional=True, nonlinearity="relu"),
                                    dict(batch_first=True, bias=False)], ids=["default", "2_bidir_relu", "bf_nobias"])
def test_rnn_unbatched_input_matches_torch_nn_rnn(config, with_hx, dtype):
    ours, theirs = pair(RNN, nn.RNN, D, H, dtype=dtype, **config)
    g = seeded(2)
    x = random(4, D, dtype=dtype, gen=g).requires_grad_()  # (T, D), batch_first or not
    states = ours.num_layers * (2 if ours.bidirectional else 1)
    hx = random(states, H, dtype=dtype, gen=g).requires_grad_() if with_hx else None
    ours_out, theirs_out = ours(x, hx), theirs(x, hx)
    assert ours_out[0].dim() == 2 and ours_out[1].shape == (states, H)
    douts = [random(*o.shape, dtype=dtype, gen=g) for o in theirs_out]
    inputs = [x] + ([hx] if with_hx else [])
    assert_same(ours_out, theirs_out, grads_of(ours, ours_out, douts, inputs),
                grads_of(theirs, theirs_out, douts, inputs), dtype)


@pytest.mark.parametrize("num_layers", [2, 3])
def test_rnn_dropout_in_eval_mode_matches_torch_nn_rnn(num_layers):
    ours, theirs = pair(RNN, nn.RNN, D, H, num_layers=num_layers, dropout=0.5, bidirectional=True)
    ours.eval(), theirs.eval()
    x = random(4, 3, D, dtype=torch.float32, gen=seeded(3)).requires_grad_()
    ours_out, theirs_out = ours(x), theirs(x)
    douts = [torch.ones_like(o) for o in theirs_out]
    assert_same(ours_out, theirs_out, grads_of(ours, ours_out, douts, [x]), grads_of(theirs, theirs_out, douts, [x]),
                torch.float32)


def test_rnn_dropout_in_training_mode_is_random_and_eval_is_not():
    rnn = RNN(D, H, num_layers=2, dropout=0.5)
    x = random(5, 3, D, dtype=torch.float32, gen=seeded(4))
    rnn.train()
    first, second = rnn(x)[0], rnn(x)[0]
    assert not torch.equal(first, second)
    rnn.eval()
    first, second = rnn(x)[0], rnn(x)[0]
    assert torch.equal(first, second)
    torch.testing.assert_close(first, copy_into(nn.RNN(D, H, num_layers=2, dropout=0.5), rnn).eval()(x)[0])


# ----------------------------------------------------------------------------------------------------------
# lengths on padded input, integer one-hot input
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["no_hx", "hx"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bidir"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["time_major", "batch_first"])
@pytest.mark.parametrize("lengths", [[2, 5, 1, 5], [3, 3, 3, 3], [1, 2, 3, 4]], ids=["unsorted", "equal", "ascending"])
def test_rnn_lengths_equals_torch_nn_rnn_on_packed_sequence(lengths, batch_first, bidirectional, with_hx, dtype):
    ours, theirs = pair(RNN, nn.RNN, D, H, num_layers=2, bidirectional=bidirectional, batch_first=batch_first,
                        dtype=dtype)
    g = seeded(5)
    T, N = 5, len(lengths)
    x = random(*((N, T, D) if batch_first else (T, N, D)), dtype=dtype, gen=g).requires_grad_()
    hx = random(ours.num_layers * (2 if bidirectional else 1), N, H, dtype=dtype, gen=g).requires_grad_() \
        if with_hx else None
    ours_out = ours(x, hx, lengths=torch.tensor(lengths))
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    theirs_packed, theirs_h = theirs(packed, hx)
    theirs_out = (pad_packed_sequence(theirs_packed, batch_first=batch_first, total_length=T)[0], theirs_h)

    time_dim = 1 if batch_first else 0
    steps = torch.arange(T).unsqueeze(1 - time_dim)
    padding = steps >= torch.tensor(lengths).unsqueeze(time_dim)  # (N, T) or (T, N)
    assert (ours_out[0][padding] == 0).all(), "outputs at padded steps are zero"
    douts = [random(*o.shape, dtype=dtype, gen=g) for o in theirs_out]
    inputs = [x] + ([hx] if with_hx else [])
    assert_same(ours_out, theirs_out, grads_of(ours, ours_out, douts, inputs),
                grads_of(theirs, theirs_out, douts, inputs), dtype)
    # a list works as well as a tensor
    torch.testing.assert_close(ours(x, hx, lengths=lengths)[0], ours_out[0], rtol=0, atol=0)


@pytest.mark.parametrize("lengths", [None, [3, 1, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("config", [dict(), dict(num_layers=2, bidirectional=True), dict(batch_first=True, bias=False)],
                         ids=["default", "2_bidir", "bf_nobias"])
def test_rnn_onehot_input_equals_dense_onehot(config, lengths):
    torch.manual_seed(6)
    V = 5
    rnn = RNN(V, H, dtype=torch.float64, **config)
    idx = torch.randint(-1, V, (3, 4) if rnn.batch_first else (4, 3), generator=seeded(7))
    idx[0, 0], idx[1, 1] = -1, -1
    dense = TF.one_hot(idx.clamp(min=0), V).double() * (idx >= 0).unsqueeze(-1)
    ours = rnn(idx, lengths=lengths)
    expected = rnn(dense, lengths=lengths)
    douts = [torch.randn(o.shape, dtype=torch.float64, generator=seeded(8)) for o in expected]
    assert_same(ours, expected, grads_of(rnn, ours, douts, []), grads_of(rnn, expected, douts, []), torch.float64)


def test_rnn_onehot_unbatched_and_minus_one_is_zero_vector():
    torch.manual_seed(9)
    ours, theirs = pair(RNN, nn.RNN, D, H, bias=False, dtype=torch.float64)
    out, h_n = ours(torch.tensor([-1, -1, 2]))  # (T,) unbatched indices
    assert out.shape == (3, H) and h_n.shape == (1, H)
    assert (out[:2] == 0).all(), "zero inputs from h0 = 0 without bias stay zero"
    dense = torch.zeros(3, D, dtype=torch.float64)
    dense[2, 2] = 1.0  # rows: zero vector, zero vector, e_2
    expected_out, expected_h_n = theirs(dense)
    torch.testing.assert_close(out, expected_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n, expected_h_n, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# RNNCell vs nn.RNNCell
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["no_hx", "hx"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_rnn_cell_matches_torch_nn_rnn_cell(bias, nonlinearity, batched, with_hx, dtype):
    ours, theirs = pair(RNNCell, nn.RNNCell, D, H, bias=bias, nonlinearity=nonlinearity, dtype=dtype)
    g = seeded(10)
    x = random(*((3, D) if batched else (D,)), dtype=dtype, gen=g).requires_grad_()
    hx = random(*((3, H) if batched else (H,)), dtype=dtype, gen=g).requires_grad_() if with_hx else None
    ours_out, theirs_out = (ours(x, hx),), (theirs(x, hx),)
    assert ours_out[0].shape == theirs_out[0].shape
    douts = [random(*theirs_out[0].shape, dtype=dtype, gen=g)]
    inputs = [x] + ([hx] if with_hx else [])
    assert_same(ours_out, theirs_out, grads_of(ours, ours_out, douts, inputs),
                grads_of(theirs, theirs_out, douts, inputs), dtype)


# ----------------------------------------------------------------------------------------------------------
# Module API
# ----------------------------------------------------------------------------------------------------------
API_CONFIGS = [dict(), dict(num_layers=3), dict(bidirectional=True, num_layers=2), dict(bias=False),
               dict(num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True),
               dict(nonlinearity="relu", dropout=0.25, num_layers=2)]
CELL_CONFIGS = [dict(), dict(bias=False), dict(nonlinearity="relu"), dict(bias=False, nonlinearity="relu")]


def built_alike(ours_class, theirs_class, config, seed):
    """Our module and torch's, each built under ``seed``, after checking: the same parameter names, shapes and
    order, equal values (the same initialisation) and the same repr."""
    torch.manual_seed(seed)
    ours = ours_class(D, H, **config)
    torch.manual_seed(seed)
    theirs = theirs_class(D, H, **config)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]
    for (name, a), (_, e) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert torch.equal(a, e), f"{name}: same seed, same initialisation"
    assert repr(ours) == repr(theirs)
    return ours, theirs


@pytest.mark.parametrize("config", API_CONFIGS)
def test_rnn_parameters_names_shapes_order_init_repr_match_torch(config):
    ours, theirs = built_alike(RNN, nn.RNN, config, seed=11)
    assert [[p.shape for p in group] for group in ours.all_weights] == \
        [[p.shape for p in group] for group in theirs.all_weights]
    for attribute in ("input_size", "hidden_size", "num_layers", "nonlinearity", "bias", "batch_first", "dropout",
                      "bidirectional", "proj_size"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute


@pytest.mark.parametrize("config", CELL_CONFIGS)
def test_rnn_cell_parameters_names_shapes_init_repr_match_torch(config):
    ours, theirs = built_alike(RNNCell, nn.RNNCell, config, seed=12)
    assert ours.state_dict().keys() == theirs.state_dict().keys()


@pytest.mark.parametrize("config", API_CONFIGS[:4])
def test_state_dict_loads_both_ways(config):
    ours, theirs = RNN(D, H, **config), nn.RNN(D, H, **config)
    x = random(4, 2, D, dtype=torch.float32, gen=seeded(13))
    ours.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], **TOL[torch.float32])
    fresh_ours, fresh_theirs = RNN(D, H, **config), nn.RNN(D, H, **config)
    fresh_theirs.load_state_dict(fresh_ours.state_dict())
    torch.testing.assert_close(fresh_theirs(x)[0], fresh_ours(x)[0], **TOL[torch.float32])
    cell, torch_cell = RNNCell(D, H), nn.RNNCell(D, H)
    torch_cell.load_state_dict(cell.state_dict())
    cell.load_state_dict(nn.RNNCell(D, H).state_dict())


def test_flatten_parameters_is_a_no_op():
    rnn = RNN(D, H, num_layers=2)
    x = random(4, 2, D, dtype=torch.float32, gen=seeded(14))
    before_params = [p.detach().clone() for p in rnn.parameters()]
    before = rnn(x)[0]
    assert rnn.flatten_parameters() is None
    assert all(torch.equal(a, p) for a, p in zip(before_params, rnn.parameters()))
    assert torch.equal(rnn(x)[0], before)


def test_to_float64_matches_torch_nn_rnn():
    ours, theirs = pair(RNN, nn.RNN, D, H, num_layers=2, bidirectional=True)
    ours, theirs = ours.to(torch.float64), theirs.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in ours.parameters())
    x = random(4, 2, D, dtype=torch.float64, gen=seeded(15))
    for a, e in zip(ours(x), theirs(x)):
        torch.testing.assert_close(a, e, **TOL[torch.float64])
    cell = RNNCell(D, H).double()
    assert cell(x[0]).dtype == torch.float64


# ----------------------------------------------------------------------------------------------------------
# The model's layers against torch
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
def test_temporal_affine_and_affine_match_linear(bias):
    torch.manual_seed(16)
    g = seeded(17)
    for ours_cls, shape in ((TemporalAffine, (2, 3, D)), (Affine, (2, D))):
        torch.manual_seed(16)
        ours = ours_cls(D, H, bias=bias, dtype=torch.float64)
        torch.manual_seed(16)
        theirs = nn.Linear(D, H, bias=bias, dtype=torch.float64)
        assert all(torch.equal(a, e) for a, e in zip(ours.parameters(), theirs.parameters())), "same init as Linear"
        assert repr(ours).split("(", 1)[1] == repr(theirs).split("(", 1)[1]
        x = random(*shape, dtype=torch.float64, gen=g).requires_grad_()
        ours_out, theirs_out = (ours(x),), (theirs(x),)
        douts = [torch.ones_like(theirs_out[0])]
        assert_same(ours_out, theirs_out, grads_of(ours, ours_out, douts, [x]),
                    grads_of(theirs, theirs_out, douts, [x]), torch.float64)


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int64, torch.float64])
def test_temporal_average_equals_masked_mean(mask_dtype):
    x = random(3, 4, D, dtype=torch.float64, gen=seeded(18)).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [0, 1, 1, 0]]).to(mask_dtype)
    out = TemporalAverage()(x, mask)
    m = mask.to(torch.float64).unsqueeze(-1)
    expected = (x * m).sum(1) / m.sum(1)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    douts = torch.randn(out.shape, dtype=torch.float64, generator=seeded(19))
    torch.testing.assert_close(torch.autograd.grad(out, x, douts)[0], torch.autograd.grad(expected, x, douts)[0])
