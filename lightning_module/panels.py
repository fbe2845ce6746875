"""What :class:`~lightning_module.module.SentimentClassifier` shows in TensorBoard at each validation epoch of a
fit, on the first validation batch: backpropagation through time (the gradient reaching every step) and
per-word explanations."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor

from lightning_module.explanations import explanation_figure, log_odds_shares
from torch_rnn.diagnostics import bptt_hidden_gradients, mean_over_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lightning_module.module import SentimentClassifier

#: The longest sentence (in words) the explanation panel prefers: one line of the image.
PANEL_WORDS = 16


def log_validation_panels(module: "SentimentClassifier", batch: dict[str, Tensor]) -> None:
    """Log what ``model.log_bptt`` and ``model.explain_sentences`` ask for, at the step of the epoch's
    validation metrics; called from ``on_validation_epoch_end`` in the first process only:

    - ``bptt/grad_norm_first``, ``bptt/grad_norm_last`` (``self.log``, so every logger) and the figure
      ``bptt/grad_norm`` (TensorBoard): see :func:`bptt_norms`.
    - the image ``explanations/validation`` (TensorBoard): the first ``explain_sentences`` sentences of the
      batch with at most ``PANEL_WORDS`` words (the first ones if too few are that short), each word shaded by its share of the predicted class's log-odds under the module's temperature,
      when the data module has a vocabulary (``vocab.itos``) to spell the words.
    """
    if not module.loggers:
        return
    boards = [logger.experiment for logger in module.loggers if isinstance(logger, TensorBoardLogger)]
    step = module.trainer.fit_loop.epoch_loop._batches_that_stepped  # Lightning's step for the values logged now
    tokens, mask, labels = batch["tokens"], batch["mask"], batch["labels"]
    if module.hparams.log_bptt:
        per_step, first, last = bptt_norms(module, tokens, mask, labels)
        module.log_dict({"bptt/grad_norm_first": first, "bptt/grad_norm_last": last}, rank_zero_only=True)
        if boards:
            figure = bptt_figure(per_step, int(mask.shape[0]))
            for board in boards:
                board.add_figure("bptt/grad_norm", figure, step)
    datamodule = getattr(module.trainer, "datamodule", None)
    vocab = getattr(datamodule, "vocab", None)
    count = min(module.hparams.explain_sentences, tokens.shape[0])
    if boards and count and vocab is not None:
        lengths = mask.sum(1)
        rows = torch.cat([torch.nonzero(lengths <= PANEL_WORDS).flatten(), torch.nonzero(lengths > PANEL_WORDS).flatten()])
        rows = rows[:count].sort().values
        figure = validation_explanations(module, tokens[rows], mask[rows], labels[rows], vocab.itos,
                                         list(getattr(datamodule, "label_names", [])))
        for board in boards:
            board.add_figure("explanations/validation", figure, step)


def bptt_norms(module: "SentimentClassifier", tokens: Tensor, mask: Tensor, labels: Tensor) -> tuple[Tensor, float, float]:
    """The norms of :func:`~torch_rnn.diagnostics.bptt_hidden_gradients` on a batch.

    Returns:
        per_step: ``(T, 1 + D)`` float: at each step ``t``, the mean over the sentences that have it of
            ``||dL/dh_t||`` (column 0, both directions together) and of each direction's part (columns 1..D);
            NaN where no sentence has step ``t``.
        first: the mean ``||dL/dh_0||``. last: the mean over the sentences of ``||dL/dh_{L-1}||`` at each
            one's own last step.
    """
    grads = bptt_hidden_gradients(module.model, tokens, mask, labels)  # (N, T, D * H)
    directions = 2 if module.model.rnn.bidirectional else 1
    N, T, _ = grads.shape
    norms = torch.cat([grads.norm(dim=-1, keepdim=True), grads.view(N, T, directions, -1).norm(dim=-1)], -1)
    per_step = torch.stack([mean_over_rows(norms[..., k], mask) for k in range(norms.shape[-1])], 1)  # (T, 1 + D)
    lengths = mask.sum(1).long()  # (N,)
    last = norms[..., 0].gather(1, (lengths - 1).unsqueeze(1)).mean()
    return per_step.float().cpu(), float(per_step[0, 0]), float(last)


def bptt_figure(per_step: Tensor, sentences: int) -> "Figure":
    """``per_step`` of :func:`bptt_norms` against the step, the norm on a log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=80)
    steps = torch.arange(per_step.shape[0])
    names = ["both directions", "forward", "reverse"] if per_step.shape[1] == 3 else ["||dL/dh_t||"]
    for k, name in enumerate(names):
        ax.plot(steps, per_step[:, k], marker="o", markersize=2, linewidth=1.2 if k == 0 else 0.8, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.set_title(f"gradient reaching h_t ({sentences} validation sentences)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@torch.no_grad()
def validation_explanations(module: "SentimentClassifier", tokens: Tensor, mask: Tensor, labels: Tensor,
                            itos: list[str], label_names: list[Any]) -> "Figure":
    """The shaded words of a few sentences (:func:`~lightning_module.explanations.explanation_figure`), each
    with its predicted class, calibrated probability and true class."""
    was_training = module.model.training
    module.model.eval()
    try:
        contributions, bias = module.model.contributions(tokens, mask)  # (n, T, C), (n, C)
    finally:
        module.model.train(was_training)
    temperature = module.temperature.to(contributions.dtype)
    contributions, bias = contributions / temperature, bias / temperature
    scores = bias + contributions.sum(1)  # (n, C)
    shares, _ = log_odds_shares(contributions, bias, scores)
    probabilities, predicted = scores.softmax(1).max(1)
    rows = []
    for i in range(tokens.shape[0]):
        length = int(mask[i].sum())
        words = [itos[index] for index in tokens[i, :length].tolist()]
        name = (lambda c: str(label_names[c]) if c < len(label_names) else str(c))
        caption = f"{name(int(predicted[i]))} {float(probabilities[i]):.3f} (true: {name(int(labels[i]))})"
        rows.append((words, shares[i, :length].tolist(), caption))
    return explanation_figure(rows)
