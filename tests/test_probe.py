"""Table 4's linear probe (benchmarks/probe.py): DU-VAE's text_ss.py protocol on raw posterior means.

The smoke-run test of ``linear_probe`` (capped, seeded, recorded) is in test_analysis_derived.py,
beside the trained smoke runs it shares with the generation tests.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks import probe


def blobs(rng, n, d=4, classes=3, spread=0.3):
    """Well separated classes: centre 4 on the class's own coordinate, Gaussian noise."""
    labels = rng.integers(0, classes, n)
    return np.eye(classes, d)[labels] * 4 + rng.normal(0, spread, (n, d)), labels


@pytest.fixture
def recorded_sgd(monkeypatch):
    """Every torch.optim.SGD made while the test runs: (its settings, a copy of its first parameter)."""
    made = []

    class RecordingSGD(torch.optim.SGD):
        def __init__(self, params, **kwargs):
            params = list(params)
            made.append((kwargs, params[0].detach().clone()))
            super().__init__(params, **kwargs)

    monkeypatch.setattr(torch.optim, "SGD", RecordingSGD)
    return made


def scripted_losses(monkeypatch, losses):
    """Make the validation loss of epoch k ``losses[k - 1]``; returns the layer's weights at each validation."""
    seen = []

    def fake(layer, x, y):
        seen.append(layer.weight.detach().clone())
        return losses[len(seen) - 1]

    monkeypatch.setattr(probe, "mean_loss", fake)
    return seen


def test_protocol_numbers_are_du_vaes():
    assert (probe.LEARNING_RATE, probe.MOMENTUM, probe.BATCH_SIZE, probe.MIN_BATCH, probe.CLIP_GRAD) == (1.0, 0.0, 16, 2, 5.0)
    assert (probe.DECAY_PATIENCE, probe.LR_DECAY, probe.MAX_DECAYS, probe.MAX_EPOCHS) == (2, 0.5, 5, 100)


