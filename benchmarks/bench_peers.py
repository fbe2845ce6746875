"""torch_rnn against its peers: nn.RNN, JAX (XLA) and ONNX Runtime, with identical weights (float32, CPU).

Needs the ``peers`` extra (``pip install -e .[peers]``: jax[cpu]; onnx, onnxscript, onnxruntime).

Per row (the ``(N, T, D, H)`` shapes of ``bench_rnn.py``, ``tanh``, time-major, and a two-layer bidirectional
row) and implementation:

- **train**: one training step, loss ``output.sum() + h_n.sum()``, gradients of the weights and the input:
  torch_rnn and nn.RNN as ``bench_rnn.py`` times them; JAX as ``jit(value_and_grad(loss))`` of a ``lax.scan``
  over the steps with the input projection ``x W_x^T + b`` hoisted out of the scan (one matmul), compile time
  excluded;
- **fwd**: inference: torch_rnn and nn.RNN under ``no_grad``, JAX's jitted forward, and ONNX Runtime running
  torch_rnn's ONNX export (:mod:`torch_rnn.onnx`: the standard ``RNN`` operator, one per layer).

Before timing, every implementation's output (and JAX's gradients) are checked against torch_rnn's (1e-4
relative); the run stops otherwise. Each thread count runs in its own process, so that XLA, ONNX Runtime and
torch all get the same number of threads: ``--threads 1`` also pins the process to one core. Times are medians
over interleaved rounds (``timing.time_interleaved``), in ms; ratios are torch_rnn / peer (below 1:
torch_rnn is faster). The last lines say whether the targets hold: torch_rnn at most 0.6x of JAX in training and
inference, and at most 0.5x of ONNX Runtime, at every row.

Run from the repository root::

    python benchmarks/bench_peers.py               # 1 and 2 threads, each in a fresh process
    python benchmarks/bench_peers.py --threads 1 --quick
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from markdown_tables import Column, markdown_table

TOLERANCE = 1e-4
JAX_LIMIT, ORT_LIMIT = 0.6, 0.5  # the targets: torch_rnn / peer
CASES = ["32,50,64,128", "64,100,128,256", "16,200,300,512", "100,30,50,64", "1,1000,32,32", "256,50,128,128",
         "32,50,64,128 L2 bi"]


def configure_threads(threads: int) -> None:
    """Every library in this process to ``threads`` intra-op threads (before jax or onnxruntime start)."""
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                               + ("false intra_op_parallelism_threads=1" if threads == 1 else "true")).strip()
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if threads == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one pinned core for everyone


def parse_case(text: str) -> tuple[int, int, int, int, int, bool]:
    """``"N,T,D,H"`` or ``"N,T,D,H L2 bi"`` -> (N, T, D, H, layers, bidirectional)."""
    shape, *options = text.split()
    N, T, D, H = (int(v) for v in shape.split(","))
    layers = next((int(o[1:]) for o in options if o.startswith("L")), 1)
    return N, T, D, H, layers, "bi" in options


def jax_rnn(num_layers: int, bidirectional: bool) -> tuple[Callable, Callable]:
    """JAX's forward ``(params, x) -> (output (T, N, dirs * H), h_n (L * dirs, N, H))`` and its jitted training
    step ``(params, x) -> (loss, (dparams, dx))``; params as ``[(W_x, W_h, b)]`` per layer and direction."""
    import jax
    import jax.numpy as jnp

    def direction(params, x, reverse):
        Wx, Wh, b = params
        p = x @ Wx.T + b  # (T, N, H), hoisted out of the scan

        def step(h, p_t):
            h = jnp.tanh(p_t + h @ Wh.T)
            return h, h

        h_last, h = jax.lax.scan(step, jnp.zeros((x.shape[1], Wh.shape[0]), x.dtype), p, reverse=reverse)
        return h, h_last

    def forward(params, x):
        h_n, layer_input = [], x
        for layer in range(num_layers):
            outputs = []
            for d in range(2 if bidirectional else 1):
                h, h_last = direction(params[layer * (2 if bidirectional else 1) + d], layer_input, d == 1)
                outputs.append(h)
                h_n.append(h_last)
            layer_input = jnp.concatenate(outputs, axis=-1)
        return layer_input, jnp.stack(h_n)

    def loss(params, x):
        output, h_n = forward(params, x)
        return output.sum() + h_n.sum()

    return jax.jit(forward), jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def onnx_session(rnn, x, threads: int):
    """An ONNX Runtime session of ``rnn``'s export (torch_rnn.onnx: the standard RNN operator)."""
    import onnxruntime
    import torch

    import torch_rnn.onnx  # noqa: F401  (registers the translation)

    program = torch.onnx.export(rnn, (x,), dynamo=True, verbose=False)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_peers_{os.getpid()}.onnx"
    program.save(str(path))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    path.unlink()
    return session


