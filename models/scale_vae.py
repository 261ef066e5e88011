"""Scale-VAE (Song et al., LREC-COLING 2024, Algorithm 1).

The decoder consumes the scaled posterior N(f * mu, sigma^2) with
f_d = des_std / Std_batch[mu_d]; the KL term keeps the unscaled N(mu, sigma^2).
During the first ``f_epo`` epochs each mini-batch uses its own f; afterwards
every batch uses f_bar, the mean of the f's recorded over the previous epoch
(Algorithm 1, lines 6-10 and 17). Evaluation and generation use f_bar:
generation draws z ~ N(0, I) and decodes f_bar * z, i.e. the decoder's prior
is N(0, diag(f_bar^2)) (``prior_std``).

Conventions the paper leaves open (docs/protocol-and-metrics.md, "Scale-VAE conventions"):
- f carries no gradient by default (``f_grad=False``); ``f_grad=True`` lets the
  per-batch factor of the first f_epo epochs back-propagate through Std[mu].
- Std is the unbiased standard deviation over the batch; it is floored at
  1e-12 only to keep f finite.
- f_bar is a buffer, saved with every checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Hyperparameters, TextVAE, require
from .gaussian import DiagonalGaussian
from .registry import register


@dataclass(frozen=True)
class ScaleHyperparameters(Hyperparameters):
    des_std: float = 0.7  # the desired standard deviation of the scaled means
    f_epo: int = 1  # epochs that use each batch's own factor
    f_grad: bool = False  # back-propagate through the per-batch factor

    def __post_init__(self):
        require(self.des_std > 0, f"scale_vae.des_std must be > 0, got {self.des_std}")
        require(self.f_epo >= 1, f"scale_vae.f_epo must be an integer >= 1, got {self.f_epo}")


@register
class ScaleVAE(TextVAE):
    name = "scale_vae"
    citation = "Song et al. 2024, Scale-VAE (LREC-COLING), Algorithm 1"
    Hyperparameters = ScaleHyperparameters
    positional = ("des_std", "f_epo")

    def __init__(self, arch, hparams=None):
        super().__init__(arch, hparams)
        self.register_buffer("f_bar", torch.ones(arch.nz))
        self.epoch = 1
        self._f_sum = torch.zeros(arch.nz)
        self._f_count = 0

    def batch_factor(self, mu: torch.Tensor) -> torch.Tensor:
        """f = des_std / Std[mu] over the mini-batch (Algorithm 1, line 6)."""
        source = mu if self.hp.f_grad else mu.detach()
        return self.hp.des_std / source.std(dim=0).clamp_min(1e-12)

    def decoder_posterior(self, q: DiagonalGaussian) -> DiagonalGaussian:
        if not self.training:
            return q.with_mean(self.f_bar * q.mu)
        f = self.batch_factor(q.mu)
        self._f_sum = self._f_sum.to(f.device) + f.detach()
        self._f_count += 1
        return q.with_mean((f if self.epoch <= self.hp.f_epo else self.f_bar) * q.mu)

    def prior_std(self) -> torch.Tensor:
        return self.f_bar

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch
        self._f_sum = torch.zeros_like(self.f_bar)
        self._f_count = 0

    def on_epoch_end(self) -> None:
        """f_bar = Average(f) over the epoch's mini-batches (Algorithm 1, line 17)."""
        if self._f_count:
            self.f_bar.copy_(self._f_sum / self._f_count)

    def state_summary(self) -> dict[str, float]:
        return {"f_mean": self.f_bar.mean().item(), "f_min": self.f_bar.min().item(), "f_max": self.f_bar.max().item()}