def test_probe_is_a_linear_layer_trained_by_plain_sgd_in_batches_of_16(recorded_sgd, monkeypatch):
    rng = np.random.default_rng(0)
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = (blobs(rng, n) for n in (100, 300, 300))
    steps = []
    cross_entropy = F.cross_entropy

    def recording(logits, target, **kwargs):
        if kwargs.get("reduction", "mean") == "mean":  # a training step (validation sums)
            steps.append(len(target))
        return cross_entropy(logits, target, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", recording)
    fit = probe.fit_probe(train_x, train_y, valid_x, valid_y, seed=0)
    assert isinstance(fit.layer, torch.nn.Linear) and tuple(fit.layer.weight.shape) == (3, 4)
    assert recorded_sgd[0][0] == {"lr": 1.0, "momentum": 0.0}
    assert max(steps) == 16 and sum(steps) == 100 * fit.epochs  # all 100 documents every epoch
    assert len(steps) == 7 * fit.epochs  # 16 * 6 + 4: the short last batch trains too
    assert probe.accuracy(fit.layer, test_x, test_y) == 1.0
    assert probe.probe_accuracy(train_x, train_y, valid_x, valid_y, test_x, test_y, seed=0) == 1.0


def test_batches_hold_documents_of_one_length_and_single_documents_are_skipped():
    lengths = [3, 3, 5, 3, 5, 7, 3]
    batches = probe.length_batches(lengths, batch_size=3)
    assert [b.tolist() for b in batches] == [[0, 1, 3], [6], [2, 4], [5]]
    rng = np.random.default_rng(1)
    x, y = blobs(rng, 7, classes=2)
    fit = probe.fit_probe(x, y, x, y, lengths=lengths, max_epochs=1)
    assert fit.batched_documents == 6  # length 7's single document never trains; the 4 of length 3 do
    assert probe.fit_probe(x, y, x, y, lengths=[1, 2, 3, 4, 5, 6, 7], max_epochs=1).batched_documents == 0


def test_probe_is_seeded():
    rng = np.random.default_rng(2)
    (train_x, train_y), (valid_x, valid_y) = blobs(rng, 60, spread=3.0), blobs(rng, 200, spread=3.0)
    first, again = (probe.fit_probe(train_x, train_y, valid_x, valid_y, seed=s, max_epochs=5) for s in (7, 7))
    other = probe.fit_probe(train_x, train_y, valid_x, valid_y, seed=torch.Generator().manual_seed(8), max_epochs=5)
    assert torch.equal(first.layer.weight, again.layer.weight) and first.valid_losses == again.valid_losses
    assert not torch.equal(first.layer.weight, other.layer.weight)


def test_the_best_validation_epoch_is_kept_when_later_epochs_overfit():
    # 48 training documents with 30% of the labels flipped and 59 noise dimensions: the probe
    # fits the noise; validation follows the true rule (the sign of the first coordinate).
    rng = np.random.default_rng(0)

    def documents(n, flip):
        y = rng.integers(0, 2, n)
        x = rng.normal(0, 0.5, (n, 60))
        x[:, 0] = 0.2 * (2 * y - 1)
        flipped = rng.random(n) < flip
        y[flipped] = 1 - y[flipped]
        return x, y

    (train_x, train_y), (valid_x, valid_y) = documents(48, 0.3), documents(2000, 0.0)
    fit = probe.fit_probe(train_x, train_y, valid_x, valid_y, seed=0, max_epochs=10)
    best = min(fit.valid_losses)
    assert fit.epochs == 10 and fit.epochs not in fit.decays  # it ended on an ordinary epoch ...
    assert fit.valid_losses[-1] > best + 1e-3  # ... whose model was worse than the best
    assert fit.valid_losses[fit.best_epoch - 1] == best
    kept = probe.mean_loss(fit.layer, *probe._as_inputs(valid_x, valid_y))
    assert kept == pytest.approx(best, abs=1e-6)


def test_the_kept_model_is_that_of_the_lowest_validation_loss(monkeypatch):
    rng = np.random.default_rng(3)
    x, y = blobs(rng, 40, spread=2.0)
    seen = scripted_losses(monkeypatch, [0.9, 0.7, 0.8, 0.6, 0.65])  # best: epoch 4; no decay
    fit = probe.fit_probe(x, y, x, y, seed=0, max_epochs=5)
    assert fit.best_epoch == 4 and fit.decays == [] and fit.learning_rates == [1.0] * 5
    assert torch.equal(fit.layer.weight, seen[3]) and not torch.equal(fit.layer.weight, seen[4])


def test_rate_halves_after_2_epochs_above_the_reference_at_most_5_times(monkeypatch, recorded_sgd):
    rng = np.random.default_rng(4)
    x, y = blobs(rng, 40, spread=2.0)
    seen = scripted_losses(monkeypatch, [1.0 + k for k in range(100)])  # every epoch worse than the last
    fit = probe.fit_probe(x, y, x, y, seed=0)
    assert fit.decays == [3, 5, 7, 9, 11] and fit.epochs == 11  # stops at the 5th decay
    assert fit.learning_rates == [1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625]
    assert [kwargs["lr"] for kwargs, _ in recorded_sgd] == [1, 0.5, 0.25, 0.125, 0.0625, 0.03125]
    # each decay reloads the best model (epoch 1's) and makes a new optimiser for it
    assert fit.best_epoch == 1 and all(torch.equal(weight, seen[0]) for _, weight in recorded_sgd[1:])
    assert torch.equal(fit.layer.weight, seen[0])


def test_decay_rule_compares_with_the_last_loss_that_did_not_exceed_it():
    def decays(losses):
        rule = probe.DecayRule()
        return [epoch for epoch, loss in enumerate(losses, 1) if rule.update(loss)]

    assert decays([1.0, 1.1, 1.2]) == [3]
    assert decays([1.0, 1.1, 1.0, 1.1, 1.0, 1.1]) == []  # a loss equal to the reference resets the count
    assert decays([1.0, 0.9, 0.95, 0.92, 0.93]) == [4]  # reference 0.9; then the reference is 0.92
    assert decays([1.0, 1.2, 1.3, 1.25, 1.26, 1.27]) == [3, 6]  # after a decay the reference is the worse 1.3
    rule = probe.DecayRule()
    for loss in [1.0] + [2.0 + k for k in range(9)]:
        rule.update(loss)
    assert rule.decays == 4 and not rule.finished
    rule.update(20.0), rule.update(21.0)
    assert rule.decays == 5 and rule.finished


def test_features_are_not_standardised():
    # One feature carries the label, with a spread of 1e-4 (variance 1e-8) around 0.5; the others are
    # noise. Standardised, that feature separates the classes perfectly; raw, the probe cannot use it.
    rng = np.random.default_rng(5)

    def documents(n):
        y = rng.integers(0, 2, n)
        x = rng.normal(0, 1, (n, 4))
        x[:, 0] = 0.5 + 1e-4 * (2 * y - 1)
        return x, y

    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = (documents(n) for n in (200, 500, 500))
    assert train_x[:, 0].var() == pytest.approx(1e-8, rel=0.05)
    raw = probe.probe_accuracy(train_x, train_y, valid_x, valid_y, test_x, test_y, seed=0)
    mean, std = train_x.mean(0), train_x.std(0)
    standardised = probe.probe_accuracy((train_x - mean) / std, train_y, (valid_x - mean) / std, valid_y,
                                        (test_x - mean) / std, test_y, seed=0)
    assert standardised == 1.0
    assert raw < 0.6