def run_threads(threads: int, cases: Sequence[str], quick: bool) -> str:
    """Times every case in this process with ``threads`` threads; a markdown table and the targets' verdict."""
    configure_threads(threads)
    import jax
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import timing
    import torch_rnn
    from cases import SEED

    torch.set_num_threads(threads)
    step_sets, labels = [], []
    for text in cases:
        N, T, D, H, layers, bi = parse_case(text)
        torch.manual_seed(SEED)
        ours = torch_rnn.RNN(D, H, num_layers=layers, bidirectional=bi)
        reference = torch.nn.RNN(D, H, num_layers=layers, bidirectional=bi)
        reference.load_state_dict(ours.state_dict())
        x = torch.randn(T, N, D, requires_grad=True)
        params = [tuple(jax.numpy.asarray(w.detach().numpy()) for w in (weights[0], weights[1], weights[2] + weights[3]))
                  for weights in ours.all_weights]
        x_jax = jax.numpy.asarray(x.detach().numpy())
        jax_forward, jax_train = jax_rnn(layers, bi)
        session = onnx_session(ours.eval(), x.detach(), threads)
        feed = {session.get_inputs()[0].name: x.detach().numpy()}
        check(ours, reference, x, jax_forward, jax_train, params, x_jax, session, feed, text)

        steps = row_steps(ours, reference, x, jax_forward, jax_train, params, x_jax, session, feed)
        for step in steps.values():
            step()  # warm-up (JAX compiles here)
        step_sets.append(steps)
        labels.append(f"({N},{T},{D},{H})" + (f" L{layers}" if layers > 1 else "") + (" bi" if bi else ""))
    settings = timing.QUICK if quick else timing.FULL
    medians, loads = timing.time_interleaved(step_sets, settings)
    return markdown(threads, labels, medians, loads, settings, np.__version__, jax.__version__)


def row_steps(ours, reference, x, jax_forward, jax_train, params, x_jax, session, feed) -> dict[str, Callable]:
    """The timed steps of one row, each bound to that row's models and inputs (``run_threads`` has put
    ``timing`` on the path)."""
    import jax

    import timing

    return {"torch_rnn train": timing.training_step(lambda: ours(x), [x, *ours.parameters()]),
            "nn.RNN train": timing.training_step(lambda: reference(x), [x, *reference.parameters()]),
            "JAX train": lambda: jax.block_until_ready(jax_train(params, x_jax)),
            "torch_rnn fwd": timing.inference_step(lambda: ours(x)),
            "nn.RNN fwd": timing.inference_step(lambda: reference(x)),
            "JAX fwd": lambda: jax.block_until_ready(jax_forward(params, x_jax)),
            "ONNX Runtime fwd": lambda: session.run(None, feed)}


