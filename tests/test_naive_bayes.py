"""The naive-Bayes initialisation of the learned embedding: the ratios against a direct count, and the columns a
fit starts from."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_module import naive_bayes

from lightning_module.cli import SentimentCLI
from lightning_module.datamodule import SentimentDataModule
from lightning_module.encoder import collate
from lightning_module.module import SentimentClassifier
from lightning_module.naive_bayes import log_count_ratios
from fit_helpers import small_fit_args, write_tsv


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


def dense_ratios(tokens, mask, labels, V, C, alpha=1.0):
    """The ratios from a dense (N, V) presence matrix: the straightforward vectorised form, for small data."""
    words = torch.where(mask != 0, tokens, torch.zeros_like(tokens))
    presence = torch.zeros(len(tokens), V)
    presence.scatter_(1, words, 1.0)
    presence[:, 0] = 0.0
    per_class = torch.zeros(C, V).index_add_(0, labels, presence)
    p = per_class + alpha
    q = per_class.sum(0, keepdim=True) - per_class + alpha
    ratios = (p / p.sum(1, keepdim=True)).log() - (q / q.sum(1, keepdim=True)).log()
    ratios[:, 0] = 0.0
    return ratios.T.contiguous()


def ragged(tokens, mask):
    """The real words of (N, T) tokens (mask nonzero), one sentence after the other, and offsets (N + 1,)."""
    keep = mask != 0
    offsets = np.concatenate([[0], np.cumsum(keep.sum(1).numpy())])
    return tokens[keep].numpy(), offsets


def random_sentences(C, seed=3, V=9, N=20, T=6):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, V, (N, T), generator=g)
    mask = (torch.rand(N, T, generator=g) > 0.2).float()
    tokens[2, 1] = tokens[2, 2] = 5  # a word twice in one sentence counts once
    labels = torch.randint(0, C, (N,), generator=g)
    return tokens, mask, labels


@pytest.mark.parametrize("C", [2, 3])
def test_log_count_ratios_equal_the_counted_definition(C):
    V = 9
    tokens, mask, labels = random_sentences(C, V=V)
    ids, offsets = ragged(tokens, mask)
    ratios = log_count_ratios(ids, offsets, labels, V, C, alpha=1.0)
    assert ratios.shape == (V, C) and ratios.dtype == torch.float32 and (ratios[0] == 0).all()
    # the padding id is counted as a zero column in p and q (alpha only), as the vectorised sums do
    torch.testing.assert_close(ratios, counted_ratios(tokens.tolist(), mask.tolist(), labels.tolist(), V, C, 1.0))
    if C == 2:
        torch.testing.assert_close(ratios[:, 0], -ratios[:, 1])  # one class against the other, both ways


@pytest.mark.parametrize("C, seed, V, N, T", [(2, 0, 50, 300, 12), (3, 1, 200, 1000, 30), (5, 2, 7, 40, 4)])
def test_sparse_counts_give_the_dense_matrix_ratios_bit_for_bit(C, seed, V, N, T, monkeypatch):
    """The counts come from the token ids, never from an (N, V) matrix, and give exactly the numbers the dense
    presence matrix gives; in blocks of sentences as in one."""
    tokens, mask, labels = random_sentences(C, seed, V, N, T)
    ids, offsets = ragged(tokens, mask)
    expected = dense_ratios(tokens, mask, labels, V, C)
    assert torch.equal(log_count_ratios(ids, offsets, labels, V, C), expected)
    monkeypatch.setattr(naive_bayes, "_BLOCK_ROWS", 7)
    assert torch.equal(log_count_ratios(ids, offsets, labels.numpy(), V, C), expected)


def test_log_count_ratios_reject_mismatched_shapes():
    with pytest.raises(ValueError, match=r"expected ids \(total,\), offsets \(N \+ 1,\)"):
        log_count_ratios(np.zeros(4, np.int64), np.array([0, 2, 4]), torch.zeros(3, dtype=torch.long), 5, 2)
    with pytest.raises(ValueError, match=r"word ids must be in \[0, 5\)"):
        log_count_ratios(np.array([1, 5]), np.array([0, 2]), torch.zeros(1, dtype=torch.long), 5, 2)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        log_count_ratios(np.array([1, 2]), np.array([0, 2]), torch.tensor([2]), 5, 2)


def test_a_fresh_fit_starts_from_the_training_splits_ratios(tmp_path):
    data = write_tsv(tmp_path / "small.tsv")
    args = small_fit_args(data, tmp_path, "--model.embedding_init", "naive_bayes", "--model.naive_bayes_dims", "3",
                          "--model.naive_bayes_scale", "2.0", "--trainer.max_epochs", "0",
                          "--model.zero_unknown", "false")  # else the <unk> row is zero
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, auto_configure_optimizers=False,
                       save_config_kwargs={"overwrite": True})
    train = cli.datamodule.training_set()
    batch = collate([train[i] for i in range(len(train))])
    ratios = dense_ratios(batch["tokens"], batch["mask"], batch["labels"], cli.datamodule.vocab_size, 2)
    weight = cli.model.model.embedding.weight
    torch.testing.assert_close(weight[:, :3], 2.0 * ratios[:, [0, 1, 0]])
    assert weight[:, 3:].abs().sum() > 0  # the other columns keep their random start
    (wonderful, dull), = [cli.datamodule.vocab.encode(["wonderful", "dull"])]
    assert ratios[wonderful, 1] > 0 > ratios[dull, 1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(embedding_init="glove"), "model.embedding_init must be one of 'random', 'naive_bayes', got 'glove'"),
    (dict(embedding_init="naive_bayes", input_mode="onehot"), "needs input_mode 'embedding'"),
    (dict(word_dropout=1.0, explain_sentences=-1), r"model.word_dropout must be in \[0, 1\), got 1.0; "
                                                   r"model.explain_sentences must be at least 0, got -1"),
    (dict(embedding_init="naive_bayes", naive_bayes_dims=101), "naive_bayes_dims <= embedding_dim"),
])
def test_bad_naive_bayes_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SentimentClassifier(vocab_size=10, **kwargs)
