"""The five simple baselines: cyclical annealing, beta-VAE, Free-Bits, delta-VAE, Skip-VAE.

Each test pins the property that defines its method, so that it fails if the
method quietly turns back into a plain VAE.
"""
import json
import math
import subprocess
import sys

import pytest
import torch

import models
from benchmarks.errors import UserError
from models.base import TrainingProgress, linear_annealing
from models.cyclical import cyclical_weight
from models.delta_vae import lower_variance_bound
from models.gaussian import DiagonalGaussian

from .conftest import REPO
from .helpers import random_batch, tiny_arch

SIMPLE = ("cyclical", "beta_vae", "free_bits", "delta_vae", "skip_vae")


def build(name, seed=0, arch=None, **hp):
    torch.manual_seed(seed)
    return models.build(name, arch or tiny_arch(), **hp)


# ------------------------------------------------------------------ cyclical
def frange_reference(total, cycles, ratio):
    """An independent, loop-based restatement of Fu et al.'s frange_cycle_linear (start 0, stop 1)."""
    weights = [1.0] * total
    period = total / cycles
    for c in range(cycles):
        i = 0
        while i / (period * ratio) <= 1.0 and int(i + c * period) < total:
            weights[int(i + c * period)] = i / (period * ratio)
            i += 1
    return weights


@pytest.mark.parametrize("step, expected", [
    (0, 0.0),  # start of the first cycle
    (10, 0.4),  # mid-rise: 10 of the 25 rising steps
    (24, 0.96),
    (25, 1.0),  # end of the rise
    (40, 1.0), (49, 1.0),  # plateau
    (50, 0.0),  # the second cycle starts again from 0
    (60, 0.4), (75, 1.0),
    (150, 0.0), (199, 1.0),  # the fourth (last) cycle
])
def test_cyclical_schedule_four_cycles_half_rise(step, expected):
    # T = 10 epochs * 20 steps = 200 iterations, period 50, rise over 25
    model = build("cyclical")
    progress = TrainingProgress(epoch=1 + step // 20, step=step, steps_per_epoch=20, kl_start=0.1,
                                warmup_epochs=5.0, max_epochs=10)
    assert model.kl_weight(progress) == pytest.approx(expected, abs=1e-12)


def test_cyclical_schedule_with_a_period_that_is_not_an_integer():
    # T = 100, M = 3: cycles start at floor(0), floor(33.3) = 33, floor(66.7) = 66; rise over 8.33 steps
    assert cyclical_weight(0, 100, 3, 0.25) == 0.0
    assert cyclical_weight(32, 100, 3, 0.25) == 1.0
    assert cyclical_weight(33, 100, 3, 0.25) == 0.0
    assert cyclical_weight(37, 100, 3, 0.25) == pytest.approx(4 / (100 / 3 * 0.25))
    assert cyclical_weight(42, 100, 3, 0.25) == 1.0
    assert cyclical_weight(66, 100, 3, 0.25) == 0.0
    assert cyclical_weight(99, 100, 3, 0.25) == 1.0


@pytest.mark.parametrize("total, cycles, ratio", [(200, 4, 0.5), (100, 3, 0.25), (97, 5, 1.0), (30, 1, 0.3)])
def test_cyclical_schedule_matches_the_authors_per_iteration_rule(total, cycles, ratio):
    reference = frange_reference(total, cycles, ratio)
    ours = [cyclical_weight(t, total, cycles, ratio) for t in range(total)]
    assert ours == pytest.approx(reference, abs=1e-9)
    assert sum(1 for w in ours if w == 0.0) == cycles  # the weight returns to 0 once per cycle


def test_cyclical_replaces_the_protocols_annealing():
    model = build("cyclical", cycles=2, ratio=0.5)
    early = TrainingProgress(1, 0, 10, 0.1, 5.0, 10)
    assert model.kl_weight(early) == 0.0 and linear_annealing(early) > 0.1  # not kl_start, not multiplied
    second_cycle = TrainingProgress(6, 50, 10, 0.1, 5.0, 10)
    assert model.kl_weight(second_cycle) == 0.0 and linear_annealing(second_cycle) == 1.0


# ------------------------------------------------------------------ beta-VAE
def test_beta_vae_loss_differs_from_the_vae_by_beta_minus_one_times_the_weighted_kl():
    beta, weight = 0.4, 0.7
    vae = build("vae").train()
    model = build("beta_vae", beta=beta).train()
    model.load_state_dict(vae.state_dict())
    batch = random_batch()
    torch.manual_seed(1)
    plain = vae.loss(batch, weight)
    torch.manual_seed(1)
    scaled = model.loss(batch, weight)
    torch.testing.assert_close(scaled.rec, plain.rec)
    torch.testing.assert_close(scaled.kl, plain.kl)  # the reported KL is the true one
    assert plain.kl.mean().item() > 0
    torch.testing.assert_close(scaled.loss - plain.loss, (beta - 1) * weight * plain.kl.mean())


