"""The shared training protocol: He et al.'s learning-rate decay, best model, optimiser groups."""
import pytest
import torch

import models
from benchmarks.config import load_profile
from benchmarks.protocol import Trainer, TrainingDiverged

from .helpers import random_batch, tiny_arch


def trainer(**overrides):
    torch.manual_seed(0)
    profile = load_profile("smoke", {"decay_min_epoch": 0, **overrides})
    return Trainer(models.build("vae", tiny_arch()), profile, [random_batch()], [random_batch(seed=1)],
                   log=lambda line: None)


def finish_epoch(t, loss):
    t.epoch += 1
    with torch.no_grad():
        for p in t.model.parameters():
            p.add_(0.01)  # the model changes every epoch
    return t.end_of_epoch(loss)


def test_lr_halves_and_best_model_returns_after_two_epochs_without_improvement():
    t = trainer(lr=0.004)
    finish_epoch(t, 5.0)
    finish_epoch(t, 4.0)
    best = {k: v.clone() for k, v in t.model.state_dict().items()}
    finish_epoch(t, 4.5)
    assert t.lr == 0.004 and t.decays == 0
    finish_epoch(t, 4.6)
    assert t.lr == pytest.approx(0.002) and t.decays == 1 and t.best_epoch == 2
    for key, value in t.model.state_dict().items():
        torch.testing.assert_close(value, best[key])
    assert all(group["lr"] == pytest.approx(0.002) for o in t.optimizers.values() for group in o.param_groups)


def test_no_decay_before_decay_min_epoch_and_stop_after_max_decays():
    t = trainer(decay_min_epoch=4, max_decays=2)
    for loss in (5.0, 6.0, 6.0):
        assert not finish_epoch(t, loss)
    assert t.decays == 0  # epoch 3 < decay_min_epoch
    assert not finish_epoch(t, 6.0) and t.decays == 1
    assert not finish_epoch(t, 7.0)
    assert finish_epoch(t, 7.0) and t.decays == 2  # the second decay ends training


def test_step_updates_only_the_named_optimiser_groups():
    t = trainer()
    encoder = t.model.encoder.to_gaussian.weight.clone()
    decoder = t.model.decoder.output.weight.clone()
    t.step(t.model.loss(random_batch(), 1.0).loss, update=("decoder",))
    assert torch.equal(t.model.encoder.to_gaussian.weight, encoder)
    assert not torch.equal(t.model.decoder.output.weight, decoder)


def test_gradient_norm_is_clipped():
    t = trainer(clip=0.001, optimizer="sgd", lr=1.0)
    before = [p.clone() for p in t.model.parameters()]
    t.step(t.model.loss(random_batch(), 1.0).loss * 1e6)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(t.model.parameters(), before)))
    assert moved.item() == pytest.approx(0.001, rel=1e-3)  # SGD lr 1: the step equals the clipped gradient


def test_fit_keeps_the_best_validation_model_and_raises_on_divergence():
    t = trainer(max_epochs=3)
    history = t.fit()
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert t.best_loss == min(r["valid_loss"] for r in history)
    t = trainer(max_epochs=1, lr=1e30, clip=1e30, optimizer="sgd")
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        t.fit()


def test_the_validation_metrics_sampling_does_not_change_what_is_trained(monkeypatch):
    """A metric that draws more (or fewer) samples must leave training's random stream alone."""
    from benchmarks import metrics

    def losses(t):
        return [(r["train_loss"], r["valid_loss"]) for r in t.fit()]
    plain = losses(trainer(max_epochs=3))
    original = metrics.latent_statistics
    monkeypatch.setattr(metrics, "latent_statistics", lambda *a: (torch.randn(1000), original(*a))[1])
    assert losses(trainer(max_epochs=3)) == plain
