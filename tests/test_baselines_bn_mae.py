"""BN-VAE, DU-VAE and MAE: each test fails if the method loses its defining property."""
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import models
from benchmarks.errors import UserError
from benchmarks.metrics import active_units
from models.base import TrainingProgress
from models.gaussian import DiagonalGaussian

from .conftest import REPO
from .helpers import random_batch, tiny_arch

NZ = 3


def build(name, **hp):
    torch.manual_seed(0)
    return models.build(name, tiny_arch(nz=NZ), **hp)


def raw_posterior(batch=32, scale=1.0, seed=0):
    """Encoder-like output: per-dimension offsets and spreads, all times ``scale``."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([3.0, -1.0, 0.5])
    spreads = torch.tensor([1.0, 0.2, 5.0])
    mu = (offsets + spreads * torch.randn(batch, NZ, generator=g)) * scale
    logvar = torch.randn(batch, NZ, generator=g) * 0.5 - 1.0
    return DiagonalGaussian(mu, logvar)


def progress(step, steps_per_epoch=10, warmup=1.0, kl_start=0.1):
    return TrainingProgress(1, step, steps_per_epoch, kl_start, warmup, 100)


def variance_part(q):
    return 0.5 * (q.logvar.exp() - q.logvar - 1.0).sum(-1).mean()


# ------------------------------------------------------------------ BN-VAE
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-9])
def test_bn_vae_training_means_have_std_gamma_and_the_kl_floor_holds(scale):
    model = build("bn_vae", gamma=0.6).train()
    with torch.no_grad():
        model.encoder.mean_bn.bias.copy_(torch.tensor([0.3, -0.2, 0.0]))  # a learned shift
    q = raw_posterior(scale=scale)
    t = model.transform_posterior(q)
    torch.testing.assert_close(t.mu.std(0, unbiased=False), torch.full((NZ,), 0.6), rtol=1e-3, atol=0)
    torch.testing.assert_close(t.mu.mean(0), torch.tensor([0.3, -0.2, 0.0]), rtol=0, atol=1e-5)
    torch.testing.assert_close(t.logvar, q.logvar)
    beta = model.encoder.mean_bn.bias.detach()
    floor = 0.5 * (0.6**2 + beta**2).sum()
    kl = t.kl_to_standard_normal().sum(-1).mean()
    assert kl >= floor
    torch.testing.assert_close(kl, floor + variance_part(q), rtol=1e-4, atol=0)
    assert model.state_summary()["kl_floor"] == pytest.approx(floor.item(), rel=1e-6)


@pytest.mark.parametrize("scale", [1e-2, 1e-4, 1e-9])
def test_bn_vae_kl_does_not_pull_the_raw_spread_down(scale):
    """The epsilon trap: with BN's usual eps, the KL falls when the raw means shrink."""
    model = build("bn_vae", gamma=0.6).train()
    q = raw_posterior(scale=1.0)
    log_scale = torch.tensor(math.log(scale), requires_grad=True)
    t = model.transform_posterior(DiagonalGaussian(q.mu * log_scale.exp(), q.logvar))
    kl = t.kl_to_standard_normal().sum(-1).mean()
    kl.backward()
    assert abs(log_scale.grad.item()) < 1e-4 * kl.item()
    assert t.mu.std(0, unbiased=False).min() > 0.6 * (1 - 1e-3)


@pytest.mark.parametrize("scale", [1.0, 1e-9])
def test_bn_vae_evaluation_uses_the_epochs_statistics(scale):
    model = build("bn_vae", gamma=0.6).train()
    with torch.no_grad():
        model.encoder.mean_bn.bias.copy_(torch.tensor([0.1, 0.0, -0.4]))
    model.on_epoch_start(1)
    for i in range(60):  # an epoch on another distribution, forgotten at the next epoch's start
        model.transform_posterior(raw_posterior(scale=scale * 7, seed=1000 + i))
    model.on_epoch_start(2)
    assert int(model.encoder.mean_bn.num_batches_tracked) == 0
    for i in range(100):
        model.transform_posterior(raw_posterior(scale=scale, seed=i))
    model.on_epoch_end()
    model.refresh_statistics()
    model.eval()
    fresh = model.transform_posterior(raw_posterior(batch=20000, scale=scale, seed=99999))
    torch.testing.assert_close(fresh.mu.std(0), torch.full((NZ,), 0.6), rtol=0.03, atol=0)
    torch.testing.assert_close(fresh.mu.mean(0), torch.tensor([0.1, 0.0, -0.4]), rtol=0, atol=0.03)
    assert active_units(fresh.mu)[0] == NZ
    reloaded = build("bn_vae", gamma=0.6)  # the statistics travel with the checkpoint
    reloaded.load_state_dict(model.state_dict())
    reloaded.eval()
    q = raw_posterior(scale=scale, seed=5)
    torch.testing.assert_close(reloaded.transform_posterior(q).mu, model.transform_posterior(q).mu)


