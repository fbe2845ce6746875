"""What the validation-time TensorBoard panels cost against training: one training step of the default
model, and once per validation the BPTT gradient norms (``model.log_bptt``) and the explanation image
(``model.explain_sentences``), each rendered to PNG as TensorBoard's ``add_figure`` does.

    python benchmarks/bench_panels.py [--rounds 20]

Prints medians in ms and the panels' cost per epoch as a share of the epoch's training steps (265 steps of
32 sentences in the default run).
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_module.module import SentimentClassifier  # noqa: E402
from lightning_module.panels import bptt_figure, bptt_norms, validation_explanations  # noqa: E402
from torch_rnn.models import softmax_loss  # noqa: E402

STEPS_PER_EPOCH, N, V = 265, 32, 9000


def timed(functions: dict[str, object], rounds: int) -> dict[str, float]:
    """Median ms of each function over ``rounds`` interleaved rounds (each round runs every function once), so
    that a machine's slow spells hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(values) for name, values in times.items()}


def png(figure) -> None:
    import matplotlib.pyplot as plt

    figure.savefig(io.BytesIO(), format="png")
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    torch.manual_seed(0)
    module = SentimentClassifier(vocab_size=V, embedding_dim=100, bidirectional=True, dropout=0.5,
                                 embedding_dropout=0.5)
    lengths = torch.randint(5, 40, (N,))
    mask = (torch.arange(50).unsqueeze(0) < lengths.unsqueeze(1)).long()
    tokens = torch.randint(2, V, (N, 50)) * mask
    labels = torch.randint(0, 2, (N,))
    optimizer = torch.optim.AdamW(module.parameters(), lr=2e-3)

    def step() -> None:
        optimizer.zero_grad()
        softmax_loss(module(tokens, mask), labels).backward()
        optimizer.step()

    itos = ["<pad>", "<unk>"] + [f"w{i}" for i in range(V - 2)]
    rows = torch.nonzero(lengths <= 16).flatten()[:6]
    results = timed({
        "training step": step,
        "BPTT norms": lambda: bptt_norms(module, tokens, mask, labels),
        "BPTT figure to PNG": lambda: png(bptt_figure(bptt_norms(module, tokens, mask, labels)[0], N)),
        "explanation image to PNG": lambda: png(validation_explanations(
            module, tokens[rows], mask[rows], labels[rows], itos, ["negative", "positive"])),
    }, rounds)
    step_ms = results["training step"]
    epoch_ms = STEPS_PER_EPOCH * step_ms
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, N = {N}, medians of {rounds} rounds")
    for name, ms in results.items():
        share = "" if name == "training step" else (f"  = {100 * ms / step_ms:.1f}% of one step, "
                                                    f"{100 * ms / epoch_ms:.2f}% of an epoch's {STEPS_PER_EPOCH} steps")
        print(f"{name:>26}: {ms:8.2f} ms{share}")


if __name__ == "__main__":
    main()
