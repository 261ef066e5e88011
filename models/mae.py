"""MAE (Ma, Zhou & Hovy, ICLR 2019): mutual posterior-divergence regularisation.

For the B documents of a batch, the pairwise divergences of their posteriors,
per latent dimension d (zero for i = j):

    K[i, j, d] = KL(q_d(z | x_i) || q_d(z | x_j))
               = ( s_id^2 / s_jd^2 + (m_id - m_jd)^2 / s_jd^2 - log(s_id^2 / s_jd^2) - 1 ) / 2.

Diversity: M_d = mean of K[i, j, d] over the B(B-1) pairs i != j; the loss
adds -eta * sum_d log sigmoid(M_d), which rewards posteriors that differ
from one another (the mutual posterior divergence), saturating once M_d is
well above 1. This is the authors' code (XuezheMax/mae, ``MAE.loss``:
``- eta * F.logsigmoid(postKL[0]).sum()``): eta weights the term and does not
divide M_d (an earlier version here had log sigmoid(M_d / eta), which differs
at eta = 2, the Yelp row of Table 1 and Table 4). Smoothness: S = standard deviation (unbiased) over the pairs
i != j of sum_d K[i, j, d]; the loss adds gamma * S, which asks the documents
to be spread evenly. Both terms are outside the KL weight:

    loss = rec + kl_weight * KL + [-eta sum_d log sigmoid(M_d)] + gamma S.

Comparison with the authors' code (XuezheMax/mae, ``GaussianEncoder._postKL``
and ``MAE.loss``):
- The code averages K over all B^2 entries (diagonal zeros included) and
  multiplies by B / (B - 1), and takes the standard deviation of the B x B
  matrix with its diagonal filled by the mean, corrected by
  sqrt((B^2 - 1) / (B^2 - B - 1)). Both equal the off-diagonal mean and the
  unbiased off-diagonal standard deviation computed here.
- The code adds 1e-12 to the variances it divides by; we divide by
  exp(logvar) itself, which is never 0 for a finite log-variance.
- The public code holds the image experiments only; the text models follow
  the protocol's LSTM encoder and decoder, with its KL annealing.
- A batch of one document has no pairs: both terms are 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import Hyperparameters, TextVAE, require
from .gaussian import DiagonalGaussian
from .registry import register


@dataclass(frozen=True)
class MAEHyperparameters(Hyperparameters):
    eta: float = 1.0  # weight of the diversity term
    gamma: float = 0.2  # weight of the smoothness term

    def __post_init__(self):
        require(math.isfinite(self.eta) and self.eta > 0, f"mae.eta must be > 0, got {self.eta}")
        require(math.isfinite(self.gamma) and self.gamma >= 0, f"mae.gamma must be >= 0, got {self.gamma}")


def pairwise_kl(q: DiagonalGaussian) -> torch.Tensor:
    """K[i, j, d] = KL(N(m_id, s_id^2) || N(m_jd, s_jd^2)), shape [B, B, nz]."""
    mu_i, mu_j = q.mu.unsqueeze(1), q.mu.unsqueeze(0)
    lv_i, lv_j = q.logvar.unsqueeze(1), q.logvar.unsqueeze(0)
    return 0.5 * ((lv_i - lv_j).exp() + (mu_i - mu_j).pow(2) * (-lv_j).exp() - (lv_i - lv_j) - 1.0)


def off_diagonal(square: torch.Tensor) -> torch.Tensor:
    """The entries i != j of ``square`` [B, B, ...] in row-major order, [B(B-1), ...].

    The same entries, in the same order, as indexing with a boolean off-diagonal mask, but by
    views alone: a mask index counts its True entries on the host, a device sync every step.
    Flattened, the diagonal sits at multiples of B + 1; dropping entry 0 and cutting the rest
    into rows of B + 1 puts every other diagonal entry last in its row.
    """
    batch = square.shape[0]
    rest = square.shape[2:]
    rows = square.reshape(batch * batch, *rest)[1:].reshape(batch - 1, batch + 1, *rest)
    return rows[:, :-1].reshape(batch * (batch - 1), *rest)


def mutual_divergence(q: DiagonalGaussian) -> tuple[torch.Tensor, torch.Tensor]:
    """(M [nz]: mean pairwise KL per dimension, S: std of the summed pairwise KL), over pairs i != j."""
    pairs = off_diagonal(pairwise_kl(q))  # [B(B-1), nz]
    return pairs.mean(0), pairs.sum(-1).std()


@register
class MAE(TextVAE):
    name = "mae"
    citation = ("Ma, Zhou & Hovy 2019, MAE: Mutual posterior-divergence regularization for variational "
                "autoencoders (ICLR): diversity and smoothness terms on the batch's pairwise posterior KLs")
    Hyperparameters = MAEHyperparameters
    positional = ("eta", "gamma")

    def auxiliary_loss(self, q: DiagonalGaussian) -> torch.Tensor | float:
        if q.mu.shape[0] < 2:
            return 0.0
        mean, std = mutual_divergence(q)
        diversity = -self.hp.eta * F.logsigmoid(mean).sum()
        return diversity + self.hp.gamma * std
