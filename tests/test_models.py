"""torch_rnn.models: SentimentRNN's shapes in every input mode, the one-hot model against the same computation
built by hand from torch.nn.RNN and dense one-hot vectors, skip_padding's equivalence, the assignment's
linspace initialisation (shared/datasets/cs5242-si650/README.md), bad arguments, and softmax_loss against
F.cross_entropy."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch import nn
from torch.func import functional_call

from helpers import seeded
from torch_rnn.models import SentimentRNN, softmax_loss

V, H, A, C = 7, 5, 4, 3  # vocab_size counts padding id 0: 6 words
LENGTHS = [5, 2, 4, 1]
N, T = len(LENGTHS), 5


def batch(lengths=LENGTHS, T_=T, seed=0):
    """Token ids in 1..V-1 on the real steps, 0 on padding, and the matching prefix mask."""
    g = seeded(seed)
    mask = (torch.arange(T_).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).long()  # (N, T)
    tokens = torch.randint(1, V, (len(lengths), T_), generator=g) * mask
    return tokens, mask


def model(**kwargs):
    torch.manual_seed(1)
    return SentimentRNN(V, hidden_size=H, fc_size=A, num_classes=C, **kwargs)


@pytest.mark.parametrize("input_mode", ["onehot", "embedding", "pretrained"])
@pytest.mark.parametrize("config", [dict(), dict(num_layers=2, bidirectional=True, dropout=0.3)], ids=["1", "2_bidir"])
def test_forward_shapes_and_backward_in_every_input_mode(input_mode, config):
    extra = dict(pretrained_vectors=torch.randn(V, 6)) if input_mode == "pretrained" else {}
    net = model(input_mode=input_mode, **config, **extra)
    tokens, mask = batch()
    scores = net(tokens, mask)
    assert scores.shape == (N, C) and torch.isfinite(scores).all()
    softmax_loss(scores, torch.tensor([0, 1, 2, 1])).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    expected_input = {"onehot": V - 1, "embedding": 100, "pretrained": 6}[input_mode]
    assert net.rnn.input_size == expected_input


def test_frozen_pretrained_embedding_gets_no_gradient():
    vectors = torch.randn(V, 6)
    net = model(input_mode="pretrained", pretrained_vectors=vectors, freeze_embedding=True)
    assert not net.embedding.weight.requires_grad
    torch.testing.assert_close(net.embedding.weight, vectors)


def reference_scores(net, tokens, mask):
    """The report's model by hand: dense one-hot ``e_{k-1}`` (zero for padding) -> torch.nn.RNN over all ``T``
    steps from h0 = 0 -> per-step affine -> masked mean -> affine, using the model's own weights."""
    rnn = nn.RNN(V - 1, H, batch_first=True)
    params = dict(net.rnn.named_parameters())  # the model's own tensors, so gradients reach them
    x = TF.one_hot(tokens, V)[..., 1:].float()  # (N, T, V - 1); id 0 -> zero vector
    h, _ = functional_call(rnn, params, (x,))
    a = h @ net.temporal_affine.weight.T + net.temporal_affine.bias  # (N, T, A)
    m = mask.float().unsqueeze(-1)
    features = (a * m).sum(1) / m.sum(1)
    return features @ net.classifier.weight.T + net.classifier.bias


