"""Agg-VAE (He et al. 2019) and SA-VAE (Kim et al. 2018): each test fails if a defining property is lost."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import models
from benchmarks.config import load_profile
from benchmarks.data import BatchLoader
from benchmarks.errors import UserError
from benchmarks.protocol import Trainer
from models.base import LossTerms
from models.gaussian import DiagonalGaussian
from models.networks import Architecture

from .conftest import REPO
from .helpers import random_batch, tiny_arch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: a second thread only adds contention (10-40x slower steps on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def unchanged(module, before):
    return all(torch.equal(p, b) for p, b in zip(module.parameters(), before))


def all_changed(module, before):
    return all(not torch.equal(p, b) for p, b in zip(module.parameters(), before))


# ------------------------------------------------------------------ Agg-VAE


def documents(n=24, vocab=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    docs = []
    for _ in range(n):
        length = int(torch.randint(1, 6, (1,), generator=g))
        docs.append([1, *torch.randint(4, vocab, (length,), generator=g).tolist(), 2])
    return docs


def agg_trainer(**hp):
    torch.manual_seed(0)
    model = models.build("agg_vae", tiny_arch(), **hp)
    profile = load_profile("smoke", {"decay_min_epoch": 0})
    train = BatchLoader(documents(), 4, pad_id=0, seed=0)
    valid = BatchLoader(documents(8, seed=1), 4, pad_id=0, shuffle=False, seed=0)
    trainer = Trainer(model, profile, train, valid, log=lambda line: None)
    trainer.kl_weight = 0.5
    model.train()
    return model, trainer


def script_inner_losses(model, per_word):
    """Make the model's loss report the values ``per_word(step)`` per word (gradients stay real)."""
    real, seen = model.loss, []

    def scripted(batch, kl_weight):
        seen.append(batch)
        terms = real(batch, kl_weight)
        target = per_word(len(seen)) * batch.num_words / batch.size
        return LossTerms(terms.loss - terms.loss.detach() + target, terms.rec, terms.kl)

    model.loss = scripted
    return seen


def test_agg_inner_loop_steps_only_the_encoder_first_on_the_batch_then_on_random_ones():
    model, trainer = agg_trainer()
    batch = next(iter(trainer.train_batches))
    seen = script_inner_losses(model, lambda step: 10.0 - 0.01 * step)  # always improving
    encoder, decoder = snapshot(model.encoder), snapshot(model.decoder)
    steps = model.update_encoder(batch, trainer)
    assert steps == 99  # He et al.: `while sub_iter < 100` with sub_iter from 1
    assert unchanged(model.decoder, decoder) and all_changed(model.encoder, encoder)
    assert seen[0] is batch and len(seen) == 99
    assert len({id(b) for b in seen[1:]}) > 1  # fresh batches drawn from the training set


def test_agg_inner_loop_stops_after_the_second_window_of_15_when_it_is_worse():
    model, trainer = agg_trainer()
    script_inner_losses(model, lambda step: 5.0 if step <= 15 else 6.0)  # the first window never stops it
    assert model.update_encoder(next(iter(trainer.train_batches)), trainer) == 30


