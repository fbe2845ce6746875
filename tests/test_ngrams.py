"""The NBSVM beside the RNN (lightning_module.ngrams): n-gram keys against a plain reference, the fit on a corpus
where a word pair decides the class, exact per-step contributions, checkpoints of any table size, the joint fit
of the temperature and the NBSVM's weight, and a fit through the CLI."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lightning_module.calibration import fit_temperature_and_weight
from lightning_module.network import build_network
from lightning_module.ngrams import NgramScores, NgramSentimentRNN, fit_nbsvm, ngram_keys, ragged_ngram_rows

V = 9  # token ids 0 (padding) .. 8


def reference_keys(row: list[int], order: int) -> list[set[tuple[int, ...]]]:
    """Per step, the n-grams (as tuples) that end there and did not occur earlier in the row."""
    seen, steps = set(), []
    for t in range(len(row)):
        here = set()
        for n in range(1, order + 1):
            gram = tuple(row[t - n + 1: t + 1])
            if t - n + 1 >= 0 and gram not in seen:
                seen.add(gram)
                here.add(gram)
        steps.append(here)
    return steps


def key_of(gram: tuple[int, ...]) -> int:
    return sum((token + 1) * (V + 1) ** j for j, token in enumerate(reversed(gram)))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ngram_keys_are_each_rows_distinct_ngrams_at_their_first_end(order: int) -> None:
    generator = torch.Generator().manual_seed(order)
    lengths = [7, 1, 4, 7, 2]
    tokens = torch.randint(1, 4, (5, 7), generator=generator)  # few ids: many repeated n-grams
    mask = (torch.arange(7) < torch.tensor(lengths).unsqueeze(1)).long()
    tokens = tokens * mask
    keys = ngram_keys(tokens, mask, order, V)
    assert keys.shape == (5, 7, order) and keys.dtype == torch.int64
    for i, length in enumerate(lengths):
        expected = reference_keys(tokens[i, :length].tolist(), order)
        for t in range(7):
            found = {key for key in keys[i, t].tolist() if key >= 0}
            assert found == ({key_of(g) for g in expected[t]} if t < length else set()), (i, t)
    ids = torch.cat([tokens[i, :length] for i, length in enumerate(lengths)]).numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows, ragged = ragged_ngram_rows(ids, offsets, order, V)
    assert sorted(zip(rows.tolist(), ragged.tolist())) == sorted(
        (i, key) for i in range(5) for key in keys[i].flatten().tolist() if key >= 0)


def test_keys_that_would_not_fit_in_int64_are_refused() -> None:
    with pytest.raises(ValueError, match=r"ngram_order 5 with a vocabulary of 10,000,000 ids.*--data.max_size"):
        NgramScores(10_000_000, 2, 5)


def test_an_nbsvm_that_would_not_fit_in_memory_gets_one_line(monkeypatch) -> None:
    from lightning_module.errors import MemoryLimitError

    monkeypatch.setattr("lightning_module.memory.available_bytes", lambda: 100)
    data = corpus([[1, 2, 3], [4, 5]], [0, 1])
    with pytest.raises(MemoryLimitError, match=r"^model.ngram_order 2 on 5 training tokens needs about .* GB of memory "
                                               r"but .* are available: lower model.ngram_order"):
        fit_nbsvm(data, data, 2, V, 2)


def corpus(rows: list[list[int]], labels: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.array(list(itertools.chain(*rows)), np.int64), np.concatenate([[0], np.cumsum([len(r) for r in rows])]),
            np.array(labels, np.int64))


def test_the_nbsvm_learns_what_a_word_pair_says() -> None:
    """Every sentence has ``good`` (3) and ``not`` (4); it is negative when ``not`` comes right before ``good``:
    only a bigram tells the classes apart."""
    generator = np.random.default_rng(0)
    filler = [5, 6, 7, 8]
    rows, labels = [], []
    for i in range(240):
        negative = i % 2 == 0
        middle = [4, 3] if negative else [3, int(generator.choice(filler)), 4]
        rows.append([int(w) for w in generator.choice(filler, 2)] + middle + [int(w) for w in generator.choice(filler, 2)])
        labels.append(0 if negative else 1)
    train, val = corpus(rows[:160], labels[:160]), corpus(rows[160:200], labels[160:200])
    keys, weights, bias, c = fit_nbsvm(train, val, 2, V, 2)
    assert keys.dtype == torch.int64 and bool((keys[1:] > keys[:-1]).all()) and weights.shape == (len(keys), 2)
    assert c in (0.25, 0.5, 1.0, 2.0, 4.0)
    test = [torch.tensor(row) for row in rows[200:]]
    tokens = torch.nn.utils.rnn.pad_sequence(test, batch_first=True)
    targets = torch.tensor(labels[200:])

    def accuracy(order: int) -> float:
        scores = NgramScores(V, 2, order)
        scores.set(*fit_nbsvm(train, val, order, V, 2)[:3])
        logits = scores(tokens, (tokens > 0).long())
        assert torch.allclose(logits[:, 0], -logits[:, 1])  # two classes: one regression, its score split in two
        return float((logits.argmax(1) == targets).float().mean())

    assert accuracy(2) == 1.0
    assert accuracy(1) < 0.75  # the same words in both classes


def fitted_network(order: int = 2, num_classes: int = 2, **settings) -> NgramSentimentRNN:
    torch.manual_seed(0)
    network = build_network(vocab_size=V, num_classes=num_classes, hidden_size=6, fc_size=5, embedding_dim=4,
                            bidirectional=True, ngram_order=order, **settings)
    assert isinstance(network, NgramSentimentRNN)
    tokens = torch.randint(1, V, (30, 5))
    keys = ngram_keys(tokens, torch.ones_like(tokens), order, V).unique()
    network.ngrams.set(keys, torch.randn(len(keys), num_classes), torch.randn(num_classes))
    network.ngrams.scale.fill_(0.7)
    return network.eval()


def test_scores_are_the_rnns_plus_the_weighted_nbsvms_and_split_exactly_into_steps() -> None:
    network = fitted_network(num_classes=3)
    tokens = torch.tensor([[1, 2, 3, 1, 2], [4, 5, 0, 0, 0]])
    mask = (tokens > 0).long()
    with torch.no_grad():
        scores = network(tokens, mask)
        expected = network.rnn_scores(tokens, mask) + 0.7 * network.ngrams(tokens, mask)
        contributions, bias = network.contributions(tokens, mask)
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(bias + contributions.sum(1), scores, atol=1e-5, rtol=0)
    assert not torch.allclose(network.ngrams(tokens, mask), network.ngrams.bias)  # the table is used
    assert bool((contributions[1, 2:] == 0).all())  # padding steps contribute nothing


def test_a_checkpoint_restores_a_table_of_its_own_size() -> None:
    network = fitted_network()
    state = network.state_dict()
    fresh = build_network(vocab_size=V, hidden_size=6, fc_size=5, embedding_dim=4, bidirectional=True, ngram_order=2)
    assert len(fresh.ngrams.keys) == 0
    fresh.load_state_dict(state)
    tokens = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(fresh.eval()(tokens, torch.ones_like(tokens)), network(tokens, torch.ones_like(tokens)))
    assert fresh.ngrams.keys.dtype == torch.int64 and len(fresh.ngrams.keys) == len(network.ngrams.keys)


def test_the_temperature_and_the_weight_are_recovered_from_their_labels() -> None:
    generator = torch.Generator().manual_seed(0)
    logits, extra = 3 * torch.randn(40_000, 2, generator=generator), 3 * torch.randn(40_000, 2, generator=generator)
    labels = torch.multinomial(((logits + 0.6 * extra) / 2.5).softmax(1), 1, generator=generator).squeeze(1)
    temperature, weight = fit_temperature_and_weight(logits, extra, labels)
    assert temperature == pytest.approx(2.5, rel=0.05) and weight == pytest.approx(0.6, rel=0.08)
    # labels that the extra scores do not explain: a weight near 0
    labels = torch.multinomial((logits / 2.0).softmax(1), 1, generator=generator).squeeze(1)
    temperature, weight = fit_temperature_and_weight(logits, extra, labels)
    assert temperature == pytest.approx(2.0, rel=0.05) and weight < 0.05
    with pytest.raises(ValueError, match=r"extra scores of the logits' shape \(40000, 2\), got \(3, 2\)"):
        fit_temperature_and_weight(logits, extra[:3], labels)


@pytest.mark.slow
def test_a_fit_with_ngrams_logs_their_weight_and_predicts_as_its_checkpoint(tmp_path, capsys) -> None:
    from fit_helpers import event_tags, small_fit_args, write_tsv

    from lightning_module.cli import SentimentCLI
    from lightning_module.datamodule import SentimentDataModule
    from lightning_module.inference import SentimentPredictor
    from lightning_module.module import SentimentClassifier
    from lightning_module.numpy_model import NumpyPredictor

    data = write_tsv(tmp_path / "small.tsv")
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, auto_configure_optimizers=False,
                       save_config_kwargs={"overwrite": True},
                       args=small_fit_args(data, tmp_path, "--model.ngram_order", "2"))
    assert "NBSVM over 1- to 2-grams:" in capsys.readouterr().out
    model = cli.model
    assert len(model.model.ngrams.keys) > 0 and float(model.model.ngrams.scale) >= 0
    assert "val/ngram_weight" in event_tags(cli.trainer.logger.log_dir)
    path = cli.trainer.checkpoint_callback.best_model_path
    texts = ["a wonderful , moving film", "boring and far too long", "not a great story"]
    expected = SentimentPredictor.from_checkpoint(path).probabilities(texts)
    loaded = SentimentClassifier.load_from_checkpoint(path, weights_only=True).eval()
    batch = SentimentPredictor.from_checkpoint(path).encoder.encode(texts)
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict_step(batch, 0), expected)
    fast = NumpyPredictor.from_checkpoint(path)
    np.testing.assert_allclose(fast.probabilities([fast.tokenizer(text) for text in texts]), expected.numpy(), atol=1e-5)
