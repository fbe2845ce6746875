"""Calibrated probabilities: expected calibration error, temperature scaling, and reliability diagrams.

A classifier is calibrated when, among the sentences it gives a top-class probability near ``q``, a fraction
``q`` is classified correctly. Temperature scaling (Guo et al., ICML 2017) divides the class scores by one
number ``T > 0`` fitted on held-out data: it changes no prediction, only how sure the probabilities are.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_calibration_error

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The number of equal-width confidence bins of the expected calibration error.
ECE_BINS = 15


def _check(logits: Tensor, labels: Tensor, what: str) -> None:
    if logits.dim() != 2 or logits.shape[1] < 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"{what}: expected scores (N, C) with C >= 2 and labels (N,), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    if logits.shape[0] == 0:
        raise ValueError(f"{what}: no examples")


def expected_calibration_error(probabilities: Tensor, labels: Tensor, n_bins: int = ECE_BINS) -> float:
    r"""Top-label expected calibration error.

    .. math:: \mathrm{ECE} = \sum_b \frac{|B_b|}{N}\, \big|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)\big|

    over ``n_bins`` equal-width bins ``B_b`` of the top-class probability ``conf = max_c p_c`` (torchmetrics'
    ``CalibrationError`` with ``norm="l1"``).

    Args:
        probabilities: ``(N, C)`` class probabilities. labels: ``(N,)`` int64 classes.

    Returns: the ECE, in ``[0, 1]``.

    Raises:
        ValueError: bad shapes or no examples.
    """
    _check(probabilities, labels, "expected_calibration_error")
    return float(multiclass_calibration_error(probabilities.float(), labels, num_classes=probabilities.shape[1],
                                              n_bins=n_bins, norm="l1"))


def fit_temperature(logits: Tensor, labels: Tensor, max_iter: int = 100) -> float:
    r"""The temperature ``T`` that minimises the mean negative log-likelihood of ``softmax(logits / T)``.

    Fitted by L-BFGS over ``log T`` (so ``T > 0``) in float64; the NLL is convex in ``1 / T``, so this finds
    the one minimum. ``T`` is kept in ``[1, 100]``: a temperature only softens. Below 1 it would sharpen, and on
    a validation split that the model already separates (a small one, say) the NLL falls all the way to
    ``T -> 0``, which would make every prediction certain.

    Args:
        logits: ``(N, C)`` class scores. labels: ``(N,)`` int64 classes.

    Returns: ``T`` as a float.

    Raises:
        ValueError: bad shapes or no examples.
    """
    _check(logits, labels, "fit_temperature")
    logits, labels = logits.detach().double(), labels.detach()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_t.detach().exp().clamp(1.0, 100.0))


def fit_temperature_and_weight(logits: Tensor, extra: Tensor, labels: Tensor, max_iter: int = 100) -> tuple[float, float]:
    r"""The temperature ``T`` and weight ``beta`` that minimise the mean negative log-likelihood of
    ``softmax((logits + beta * extra) / T)``: the calibration of a model whose scores are the sum of two
    (:class:`lightning_module.ngrams.NgramSentimentRNN`: the RNN's and the NBSVM's).

    The NLL is convex in ``(1 / T, beta / T)``; both are fitted by L-BFGS in float64, then ``T`` is kept in
    ``[1, 100]`` as in :func:`fit_temperature` (a temperature only softens) and, when that moved it, ``beta`` is
    fitted again for that ``T``. ``beta`` is kept ``>= 0``.

    Args:
        logits: ``(N, C)`` the first scores. extra: ``(N, C)`` the second. labels: ``(N,)`` int64 classes.

    Returns: ``(T, beta)`` as floats.

    Raises:
        ValueError: bad shapes or no examples.
    """
    _check(logits, labels, "fit_temperature_and_weight")
    if extra.shape != logits.shape:
        raise ValueError(f"fit_temperature_and_weight: expected extra scores of the logits' shape "
                         f"{tuple(logits.shape)}, got {tuple(extra.shape)}")
    logits, extra, labels = logits.detach().double(), extra.detach().double(), labels.detach()

    def fit(parameters: list[Tensor], scores: Callable[[], Tensor]) -> None:
        optimizer = torch.optim.LBFGS(parameters, lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(scores(), labels)
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)

    inverse_t = torch.ones((), dtype=torch.float64, requires_grad=True)
    weight = torch.zeros((), dtype=torch.float64, requires_grad=True)  # beta / T
    fit([inverse_t, weight], lambda: inverse_t * logits + weight * extra)
    temperature = float(1.0 / inverse_t.detach()) if inverse_t > 0 else 100.0
    beta = float(weight.detach()) * temperature
    if not 1.0 <= temperature <= 100.0:
        temperature = min(max(temperature, 1.0), 100.0)
        weight = torch.zeros((), dtype=torch.float64, requires_grad=True)
        fit([weight], lambda: logits / temperature + weight * extra)
        beta = float(weight.detach()) * temperature
    return temperature, max(beta, 0.0)


def reliability_bins(probabilities: Tensor, labels: Tensor, n_bins: int = ECE_BINS) -> tuple[Tensor, Tensor, Tensor]:
    """Per confidence bin (equal width over ``[0, 1]``): the mean top-class probability, the accuracy and the
    number of examples; ``(n_bins,)`` each, NaN for the means of empty bins.

    Raises:
        ValueError: bad shapes or no examples.
    """
    _check(probabilities, labels, "reliability_bins")
    confidence, predicted = probabilities.float().max(1)
    correct = (predicted == labels).float()
    index = (confidence * n_bins).long().clamp(max=n_bins - 1)  # bins (k/n, (k+1)/n], the last one closed
    counts = torch.bincount(index, minlength=n_bins).float()
    mean_confidence = torch.bincount(index, confidence, minlength=n_bins) / counts
    accuracy = torch.bincount(index, correct, minlength=n_bins) / counts
    return mean_confidence, accuracy, counts


def reliability_diagram(curves: dict[str, tuple[Tensor, Tensor]], n_bins: int = ECE_BINS) -> "Figure":
    """A reliability diagram: each named ``(probabilities (N, C), labels (N,))`` as accuracy against mean
    confidence per bin, one panel per name, the diagonal for perfect calibration, the ECE in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(3.4 * len(curves), 3.4), squeeze=False)
    for ax, (name, (probabilities, labels)) in zip(axes[0], curves.items()):
        confidence, accuracy, counts = reliability_bins(probabilities, labels, n_bins)
        edges = torch.linspace(0, 1, n_bins + 1)
        filled = counts > 0
        ax.bar(edges[:-1][filled], accuracy[filled], width=1 / n_bins, align="edge", color="#4c72b0",
               edgecolor="white", label="accuracy")
        ax.plot(confidence[filled], accuracy[filled], "o", color="#dd8452", markersize=3, label="(confidence, accuracy)")
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1)
        ece = expected_calibration_error(probabilities, labels, n_bins)
        ax.set_title(f"{name}\nECE {ece:.3f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-class probability")
        ax.set_ylabel("accuracy")
    axes[0][0].legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return fig