# ----------------------------------------------------------------- Free-Bits
def hand_posterior():
    """Dimension 0: batch-mean KL 0.5 * (1 + e^0.5 - 0.5 - 1) > 0.1; dimension 1: 0.005; dimension 2: 0."""
    mu = torch.tensor([[1.0, 0.1, 0.0]] * 4, requires_grad=True)
    logvar = torch.tensor([[0.5, 0.0, 0.0]] * 4, requires_grad=True)
    return mu, logvar


def test_free_bits_regularizer_value_on_a_hand_built_posterior():
    model = build("free_bits", target=0.1)
    mu, logvar = hand_posterior()
    value = model.regularizer(DiagonalGaussian(mu, logvar))
    kl0 = 0.5 * (1.0 + math.exp(0.5) - 0.5 - 1.0)
    assert value.item() == pytest.approx(kl0 + 0.1 + 0.1)
    assert build("free_bits", target=0.0).regularizer(DiagonalGaussian(mu, logvar)).item() == pytest.approx(kl0 + 0.005)


def test_free_bits_gives_no_kl_gradient_below_lambda_and_the_usual_one_above():
    model = build("free_bits", target=0.1)
    mu, logvar = hand_posterior()
    model.regularizer(DiagonalGaussian(mu, logvar)).backward()
    usual_mu, usual_logvar = hand_posterior()
    DiagonalGaussian(usual_mu, usual_logvar).kl_to_standard_normal().sum(-1).mean().backward()
    assert usual_mu.grad[:, 1].abs().sum() > 0  # the plain KL does push dimension 1 to collapse
    assert torch.all(mu.grad[:, 1:] == 0) and torch.all(logvar.grad[:, 1:] == 0)
    torch.testing.assert_close(mu.grad[:, 0], usual_mu.grad[:, 0])
    torch.testing.assert_close(logvar.grad[:, 0], usual_logvar.grad[:, 0])
    assert logvar.grad[:, 0].abs().sum() > 0


def test_free_bits_loss_uses_the_clamped_term_and_reports_the_true_kl():
    model = build("free_bits", target=0.5).train()
    batch = random_batch()
    torch.manual_seed(1)
    terms = model.loss(batch, 0.3)
    q = model.posterior(batch)
    clamped = q.kl_to_standard_normal().mean(0).clamp_min(0.5).sum()
    torch.testing.assert_close(terms.loss, terms.rec.mean() + 0.3 * clamped)
    torch.testing.assert_close(terms.kl, q.kl_to_standard_normal().sum(-1))


# ------------------------------------------------------------------ delta-VAE
@pytest.mark.parametrize("delta", [1e-3, 0.1, 0.5, 2.0])
def test_delta_vae_variance_bound_solves_the_equation(delta):
    x = lower_variance_bound(delta)
    assert 0 < x < 1
    assert x - math.log(x) - 1 == pytest.approx(2 * delta, rel=1e-10)
    assert lower_variance_bound(0.1) == pytest.approx(0.49324, abs=1e-5)


def delta_kl(model, raw_logvar, mu=None):
    mu = torch.zeros_like(raw_logvar) if mu is None else mu
    q = model.transform_posterior(DiagonalGaussian(mu, raw_logvar))
    return q, q.kl_to_standard_normal()


@pytest.mark.parametrize("delta", [0.1, 0.7])
def test_delta_vae_every_dimension_commits_at_least_delta(delta):
    model = build("delta_vae", delta=delta)
    torch.manual_seed(0)
    extremes = torch.tensor([-1e4, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1e4], dtype=torch.float64)
    for raw in (torch.randn(256, 8, dtype=torch.float64) * 5, extremes.view(1, -1)):
        q, kl = delta_kl(model, raw)
        assert torch.isfinite(kl).all()
        assert kl.min().item() >= delta * (1 - 1e-9)
        assert q.logvar.exp().max().item() <= lower_variance_bound(delta) * (1 + 1e-12)
        untransformed = DiagonalGaussian(torch.zeros_like(raw), raw).kl_to_standard_normal()
        assert untransformed.min().item() < delta  # the raw outputs alone have no floor
    _, kl = delta_kl(model, extremes.view(1, -1), mu=torch.full((1, 9), 0.5, dtype=torch.float64))
    assert kl.min().item() >= delta  # a mean only adds to the KL


def test_delta_vae_bound_is_tight():
    model = build("delta_vae", delta=0.1)
    q, kl = delta_kl(model, torch.tensor([[20.0, 40.0]], dtype=torch.float64))
    assert kl.min().item() == pytest.approx(0.1, abs=1e-8)  # s^2 -> x_l as the raw log-variance grows
    assert q.logvar.exp().max().item() == pytest.approx(lower_variance_bound(0.1), rel=1e-8)


