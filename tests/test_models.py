"""The shared base and the core methods: LSTM-LM, VAE, Scale-VAE (Algorithm 1)."""
import pytest
import torch

import models
from benchmarks.errors import UserError
from models.base import TrainingProgress, linear_annealing
from models.gaussian import DiagonalGaussian

from .helpers import random_batch, tiny_arch


def progress(step, steps_per_epoch=10, warmup=2.0, kl_start=0.1, epoch=1):
    return TrainingProgress(epoch, step, steps_per_epoch, kl_start, warmup, 100)


def test_registry_lists_core_methods_with_citations():
    table = models.describe()
    for name in ("lstm_lm", "vae", "scale_vae"):
        assert name in table
    assert "Song et al. 2024" in table and "des_std=0.7" in table


@pytest.mark.parametrize("name, values, fragment", [
    ("nope", {}, "unknown model 'nope'"),
    ("scale_vae", {"des_std": 0.0}, "des_std must be > 0"),
    ("scale_vae", {"f_epo": 0}, "f_epo must be an integer >= 1"),
    ("scale_vae", {"f_epo": "x"}, "must be of type int"),
    ("vae", {"beta": 1.0}, "vae has no hyperparameter 'beta'"),
])
def test_bad_models_and_hyperparameters_fail_with_one_line(name, values, fragment):
    with pytest.raises(UserError, match=fragment) as info:
        models.build(name, tiny_arch(), **values)
    assert "\n" not in str(info.value)


def test_linear_annealing_follows_he_et_al():
    assert linear_annealing(progress(0)) == pytest.approx(0.1 + 0.9 / 20)
    assert linear_annealing(progress(9)) == pytest.approx(0.1 + 0.9 * 10 / 20)
    assert linear_annealing(progress(19)) == 1.0 and linear_annealing(progress(500)) == 1.0
    vae = models.build("vae", tiny_arch(), anneal=False)
    assert vae.kl_weight(progress(0)) == 1.0


