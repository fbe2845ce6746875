"""The naive-Bayes initialisation of the learned embedding: the ratios against a direct count, and the columns a
fit starts from."""
from __future__ import annotations

import math

import pytest
import torch

from lightning_module.cli import SentimentCLI
from lightning_module.datamodule import SentimentDataModule
from lightning_module.module import SentimentClassifier
from lightning_module.naive_bayes import log_count_ratios
from test_training import small_fit_args, write_tsv


def counted_ratios(tokens, mask, labels, V, C, alpha):
    """The definition, word by word and class by class, with Python counts."""
    sentences = [{int(w) for w, m in zip(row, row_mask) if m and w != 0} for row, row_mask in zip(tokens, mask)]
    expected = torch.zeros(V, C)
    for c in range(C):
        p = [alpha + sum(w in s for s, y in zip(sentences, labels) if y == c) for w in range(V)]
        q = [alpha + sum(w in s for s, y in zip(sentences, labels) if y != c) for w in range(V)]
        for w in range(1, V):
            expected[w, c] = math.log(p[w] / sum(p[1:] + [alpha])) - math.log(q[w] / sum(q[1:] + [alpha]))
    return expected


@pytest.mark.parametrize("C", [2, 3])
def test_log_count_ratios_equal_the_counted_definition(C):
    g = torch.Generator().manual_seed(3)
    V, N, T = 9, 20, 6
    tokens = torch.randint(0, V, (N, T), generator=g)
    mask = (torch.rand(N, T, generator=g) > 0.2).float()
    tokens[2, 1] = tokens[2, 2] = 5  # a word twice in one sentence counts once
    labels = torch.randint(0, C, (N,), generator=g)
    ratios = log_count_ratios(tokens, mask, labels, V, C, alpha=1.0)
    assert ratios.shape == (V, C) and (ratios[0] == 0).all()
    # the padding id is counted as a zero column in p and q (alpha only), as the vectorised sums do
    torch.testing.assert_close(ratios, counted_ratios(tokens.tolist(), mask.tolist(), labels.tolist(), V, C, 1.0))
    if C == 2:
        torch.testing.assert_close(ratios[:, 0], -ratios[:, 1])  # one class against the other, both ways


def test_log_count_ratios_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected tokens and mask \(N, T\) and labels \(N,\)"):
        log_count_ratios(torch.zeros(3, 4, dtype=torch.long), torch.ones(3, 5), torch.zeros(3, dtype=torch.long), 5, 2)


def test_a_fresh_fit_starts_from_the_training_splits_ratios(tmp_path):
    data = write_tsv(tmp_path / "small.tsv")
    args = small_fit_args(data, tmp_path, "--model.embedding_init", "naive_bayes", "--model.naive_bayes_dims", "3",
                          "--model.naive_bayes_scale", "2.0", "--trainer.max_epochs", "0")
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, auto_configure_optimizers=False,
                       save_config_kwargs={"overwrite": True})
    train = cli.datamodule.training_set()
    ratios = log_count_ratios(train.tokens, train.mask, train.labels, cli.datamodule.vocab_size, 2)
    weight = cli.model.model.embedding.weight
    torch.testing.assert_close(weight[:, :3], 2.0 * ratios[:, [0, 1, 0]])
    assert weight[:, 3:].abs().sum() > 0  # the other columns keep their random start
    (wonderful, dull), = [cli.datamodule.vocab.encode(["wonderful", "dull"])]
    assert ratios[wonderful, 1] > 0 > ratios[dull, 1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(embedding_init="glove"), "embedding_init must be 'random' or 'naive_bayes'"),
    (dict(embedding_init="naive_bayes", input_mode="onehot"), "needs input_mode 'embedding'"),
    (dict(embedding_init="naive_bayes", naive_bayes_dims=101), "naive_bayes_dims <= embedding_dim"),
])
def test_bad_naive_bayes_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SentimentClassifier(vocab_size=10, **kwargs)
