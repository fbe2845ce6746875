"""torch_rnn's custom ops (torch_rnn.ops) pass torch.library.opcheck on samples of every layout and option:
schema (what is mutated), fake kernels (shapes, strides and dtypes under FakeTensorMode), the registered
autograd, and AOT dispatch with dynamic shapes; the C++ loops' ops too, when they are built here."""
from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import torch_rnn
from torch_rnn import native, ops  # noqa: F401  (ops defines the torch_rnn:: ops)

T, N, D, H = 4, 3, 5, 6


def layer_sample(layout="time", lengths=None, packed=False, reverse=False, bias=True, nonlinearity="tanh",
                 dtype=torch.float64, onehot=False, n=N, h=H, d=D, unsorted_lengths=None, empty_steps=0):
    """Arguments of torch_rnn::rnn_layer: x in the given layout, weights that keep the states bounded."""
    gen = torch.Generator().manual_seed(0)
    if packed:
        # empty_steps: compiled code packs with one count per padded step, zero past the longest row
        batch_sizes = torch.tensor([n, n, n - 1, 1] + [0] * empty_steps)
        rows = int(batch_sizes.sum())
        x = torch.randint(-1, d, (rows,), generator=gen) if onehot else torch.randn(rows, d, dtype=dtype, generator=gen)
    else:
        # rows sorted by length: batch_sizes[t] rows run at step t
        batch_sizes = None if lengths is None else (torch.tensor(lengths) > torch.arange(T).unsqueeze(1)).sum(1)
        shape = (n, T) if layout == "batch" else (T, n)
        if onehot:
            x = torch.randint(-1, d, shape, generator=gen)
        else:
            x = torch.randn(*shape, d, dtype=dtype, generator=gen)
        if layout == "batch":
            x = x.transpose(0, 1)  # (T, N, ...) view of batch-first memory
    lengths_ = None if unsorted_lengths is None else torch.tensor(unsorted_lengths)
    if not onehot:
        x.requires_grad_()
    weights = [torch.randn(n, h, dtype=dtype, generator=gen), torch.randn(h, d, dtype=dtype, generator=gen),
               0.5 * torch.randn(h, h, dtype=dtype, generator=gen) / h ** 0.5]
    h0, wx, wh = (w.requires_grad_() for w in weights)
    b = torch.randn(h, dtype=dtype, generator=gen, requires_grad=True) if bias else None
    return (x, h0, wx, wh, b, nonlinearity, batch_sizes, lengths_, reverse)


LAYER_SAMPLES = {
    "time-major": layer_sample(),
    "batch-first view": layer_sample(layout="batch"),
    "packed": layer_sample(packed=True),
    "packed reverse": layer_sample(packed=True, reverse=True),
    "packed, batch_sizes ending in zeros, reverse": layer_sample(packed=True, reverse=True, empty_steps=2),
    "padded lengths": layer_sample(lengths=[T, T, 2]),
    "padded lengths, no row running the last step": layer_sample(lengths=[3, 3, 1]),
    "batch-first lengths reverse": layer_sample(layout="batch", lengths=[T, 2, 1], reverse=True),
    "relu, no bias": layer_sample(bias=False, nonlinearity="relu"),
    "reverse": layer_sample(reverse=True),
    "one-hot": layer_sample(onehot=True),
    "one-hot batch-first": layer_sample(onehot=True, layout="batch"),
    "one-hot packed": layer_sample(onehot=True, packed=True),
    "float32": layer_sample(dtype=torch.float32),
    "float32 batch-first reverse": layer_sample(dtype=torch.float32, layout="batch", reverse=True),
    # 32 rows and more: the C++ loops split the rows between threads (float32 panels)
    "float32, 40 rows": layer_sample(dtype=torch.float32, n=40, h=20, d=20),
    "float32, 40 rows, batch-first": layer_sample(dtype=torch.float32, layout="batch", n=40, h=20, d=20),
    # W_x and W_h too large for a core's cache (csrc panels_fit_in_cache): the input's products leave the loop
    "float32, 40 rows, weights beyond the cache": layer_sample(dtype=torch.float32, n=40, h=600, d=600),
    "complex128": layer_sample(dtype=torch.complex128),
    "lengths (the op packs)": layer_sample(unsorted_lengths=[2, T, 1]),
    "batch-first lengths reverse (the op packs)": layer_sample(layout="batch", unsorted_lengths=[2, T, 3],
                                                               reverse=True),
    "one-hot lengths": layer_sample(onehot=True, unsorted_lengths=[1, 3, T]),
    "float32, 40 rows, lengths": layer_sample(dtype=torch.float32, n=40, h=20, d=20,
                                              unsorted_lengths=[(i % T) + 1 for i in range(40)]),
}