@pytest.mark.parametrize("windows, stop", [
    ([5.0, 4.0, 4.5], 9),  # the third window is worse than the second: stop after it
    ([5.0, 6.0], 6),
    ([5.0] * 7, 20),  # equal windows do not stop the loop (strict rise); the step budget does
    ([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0], 20),
])
def test_agg_inner_loop_stops_when_the_window_loss_per_word_rises(windows, stop):
    model, trainer = agg_trainer(check_every=3, max_inner_steps=20)
    script_inner_losses(model, lambda step: windows[min((step - 1) // 3, len(windows) - 1)])
    assert model.update_encoder(next(iter(trainer.train_batches)), trainer) == stop


def test_agg_aggressive_step_updates_the_decoder_but_not_the_encoder_after_the_inner_loop():
    model, trainer = agg_trainer(check_every=2, max_inner_steps=4)
    inner_loop, after_inner = model.update_encoder, {}

    def spy(batch, t):
        steps = inner_loop(batch, t)
        after_inner["encoder"], after_inner["decoder"] = snapshot(model.encoder), snapshot(model.decoder)
        return steps

    model.update_encoder = spy
    model.on_epoch_start(1)
    encoder = snapshot(model.encoder)
    model.training_step(next(iter(trainer.train_batches)), trainer)
    assert all_changed(model.encoder, encoder)  # the inner loop moved it
    assert unchanged(model.encoder, after_inner["encoder"])  # the outer step did not
    assert not unchanged(model.decoder, after_inner["decoder"])
    summary = model.state_summary()
    assert summary["aggressive"] == 1.0 and 2 <= summary["inner_steps"] <= 4


def test_agg_mode_ends_for_good_when_validation_mi_drops_then_steps_both_networks():
    model, trainer = agg_trainer(check_every=2, max_inner_steps=4)
    for mi in (0.2, 0.5):
        model.on_validated({"valid_mi_batch": mi})
        assert model.aggressive
    model.on_validated({"valid_mi_batch": 0.4})
    assert not model.aggressive
    model.on_validated({"valid_mi_batch": 3.0})
    assert not model.aggressive  # no way back
    model.update_encoder = lambda *args: pytest.fail("no inner loop after aggressive mode")
    model.on_epoch_start(4)
    encoder, decoder = snapshot(model.encoder), snapshot(model.decoder)
    model.training_step(next(iter(trainer.train_batches)), trainer)
    assert not unchanged(model.encoder, encoder) and not unchanged(model.decoder, decoder)
    model.on_epoch_end()
    assert model.state_summary() == {"aggressive": 0.0, "inner_steps": 0.0, "aggressive_epochs": 0.0}


def test_agg_aggressive_epochs_cap_ends_the_mode_even_while_mi_rises():
    capped, _ = agg_trainer(max_aggressive_epochs=2)
    uncapped, _ = agg_trainer()
    for epoch, mi in enumerate((0.2, 0.5, 0.9), start=1):
        for model in (capped, uncapped):
            model.aggressive_epochs = epoch  # what on_epoch_end counted
            model.on_validated({"valid_mi_batch": mi})
        assert capped.aggressive == (epoch < 2) and uncapped.aggressive


def test_agg_first_epoch_compares_with_zero_mi():
    model, _ = agg_trainer()
    model.on_validated({"valid_mi_batch": -0.01})  # He et al.: pre_mi = 0
    assert not model.aggressive


def test_agg_fit_records_its_state_and_switches_off_on_an_mi_drop():
    model, trainer = agg_trainer(check_every=2, max_inner_steps=4)
    trainer.profile = load_profile("smoke", {"decay_min_epoch": 0, "max_epochs": 3})
    mis = iter([0.3, 0.1, 0.2])
    validate = trainer.validate
    trainer.validate = lambda: {**validate(), "valid_mi_batch": next(mis)}
    history = trainer.fit()
    assert [r["aggressive"] for r in history] == [1.0, 1.0, 0.0]
    assert [r["aggressive_epochs"] for r in history] == [1.0, 2.0, 2.0]
    assert history[0]["inner_steps"] >= 2 and history[2]["inner_steps"] == 0.0


# ------------------------------------------------------------------ SA-VAE


def sa_vae(**hp):
    torch.manual_seed(0)
    return models.build("sa_vae", tiny_arch(), **hp)


def elbo(model, batch, q, eps):
    """Monte Carlo ELBO per document at KL weight 1, with the given noise eps [B, S, nz] (common random numbers)."""
    with torch.no_grad():
        z = q.mu.unsqueeze(1) + eps * q.std.unsqueeze(1)
        return model.decoder.log_likelihood(batch.tokens, batch.lengths, z).mean(1) - q.kl_to_standard_normal().sum(-1)


def test_sa_refinement_increases_the_elbo_of_the_documents():
    gains, recovered = [], []
    for seed in range(3):
        model = sa_vae(steps=10).eval()
        batch = random_batch(batch=16, seed=seed)
        torch.manual_seed(seed)
        eps = torch.randn(16, 400, 3)
        with torch.no_grad():
            q0 = model.encoder(batch.tokens, batch.lengths)
            gains.append(elbo(model, batch, model.posterior(batch), eps) - elbo(model, batch, q0, eps))
            poor = DiagonalGaussian(q0.mu + 1.0, q0.logvar - 1.0)  # a bad starting point is mostly repaired
            recovered.append(elbo(model, batch, model.refine(batch, poor, 1.0), eps) - elbo(model, batch, poor, eps))
    gains, recovered = torch.stack(gains), torch.stack(recovered)
    assert gains.mean() > 0 and (gains > 0).float().mean() > 0.9
    assert recovered.mean() > 0.5 and (recovered > 0).all()


def encoder_and_decoder_grads(model, batch, seed=1):
    model.zero_grad()
    torch.manual_seed(seed)
    model.loss(batch, 0.7).loss.backward()
    return ([p.grad.clone() for p in model.encoder.parameters()], [p.grad.clone() for p in model.decoder.parameters()])


def test_sa_zero_steps_is_the_vae():
    batch = random_batch()
    enc0, dec0 = encoder_and_decoder_grads(sa_vae(steps=0), batch)
    torch.manual_seed(0)
    vae = models.build("vae", tiny_arch())  # the same initial weights
    torch.manual_seed(1)
    vae.loss(batch, 0.7).loss.backward()
    for g, p in zip(enc0 + dec0, list(vae.encoder.parameters()) + list(vae.decoder.parameters())):
        torch.testing.assert_close(g, p.grad)


def test_sa_gradients_reach_the_encoder_through_the_refinement_and_the_decoder():
    batch = random_batch()
    enc_vae, _ = encoder_and_decoder_grads(sa_vae(steps=0), batch)
    enc, dec = encoder_and_decoder_grads(sa_vae(steps=4), batch)
    assert all(g.abs().sum() > 0 for g in enc) and all(g.abs().sum() > 0 for g in dec)
    assert not torch.allclose(enc[-1], enc_vae[-1], atol=1e-6)  # the linear head: d loss / d lambda_0 differs


def test_sa_encoder_gradient_is_exact_through_the_unrolled_steps():
    """Autograd's d loss / d lambda_0 matches central finite differences (float64, fixed noise)."""
    model = sa_vae(steps=3, svi_lr=2.0).double()
    batch = random_batch(batch=4)
    mu0 = torch.randn(4, 3, dtype=torch.float64) * 0.5
    logvar0 = torch.randn(4, 3, dtype=torch.float64) * 0.2

    def final_loss(mu, logvar):
        torch.manual_seed(3)
        q = model.refine(batch, DiagonalGaussian(mu, logvar), 0.7)
        rec = -model.decoder.log_likelihood(batch.tokens, batch.lengths, q.rsample(1))[:, 0]
        return (rec + 0.7 * q.kl_to_standard_normal().sum(-1)).mean()

    mu = mu0.clone().requires_grad_()
    grad_mu, = torch.autograd.grad(final_loss(mu, logvar0), mu)
    eps = 1e-5
    for i, d in [(0, 0), (2, 1), (3, 2)]:
        up, down = mu0.clone(), mu0.clone()
        up[i, d] += eps
        down[i, d] -= eps
        with torch.no_grad():  # the refinement turns gradients on for itself
            numeric = (final_loss(up, logvar0) - final_loss(down, logvar0)) / (2 * eps)
        assert grad_mu[i, d].item() == pytest.approx(numeric.item(), rel=1e-4, abs=1e-8)
    with torch.no_grad():  # treating the refinement as the identity (its Jacobian as I) gives another gradient
        torch.manual_seed(3)
        refined = model.refine(batch, DiagonalGaussian(mu0, logvar0), 0.7)
    mu_k = refined.mu.clone().requires_grad_()
    rec = -model.decoder.log_likelihood(batch.tokens, batch.lengths, DiagonalGaussian(mu_k, refined.logvar).rsample(1))
    (grad_at_k,) = torch.autograd.grad((rec[:, 0] + 0.7 * DiagonalGaussian(mu_k, refined.logvar)
                                        .kl_to_standard_normal().sum(-1)).mean(), mu_k)
    assert not torch.allclose(grad_mu, grad_at_k, rtol=1e-2, atol=1e-6)


def test_sa_decoder_gradient_through_the_steps_only_with_decoder_n2n():
    batch = random_batch()
    _, through = encoder_and_decoder_grads(sa_vae(steps=4, decoder_n2n=True), batch)
    _, final_only = encoder_and_decoder_grads(sa_vae(steps=4, decoder_n2n=False), batch)
    model = sa_vae(steps=4)  # reference: the gradient of the final loss at the (detached) refined q
    torch.manual_seed(1)
    q0 = model.encoder(batch.tokens, batch.lengths)
    with torch.no_grad():
        q = model.refine(batch, q0, 0.7)  # the same noise as in training: one draw per step
    rec = -model.decoder.log_likelihood(batch.tokens, batch.lengths, q.rsample(1))[:, 0]
    (rec.mean() + 0.7 * q.kl_to_standard_normal().sum(-1).mean()).backward()
    for g, p in zip(final_only, model.decoder.parameters()):
        torch.testing.assert_close(g, p.grad)
    assert any(not torch.allclose(a, b) for a, b in zip(through, final_only))


def test_sa_evaluation_refines_under_no_grad_and_validation_uses_it():
    model = sa_vae(steps=5).eval()
    batch = random_batch()
    q0 = model.encoder(batch.tokens, batch.lengths)
    with torch.no_grad():
        q = model.posterior(batch)
        terms = model.loss(batch, 1.0)
    assert not q.mu.requires_grad and not torch.allclose(q.mu, q0.mu)
    assert not any(p.grad is not None for p in model.parameters())
    assert torch.isfinite(terms.loss) and terms.kl.shape == (batch.size,)


def test_sa_inner_steps_clip_each_gradient_by_its_batch_norm():
    model = sa_vae(steps=1, svi_lr=1.0, svi_momentum=0.0, svi_max_grad_norm=1e-3).eval()
    batch = random_batch()
    with torch.no_grad():
        q0 = model.encoder(batch.tokens, batch.lengths)
        q = model.refine(batch, q0, 1.0)
    assert (q.mu - q0.mu).norm().item() == pytest.approx(1e-3, rel=1e-3)
    assert (q.logvar - q0.logvar).norm().item() == pytest.approx(1e-3, rel=1e-3)


# ------------------------------------------------------------- both methods


@pytest.mark.parametrize("name, values, fragment", [
    ("agg_vae", {"check_every": 0}, "check_every must be an integer >= 1"),
    ("agg_vae", {"max_inner_steps": 0}, "max_inner_steps must be an integer >= 1"),
    ("agg_vae", {"check_every": "x"}, "must be of type int"),
    ("sa_vae", {"steps": -1}, "steps must be an integer >= 0"),
    ("sa_vae", {"svi_lr": 0.0}, "svi_lr must be > 0"),
    ("sa_vae", {"svi_momentum": 1.0}, "svi_momentum must be in [0, 1)"),
    ("sa_vae", {"svi_max_grad_norm": -1.0}, "svi_max_grad_norm must be >= 0"),
    ("sa_vae", {"momentum": 0.5}, "sa_vae has no hyperparameter 'momentum'"),
])
def test_bad_hyperparameters_fail_with_one_line(name, values, fragment):
    with pytest.raises(UserError, match=fragment.replace("[", r"\[").replace(")", r"\)")) as info:
        models.build(name, tiny_arch(), **values)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, extra, state", [
    ("agg_vae", ["max_epochs=1"], {"aggressive", "inner_steps", "aggressive_epochs"}),
    ("sa_vae", ["max_epochs=1", "steps=2"], set()),
])
def test_one_smoke_epoch_from_the_command_line(tmp_path, data_dir, name, extra, state):
    command = [sys.executable, "-m", "benchmarks.train", "--model", name, "--dataset", "yahoo_small",
               "--profile", "smoke", "--seed", "0", "--set", *extra, "--data-dir", str(data_dir),
               "--cache-dir", str(tmp_path / "cache"), "--results", str(tmp_path / "results"), "--offline"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "results" / "runs" / done.stdout.strip().splitlines()[-1].split("/")[-1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1
    for key in ("nll", "kl", "mi", "ppl", "rec", "elbo"):
        assert math.isfinite(metrics[key]), key
    assert metrics["nll"] > 0 and metrics["ppl"] > 1 and 0 <= metrics["au"] <= 4
    assert state <= set(metrics)
    if name == "agg_vae":
        assert metrics["aggressive"] == 1.0 and 1 <= metrics["inner_steps"] <= 99


@pytest.mark.parametrize("clip, decoder_n2n", [(5.0, True), (0.02, True), (0.02, False), (0.0, True)])
def test_sa_finite_difference_backward_matches_the_exact_one(clip, decoder_n2n):
    """sa_vae_fd: the same loss as sa_vae, and its gradients to the encoder and the decoder within
    central differences' O(r^2) of the exact ones (float64; training mode, so the replayed noise and
    dropout masks matter; a clip of 0.02 is active at every step)."""
    batch = random_batch(batch=6)
    grads, losses = [], []
    for name, extra in (("sa_vae", {}), ("sa_vae_fd", {"fd_eps": 1e-5})):
        torch.manual_seed(0)
        model = models.build(name, tiny_arch(), steps=3, svi_max_grad_norm=clip, decoder_n2n=decoder_n2n,
                             **extra).double().train()
        torch.manual_seed(1)
        loss = model.loss(batch, 0.7).loss
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
        after = torch.rand(1)  # the backward pass leaves the random stream where the forward left it
        grads[-1].append(after)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-12, atol=0)
    assert torch.equal(grads[0][-1], grads[1][-1])
    for exact, finite in zip(grads[0][:-1], grads[1][:-1]):
        torch.testing.assert_close(finite, exact, rtol=1e-6, atol=1e-9)


def test_sa_finite_difference_default_step_is_accurate_in_float32():
    arch = Architecture(vocab_size=400, emb_dim=32, enc_hidden=64, dec_hidden=64, nz=8, init="default")
    batch = random_batch(batch=16, steps=15, vocab=400)
    grads = []
    for name in ("sa_vae", "sa_vae_fd"):  # fd_eps at its default, 1e-3
        torch.manual_seed(0)
        model = models.build(name, arch, steps=5).train()
        torch.manual_seed(1)
        model.loss(batch, 0.7).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert (grads[1] - grads[0]).norm() / grads[0].norm() < 1e-4  # measured: 2e-6
