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
- f_bar is the plain mean of the epoch's factors (``f_average="mean"``, the
  literal reading of "Average(f)"). In the first epoch that mean includes the
  first batches, whose near-zero Std[mu] gives factors in the thousands.
  ``f_average="harmonic"`` takes des_std / Average(Std[mu]) instead, the
  harmonic mean of the factors, which those batches cannot dominate.

``traces()`` gives ``factor_trace.csv``: the factor of every batch of the first
f_epo epochs (kind "batch": its mean, min and max over dimensions) and f_bar after
every epoch (kind "f_bar": the same, and every dimension's value). A batch's
dimensions are left out: 32 values for each of thousands of batches made the file
hundreds of kB, and no analysis reads them.
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
    f_average: str = "mean"  # f_bar from an epoch's factors: "mean" (Algorithm 1, line 17) or "harmonic"

    def __post_init__(self):
        require(self.des_std > 0, f"scale_vae.des_std must be > 0, got {self.des_std}")
        require(self.f_epo >= 1, f"scale_vae.f_epo must be an integer >= 1, got {self.f_epo}")
        require(self.f_average in F_AVERAGES,
                f"scale_vae.f_average must be one of {', '.join(F_AVERAGES)}, got {self.f_average!r}")


F_AVERAGES = ("mean", "harmonic")


@register
class ScaleVAE(TextVAE):
    name = "scale_vae"
    # Under the shen2021 lineage Scale-VAE is taken to be written on DU-VAE's batch-normalised encoder
    # class (it also transforms the mean); the authors' code is not public, so this is an assumption.
    batch_normalised_encoder = True
    citation = "Song et al. 2024, Scale-VAE (LREC-COLING), Algorithm 1"
    Hyperparameters = ScaleHyperparameters
    positional = ("des_std", "f_epo")

    def __init__(self, arch, hparams=None):
        super().__init__(arch, hparams)
        self.register_buffer("f_bar", torch.ones(arch.nz))
        self.epoch = 1
        self._f_sum = torch.zeros(arch.nz)
        self._inverse_sum = torch.zeros(arch.nz)  # sum of 1/f = Std[mu]/des_std: the harmonic mean's
        self._f_count = 0
        self._trace: list[tuple[int, int | None, str, torch.Tensor]] = []  # (epoch, batch, kind, f)

    def batch_factor(self, mu: torch.Tensor) -> torch.Tensor:
        """f = des_std / Std[mu] over the mini-batch (Algorithm 1, line 6)."""
        source = mu if self.hp.f_grad else mu.detach()
        return self.hp.des_std / source.std(dim=0).clamp_min(1e-12)

    def decoder_posterior(self, q: DiagonalGaussian) -> DiagonalGaussian:
        if not self.training:
            return q.with_mean(self.f_bar * q.mu)
        f = self.batch_factor(q.mu)
        self.record(f.detach())
        return q.with_mean((f if self.epoch <= self.hp.f_epo else self.f_bar) * q.mu)

    def prior_std(self) -> torch.Tensor:
        return self.f_bar

    def record(self, f: torch.Tensor) -> None:
        """Count one training batch's factor towards f_bar (and the trace, in the first f_epo epochs)."""
        self._f_sum = self._f_sum.to(f.device) + f
        self._inverse_sum = self._inverse_sum.to(f.device) + 1 / f
        self._f_count += 1
        if self.epoch <= self.hp.f_epo:
            self._trace.append((self.epoch, self._f_count, "batch", f.clone()))

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch
        self._f_sum = torch.zeros_like(self.f_bar)
        self._inverse_sum = torch.zeros_like(self.f_bar)
        self._f_count = 0

    def on_epoch_end(self) -> None:
        """f_bar = Average(f) over the epoch's mini-batches (Algorithm 1, line 17), or their harmonic mean."""
        if self._f_count:
            if self.hp.f_average == "mean":
                self.f_bar.copy_(self._f_sum / self._f_count)
            else:
                self.f_bar.copy_(self._f_count / self._inverse_sum)
            self._trace.append((self.epoch, None, "f_bar", self.f_bar.detach().clone()))

    def traces(self) -> dict[str, list[dict]]:
        rows = []
        for epoch, batch, kind, f in self._trace:
            values = [float(str(v)) for v in f.float().numpy()]  # float32's shortest exact digits, not float64's 17
            rows.append({"epoch": epoch, "batch": "" if batch is None else batch, "kind": kind,
                         "f_mean": sum(values) / len(values), "f_min": min(values), "f_max": max(values),
                         **({f"f_{d}": v for d, v in enumerate(values)} if kind == "f_bar" else {})})
        return {"factor_trace": rows}

    def resume_state(self) -> dict:
        return {"trace": [(epoch, batch, kind, f.tolist()) for epoch, batch, kind, f in self._trace]}

    def load_resume_state(self, state: dict) -> None:
        self._trace = [(epoch, batch, kind, torch.tensor(f)) for epoch, batch, kind, f in state.get("trace", [])]

    def state_summary(self) -> dict[str, float]:
        return {"f_mean": self.f_bar.mean().item(), "f_min": self.f_bar.min().item(), "f_max": self.f_bar.max().item()}