@pytest.mark.parametrize("sample", LAYER_SAMPLES.values(), ids=LAYER_SAMPLES.keys())
def test_rnn_layer_passes_opcheck(sample):
    torch.library.opcheck(torch.ops.torch_rnn.rnn_layer.default, sample)


@pytest.mark.parametrize("mask", [(True,) * 5, (False, True, False, True, False), (True, False, True, False, True)])
@pytest.mark.parametrize("name", ["time-major", "batch-first view", "packed reverse", "one-hot", "float32, 40 rows",
                                  "batch-first lengths reverse (the op packs)"])
def test_rnn_layer_backward_passes_opcheck(name, mask):
    x, h0, wx, wh, b, nonlinearity, batch_sizes, lengths, reverse = LAYER_SAMPLES[name]
    h, h_last = torch.ops.torch_rnn.rnn_layer(x, h0, wx, wh, b, nonlinearity, batch_sizes, lengths, reverse)
    dh, dh_last = torch.randn_like(h), torch.randn_like(h_last)
    args = (dh, dh_last, x.detach(), h0.detach(), wx.detach(), wh.detach(), h.detach(), nonlinearity, batch_sizes,
            lengths, reverse, list(mask))
    torch.library.opcheck(torch.ops.torch_rnn.rnn_layer_backward.default, args)
    grads = torch.ops.torch_rnn.rnn_layer_backward(*args)
    needed = [m and (i != 0 or x.is_floating_point()) for i, m in enumerate(mask)]
    assert [g is not None for g in grads] == needed


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_rnn_cell_passes_opcheck(bias, dtype):
    x, h0, wx, wh, b, nonlinearity, *_ = layer_sample(bias=bias, dtype=dtype)
    torch.library.opcheck(torch.ops.torch_rnn.rnn_cell.default, (x[0].detach().requires_grad_(), h0, wx, wh, b,
                                                                  nonlinearity))


def native_forward_sample(name):
    x, h0, wx, wh, b, nonlinearity, batch_sizes, _, reverse = (a.detach() if isinstance(a, torch.Tensor) else a
                                                              for a in LAYER_SAMPLES[name])
    sizes = [] if batch_sizes is None else batch_sizes.tolist()
    p = torch.empty(*x.shape[:-1], wh.shape[0], dtype=x.dtype)
    return p, x, h0, wx, wh, b, nonlinearity == "relu", sizes, reverse


@pytest.mark.parametrize("name", ["time-major", "packed reverse", "padded lengths", "float32", "float32, 40 rows",
                                  "float32, 40 rows, weights beyond the cache"])
@pytest.mark.parametrize("projects", [True, False])
def test_the_cpp_loops_pass_opcheck(name, projects):
    if native.ops() is None:
        pytest.skip("the C++ loops are not built here (tests/test_native.py checks that they build)")
    p, x, h0, wx, wh, b, relu, sizes, reverse = native_forward_sample(name)
    extra = (x, wx.T.contiguous()) if projects else ()
    if not projects:
        p = x @ wx.T
    torch.library.opcheck(torch.ops.torch_rnn.recurrence_forward_.default,
                          (p, h0, wh.T.contiguous(), b, relu, sizes, reverse, *extra))
    h = p.clone()
    torch.ops.torch_rnn.recurrence_forward_(h, h0, wh.T.contiguous(), b, relu, sizes, reverse, *extra)
    for need_dh0 in (True, False):
        backward_extra = (wx,) if projects else ()
        torch.library.opcheck(torch.ops.torch_rnn.recurrence_backward.default,
                              (torch.randn_like(h), torch.randn_like(h0), wh, h, relu, sizes, reverse, need_dh0,
                               *backward_extra))


