"""The same RNN on a CUDA device: agreement with the CPU and double backward (which cuDNN's RNN cannot do).

Skipped on machines without a GPU.
"""
import pytest
import torch
from torch.autograd import gradgradcheck
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torch_rnn import RNN, RNNCell
from torch_rnn.models import SentimentRNN

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-5), (torch.float64, 1e-10)], ids=["f32", "f64"])
def test_rnn_on_cuda_equals_cpu_with_lengths_and_packing(dtype, tol):
    torch.manual_seed(0)
    cpu = RNN(5, 7, num_layers=2, bidirectional=True, batch_first=True, dtype=dtype)
    gpu = RNN(5, 7, num_layers=2, bidirectional=True, batch_first=True, dtype=dtype).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(4, 6, 5, dtype=dtype)
    lengths = torch.tensor([3, 6, 1, 4])
    for module, data in ((cpu, x), (gpu, x.cuda())):
        data.requires_grad_(True)
        output, h_n = module(data, lengths=lengths)
        (output.sin().sum() + h_n.cos().sum()).backward()
    torch.testing.assert_close(gpu.weight_hh_l1_reverse.grad.cpu(), cpu.weight_hh_l1_reverse.grad, atol=tol, rtol=tol)
    packed = pack_padded_sequence(x.cuda(), lengths, batch_first=True, enforce_sorted=False)
    packed_output, _ = gpu(packed)
    padded, _ = pad_packed_sequence(packed_output, batch_first=True)
    expected, _ = cpu(x, lengths=lengths)
    torch.testing.assert_close(padded.cpu(), expected[:, : padded.shape[1]], atol=tol, rtol=tol)


def test_double_backward_on_cuda():
    torch.manual_seed(0)
    rnn = RNN(3, 4, dtype=torch.float64).cuda()
    cell = RNNCell(3, 4, dtype=torch.float64).cuda()
    x = torch.randn(5, 2, 3, dtype=torch.float64, device="cuda", requires_grad=True)
    assert gradgradcheck(lambda inp: rnn(inp)[0], (x,))
    assert gradgradcheck(lambda inp: cell(inp), (x[0].detach().requires_grad_(),))


def test_sentiment_model_on_cuda():
    model = SentimentRNN(20, hidden_size=8, fc_size=8, input_mode="onehot").cuda()
    tokens = torch.randint(1, 20, (3, 6), device="cuda")
    mask = torch.ones(3, 6, device="cuda")
    mask[1, 4:] = 0
    tokens[1, 4:] = 0
    assert model(tokens, mask).shape == (3, 2)
