"""delta-VAE (Razavi et al., ICLR 2019, Sec. 2; independent-Gaussian case).

The posterior family is restricted so that it can never reach the prior:
every dimension's KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - ln s^2 - 1) / 2 is
at least delta ("committed rate"), whatever the mean. With mu = 0 the bound is

    s^2 - ln s^2 - 1 >= 2 * delta,

which holds for s^2 <= x_l or s^2 >= x_u, the two roots of x - ln x - 1 = 2 delta
(x_l < 1 < x_u). In closed form x e^{-x} = e^{-(1 + 2 delta)}, so
x_l = -W_0(-e^{-(1 + 2 delta)}) with the principal branch of the Lambert W
function (x_u uses the W_{-1} branch). For delta = 0.1, x_l = 0.4932.

We take the lower region and parametrise the variance as

    s^2 = x_l * sigmoid(v),   v = the encoder's raw log-variance output,

so s^2 lies in (0, x_l), the KL term never falls below delta per dimension, and
the total KL of the nz = 32 dimensions is at least 32 * 0.1 = 3.2 (the paper's
Table 1 reports KL 3.2 and MI 0.0). The mean is left free. Why the lower
region: the upper one (s^2 >= x_u > 1, posteriors wider than the prior) satisfies
the bound too, but it is unbounded above, and an aggregate posterior whose
members are all wider than N(0, 1) cannot match the prior (its variance is
E[s^2] + Var[mu] >= x_u > 1), whereas narrow posteriors are what a VAE learns
anyway. The sigmoid keeps the map smooth and monotone, and at v = 0 the
variance is x_l / 2.

Difference from the code behind the paper's row: BN-VAE's public
implementation (``DeltaGaussianLSTMEncoder``, valdersoul/bn-vae) keeps the
standard deviation between the square roots of the two roots, i.e. in the
region where the variance alone gives KL < delta, and makes up the rest with
the mean, mu = sqrt(2 delta - (s^2 - ln s^2 - 1) + relu(raw mean)), which fixes
every mean to be non-negative. We follow the variance-only constraint
described in the suite's protocol notes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from scipy.special import lambertw

from .base import Hyperparameters, TextVAE, require
from .gaussian import DiagonalGaussian
from .registry import register


@dataclass(frozen=True)
class DeltaHyperparameters(Hyperparameters):
    delta: float = 0.1  # committed rate: the least KL of every latent dimension, in nats

    def __post_init__(self):
        require(0 < self.delta < float("inf"), f"delta_vae.delta must be a finite number > 0, got {self.delta}")


def lower_variance_bound(delta: float) -> float:
    """x_l < 1 with x_l - ln x_l - 1 = 2 delta: the largest variance whose KL at mean 0 is still >= delta."""
    return float(-lambertw(-math.exp(-(1.0 + 2.0 * delta)), 0).real)


@register
class DeltaVAE(TextVAE):
    name = "delta_vae"
    citation = ("Razavi et al. 2019, Preventing Posterior Collapse with delta-VAEs (ICLR), "
                "Sec. 2 (independent Gaussians)")
    Hyperparameters = DeltaHyperparameters
    positional = ("delta",)

    def __init__(self, arch, hparams=None):
        super().__init__(arch, hparams)
        self.max_variance = lower_variance_bound(self.hp.delta)

    def transform_posterior(self, q: DiagonalGaussian) -> DiagonalGaussian:
        return DiagonalGaussian(q.mu, math.log(self.max_variance) + F.logsigmoid(q.logvar))
