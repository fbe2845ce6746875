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
torch all get the same number of threads: ``--threads 1`` also pins the process to one core. JAX and ONNX
Runtime each run in a worker process of their own (:class:`PeerWorker`), which times its steps when asked, so
the rounds still interleave every implementation and no library's thread pool shares a process with another's.
ONNX Runtime's session runs with spinning off (``session.intra_op.allow_spinning = 0``): by default its idle
threads keep spinning between its runs, and with two threads they slowed the torch steps timed next 2-3x (from
another process too); its own times stay within 1-8% of spinning ones. Times are medians over interleaved
rounds (``timing.time_interleaved``), in ms; ratios are torch_rnn / peer (below 1: torch_rnn is faster). The
bound columns are the step's matmul FLOPs (``cases.matmul_flops``; inference a third of training's) at the rate
of a square ``torch.mm`` timed beside each row in every round. The last lines say whether the targets hold:
torch_rnn at most 0.6x of JAX in training and inference, and at most 0.5x of ONNX Runtime, at every row; a missed
row says when 0.6x of JAX's time is below the bound, where no implementation can reach it.

Run from the repository root::

    python benchmarks/bench_peers.py               # 1 and 2 threads, each in a fresh process
    python benchmarks/bench_peers.py --threads 1 --quick
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from markdown_tables import Column, markdown_table

TOLERANCE = 1e-4
JAX_LIMIT, ORT_LIMIT = 0.6, 0.5  # the targets: torch_rnn / peer
WORKER_TIMEOUT_S = 900  # the longest a worker may take to answer (JAX compiles a row's steps in seconds)
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


def onnx_export(rnn, x, path: Path) -> None:
    """Saves ``rnn``'s ONNX export (torch_rnn.onnx: the standard RNN operator) to ``path``."""
    import torch

    import torch_rnn.onnx  # noqa: F401  (registers the translation)

    torch.onnx.export(rnn, (x,), dynamo=True, verbose=False).save(str(path))


class PeerWorker:
    """A process of its own for one peer, ``"jax"`` or ``"onnxruntime"``, with the parent's thread settings (the
    environment and CPU affinity that :func:`configure_threads` set), so that its thread pool and torch's never
    run in one process. ``setup`` hands it a row and returns its outputs for the check; ``step`` is a step that
    :func:`timing.time_interleaved` times through its ``measure`` method, in the worker."""

    def __init__(self, kind: str, threads: int) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch threads forked along
        self.kind = kind
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, kind, threads), daemon=True)
        self._process.start()
        child.close()

    def _ask(self, *message: Any) -> Any:
        """Sends a request and waits for its answer; exits with the worker's traceback when it failed, and with
        its exit code when it died or sent nothing for :data:`WORKER_TIMEOUT_S`."""
        try:
            self._connection.send(message)
            if not self._connection.poll(WORKER_TIMEOUT_S):
                raise TimeoutError(f"no answer to {message[0]!r} in {WORKER_TIMEOUT_S} s")
            status, reply = self._connection.recv()
        except (EOFError, OSError) as error:  # the pipe broke (TimeoutError is an OSError)
            self._process.join(timeout=1)
            sys.exit(f"bench_peers: the {self.kind} worker stopped answering ({error or type(error).__name__}; "
                     f"exit code {self._process.exitcode})")
        if status != "ok":
            sys.exit(f"bench_peers: the {self.kind} worker failed:\n{reply}")
        return reply

    def setup(self, row: int, **payload: Any) -> dict:
        """Builds row ``row`` in the worker (and warms it up: JAX compiles here); returns what it computed."""
        return self._ask("setup", row, payload)

    def step(self, row: int, name: str) -> Callable[[], None]:
        """Step ``name`` of row ``row``, to be timed by the worker (``measure(min_run_time) -> seconds``)."""

        def run() -> None:
            self._ask("run", row, name)

        run.measure = lambda min_run_time: self._ask("time", row, name, min_run_time)
        return run

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._connection.send(("stop",))
            except OSError:  # it is going anyway
                pass
            self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.terminate()

    def __enter__(self) -> "PeerWorker":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def _serve(connection, kind: str, threads: int) -> None:
    """A :class:`PeerWorker`'s process: answers ``setup``, ``run`` and ``time`` requests until ``stop``. It times
    with torch's ``Timer``, as the parent does; torch's own thread pool never starts here (no torch operation
    runs)."""
    from torch.utils.benchmark import Timer

    steps: dict[tuple[int, str], Callable[[], Any]] = {}
    while True:
        request, *args = connection.recv()
        if request == "stop":
            return
        try:
            if request == "setup":
                row, payload = args
                built, reply = (_jax_row if kind == "jax" else _onnxruntime_row)(threads, **payload)
                steps.update({(row, name): step for name, step in built.items()})
                for step in built.values():
                    step()  # warm-up (JAX compiles here)
            elif request == "run":
                steps[tuple(args)]()
                reply = None
            else:
                row, name, min_run_time = args
                timer = Timer("step()", globals={"step": steps[row, name]}, num_threads=threads)
                reply = timer.blocked_autorange(min_run_time=min_run_time).median
            connection.send(("ok", reply))
        except Exception:
            connection.send(("error", traceback.format_exc()))


