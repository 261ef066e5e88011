"""DU-VAE (Shen et al., IJCAI 2021): batch-normalised means, dropout on the variances.

Diversity: the posterior means pass through batch normalisation as in BN-VAE
(``bn_vae.py``), but the scale w is learned, and before every forward pass it
is rescaled (on the data, outside autograd) so that its root mean square over
the dimensions is gamma: w <- w * gamma / sqrt(mean_d w_d^2). The shift is
learned from 0. The batch-mean KL is then at least sum_d (w_d^2 + b_d^2)/2
= n (gamma^2 + mean_d b_d^2) / 2, with the floor shared unevenly among the
dimensions.

Uncertainty: a floor delta^2 = alpha / (2 pi e) (alpha = ``delta_rate``) is
added to every posterior variance, and in training the part above the floor
goes through inverted dropout with keep probability p (``keep``; PyTorch's
drop probability is 1 - p):

    sigma'^2 = dropout(sigma^2, 1 - p) + delta^2,

so a dropped dimension sits at the floor and a kept one has sigma^2 / p above
it. The KL term is computed on, and z sampled from, N(mu', sigma'^2).

Following the authors' code (SmilesDZgk/DU-VAE, ``GaussianLSTMEncoder`` and
``GaussianEncoderBase.encode``): the floor and the dropout act only once the
KL weight has reached 1 (before that the variance is the encoder's own); from
then on evaluation uses the floor without dropout. Whether the floor is on is
a buffer, saved with the checkpoint, so a reloaded model is evaluated as it
was trained.

Differences from the authors' code:
- BN epsilon and running statistics as in ``bn_vae.py``: eps 1e-24 instead
  of 1e-5 (under the protocol's U(-0.01, 0.01) initialisation the raw means
  start with a batch variance of ~4e-8, where eps 1e-5 would shrink the
  normalised means to ~0.04 gamma), and evaluation statistics recomputed at
  each epoch's end from the epoch's training documents under the final
  encoder, instead of an exponential average with momentum 0.1.
- The code skips the normalisation on training batches of one document; the
  protocol's loader never makes such a batch.
- The code's gamma = 0 selects a different encoder without normalisation;
  here gamma must be > 0 (use ``vae`` for no normalisation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import Hyperparameters, TrainingProgress, require
from .bn_vae import BNVAE
from .gaussian import DiagonalGaussian
from .registry import register


@dataclass(frozen=True)
class DUHyperparameters(Hyperparameters):
    gamma: float = 0.6  # root mean square of the learned BN scale
    keep: float = 0.8  # the paper's p: probability of keeping a variance (dropout rate 1 - p)
    delta_rate: float = 1.0  # alpha: variance floor alpha / (2 pi e)

    def __post_init__(self):
        require(math.isfinite(self.gamma) and self.gamma > 0, f"du_vae.gamma must be > 0, got {self.gamma}")
        require(0 < self.keep <= 1, f"du_vae.keep must be in (0, 1] (1 = no dropout), got {self.keep}")
        require(math.isfinite(self.delta_rate) and self.delta_rate > 0,
                f"du_vae.delta_rate must be > 0, got {self.delta_rate}")


@register
class DUVAE(BNVAE):
    """BN-VAE (its batch normalisation and epoch bookkeeping) plus a learned scale and the variance rule."""

    name = "du_vae"
    citation = ("Shen et al. 2021, Regularizing variational autoencoder with diversity and uncertainty "
                "awareness (IJCAI), DU-VAE: BN of the means with scale norm gamma; dropout and floor on the variances")
    Hyperparameters = DUHyperparameters
    positional = ("gamma", "keep")
    learn_scale = True

    def __init__(self, arch, hparams=None):
        super().__init__(arch, hparams)
        self.register_buffer("uncertainty_on", torch.tensor(False))  # saved with the weights
        self._uncertainty_on = False  # its host copy, read by every forward pass without a device sync
        self.register_load_state_dict_post_hook(lambda module, keys: module._read_uncertainty_flag())

    def _read_uncertainty_flag(self) -> None:
        self._uncertainty_on = bool(self.uncertainty_on)

    @property
    def variance_floor(self) -> float:
        return self.hp.delta_rate / (2 * math.pi * math.e)

    def kl_weight(self, progress: TrainingProgress) -> float:
        weight = super().kl_weight(progress)
        self._uncertainty_on = weight >= 1.0  # the authors' `args.kl_weight == 1`
        self.uncertainty_on.fill_(self._uncertainty_on)
        return weight

    def renormalise_scale(self) -> None:
        """w <- w * gamma / rms(w), in place, without gradient and without a device sync.

        The factor is computed in float64 and left at exactly 1 when w is already
        normalised (to 1e-6), as host-side Python floats would; w = 0 becomes gamma.
        """
        with torch.no_grad():
            weight = self.encoder.mean_bn.weight
            rms = weight.pow(2).mean().sqrt().double()
            factor = torch.where((rms / self.hp.gamma - 1).abs() > 1e-6, self.hp.gamma / rms, 1.0).float()
            weight.copy_(torch.where(rms == 0, self.hp.gamma, weight * factor))

    def transform_posterior(self, q: DiagonalGaussian) -> DiagonalGaussian:
        self.renormalise_scale()
        q = super().transform_posterior(q)
        if not self._uncertainty_on:
            return q
        var = q.logvar.exp()
        if self.training and self.hp.keep < 1:
            var = F.dropout(var, p=1.0 - self.hp.keep, training=True)
        return DiagonalGaussian(q.mu, torch.log(var + self.variance_floor))

    def state_summary(self) -> dict[str, float]:
        self.renormalise_scale()  # as the next forward pass would; the floor is then n (gamma^2 + mean b^2) / 2
        return {**super().state_summary(), "uncertainty_on": float(self.uncertainty_on)}