def check(ours, reference, x, jax_forward, jax_train, params, x_jax, session, feed, what: str) -> None:
    """Every peer's output (and JAX's input gradient) within :data:`TOLERANCE` of torch_rnn's, relative."""
    import numpy as np
    import torch

    output, h_n = ours(x)
    (dx,) = torch.autograd.grad(output.sum() + h_n.sum(), x)
    expected = output.detach().numpy()
    with torch.no_grad():
        got = {"nn.RNN": reference(x)[0].numpy(), "JAX": np.asarray(jax_forward(params, x_jax)[0]),
               "ONNX Runtime": session.run(None, feed)[0]}
    got["JAX input gradient"] = np.asarray(jax_train(params, x_jax)[1][1])
    for name, value in got.items():
        want = dx.numpy() if name == "JAX input gradient" else expected
        error = np.abs(value.reshape(want.shape) - want).max() / max(1.0, np.abs(want).max())
        if not error <= TOLERANCE:
            sys.exit(f"bench_peers: {name} differs from torch_rnn at {what} by {error:.2e} (relative)")


MS, RATIO = "{:.3g}", "{:.2f}"
COLUMNS = [  # grouped by step: the times, then torch_rnn's ratios
    Column("row", "row", left=True),
    Column("torch_rnn train ms", "torch_rnn train", MS), Column("nn.RNN", "nn.RNN train", MS),
    Column("JAX", "JAX train", MS), Column("ours/JAX", "JAX train ratio", RATIO),
    Column("torch_rnn fwd ms", "torch_rnn fwd", MS), Column("nn.RNN", "nn.RNN fwd", MS), Column("JAX", "JAX fwd", MS),
    Column("ONNX Runtime", "ONNX Runtime fwd", MS),
    Column("ours/JAX", "JAX fwd ratio", RATIO), Column("ours/ORT", "ONNX Runtime fwd ratio", RATIO),
]


def markdown(threads: int, labels: Sequence[str], medians: Sequence[dict], loads: Sequence[float], settings,
             numpy_version: str, jax_version: str) -> str:
    import onnxruntime
    import torch

    lines = [f"{threads} thread(s){' (one pinned core)' if threads == 1 else ''}: torch {torch.__version__}, jax "
             f"{jax_version}, onnxruntime {onnxruntime.__version__}; medians over {settings.rounds} rounds; 1-min "
             f"load average {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} CPUs",
             ""]
    rows = []
    for label, m in zip(labels, medians):
        ms = {name: 1e3 * value for name, value in m.items()}
        rows.append({"row": label, **ms, "JAX train ratio": ms["torch_rnn train"] / ms["JAX train"],
                     "JAX fwd ratio": ms["torch_rnn fwd"] / ms["JAX fwd"],
                     "ONNX Runtime fwd ratio": ms["torch_rnn fwd"] / ms["ONNX Runtime fwd"]})
    lines += markdown_table(COLUMNS, rows)
    missed = [row["row"] for row in rows if not (row["JAX train ratio"] <= JAX_LIMIT
                                                 and row["JAX fwd ratio"] <= JAX_LIMIT
                                                 and row["ONNX Runtime fwd ratio"] <= ORT_LIMIT)]
    lines += ["", f"Targets (ours/JAX <= {JAX_LIMIT} in training and inference, ours/ORT <= {ORT_LIMIT}, every row): "
              + ("met" if not missed else "not met at " + ", ".join(missed))]
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, choices=[1, 2], help="one thread count, in this process")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and shorter timings")
    parser.add_argument("--cases", nargs="+", default=CASES, metavar="N,T,D,H[ L2 bi]",
                        help="rows (quote those with options)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        print(run_threads(args.threads, args.cases, args.quick))
        return
    for threads in (1, 2):  # a fresh process each: XLA reads its thread settings once, at start
        command = [sys.executable, __file__, "--threads", str(threads), "--cases", *args.cases]
        result = subprocess.run(command + (["--quick"] if args.quick else []), text=True, capture_output=True)
        if result.returncode != 0:
            sys.exit(f"bench_peers: the {threads}-thread run failed:\n{result.stderr[-3000:]}")
        print(result.stdout.strip() + "\n")


if __name__ == "__main__":
    main()