def test_lstm_lm_loss_is_the_exact_negative_log_likelihood():
    torch.manual_seed(0)
    lm = models.build("lstm_lm", tiny_arch()).eval()
    batch = random_batch()
    terms = lm.loss(batch, 1.0)
    logp = torch.log_softmax(lm.decoder.logits(batch.tokens[:, :-1], None), -1)
    picked = logp.gather(-1, batch.tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = torch.arange(batch.tokens.shape[1] - 1) < (batch.lengths - 1).unsqueeze(1)
    torch.testing.assert_close(terms.rec, -(picked * mask).sum(-1))
    assert lm.encoder is None and terms.kl.abs().sum() == 0


def test_padding_does_not_change_a_documents_likelihood():
    torch.manual_seed(0)
    vae = models.build("vae", tiny_arch()).eval()
    batch = random_batch(batch=4, steps=6)
    z = torch.randn(4, 2, 3)
    full = vae.decoder.log_likelihood(batch.tokens, batch.lengths, z)
    for i in range(4):
        n = int(batch.lengths[i])
        alone = vae.decoder.log_likelihood(batch.tokens[i:i + 1, :n], batch.lengths[i:i + 1], z[i:i + 1])
        torch.testing.assert_close(full[i:i + 1], alone)
        q_full = vae.encoder(batch.tokens, batch.lengths)
        q_alone = vae.encoder(batch.tokens[i:i + 1, :n], batch.lengths[i:i + 1])
        torch.testing.assert_close(q_full.mu[i], q_alone.mu[0])


def scale_vae(**hp):
    torch.manual_seed(0)
    return models.build("scale_vae", tiny_arch(), **hp)


def test_scale_vae_uses_each_batchs_factor_during_the_first_f_epo_epochs():
    model = scale_vae(des_std=0.7, f_epo=2).train()
    q = DiagonalGaussian(torch.randn(16, 3) * 0.05, torch.zeros(16, 3))
    for epoch in (1, 2):
        model.on_epoch_start(epoch)
        scaled = model.decoder_posterior(q)
        f = 0.7 / q.mu.std(0)
        torch.testing.assert_close(scaled.mu, f * q.mu)
        torch.testing.assert_close(scaled.mu.std(0), torch.full((3,), 0.7))
        torch.testing.assert_close(scaled.logvar, q.logvar)  # only the mean is scaled
        model.on_epoch_end()


def test_scale_vae_factor_trace_keeps_float32_values_exactly_in_their_shortest_digits():
    model = scale_vae(des_std=0.7, f_epo=1).train()
    f = torch.tensor([20.35304069519043, 1 / 3, 2.5], dtype=torch.float32)
    model._trace = [(1, 1, "batch", f), (1, None, "f_bar", f)]
    batch, f_bar = model.traces()["factor_trace"]
    written = [f_bar[f"f_{d}"] for d in range(3)]
    assert torch.equal(torch.tensor(written, dtype=torch.float32), f)  # the same float32 values
    assert [repr(v) for v in written] == ["20.35304", "0.33333334", "2.5"]  # not float64's 17 digits
    assert (batch["f_min"], batch["f_max"]) == (0.33333334, 20.35304) and "f_0" not in batch  # a batch: its range only


def first_epoch_of_two_batches(model):
    """Epoch 1 of ``model`` over two batches of posterior means, a narrow and a wide one; returns them."""
    qa = DiagonalGaussian(torch.randn(16, 3) * 0.1, torch.zeros(16, 3))
    qb = DiagonalGaussian(torch.randn(16, 3) * 2.0, torch.zeros(16, 3))
    model.on_epoch_start(1)
    model.decoder_posterior(qa)
    model.decoder_posterior(qb)
    model.on_epoch_end()
    return qa, qb


def test_scale_vae_harmonic_f_bar_is_each_dimensions_harmonic_mean_of_the_batch_factors():
    model = scale_vae(des_std=1.1, f_epo=1, f_average="harmonic").train()
    qa, qb = first_epoch_of_two_batches(model)
    fa, fb = 1.1 / qa.mu.std(0), 1.1 / qb.mu.std(0)
    torch.testing.assert_close(model.f_bar, 2 / (1 / fa + 1 / fb))


def test_scale_vae_uses_the_previous_epochs_average_factor_afterwards():
    model = scale_vae(des_std=1.1, f_epo=1).train()
    qa, qb = first_epoch_of_two_batches(model)
    f_bar = (1.1 / qa.mu.std(0) + 1.1 / qb.mu.std(0)) / 2
    torch.testing.assert_close(model.f_bar, f_bar)
    model.on_epoch_start(2)  # epoch 2 > f_epo: every batch uses f_bar, whatever its own spread
    torch.testing.assert_close(model.decoder_posterior(qa).mu, f_bar * qa.mu)
    torch.testing.assert_close(model.decoder_posterior(qb).mu, f_bar * qb.mu)
    model.on_epoch_end()  # the factors seen in epoch 2 become the next f_bar
    torch.testing.assert_close(model.f_bar, f_bar)
    model.eval()  # evaluation uses f_bar too
    torch.testing.assert_close(model.decoder_posterior(qa).mu, f_bar * qa.mu)


def test_scale_vae_kl_term_uses_the_unscaled_posterior():
    model = scale_vae().train()
    model.on_epoch_start(1)
    batch = random_batch(batch=8)
    torch.manual_seed(1)
    terms = model.loss(batch, kl_weight=1.0)
    q = model.posterior(batch)
    torch.testing.assert_close(terms.kl, q.kl_to_standard_normal().sum(-1))
    scaled_kl = model.decoder_posterior(q).kl_to_standard_normal().sum(-1)
    assert not torch.allclose(terms.kl, scaled_kl)


def test_scale_vae_factor_is_saved_and_drives_evaluation_and_generation():
    model = scale_vae()
    model.f_bar.copy_(torch.tensor([2.0, 3.0, 0.5]))
    fresh = scale_vae()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.f_bar, torch.tensor([2.0, 3.0, 0.5]))
    torch.manual_seed(0)
    z = fresh.sample_prior(20000)
    torch.testing.assert_close(z.std(0), torch.tensor([2.0, 3.0, 0.5]), rtol=0.03, atol=0)
    fresh.eval()
    q = DiagonalGaussian(torch.ones(2, 3), torch.zeros(2, 3))
    torch.testing.assert_close(fresh.decoder_posterior(q).mu, torch.tensor([[2.0, 3.0, 0.5]] * 2))


@pytest.mark.parametrize("f_grad", [False, True])
def test_scale_vae_factor_gradient_option(f_grad):
    model = scale_vae(f_grad=f_grad).train()
    model.on_epoch_start(1)
    mu = (torch.randn(8, 3)).requires_grad_()
    model.decoder_posterior(DiagonalGaussian(mu, torch.zeros(8, 3))).mu.sum().backward()
    f = (0.7 / mu.detach().std(0)).expand(8, 3)
    if f_grad:
        assert not torch.allclose(mu.grad, f)  # d(f mu)/d mu includes the factor's own derivative
    else:
        torch.testing.assert_close(mu.grad, f)  # f is a constant


def test_vae_trains_with_gradients_to_both_networks():
    torch.manual_seed(0)
    vae = models.build("vae", tiny_arch()).train()
    vae.loss(random_batch(), 0.5).loss.backward()
    assert vae.encoder.to_gaussian.weight.grad.abs().sum() > 0
    assert vae.decoder.output.weight.grad.abs().sum() > 0
