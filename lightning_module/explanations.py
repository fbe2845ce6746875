"""Per-word explanations: each word's exact share of the predicted class's log-odds, as numbers, as a
self-contained HTML page and as a figure (TensorBoard's image panel).

Shading: green for a word that speaks for the predicted class, red for one against it; the colour's opacity
is the share's magnitude over the largest magnitude on the page (or figure), so shades compare across
sentences. The HTML page gives every value in the word's tooltip.
"""
from __future__ import annotations

import html
from typing import TYPE_CHECKING, Optional, Sequence

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lightning_module.inference import Prediction

#: RGB of the shading for a share for (positive) and against (negative) the predicted class.
FOR_RGB, AGAINST_RGB = (22, 163, 74), (220, 38, 38)


def log_odds_shares(contributions: Tensor, bias: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """Each step's share of the predicted class's log-odds against the others, and the rest (bias).

    With two classes the log-odds ``log p_c / (1 - p_c) = s_c - s_other`` is linear in the scores, so the
    shares are exact: ``contributions[..., c] - contributions[..., other]``. With more,
    ``log p_c / (1 - p_c) = s_c - logsumexp_{k != c} s_k`` is not linear: each step gets its share of ``s_c``
    minus the others' shares weighted by their softmax over ``k != c`` (the first-order term), and the bias takes
    the remainder, so the sum is still the log-odds exactly.

    Args:
        contributions: ``(N, T, C)`` every step's share of every class score
            (:meth:`torch_rnn.models.SentimentRNN.contributions`, divided by the temperature where one is used).
        bias: ``(N, C)`` the part of the scores that does not depend on the words (likewise).
        scores: ``(N, C)`` the class scores ``bias + contributions.sum(1)``.

    Returns:
        ``(N, T)`` shares (0 at padding) and ``(N,)`` biases; ``bias + shares.sum(1)`` is the log-odds.
    """
    predicted = scores.argmax(dim=1)  # (N,)
    others = torch.ones_like(scores, dtype=torch.bool).scatter_(1, predicted.unsqueeze(1), False)  # (N, C)
    weights = torch.where(others, scores, float("-inf")).softmax(dim=1)  # (N, C): 0 at the predicted class
    weights = weights - torch.nn.functional.one_hot(predicted, scores.shape[1]).to(scores.dtype)  # -1 there
    shares = -(contributions * weights.unsqueeze(1)).sum(2)  # (N, T): s_c share minus the weighted others'
    log_odds = scores.gather(1, predicted.unsqueeze(1)).squeeze(1) - torch.logsumexp(
        torch.where(others, scores, float("-inf")), dim=1)  # (N,)
    return shares, log_odds - shares.sum(1)


def shade(value: float, scale: float) -> tuple[tuple[int, int, int], float]:
    """The colour of a share: ``FOR_RGB`` when ``value > 0`` else ``AGAINST_RGB``, and its opacity
    ``min(1, |value| / scale)`` rounded to 3 decimals (0 when ``scale`` is 0)."""
    alpha = 0.0 if scale <= 0 else min(1.0, abs(value) / scale)
    return (FOR_RGB if value > 0 else AGAINST_RGB), round(alpha, 3)


def _scale(rows: Sequence[Sequence[float]]) -> float:
    return max((abs(value) for row in rows for value in row), default=0.0)


_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:60em;line-height:1.6;color:#111}
.s{margin:0 0 1.1em 0}.m{font-size:.85em;color:#555}.w{padding:.1em .25em;border-radius:.25em;margin:0 .05em}
.e{color:#b00}.k span{padding:.1em .4em;border-radius:.25em}"""


def explanation_html(predictions: Sequence["Prediction"], title: str = "torch-rnn explanations") -> str:
    """A self-contained HTML page (inline CSS, no scripts, no external resources) with every sentence's words
    shaded by their share of the predicted class's log-odds.

    Each word is ``<span class="w" style="background:rgba(R,G,B,ALPHA)" title="+0.123"
    data-value="0.123456">word</span>`` (:func:`shade`; the scale is the largest magnitude on the page); under
    it, the label, the probability, the bias and the log-odds. A prediction with ``error`` set shows the error.
    Every text is HTML-escaped.

    Raises:
        ValueError: a prediction without ``error`` has no contributions (it was made without ``explain``).
    """
    for prediction in predictions:
        if prediction.error is None and prediction.contributions is None:
            raise ValueError(f"explanation_html: {prediction.text!r} has no contributions: predict with explain=True")
    scale = _scale([[value for _, value in p.contributions] for p in predictions if p.error is None])
    (fr, fg, fb), (ar, ag, ab) = FOR_RGB, AGAINST_RGB
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f'<p class="k">Each word\'s share of the predicted class\'s log-odds <code>log p / (1 - p)</code>: '
             f'<span style="background:rgba({fr},{fg},{fb},0.6)">for</span> or '
             f'<span style="background:rgba({ar},{ag},{ab},0.6)">against</span> it; full colour = '
             f"{scale:.3f}. Hover over a word for its value.</p>"]
    for prediction in predictions:
        parts.append('<div class="s">')
        if prediction.error is not None:
            parts.append(f'<div>{html.escape(prediction.text)}</div><div class="m e">error: '
                         f"{html.escape(prediction.error)}</div></div>")
            continue
        words = []
        for word, value in prediction.contributions:
            (r, g, b), alpha = shade(value, scale)
            words.append(f'<span class="w" style="background:rgba({r},{g},{b},{alpha})" title="{value:+.3f}" '
                         f'data-value="{value:.6f}">{html.escape(word)}</span>')
        log_odds = prediction.bias + sum(value for _, value in prediction.contributions)
        parts.append(f"<div>{' '.join(words)}</div>")
        parts.append(f'<div class="m">{html.escape(str(prediction.label))} {prediction.probability:.4f} | bias '
                     f"{prediction.bias:+.3f}, log-odds {log_odds:+.3f}"
                     + (" | cut to the model's length" if prediction.truncated else "") + "</div></div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def explanation_figure(rows: Sequence[tuple[Sequence[str], Sequence[float], str]],
                       scale: Optional[float] = None) -> "Figure":
    """The same shading as a matplotlib figure: one line per ``(words, shares, caption)`` row, the words
    shaded as in :func:`explanation_html` (the scale: the largest magnitude over all rows unless given),
    the caption (label, probability) after them; words past the figure's width are left out, with "..."."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = _scale([shares for _, shares, _ in rows]) if scale is None else scale
    fig = plt.figure(figsize=(10, 0.42 * len(rows) + 0.3), dpi=80)
    renderer = fig.canvas.get_renderer()
    width = fig.get_figwidth() * fig.dpi
    for i, (words, shares, caption) in enumerate(rows):
        y, x = 1 - (i + 0.75) / (len(rows) + 0.3), 0.01
        for word, value in zip(words, shares):
            if x > 0.8:
                fig.text(x, y, "...", fontsize=10, va="center")
                x += 0.02
                break
            rgb, alpha = shade(value, scale)
            text = fig.text(x, y, word, fontsize=10, va="center",
                            bbox=dict(boxstyle="round,pad=0.15", linewidth=0, facecolor=(*[c / 255 for c in rgb], alpha)))
            x += (text.get_window_extent(renderer).width + 6) / width
        fig.text(x + 0.01, y, caption, fontsize=8, va="center", color="#555555")
    return fig