@pytest.mark.parametrize("skip_padding", [True, False])
@pytest.mark.parametrize("init", ["pytorch", "assignment"])
def test_onehot_model_equals_explicit_dense_computation(init, skip_padding):
    net = model(input_mode="onehot", init=init, skip_padding=skip_padding)
    tokens, mask = batch()
    scores = net(tokens, mask)
    expected = reference_scores(net, tokens, mask)
    torch.testing.assert_close(scores, expected, rtol=2e-5, atol=2e-5)
    labels = torch.tensor([0, 2, 1, 1])
    params = [p for p in net.parameters() if p.requires_grad]
    ours = torch.autograd.grad(softmax_loss(scores, labels), params)
    theirs = torch.autograd.grad(TF.cross_entropy(expected, labels), params)
    for a, e in zip(ours, theirs):
        torch.testing.assert_close(a, e, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("config", [dict(input_mode="onehot"), dict(input_mode="embedding", num_layers=2),
                                    dict(input_mode="onehot", nonlinearity="relu")],
                         ids=["onehot", "embedding_2_layers", "onehot_relu"])
def test_skip_padding_gives_same_scores_and_gradients_for_one_direction(config):
    skipping, full = model(skip_padding=True, **config), model(skip_padding=False, **config)
    full.load_state_dict(skipping.state_dict())
    tokens, mask = batch()
    labels = torch.tensor([1, 0, 2, 0])
    losses = [softmax_loss(net(tokens, mask), labels) for net in (skipping, full)]
    torch.testing.assert_close(skipping(tokens, mask), full(tokens, mask), rtol=1e-5, atol=1e-6)
    for loss in losses:
        loss.backward()
    for (name, a), (_, e) in zip(skipping.named_parameters(), full.named_parameters()):
        torch.testing.assert_close(a.grad, e.grad, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_skip_padding_bidirectional_reverse_starts_at_last_real_token():
    """With skip_padding the reverse direction reads only the real tokens: padding cannot change the scores."""
    net = model(bidirectional=True)
    tokens, mask = batch(lengths=[3, 2], T_=3)
    longer_tokens = torch.cat([tokens, torch.zeros(2, 4, dtype=torch.long)], 1)
    longer_mask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(net(longer_tokens, longer_mask), net(tokens, mask), rtol=1e-5, atol=1e-6)


def test_non_prefix_mask_raises_with_skip_padding():
    tokens, _ = batch(lengths=[3, 3])
    mask = torch.tensor([[1, 0, 1, 0, 0], [1, 1, 1, 0, 0]])
    with pytest.raises(ValueError, match="1s followed by 0s"):
        model(skip_padding=True)(tokens, mask)
    assert model(skip_padding=False)(tokens, mask).shape == (2, C)


def linspace_entry(start, stop, count, k):
    """``numpy.linspace(start, stop, count)[k]``, by its formula."""
    return start + k * (stop - start) / (count - 1)


def test_assignment_init_sets_the_documented_linspace_values():
    net = model(init="assignment")
    W = V - 1  # words; the README's V

    def original(start, stop, rows, cols, scale):  # the README's (in, out) array, numpy's linspace
        return np.linspace(start, stop, rows * cols).reshape(rows, cols) / scale

    expected = {
        "rnn.weight_ih_l0": original(-0.2, 0, W, H, math.sqrt(W)).T,
        "rnn.weight_hh_l0": original(0.2, 0.5, H, H, math.sqrt(H)).T,
        "rnn.bias_ih_l0": np.linspace(0.2, 0.5, H),
        "rnn.bias_hh_l0": np.zeros(H),
        "temporal_affine.weight": original(-0.3, 0.3, H, A, math.sqrt(2 * H)).T,
        "temporal_affine.bias": np.linspace(-0.1, -0.3, A),
        "classifier.weight": original(-0.5, 0.5, A, C, math.sqrt(A)).T,
        "classifier.bias": np.linspace(-0.5, 0.5, C),
    }
    params = dict(net.named_parameters())
    assert set(expected) == set(params)
    for name, value in expected.items():
        torch.testing.assert_close(params[name].detach(), torch.from_numpy(value).float(), msg=lambda m: f"{name}: {m}")
    # a few entries by the closed formula, in the equations' (out, in) layout: W_x[j, i] = Wx_orig[i, j]
    Wx = net.rnn.weight_ih_l0.detach().double()
    for i, j in ((0, 0), (W - 1, H - 1), (2, 3)):
        assert Wx[j, i].item() == pytest.approx(linspace_entry(-0.2, 0, W * H, i * H + j) / math.sqrt(W), rel=1e-6)
    Wh = net.rnn.weight_hh_l0.detach().double()
    assert Wh[1, 3].item() == pytest.approx(linspace_entry(0.2, 0.5, H * H, 3 * H + 1) / math.sqrt(H), rel=1e-6)
    assert net.classifier.bias[-1].item() == pytest.approx(0.5)


def test_assignment_init_freezes_zero_bias_hh():
    net = model(init="assignment")
    assert not net.rnn.bias_hh_l0.requires_grad
    assert (net.rnn.bias_hh_l0 == 0).all()
    tokens, mask = batch()
    softmax_loss(net(tokens, mask), torch.tensor([0, 1, 1, 2])).backward()
    assert net.rnn.bias_hh_l0.grad is None
    assert net.rnn.bias_ih_l0.grad is not None
    assert sorted(n for n, p in net.named_parameters() if not p.requires_grad) == ["rnn.bias_hh_l0"]


@pytest.mark.parametrize("kwargs", [dict(input_mode="embedding"), dict(num_layers=2), dict(bidirectional=True),
                                    dict(nonlinearity="relu")], ids=["embedding", "2_layers", "bidir", "relu"])
def test_assignment_init_needs_the_reports_architecture(kwargs):
    with pytest.raises(ValueError, match="init='assignment' needs"):
        model(init="assignment", **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_mode="glove"), r"unknown input_mode 'glove'"),
    (dict(init="xavier"), r"unknown init 'xavier'"),
    (dict(input_mode="pretrained"), r"pretrained_vectors of shape \(7, E\), got None"),
    (dict(input_mode="pretrained", pretrained_vectors=torch.randn(V + 1, 4)), r"shape \(7, E\), got \(8, 4\)"),
    (dict(input_mode="pretrained", pretrained_vectors=torch.randn(V)), r"shape \(7, E\), got \(7,\)"),
], ids=["input_mode", "init", "pretrained_missing", "pretrained_rows", "pretrained_1d"])
def test_bad_constructor_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        model(**kwargs)