class FakeTrainer:
    """What ``TextVAE.training_step`` needs of the protocol's Trainer."""

    def __init__(self, model):
        self.kl_weight = 1.0
        self.optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.02)

    def step(self, loss, update=("encoder", "decoder")):
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


@pytest.mark.parametrize("name", ["bn_vae", "du_vae"])
def test_epoch_end_statistics_are_those_of_the_final_encoder_on_the_epochs_documents(name):
    model = build(name, gamma=0.6).train()
    trainer = FakeTrainer(model)
    batches = [random_batch(batch=8, seed=s) for s in range(5)]
    model.on_epoch_start(1)
    for batch in batches:
        model.training_step(batch, trainer)
    bn = model.encoder.mean_bn
    drifting = bn.running_var.clone()  # cumulative average of the batches' statistics, as the encoder changed
    model.on_epoch_end()
    torch.testing.assert_close(bn.running_var, drifting)  # the method's own epoch end leaves them alone
    model.refresh_statistics()
    with torch.no_grad():
        raw = torch.cat([model.encoder(b.tokens, b.lengths).mu for b in batches])
        torch.testing.assert_close(bn.running_mean, raw.mean(0))
        torch.testing.assert_close(bn.running_var, raw.var(0))
        assert not torch.allclose(drifting, raw.var(0), rtol=1e-3)
        model.eval()
        means = torch.cat([model.posterior(b).mu for b in batches])
    torch.testing.assert_close(means.std(0), bn.weight.detach().abs(), rtol=1e-4, atol=0)
    torch.testing.assert_close(means.mean(0), bn.bias.detach(), rtol=0, atol=1e-5)
    assert bn.seen == []  # the references to the epoch's batches are let go


def test_bn_vae_learns_the_shift_and_never_the_scale():
    model = build("bn_vae", gamma=0.6).train()
    model.loss(random_batch(batch=8), 1.0).loss.backward()
    bn = model.encoder.mean_bn
    assert bn.weight.grad is None and not bn.weight.requires_grad
    assert bn.bias.grad is not None and bn.bias.grad.abs().sum() > 0
    assert "encoder.mean_bn.bias" in dict(model.named_parameters())  # stepped with the encoder, as in the code


def test_bn_vae_fixed_shift_gives_a_constant_mean_and_no_active_units():
    model = build("bn_vae", gamma=0.0, beta=0.7).train()
    model.on_epoch_start(1)
    q = raw_posterior()
    t = model.transform_posterior(q)
    torch.testing.assert_close(t.mu, torch.full_like(q.mu, 0.7))
    kl = t.kl_to_standard_normal().sum(-1).mean()
    torch.testing.assert_close(kl, NZ * 0.49 / 2 + variance_part(q))
    model.eval()
    t_eval = model.transform_posterior(raw_posterior(batch=50, seed=3))
    torch.testing.assert_close(t_eval.mu, torch.full((50, NZ), 0.7))
    assert active_units(t_eval.mu)[0] == 0
    assert not model.encoder.mean_bn.bias.requires_grad and not model.encoder.mean_bn.weight.requires_grad
    assert model.state_summary()["kl_floor"] == pytest.approx(NZ * 0.49 / 2)


# ------------------------------------------------------------------ DU-VAE
FLOOR = 1.0 / (2 * math.pi * math.e)


def du_vae(**hp):
    model = build("du_vae", **hp)
    model.kl_weight(progress(step=50))  # KL weight 1: floor and dropout on
    return model


def test_du_vae_scale_is_renormalised_to_rms_gamma_and_learned():
    model = du_vae(gamma=0.5).train()
    bn = model.encoder.mean_bn
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
    t = model.transform_posterior(raw_posterior())
    expected = torch.tensor([1.0, 2.0, 3.0]) * 0.5 / math.sqrt(14 / 3)
    torch.testing.assert_close(bn.weight.detach(), expected)
    torch.testing.assert_close(t.mu.std(0, unbiased=False), expected, rtol=1e-3, atol=0)
    t.kl_to_standard_normal().sum().backward()
    assert bn.weight.requires_grad and bn.weight.grad.abs().sum() > 0 and bn.bias.grad.abs().sum() > 0
    assert model.state_summary()["kl_floor"] == pytest.approx(0.5 * NZ * 0.25, rel=1e-5)  # bias still 0


def test_du_vae_variance_floor_in_evaluation_without_dropout():
    model = du_vae(gamma=0.6, keep=0.5, delta_rate=2.0).eval()
    q = raw_posterior()
    first = model.transform_posterior(q)
    torch.testing.assert_close(first.logvar, torch.log(q.logvar.exp() + 2.0 * FLOOR))
    torch.testing.assert_close(model.transform_posterior(q).logvar, first.logvar)  # no dropout: deterministic


