"""Cross-validation folds (lightning_module.folds), benchmarks/cross_validate.py on tiny data, the training
batches of unknown words (lightning_module.augment), and GloVe vectors behind naive-Bayes columns."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_script

from lightning_module.augment import unknown_sentences
from lightning_module.datamodule import SentimentDataModule
from lightning_module.errors import DataError
from lightning_module.folds import CrossValidationDataModule, fold_splits, stratified_folds
from fit_helpers import write_tsv

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cross_validate.py"


def test_stratified_folds_are_balanced_per_class_and_seeded():
    labels = np.array([0] * 53 + [1] * 31 + [2] * 7)
    folds = stratified_folds(labels, 5, seed=3)
    assert folds.shape == labels.shape and set(folds.tolist()) == set(range(5))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    for label in range(3):  # each class within one row of its share in every fold
        per_fold = np.bincount(folds[labels == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    np.testing.assert_array_equal(folds, stratified_folds(labels, 5, seed=3))
    assert not np.array_equal(folds, stratified_folds(labels, 5, seed=4))


def test_fold_splits_are_disjoint_cover_every_row_and_test_each_row_once():
    labels = np.array([0, 1] * 40 + [1] * 11)
    tested = []
    for fold in range(4):
        splits = fold_splits(labels, 4, fold, seed=0, val_fraction=0.1)
        train, val, test = (set(splits[name].tolist()) for name in ("train", "val", "test"))
        assert not (train & val or train & test or val & test)
        assert train | val | test == set(range(len(labels)))
        assert abs(len(val) - 0.1 * (len(labels) - len(test))) <= 2  # rounded per class
        tested += sorted(test)
    assert sorted(tested) == list(range(len(labels)))
    assert len(fold_splits(labels, 4, 0, seed=0, val_fraction=0.0)["val"]) == 0


@pytest.mark.parametrize("call, message", [(lambda: stratified_folds(np.zeros(3), 1, 0), "folds >= 2"),
                                           (lambda: stratified_folds(np.zeros(3), 4, 0), "at least as many rows"),
                                           (lambda: fold_splits(np.zeros(9), 3, 3, 0, 0.1), r"fold must be in \[0, 3\)"),
                                           (lambda: fold_splits(np.zeros(9), 3, 0, 0, 1.0), "val_fraction")])
def test_bad_fold_settings_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("cache_preprocessed", [False, True], ids=["uncached", "cached"])
def test_the_data_module_of_a_fold_uses_its_splits_and_builds_the_vocabulary_on_its_training_rows(
        tmp_path, cache_preprocessed):
    path = write_tsv(tmp_path / "small.tsv", repeat=2)
    for fold in range(3):  # cached: each fold's vocabulary is kept apart from the others'
        data = CrossValidationDataModule(folds=3, fold=fold, fold_seed=7, path=str(path), val_fraction=0.2,
                                         cache_preprocessed=cache_preprocessed, min_freq=1)
        data.setup()
        expected = fold_splits(data.corpus.labels, 3, fold, 7, 0.2)
        for name in ("train", "val", "test"):
            np.testing.assert_array_equal(data.splits[name], expected[name])
        train_words = {data.corpus.words[i] for row in expected["train"]
                       for i in data.corpus.ids[data.corpus.offsets[row]:data.corpus.offsets[row + 1]]}
        assert set(data.vocab.itos) - {"<pad>", "<unk>"} == train_words
    with pytest.raises(DataError, match="fold < folds"):
        CrossValidationDataModule(folds=3, fold=3, path=str(path))


def test_unknown_sentences_replace_whole_rows_by_1_to_L_unknown_tokens():
    torch.manual_seed(0)
    tokens = torch.tensor([[5, 6, 7, 8], [9, 4, 0, 0], [3, 0, 0, 0]] * 20)
    mask = (tokens > 0).float()
    new_tokens, new_mask = unknown_sentences(tokens, mask, unk_index=1, rate=1.0)
    assert new_mask.dtype == mask.dtype and new_tokens.dtype == tokens.dtype
    kept = new_mask.sum(1)
    assert ((kept >= 1) & (kept <= mask.sum(1))).all()
    assert set(kept[0::3].long().tolist()) == {1, 2, 3, 4}  # every length 1 .. L is drawn
    steps = torch.arange(4)
    torch.testing.assert_close(new_mask, (steps < kept.unsqueeze(1)).float())  # 1s then 0s
    assert torch.equal(new_tokens, torch.where(new_mask.bool(), 1, 0))
    same_tokens, same_mask = unknown_sentences(tokens, mask, unk_index=1, rate=0.0)
    assert torch.equal(same_tokens, tokens) and torch.equal(same_mask, mask)
    with pytest.raises(ValueError, match="rate"):
        unknown_sentences(tokens, mask, 1, 1.5)


def test_the_classifier_checks_its_unknown_sentences_rate():
    from lightning_module.module import SentimentClassifier

    with pytest.raises(ValueError, match="unknown_sentences must be in"):
        SentimentClassifier(vocab_size=10, unknown_sentences=1.0)


def test_trained_with_unknown_sentences_a_sentence_of_unknown_words_gets_the_class_prior():
    """Words 2..9 decide the class (2..5 positive); 3 of 4 sentences are positive. Trained with the recipe's
    augmentation, sentences of 1 or 3 unknown tokens (id 1) get about the prior 0.75, not a confident class."""
    from torch_rnn.models import SentimentRNN, softmax_loss

    torch.manual_seed(0)
    n, steps = 256, 6
    labels = (torch.rand(n) < 0.75).long()
    words = torch.where(labels.unsqueeze(1) == 1, torch.randint(2, 6, (n, steps)), torch.randint(6, 10, (n, steps)))
    lengths = torch.randint(1, steps + 1, (n,))
    mask = (torch.arange(steps) < lengths.unsqueeze(1)).float()
    tokens = words * mask.long()
    model = SentimentRNN(vocab_size=10, hidden_size=12, fc_size=8, input_mode="embedding", embedding_dim=8,
                         bidirectional=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(80):
        batch_tokens, batch_mask = unknown_sentences(tokens, mask, unk_index=1, rate=0.3)
        optimizer.zero_grad()
        softmax_loss(model(batch_tokens, batch_mask), labels).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert (model(tokens, mask).argmax(1) == labels).float().mean() > 0.95
        for length in (1, 3):
            unknown = torch.ones(1, length, dtype=torch.long)
            positive = model(unknown, torch.ones(1, length)).softmax(1)[0, 1]
            assert abs(float(positive) - float(labels.float().mean())) < 0.06, (length, float(positive))


@pytest.fixture(scope="module")
def cross_validate():
    pytest.importorskip("sklearn")
    yield from load_script(SCRIPT)


def test_the_script_runs_2_folds_on_disjoint_rows_and_prints_the_table(cross_validate, tmp_path, capsys, monkeypatch):
    path = write_tsv(tmp_path / "small.tsv", repeat=3)
    seen = []
    real_fold = cross_validate.run_rnn_fold

    def recording_fold(configs, folds, fold, seed, root, extra=()):
        result = real_fold(configs, folds, fold, seed, root, extra)
        seen.append(cross_validate.rnn_cli(configs, folds, fold, seed, root / "again", extra).datamodule)
        return result

    monkeypatch.setattr(cross_validate, "run_rnn_fold", recording_fold)
    report = cross_validate.main(["--folds", "2", "--workdir", str(tmp_path / "runs"), "--",
                                  "--data.path", str(path), "--data.cache_preprocessed", "false",
                                  "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
                                  "--model.hidden_size", "8", "--model.fc_size", "8", "--model.embedding_dim", "8",
                                  "--model.naive_bayes_dims", "4", "--data.batch_size", "8",
                                  "--model.explain_sentences", "0", "--model.log_bptt", "false"])
    assert len(seen) == 2
    tests = []
    for data in seen:
        data.setup()
        train, val, test = (set(data.splits[name].tolist()) for name in ("train", "val", "test"))
        assert train and val and test and not (train & val or train & test or val & test)
        tests.append(test)
    assert not tests[0] & tests[1] and len(tests[0] | tests[1]) == report["sentences"] == 36
    table = capsys.readouterr().out
    for name in ("RNN default", "TF-IDF uni+bigram, logistic regression", "multinomial NB", "NBSVM uni+bigram",
                 "fold 1", "fold 2",
                 "36 sentences", "load average"):
        assert name in table
    rnn = report["rows"]["RNN default"]
    assert len(rnn) == 2 and all(0 <= r["acc"] <= 1 and 0 <= r["ece"] <= 1 for r in rnn)
    mean = 100 * np.mean([r["acc"] for r in rnn])
    assert f"{mean:6.2f}%" in table
    # a fold's checkpoint: calibration_report rebuilds the fold's splits and draws before and after
    checkpoint = next((tmp_path / "runs" / "RNN_default" / "fold0").glob("lightning_logs/version_0/checkpoints/best-*.ckpt"))
    for module in load_script(SCRIPT.with_name("calibration_report.py")):
        monkeypatch.setattr("sys.argv", ["calibration_report.py", str(checkpoint), "--before", str(checkpoint),
                                         "--figure", str(tmp_path / "reliability.png"), "--json"])
        capsys.readouterr()
        module.main()
        measured = json.loads(capsys.readouterr().out)
    assert (tmp_path / "reliability.png").stat().st_size > 0
    assert measured["test_accuracy"] == pytest.approx(rnn[0]["acc"], abs=1e-6)
    assert measured["before"]["test_ece"] == pytest.approx(measured["test_ece"])
    assert set(measured["all_unknown"]["zorblax"]) == {"steps", "uncalibrated", "calibrated"}


def test_glove_with_naive_bayes_columns_puts_the_ratios_first_and_the_vectors_after(tmp_path):
    pytest.importorskip("pyarrow")
    from lightning_module.cli import SentimentCLI
    from lightning_module.module import SentimentClassifier
    from lightning_module.naive_bayes import log_count_ratios
    from lightning_module.pretrained import load_glove_vectors
    from fit_helpers import CONFIGS, small_fit_args

    try:
        from lightning_module.pretrained import glove_data_dir
        glove_data_dir()
    except Exception as error:  # the optional package is not installed
        pytest.skip(f"GloVe vectors not installed: {error}")
    args = small_fit_args(write_tsv(tmp_path / "small.tsv"), tmp_path, "--config", str(CONFIGS / "glove_nb.yaml"),
                          "--trainer.max_epochs", "0")
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, auto_configure_optimizers=False,
                       save_config_kwargs={"overwrite": True})
    weight = cli.model.model.embedding.weight.detach()
    assert weight.shape == (cli.datamodule.vocab_size, 4 + 50)
    vectors, _ = load_glove_vectors(cli.datamodule.vocab)
    train = cli.datamodule.training_set()
    ids, offsets = train.ragged()
    ratios = log_count_ratios(ids, offsets, train.labels, cli.datamodule.vocab_size, 2)
    unk = cli.datamodule.vocab.unk_index
    known = torch.arange(weight.shape[0]) != unk
    torch.testing.assert_close(weight[known, 4:], vectors[known])
    torch.testing.assert_close(weight[known, :4], 2.0 * ratios[known][:, [0, 1, 0, 1]].to(weight))
    assert torch.equal(weight[unk], torch.zeros(54))  # default.yaml's zero_unknown


def test_keep_row_zero_keeps_the_unknown_row_zero_under_adamw_and_the_other_rows_train():
    from lightning_module.augment import keep_row_zero

    torch.manual_seed(0)
    embedding = torch.nn.Embedding(6, 4, padding_idx=0)
    handle = keep_row_zero(embedding, 1)
    before = embedding.weight.detach().clone()
    optimizer = torch.optim.AdamW(embedding.parameters(), lr=0.1, weight_decay=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        embedding(torch.tensor([[1, 2, 3, 1]])).pow(2).sum().backward()
        optimizer.step()
    assert torch.equal(embedding.weight[1], torch.zeros(4))
    assert not torch.equal(embedding.weight[2], before[2])
    handle.remove()
    frozen = torch.nn.Embedding.from_pretrained(torch.ones(3, 2))
    assert keep_row_zero(frozen, 2) is None and torch.equal(frozen.weight[2], torch.zeros(2))
    with pytest.raises(IndexError):
        keep_row_zero(frozen, 3)


def test_a_fit_with_zero_unknown_keeps_the_unknown_row_zero(tmp_path):
    from lightning_module.cli import SentimentCLI
    from lightning_module.module import SentimentClassifier
    from fit_helpers import small_fit_args

    args = small_fit_args(write_tsv(tmp_path / "small.tsv"), tmp_path, "--model.zero_unknown", "true",
                          "--model.unknown_sentences", "0.2", "--trainer.max_epochs", "1",
                          "--model.explain_sentences", "0", "--model.log_bptt", "false")
    cli = SentimentCLI(SentimentClassifier, SentimentDataModule, args=args, auto_configure_optimizers=False,
                       save_config_kwargs={"overwrite": True})
    weight = cli.model.model.embedding.weight
    assert torch.equal(weight[cli.datamodule.vocab.unk_index], torch.zeros(weight.shape[1]))
    assert weight[cli.datamodule.vocab.unk_index + 1].abs().sum() > 0
    with pytest.raises(ValueError, match="zero_unknown needs an embedding"):
        SentimentClassifier(vocab_size=10, input_mode="onehot", zero_unknown=True)