def _jax_row(threads: int, weights: list, x, layers: int, bidirectional: bool) -> tuple[dict, dict]:
    """JAX's steps of one row, and its output and input gradient for the check."""
    import jax
    import numpy as np

    params = [tuple(jax.numpy.asarray(w) for w in group) for group in weights]
    x_jax = jax.numpy.asarray(x)
    forward, train = jax_rnn(layers, bidirectional)
    steps = {"JAX train": lambda: jax.block_until_ready(train(params, x_jax)),
             "JAX fwd": lambda: jax.block_until_ready(forward(params, x_jax))}
    outputs = {"JAX": np.asarray(forward(params, x_jax)[0]),
               "JAX input gradient": np.asarray(train(params, x_jax)[1][1]), "version": jax.__version__}
    return steps, outputs


def _onnxruntime_row(threads: int, model: str, x) -> tuple[dict, dict]:
    """ONNX Runtime's inference step of one row (a session with ``threads`` threads), and its output."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep (docstring)
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    return {"ONNX Runtime fwd": lambda: session.run(None, feed)}, {"ONNX Runtime": session.run(None, feed)[0],
                                                                  "version": onnxruntime.__version__}


def run_threads(threads: int, cases: Sequence[str], quick: bool) -> str:
    """Times every case with ``threads`` threads: torch in this process, JAX and ONNX Runtime in a
    :class:`PeerWorker` each; a markdown table and the targets' verdict."""
    configure_threads(threads)
    import tempfile

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import timing
    import torch_rnn
    from cases import SEED, Case, matmul_flops

    torch.set_num_threads(threads)
    step_sets, labels, bound_flops, versions = [], [], [], {}
    mm, mm_flops = timing.mm_step()
    with PeerWorker("jax", threads) as jax_worker, PeerWorker("onnxruntime", threads) as ort_worker, \
            tempfile.TemporaryDirectory() as directory:
        for row, text in enumerate(cases):
            N, T, D, H, layers, bi = parse_case(text)
            torch.manual_seed(SEED)
            ours = torch_rnn.RNN(D, H, num_layers=layers, bidirectional=bi)
            reference = torch.nn.RNN(D, H, num_layers=layers, bidirectional=bi)
            reference.load_state_dict(ours.state_dict())
            x = torch.randn(T, N, D, requires_grad=True)
            x_numpy = x.detach().numpy()
            weights = [tuple(w.detach().numpy() for w in (group[0], group[1], group[2] + group[3]))
                       for group in ours.all_weights]
            model = Path(directory) / f"row{row}.onnx"
            onnx_export(ours.eval(), x.detach(), model)
            peers = {}
            for worker, payload in ((jax_worker, dict(weights=weights, x=x_numpy, layers=layers, bidirectional=bi)),
                                    (ort_worker, dict(model=str(model), x=x_numpy))):
                peers.update(worker.setup(row, **payload))
                versions[worker.kind] = peers.pop("version")
            check(ours, reference, x, peers, text)

            steps = {"torch_rnn train": timing.training_step(lambda ours=ours, x=x: ours(x), [x, *ours.parameters()]),
                     "nn.RNN train": timing.training_step(lambda reference=reference, x=x: reference(x),
                                                          [x, *reference.parameters()]),
                     "JAX train": jax_worker.step(row, "JAX train"),
                     "torch_rnn fwd": timing.inference_step(lambda ours=ours, x=x: ours(x)),
                     "nn.RNN fwd": timing.inference_step(lambda reference=reference, x=x: reference(x)),
                     "JAX fwd": jax_worker.step(row, "JAX fwd"),
                     "ONNX Runtime fwd": ort_worker.step(row, "ONNX Runtime fwd"),
                     "mm": mm}
            for step in steps.values():
                step()  # warm-up
            step_sets.append(steps)
            labels.append(f"({N},{T},{D},{H})" + (f" L{layers}" if layers > 1 else "") + (" bi" if bi else ""))
            bound_flops.append(matmul_flops(Case(N, T, D, H, layers, bi), N * T))
        settings = timing.QUICK if quick else timing.FULL
        medians, loads = timing.time_interleaved(step_sets, settings)
    for m, flops in zip(medians, bound_flops):  # training's bound, and inference's: a third of its matmuls
        m["train bound"] = flops / mm_flops * m["mm"]
        m["fwd bound"] = m["train bound"] / 3
    return markdown(threads, labels, medians, loads, settings, versions)