def test_bad_forward_inputs_raise():
    net = model()
    tokens, mask = batch()
    with pytest.raises(ValueError, match="tokens must be an \\(N, T\\) integer tensor"):
        net(tokens.float(), mask)
    with pytest.raises(ValueError, match="mask must have the shape of tokens"):
        net(tokens, mask[:, :3])
    empty_row = torch.cat([mask[:3], torch.zeros(1, T, dtype=torch.long)])
    for skip_padding in (False, True):
        with pytest.raises(ValueError, match=r"mask rows \[3\] have no real step"):
            model(skip_padding=skip_padding)(tokens, empty_row)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_softmax_loss_equals_cross_entropy_and_its_gradient(dtype):
    g = seeded(2)
    scores = torch.randn(6, C, dtype=dtype, generator=g, requires_grad=True)
    labels = torch.randint(0, C, (6,), generator=g)
    loss, expected = softmax_loss(scores, labels), TF.cross_entropy(scores, labels)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss, expected, **tol)
    torch.testing.assert_close(torch.autograd.grad(loss, scores)[0], torch.autograd.grad(expected, scores)[0], **tol)


def test_softmax_loss_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"scores \(N, C\) and labels \(N,\).*\(4, 3\) and \(5,\)"):
        softmax_loss(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("num_classes, bidirectional, input_mode", [(2, False, "embedding"), (3, True, "embedding"),
                                                                    (2, False, "onehot")])
def test_contributions_and_bias_sum_to_the_scores(num_classes, bidirectional, input_mode):
    """scores = bias + sum_t (m_t / L) W_fc W_a h_t, exactly; padding steps contribute nothing."""
    torch.manual_seed(0)
    model = SentimentRNN(30, 8, 6, num_classes, input_mode=input_mode, embedding_dim=5,
                         bidirectional=bidirectional, dropout=0.5).eval()
    lengths = torch.tensor([7, 3, 1, 5])
    mask = (torch.arange(7) < lengths[:, None]).float()
    tokens = torch.randint(1, 30, (4, 7)) * mask.long()
    contributions, bias = model.contributions(tokens, mask)
    assert contributions.shape == (4, 7, num_classes) and bias.shape == (4, num_classes)
    torch.testing.assert_close(bias + contributions.sum(1), model(tokens, mask), rtol=1e-5, atol=1e-6)
    assert contributions[mask == 0].abs().max() == 0


def test_a_step_contribution_is_its_weighted_projection():
    """Step t's share, recomputed from the layers' weights: (1/L) W_fc W_a h_t."""
    torch.manual_seed(1)
    model = SentimentRNN(20, 6, 4, 2, input_mode="embedding", embedding_dim=3).eval()
    tokens, mask = torch.randint(1, 20, (1, 4)), torch.ones(1, 4)
    h, _ = model.rnn(model.embedding(tokens))  # (1, 4, 6)
    expected = (model.classifier.weight @ model.temporal_affine.weight @ h[0, 2]) / 4
    torch.testing.assert_close(model.contributions(tokens, mask)[0][0, 2], expected)
