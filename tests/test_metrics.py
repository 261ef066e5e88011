"""Metrics against closed-form and exactly computable cases."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from benchmarks import metrics
from models.gaussian import DiagonalGaussian, log_normal


def test_kl_matches_closed_form_of_torch_distributions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(7, 5), torch.randn(7, 5)
    ours = DiagonalGaussian(mu, logvar).kl_to_standard_normal()
    reference = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                                  torch.distributions.Normal(0.0, 1.0))
    torch.testing.assert_close(ours, reference)
    assert DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 3)).kl_to_standard_normal().abs().max() == 0


def test_log_prob_and_log_normal_match_torch():
    torch.manual_seed(1)
    q = DiagonalGaussian(torch.randn(4, 3), torch.randn(4, 3))
    z = torch.randn(4, 6, 3)
    normal = torch.distributions.Normal(q.mu.unsqueeze(1), q.std.unsqueeze(1))
    torch.testing.assert_close(q.log_prob(z), normal.log_prob(z).sum(-1))
    std = torch.tensor([0.5, 2.0, 3.0])
    torch.testing.assert_close(log_normal(z, std), torch.distributions.Normal(0.0, std).log_prob(z).sum(-1))


def test_active_units_on_hand_built_means():
    # dim 0 varies with unbiased variance 1/3 >= 0.01; dim 1 with variance 0.0025/3 < 0.01; dim 2 constant
    means = torch.tensor([[0.0, 0.00, 5.0], [1.0, 0.05, 5.0], [0.0, 0.00, 5.0], [1.0, 0.05, 5.0]])
    count, variance = metrics.active_units(means)
    assert count == 1
    torch.testing.assert_close(variance, torch.tensor([1 / 3, 0.0025 / 3, 0.0]))
    assert metrics.active_units(means, threshold=1e-4)[0] == 2


def separated(n: int) -> DiagonalGaussian:
    """n posteriors that do not overlap: means 100 apart, std 0.14."""
    return DiagonalGaussian(torch.arange(n, dtype=torch.float).unsqueeze(1) * 100.0, torch.full((n, 1), -4.0))


def test_batch_mutual_information_is_log_batch_for_separated_posteriors():
    torch.manual_seed(0)
    estimates = [metrics.batch_mutual_information(separated(64)) for _ in range(100)]
    assert np.mean(estimates) == pytest.approx(math.log(64), abs=0.03)


def test_whole_split_mutual_information_reaches_log_n_above_the_batch_ceiling():
    """calc_mi_v3: the mixture runs over all N documents, so separated posteriors give log N, not log 32."""
    torch.manual_seed(0)
    n = 3000
    q = separated(n)
    whole = metrics.mutual_information(q)
    assert whole == pytest.approx(math.log(n), abs=0.01)
    assert whole > math.log(32) + 4
    # the per-batch estimator on the same posteriors, batches of 32, stays at its own ceiling
    per_batch = np.mean([metrics.batch_mutual_information(DiagonalGaussian(q.mu[i:i + 32], q.logvar[i:i + 32]))
                         for i in range(0, n, 32)])
    assert per_batch == pytest.approx(math.log(32), abs=0.05)


@pytest.mark.parametrize("estimator", [metrics.mutual_information, metrics.batch_mutual_information])
def test_mutual_information_is_zero_for_identical_posteriors(estimator):
    torch.manual_seed(0)
    q = DiagonalGaussian(torch.zeros(32, 4), torch.zeros(32, 4))
    assert np.mean([estimator(q) for _ in range(300)]) == pytest.approx(0.0, abs=0.06)


def test_mixture_density_chunked_equals_unchunked_and_the_definition():
    torch.manual_seed(4)
    q = DiagonalGaussian(torch.randn(50, 3) * 2, torch.randn(50, 3))
    z = torch.randn(37, 3) * 2
    brute = torch.logsumexp(DiagonalGaussian(q.mu.double(), q.logvar.double()).log_prob(
        z.double().unsqueeze(0).expand(50, -1, -1)), dim=0) - math.log(50)  # [37]: log (1/N) sum_j q_j(z_i)
    torch.testing.assert_close(metrics.mixture_log_density(z, q, chunk=7), brute)
    torch.testing.assert_close(metrics.mixture_log_density(z, q, chunk=7), metrics.mixture_log_density(z, q, chunk=1000),
                               rtol=0, atol=1e-12)
    torch.manual_seed(5)
    a = metrics.mutual_information(q, chunk=3)
    torch.manual_seed(5)
    assert metrics.mutual_information(q, chunk=50) == pytest.approx(a, abs=1e-12)


def test_kl_to_a_scaled_normal_matches_torch():
    torch.manual_seed(2)
    q = DiagonalGaussian(torch.randn(6, 3), torch.randn(6, 3))
    std = torch.tensor([0.3, 1.0, 4.0])
    reference = torch.distributions.kl_divergence(torch.distributions.Normal(q.mu, q.std),
                                                  torch.distributions.Normal(0.0, std))
    torch.testing.assert_close(q.kl_to_normal(std), reference)
    torch.testing.assert_close(q.kl_to_normal(1.0), q.kl_to_standard_normal())


def test_mutual_information_of_a_gaussian_channel():
    # mu ~ N(0, t^2), q(z|x) = N(mu, s^2): I(x; z) = 0.5 log(1 + t^2 / s^2) per dimension
    torch.manual_seed(0)
    t, s, batch, nz = 1.0, 0.5, 4000, 2
    q = DiagonalGaussian(torch.randn(batch, nz) * t, torch.full((batch, nz), 2 * math.log(s)))
    exact = nz * 0.5 * math.log(1 + t**2 / s**2)
    assert metrics.mutual_information(q) == pytest.approx(exact, abs=0.05)


class ToyModel:
    """1-d latent; x is a sequence of tokens i.i.d. given z with logits w z + b."""

    def __init__(self, tokens, w, b):
        self.tokens, self.w, self.b = torch.tensor(tokens), torch.tensor(w), torch.tensor(b)

    def log_likelihood(self, z):  # z [B=1, k, 1] -> [1, k]
        logp = torch.log_softmax(z * self.w + self.b, dim=-1)  # [1, k, V]
        return logp[..., self.tokens].sum(-1)

    def exact_log_marginal(self, prior_std=1.0):
        def integrand(z):
            logp = self.log_likelihood(torch.tensor([[[z]]], dtype=torch.float64)).item()
            return math.exp(logp) * math.exp(-0.5 * (z / prior_std) ** 2) / (prior_std * math.sqrt(2 * math.pi))
        value, _ = integrate.quad(integrand, -12 * prior_std, 12 * prior_std, limit=200)
        return math.log(value)


@pytest.fixture
def toy():
    return ToyModel([0, 2, 2, 1, 2], [1.5, -0.7, 0.4], [0.1, 0.0, -0.2])


def proposal(mean=0.4, std=0.9):
    return DiagonalGaussian(torch.tensor([[mean]], dtype=torch.float64),
                            torch.tensor([[2 * math.log(std)]], dtype=torch.float64))


@pytest.mark.parametrize("prior_std", [1.0, 2.5])
def test_iw_nll_converges_to_exact_marginal(toy, prior_std):
    torch.manual_seed(0)
    exact = toy.exact_log_marginal(prior_std)
    (estimate,), _ = metrics.importance_weighted_log_likelihood(toy.log_likelihood, proposal(), [prior_std], 20000, 1000)
    assert estimate.item() == pytest.approx(exact, abs=0.01)


def test_iw_estimate_is_a_lower_bound_in_expectation(toy):
    torch.manual_seed(0)
    exact = toy.exact_log_marginal()
    means = []
    for samples in (1, 5, 50):
        estimates = [metrics.importance_weighted_log_likelihood(toy.log_likelihood, proposal(-0.8, 0.5), [1.0],
                                                                samples, samples)[0][0].item() for _ in range(400)]
        means.append(np.mean(estimates))
    assert all(m <= exact + 0.01 for m in means)  # never above the exact value in expectation
    assert means[0] < means[1] < means[2]  # and tighter with more samples (Burda et al. 2016, Thm 1)
    assert exact - means[0] > 0.05  # the single-sample bound is visibly loose for this proposal


def test_chunked_and_unchunked_iw_agree(toy):
    torch.manual_seed(3)
    (a,), _ = metrics.importance_weighted_log_likelihood(toy.log_likelihood, proposal(), [1.0], 4000, 4000)
    torch.manual_seed(3)
    (b,), _ = metrics.importance_weighted_log_likelihood(toy.log_likelihood, proposal(), [1.0], 4000, 7)
    assert a.item() == pytest.approx(b.item(), abs=0.02)


def test_perplexity_counts_words_and_saturates_instead_of_crashing():
    assert metrics.perplexity(10 * math.log(7.0), 10) == pytest.approx(7.0)
    assert metrics.perplexity(1e6, 10) == math.inf


def test_scale_vae_au_counts_the_encoders_means_not_the_scaled_ones():
    """On the scaled means every dimension has spread des_std by construction; AU must read the encoder's."""
    import models
    from benchmarks.metrics import active_units, latent_statistics
    from tests.helpers import random_batch, tiny_arch

    torch.manual_seed(0)
    nz = 6
    model = models.build("scale_vae", tiny_arch(nz=nz), des_std=0.7, f_epo=1)
    with torch.no_grad():
        model.encoder.to_gaussian.weight[:3] *= 1e-4  # three nearly constant mean dimensions
    batches = [random_batch(batch=32, seed=s) for s in range(4)]
    model.train()
    model.on_epoch_start(1)
    for batch in batches:
        model.decoder_posterior(model.posterior(batch))  # f of each batch
    model.on_epoch_end()
    stats = latent_statistics(model, batches)
    with torch.no_grad():
        encoder_means = torch.cat([model.posterior(b).mu for b in batches])
    assert stats["au"] == active_units(encoder_means)[0] < nz
    assert stats["au_scaled"] == nz  # f_bar blows the near-constant dimensions up to des_std