def check(ours, reference, x, peers: dict, what: str) -> None:
    """Every peer's output (and JAX's input gradient), as ``peers`` holds them, within :data:`TOLERANCE` of
    torch_rnn's, relative."""
    import numpy as np
    import torch

    output, h_n = ours(x)
    (dx,) = torch.autograd.grad(output.sum() + h_n.sum(), x)
    expected = output.detach().numpy()
    with torch.no_grad():
        got = {"nn.RNN": reference(x)[0].numpy(), **peers}
    for name, value in got.items():
        want = dx.numpy() if name == "JAX input gradient" else expected
        error = np.abs(value.reshape(want.shape) - want).max() / max(1.0, np.abs(want).max())
        if not error <= TOLERANCE:
            sys.exit(f"bench_peers: {name} differs from torch_rnn at {what} by {error:.2e} (relative)")


MS, RATIO = "{:.3g}", "{:.2f}"
COLUMNS = [  # grouped by step: the times, then torch_rnn's ratios
    Column("row", "row", left=True),
    Column("torch_rnn train ms", "torch_rnn train", MS), Column("nn.RNN", "nn.RNN train", MS),
    Column("JAX", "JAX train", MS), Column("bound", "train bound", MS), Column("ours/JAX", "JAX train ratio", RATIO),
    Column("torch_rnn fwd ms", "torch_rnn fwd", MS), Column("nn.RNN", "nn.RNN fwd", MS), Column("JAX", "JAX fwd", MS),
    Column("ONNX Runtime", "ONNX Runtime fwd", MS), Column("bound", "fwd bound", MS),
    Column("ours/JAX", "JAX fwd ratio", RATIO), Column("ours/ORT", "ONNX Runtime fwd ratio", RATIO),
]


def markdown(threads: int, labels: Sequence[str], medians: Sequence[dict], loads: Sequence[float], settings,
             versions: dict[str, str]) -> str:
    import torch

    lines = [f"{threads} thread(s){' (one pinned core)' if threads == 1 else ''}: torch {torch.__version__}, jax "
             f"{versions['jax']}, onnxruntime {versions['onnxruntime']} (each in a process of its own); medians over {settings.rounds} rounds; 1-min "
             f"load average {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} CPUs",
             ""]
    rows = []
    for label, m in zip(labels, medians):
        ms = {name: 1e3 * value for name, value in m.items()}
        rows.append({"row": label, **ms, "JAX train ratio": ms["torch_rnn train"] / ms["JAX train"],
                     "JAX fwd ratio": ms["torch_rnn fwd"] / ms["JAX fwd"],
                     "ONNX Runtime fwd ratio": ms["torch_rnn fwd"] / ms["ONNX Runtime fwd"]})
    lines += markdown_table(COLUMNS, rows)
    missed = [row["row"] + misses(row) for row in rows if misses(row)]
    lines += ["", f"Targets (ours/JAX <= {JAX_LIMIT} in training and inference, ours/ORT <= {ORT_LIMIT}, every row): "
              + ("met" if not missed else "not met at " + ", ".join(missed))]
    return "\n".join(lines)


def misses(row: dict) -> str:
    """The targets ``row`` misses, as `` (train 0.62x JAX; fwd 0.70x JAX, 0.6x JAX's time is 93% of the bound's:
    unreachable)``; empty when it meets them all."""
    missed = []
    for step in ("train", "fwd"):
        ratio = row[f"JAX {step} ratio"]
        if ratio > JAX_LIMIT:
            share = JAX_LIMIT * row[f"JAX {step}"] / row[f"{step} bound"]
            missed.append(f"{step} {ratio:.2f}x JAX" + (f", {JAX_LIMIT}x JAX's time is {share:.0%} of the bound's: "
                                                         "unreachable" if share < 1 else ""))
    if row["ONNX Runtime fwd ratio"] > ORT_LIMIT:
        missed.append(f"fwd {row['ONNX Runtime fwd ratio']:.2f}x ONNX Runtime")
    return f" ({'; '.join(missed)})" if missed else ""


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