def test_du_vae_dropout_keeps_scaled_variances_above_the_floor():
    model = du_vae(gamma=0.6, keep=0.8).train()
    var = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.25, 4.0]])
    q = DiagonalGaussian(torch.tensor([[0.1, 0.2, 0.3], [-0.1, 0.0, 0.5]]), var.log())
    torch.manual_seed(5)
    above = model.transform_posterior(q).logvar.exp() - FLOOR
    torch.manual_seed(5)
    mask = torch.dropout(torch.ones(2, 3), p=0.2, train=True) > 0  # the same draw, by hand
    assert 0 < mask.sum() < mask.numel()
    torch.testing.assert_close(above[mask], var[mask] / 0.8)
    torch.testing.assert_close(above[~mask], torch.zeros(int((~mask).sum())), rtol=0, atol=1e-6)
    big = DiagonalGaussian(torch.randn(400, NZ), torch.zeros(400, NZ))
    kept = (model.transform_posterior(big).logvar.exp() > FLOOR * 1.5).float().mean()
    assert kept.item() == pytest.approx(0.8, abs=0.03)


def test_du_vae_kl_and_z_use_the_dropped_out_posterior():
    model = du_vae(keep=0.5).train()
    batch = random_batch(batch=8)
    torch.manual_seed(7)
    terms = model.loss(batch, 1.0)
    torch.manual_seed(7)
    dropped = model.posterior(batch)  # the same dropout draw as inside the loss
    torch.testing.assert_close(terms.kl, dropped.kl_to_standard_normal().sum(-1))
    assert not torch.allclose(terms.kl, model.eval().posterior(batch).kl_to_standard_normal().sum(-1))


def test_du_vae_floor_and_dropout_wait_for_kl_weight_one():
    model = build("du_vae", keep=0.5).train()
    q = raw_posterior()
    assert model.kl_weight(progress(step=3)) < 1
    torch.testing.assert_close(model.transform_posterior(q).logvar, q.logvar)
    torch.testing.assert_close(model.eval().transform_posterior(q).logvar, q.logvar)
    assert model.kl_weight(progress(step=9)) == 1.0
    torch.testing.assert_close(model.transform_posterior(q).logvar, torch.log(q.logvar.exp() + FLOOR))
    assert not torch.allclose(model.train().transform_posterior(q).logvar, torch.log(q.logvar.exp() + FLOOR))
    reloaded = build("du_vae", keep=0.5)
    reloaded.load_state_dict(model.state_dict())  # the switch is saved with the checkpoint
    assert bool(reloaded.uncertainty_on) and model.state_summary()["uncertainty_on"] == 1.0
    # and the host-side copy that forward passes read follows the loaded weights, both ways
    torch.testing.assert_close(reloaded.eval().transform_posterior(q).logvar, torch.log(q.logvar.exp() + FLOOR))
    reloaded.load_state_dict(build("du_vae", keep=0.5).state_dict())
    torch.testing.assert_close(reloaded.transform_posterior(q).logvar, q.logvar)
    unannealed = build("du_vae", anneal=False)
    assert unannealed.kl_weight(progress(step=0)) == 1.0 and bool(unannealed.uncertainty_on)


# --------------------------------------------------------------------- MAE
def pairwise_kl_by_hand(mu, var):
    n, d = mu.shape
    k = np.zeros((n, n, d))
    for i in range(n):
        for j in range(n):
            for e in range(d):
                k[i, j, e] = 0.5 * (var[i, e] / var[j, e] + (mu[i, e] - mu[j, e]) ** 2 / var[j, e]
                                    - math.log(var[i, e] / var[j, e]) - 1)
    return k


