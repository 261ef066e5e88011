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


def mean_estimate(q, repeats=300):
    """The estimator draws one z per document, so single values are noisy; average them."""
    return np.mean([metrics.mutual_information(q) for _ in range(repeats)])


def test_mutual_information_is_log_batch_for_separated_posteriors():
    torch.manual_seed(0)
    batch = 64
    q = DiagonalGaussian(torch.arange(batch, dtype=torch.float).unsqueeze(1) * 100.0, torch.full((batch, 1), -4.0))
    assert mean_estimate(q) == pytest.approx(math.log(batch), abs=0.03)


def test_mutual_information_is_zero_for_identical_posteriors():
    torch.manual_seed(0)
    q = DiagonalGaussian(torch.zeros(32, 4), torch.zeros(32, 4))
    assert mean_estimate(q) == pytest.approx(0.0, abs=0.06)


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