@pytest.mark.parametrize("config", [dict(), dict(num_layers=2, bidirectional=True, batch_first=True)])
def test_rnn_runs_under_fake_tensor_mode(config):
    rnn = torch_rnn.RNN(D, H, **config)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        x = mode.from_tensor(torch.randn(N, T, D) if config.get("batch_first") else torch.randn(T, N, D))
        output, h_n = rnn(x)
    directions = 2 if config.get("bidirectional") else 1
    assert output.shape[-1] == directions * H and h_n.shape == (config.get("num_layers", 1) * directions, N, H)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("leading", [(4,), (4, 5)])
def test_affine_passes_opcheck(leading, bias):
    x = torch.randn(*leading, D, dtype=torch.float64, requires_grad=True)
    w = torch.randn(H, D, dtype=torch.float64, requires_grad=True)
    b = torch.randn(H, dtype=torch.float64, requires_grad=True) if bias else None
    torch.library.opcheck(torch.ops.torch_rnn.affine.default, (x, w, b))


def test_temporal_average_and_softmax_loss_pass_opcheck():
    x = torch.randn(N, T, H, dtype=torch.float64, requires_grad=True)
    mask = (torch.arange(T) < torch.tensor([T, 2, 1]).unsqueeze(1)).to(torch.float64)
    torch.library.opcheck(torch.ops.torch_rnn.temporal_average.default, (x, mask))
    scores = torch.randn(N, 4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.torch_rnn.softmax_loss.default, (scores, torch.tensor([0, 3, 1])))


@pytest.mark.parametrize("layout", ["time-major", "batch-first", "one-hot"])
def test_pack_and_unpack_by_lengths_pass_opcheck(layout):
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([2, T, 1])
    if layout == "one-hot":
        x = torch.randint(-1, D, (T, N), generator=gen)
    else:
        x = torch.randn(N, T, D, dtype=torch.float64, generator=gen).transpose(0, 1)  # (T, N, D) batch-first view
        x = x if layout == "batch-first" else x.contiguous().requires_grad_()
    torch.library.opcheck(torch.ops.torch_rnn.pack_by_lengths.default, (x, lengths))
    packed = torch.ops.torch_rnn.pack_by_lengths(x, lengths)  # (R, ...) step by step, longest row first
    assert packed.shape[0] == int(lengths.sum())
    assert torch.equal(packed[:3], x[0, [1, 0, 2]])  # step 0: the rows sorted by length, stably
    values = torch.randn(packed.shape[0], H, dtype=torch.float64, generator=gen, requires_grad=True)
    torch.library.opcheck(torch.ops.torch_rnn.unpack_by_lengths.default, (values, lengths, x))
    unpacked = torch.ops.torch_rnn.unpack_by_lengths(values, lengths, x)  # (T, N, H) laid out like x
    assert unpacked.stride() == torch_rnn.layout.sequence_buffer(x, H, values.dtype).stride()
    assert torch.equal(torch.ops.torch_rnn.pack_by_lengths(unpacked, lengths), values)
    assert not unpacked[2:, 0].any() and not unpacked[1:, 2].any()  # zero past each row's length


@pytest.mark.parametrize("padding_idx", [-1, 0])
def test_embedding_ops_pass_opcheck(padding_idx):
    weight = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    indices = torch.tensor([[0, 3, 3], [6, 0, 1]])
    torch.library.opcheck(torch.ops.torch_rnn.embedding.default, (weight, indices, padding_idx))
    dout = torch.randn(2, 3, 3, dtype=torch.float64)
    torch.library.opcheck(torch.ops.torch_rnn.embedding_backward.default, (dout, indices, 7, padding_idx))
    (expected,) = torch.autograd.grad(torch.nn.functional.embedding(indices, weight, padding_idx=padding_idx
                                                                    if padding_idx >= 0 else None), weight, dout)
    torch.testing.assert_close(torch.ops.torch_rnn.embedding_backward(dout, indices, 7, padding_idx), expected)


@pytest.mark.parametrize("name", ["time-major", "batch-first lengths reverse (the op packs)", "packed reverse",
                                  "float32, 40 rows"])
def test_rnn_layer_passes_opcheck_with_the_python_loops(name, monkeypatch):
    monkeypatch.setenv("TORCH_RNN_NATIVE", "0")
    torch.library.opcheck(torch.ops.torch_rnn.rnn_layer.default, LAYER_SAMPLES[name])
