"""The same RNN on a CUDA device: agreement with the CPU, gradcheck, the fast path against the reference path,
double backward (which cuDNN's RNN cannot do), per-sample gradients with vmap, and a Lightning fit on the GPU.

Skipped on machines without a GPU.
"""
import json

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call, grad, vmap
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torch_rnn import RNN, RNNCell
from torch_rnn.models import SentimentRNN

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


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


def test_gradcheck_of_module_parameters_on_cuda_with_lengths():
    """Every gradient by hand on the GPU: reverse, forward-mode and batched gradients against finite differences."""
    torch.manual_seed(1)
    rnn = RNN(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64).cuda()
    names = [name for name, _ in rnn.named_parameters()]
    x = torch.randn(4, 3, 3, dtype=torch.float64, device="cuda", requires_grad=True)
    lengths = torch.tensor([4, 2, 3])

    def run(inp, *params):
        output, h_n = functional_call(rnn, dict(zip(names, params)), (inp,), {"lengths": lengths})
        return output, h_n

    params = [p.detach().requires_grad_() for p in rnn.parameters()]
    assert gradcheck(run, (x, *params), check_forward_ad=True, check_batched_grad=True)


def test_fast_path_equals_reference_path_on_cuda():
    """The in-place kernels (ordinary backward) against the reference functions (create_graph) on the GPU."""
    torch.manual_seed(2)
    rnn = RNN(5, 6, num_layers=2, bidirectional=True, dtype=torch.float64).cuda()
    x = torch.randn(7, 3, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    output, h_n = rnn(x, lengths=torch.tensor([7, 3, 5]))
    loss = output.sin().sum() + h_n.sum()
    wrt = [x, *rnn.parameters()]
    fast = torch.autograd.grad(loss, wrt, retain_graph=True)
    reference = torch.autograd.grad(loss, wrt, create_graph=True)
    for f, r in zip(fast, reference):
        torch.testing.assert_close(f, r, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        inference, _ = rnn(x, lengths=torch.tensor([7, 3, 5]))
    torch.testing.assert_close(inference, output.detach(), rtol=1e-12, atol=1e-12)


def test_per_sample_gradients_with_vmap_on_cuda():
    torch.manual_seed(3)
    rnn = RNN(3, 4, bidirectional=True, dtype=torch.float64).cuda()
    samples = torch.randn(5, 6, 3, dtype=torch.float64, device="cuda")  # 5 samples of (T=6, D=3)
    params = {name: p.detach() for name, p in rnn.named_parameters()}

    def loss(ps, x):
        output, h_n = functional_call(rnn, ps, (x.unsqueeze(1),))
        return (output ** 2).sum() + h_n.sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, samples)
    for i, sample in enumerate(samples):
        expected = grad(loss)(params, sample)
        for name in params:
            torch.testing.assert_close(per_sample[name][i], expected[name], rtol=1e-10, atol=1e-10)


def test_lightning_fit_on_gpu_then_predict_from_the_checkpoint_on_cpu(tmp_path, capsys):
    """train.py's stack on a GPU; the checkpoint then classifies with the trained model's probabilities."""
    from lightning_module.cli import SentimentCLI
    from lightning_module.datamodule import SentimentDataModule
    from lightning_module.module import SentimentClassifier
    from lightning_module.predict_cli import main as predict_main
    from fit_helpers import small_fit_args, write_tsv

    data = write_tsv(tmp_path / "small.tsv")
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule,
                       args=small_fit_args(data, tmp_path, "--trainer.accelerator", "gpu", "--trainer.devices", "1"),
                       auto_configure_optimizers=False, save_config_kwargs={"overwrite": True})
    assert cli.trainer.strategy.root_device.type == "cuda"  # trained there; Lightning hands the model back on the CPU
    sentences = ["a wonderful film", "boring and ugly"]
    batch = cli.datamodule.encode_texts(sentences)
    model = cli.model.eval()
    with torch.no_grad():
        expected = model(batch["tokens"], batch["mask"]).softmax(dim=1)
    checkpoint = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    predict_main([str(checkpoint), *sentences, "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for row, probabilities in zip(rows, expected):
        assert row["probability"] == pytest.approx(float(probabilities.max()), abs=1e-5)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_model_on_cuda_equals_eager(backend):
    """torch.compile on the GPU: the ops' CUDA kernels are the Python loops, registered the same way."""
    from test_pytorch2 import Tagger, assert_same_run, tokens

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = Tagger().cuda()
    compiled = torch.compile(model, backend=backend, fullgraph=True, dynamic=True)
    for N, T in [(4, 7), (3, 10)]:
        assert_same_run(model, compiled, tokens(N, T).cuda())
    lengths = torch.tensor([3, 7, 5, 2], device="cuda")
    assert_same_run(model, compiled, tokens(4, 8).cuda(), lengths)


def test_autocast_float16_on_cuda_follows_nn_rnn():
    torch.manual_seed(0)
    ours, theirs = RNN(3, 4, num_layers=2).cuda(), torch.nn.RNN(3, 4, num_layers=2).cuda()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(5, 2, 3, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        (out, h_n), (expected, expected_h_n) = ours(x), theirs(x)
    assert out.dtype == expected.dtype and h_n.dtype == expected_h_n.dtype
    torch.testing.assert_close(out.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_export_on_cuda_equals_eager():
    model = RNN(3, 4, bidirectional=True, batch_first=True).cuda().eval()
    x = torch.randn(2, 6, 3, device="cuda")
    program = torch.export.export(model, (x,))
    for a, e in zip(program.module()(x), model(x)):
        torch.testing.assert_close(a, e)