def test_delta_vae_model_posterior_has_kl_of_at_least_nz_delta():
    arch = tiny_arch(nz=5)
    model = build("delta_vae", arch=arch, delta=0.1).train()
    batch = random_batch()
    torch.manual_seed(2)
    terms = model.loss(batch, 1.0)
    assert torch.all(terms.kl >= 5 * 0.1 - 1e-6)  # the KL term (and the metrics) use the constrained posterior


# ------------------------------------------------------------------- Skip-VAE
def cut_recurrent_z(model):
    """Remove every path of z into the LSTM: its z input columns and the z-to-initial-cell map."""
    decoder = model.decoder
    with torch.no_grad():
        decoder.lstm.weight_ih_l0[:, model.arch.emb_dim:] = 0
        decoder.z_to_cell.weight.zero_()
    return decoder


@pytest.mark.parametrize("name, depends", [("skip_vae", True), ("vae", False)])
def test_skip_vae_output_depends_on_z_through_the_skip_connection(name, depends):
    decoder = cut_recurrent_z(build(name).eval())
    inputs = random_batch(batch=3).tokens[:, :-1]
    torch.manual_seed(3)
    z1, z2 = torch.randn(3, 3), torch.randn(3, 3)
    with torch.no_grad():
        a, b = decoder.logits(inputs, z1), decoder.logits(inputs, z2)
    if depends:
        assert (a - b).abs().min() > 0  # every step of every document sees z
        with torch.no_grad():
            torch.testing.assert_close(a - b, decoder.z_to_output(z1 - z2).unsqueeze(1).expand_as(a))
    else:
        torch.testing.assert_close(a, b)


def test_skip_vae_output_layer_is_bias_free_and_follows_the_profiles_init():
    arch = models.Architecture(vocab_size=30, emb_dim=8, enc_hidden=10, dec_hidden=10, nz=3, init="uniform",
                               init_range=0.01, emb_init_range=0.1)
    decoder = build("skip_vae", arch=arch).decoder
    weight = decoder.z_to_output.weight
    assert decoder.z_to_output.bias is None and weight.shape == (30, 3)
    assert 0 < weight.abs().max().item() <= 0.01
    assert decoder.embed.weight.abs().max().item() > 0.01  # embeddings keep their own range


# --------------------------------------------------------- all five, end to end
@pytest.mark.parametrize("name", SIMPLE)
def test_each_simple_baseline_trains_one_smoke_epoch_from_the_cli(tmp_path, data_dir, name):
    command = [sys.executable, "-m", "benchmarks.train", "--model", name, "--dataset", "yahoo_small",
               "--profile", "smoke", "--seed", "0", "--set", "max_epochs=1", "--data-dir", str(data_dir),
               "--cache-dir", str(tmp_path / "cache"), "--results", str(tmp_path / "results"), "--offline"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "results" / "runs" / done.stdout.strip().splitlines()[-1].split("/")[-1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == name and metrics["epochs"] == 1
    for key in ("nll", "kl", "mi", "au", "ppl", "rec", "elbo"):
        assert math.isfinite(metrics[key]), (key, metrics[key])
    if name == "delta_vae":
        assert metrics["kl"] >= 4 * 0.1 - 1e-6  # smoke: nz = 4


# ------------------------------------------------------------ bad values
@pytest.mark.parametrize("name, values, fragment", [
    ("beta_vae", {"beta": -0.1}, "beta_vae.beta must be a finite number >= 0"),
    ("free_bits", {"target": -1.0}, "free_bits.target must be a finite number >= 0"),
    ("delta_vae", {"delta": 0.0}, "delta_vae.delta must be a finite number > 0"),
    ("delta_vae", {"delta": -0.5}, "delta_vae.delta must be a finite number > 0"),
    ("cyclical", {"ratio": 0.0}, "cyclical.ratio must lie in (0, 1]"),
    ("cyclical", {"ratio": 1.5}, "cyclical.ratio must lie in (0, 1]"),
    ("cyclical", {"cycles": 0}, "cyclical.cycles must be an integer >= 1"),
    ("cyclical", {"anneal": False}, "cyclical.anneal must stay true"),
    ("cyclical", {"cycles": 2.5}, "must be of type int"),
])
def test_bad_hyperparameters_fail_with_one_line(name, values, fragment):
    with pytest.raises(UserError) as info:
        models.build(name, tiny_arch(), **values)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_registry_lists_the_five_with_their_bracket_order():
    table = models.describe()
    for name in SIMPLE:
        assert name in table
    assert models.method("cyclical").positional == ("cycles", "ratio")
    assert models.method("beta_vae").positional == ("beta",)
    assert models.method("free_bits").positional == ("target",)
    assert models.method("delta_vae").positional == ("delta",)
    assert models.method("skip_vae").positional == ()