def test_mae_terms_match_a_hand_computed_case():
    mu = np.array([[0.0, 1.0], [0.5, -1.0], [2.0, 0.3]])
    var = np.array([[1.0, 0.5], [0.2, 1.5], [0.8, 0.3]])
    k = pairwise_kl_by_hand(mu, var)
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    m = np.array([np.mean([k[i, j, e] for i, j in pairs]) for e in range(2)])
    s = np.std([k[i, j].sum() for i, j in pairs], ddof=1)
    eta, gamma = 2.0, 0.3
    expected = -eta * np.sum(np.log(1 / (1 + np.exp(-m)))) + gamma * s  # XuezheMax/mae: logsigmoid(M), not M/eta
    # the authors' full-matrix form (diagonal filled with the mean, corrected) gives the same numbers
    cc, dd = 3 / 2, math.sqrt(8 / 5)
    authors_m = k.reshape(9, 2).mean(0) * cc
    filled = k.sum(-1) + np.eye(3) * authors_m.sum()
    np.testing.assert_allclose(authors_m, m)
    np.testing.assert_allclose(filled.std(ddof=1) * dd, s)

    model = build("mae", eta=eta, gamma=gamma)
    q = DiagonalGaussian(torch.tensor(mu, dtype=torch.float64), torch.tensor(np.log(var)))
    got = model.auxiliary_loss(q)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_mae_gradients_reach_means_and_variances_and_the_terms_sit_outside_the_kl_weight():
    model = build("mae", eta=1.0, gamma=0.2)
    mu = torch.randn(5, NZ, requires_grad=True)
    logvar = torch.randn(5, NZ, requires_grad=True)
    model.auxiliary_loss(DiagonalGaussian(mu, logvar)).backward()
    assert mu.grad.abs().min() > 0 and logvar.grad.abs().min() > 0
    model.train()
    batch = random_batch(batch=8)
    terms = model.loss(batch, 0.3)
    extra = terms.loss - terms.rec.mean() - 0.3 * terms.kl.mean()
    torch.testing.assert_close(extra, model.auxiliary_loss(model.posterior(batch)))
    assert model.auxiliary_loss(DiagonalGaussian(torch.zeros(1, NZ), torch.zeros(1, NZ))) == 0.0


def test_mae_diversity_saturates_and_rewards_spread():
    model = build("mae", eta=1.0, gamma=0.0)
    close = DiagonalGaussian(torch.randn(6, NZ) * 0.01, torch.zeros(6, NZ))
    apart = DiagonalGaussian(torch.randn(6, NZ) * 10, torch.zeros(6, NZ))
    assert model.auxiliary_loss(close) == pytest.approx(NZ * math.log(2), rel=1e-3)  # M = 0: -log sigmoid(0)
    assert model.auxiliary_loss(apart) < 1e-3


# ---------------------------------------------------------- hyperparameters
@pytest.mark.parametrize("name, values, fragment", [
    ("bn_vae", {"gamma": -0.1}, "bn_vae.gamma must be >= 0"),
    ("bn_vae", {"beta": float("inf")}, "bn_vae.beta must be a finite number or none"),
    ("du_vae", {"gamma": 0.0}, "du_vae.gamma must be > 0"),
    ("du_vae", {"keep": 0.0}, "du_vae.keep must be in (0, 1]"),
    ("du_vae", {"keep": 1.2}, "du_vae.keep must be in (0, 1]"),
    ("du_vae", {"delta_rate": 0.0}, "du_vae.delta_rate must be > 0"),
    ("mae", {"eta": 0.0}, "mae.eta must be > 0"),
    ("mae", {"eta": -1.0}, "mae.eta must be > 0"),
    ("mae", {"gamma": -0.2}, "mae.gamma must be >= 0"),
])
def test_bad_hyperparameters_fail_with_one_line(name, values, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)) as info:
        models.build(name, tiny_arch(), **values)
    assert "\n" not in str(info.value)


def test_registry_and_paper_brackets():
    table = models.describe()
    for fragment in ("Zhu et al. 2020", "Shen et al. 2021", "Ma, Zhou & Hovy 2019"):
        assert fragment in table
    assert models.method("bn_vae").positional == ("gamma", "beta")
    assert models.method("du_vae").positional == ("gamma", "keep")
    assert models.method("mae").positional == ("eta", "gamma")
    assert models.hyperparameters("bn_vae", gamma="0.0", beta="0.7").beta == 0.7
    assert models.hyperparameters("bn_vae", beta="none").beta is None


# ---------------------------------------------------------------- end to end
@pytest.mark.parametrize("model, settings", [
    ("bn_vae", []),
    ("bn_vae", ["gamma=0.0", "beta=0.7"]),
    ("du_vae", ["gamma=0.6", "keep=0.8"]),
    ("mae", ["eta=1.0", "gamma=0.2"]),
])
def test_each_method_trains_one_smoke_epoch_from_the_command_line(tmp_path, data_dir, model, settings):
    command = [sys.executable, "-m", "benchmarks.train", "--model", model, "--dataset", "yahoo_small",
               "--profile", "smoke", "--seed", "0", "--set", "max_epochs=1", *settings,
               "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"),
               "--results", str(tmp_path / "results"), "--offline"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "results" / "runs" / done.stdout.strip().splitlines()[-1].split("/")[-1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("nll", "kl", "mi", "au", "ppl", "rec", "elbo"):
        assert math.isfinite(metrics[key]), key
    if model == "bn_vae" and "beta=0.7" in settings:
        assert metrics["au"] == 0 and metrics["mi"] < 0.1  # no information (He et al.'s estimator can go below 0)
        assert metrics["kl"] >= metrics["kl_floor"] == pytest.approx(4 * 0.49 / 2)  # smoke: nz 4
    elif model in ("bn_vae", "du_vae"):
        assert metrics["kl_floor"] > 0 and "beta_rms" in metrics
