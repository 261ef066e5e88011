"""The shared text VAE on which every method is a small subclass.

A method says only what makes it different, by overriding one or more hooks
(in the spirit of disentanglement_lib's ``regularizer``):

- ``transform_posterior(q)``: change the encoder's posterior (BN-VAE, delta-VAE);
  the result is the q of the KL term. ``posterior(batch, kl_weight)`` as a whole
  for methods that compute it differently (SA-VAE's refinement).
- ``decoder_posterior(q)``: the posterior the decoder samples from, if it
  differs from the KL's (Scale-VAE's scaled mean).
- ``regularizer(q)``: the batch's KL-like term, multiplied by the KL weight
  (beta-VAE, Free-Bits).
- ``auxiliary_loss(q)``: a further term outside the KL weight (MAE).
- ``kl_weight(progress)``: the KL-weight schedule (cyclical annealing).
- ``training_step(batch, trainer)``: the optimisation step (Agg-VAE, SA-VAE).
- ``on_epoch_start(epoch)`` / ``on_epoch_end()``: per-epoch state (Scale-VAE's f),
  reported by ``state_summary()`` in the history and the metrics, and by ``traces()``
  in CSV files of the run (Scale-VAE's factor of every batch);
  ``refresh_statistics()``: evaluation statistics that are ours, not the method's
  (BN-VAE's end-of-epoch BN statistics); the trainer times it apart from training;
  ``on_validated(record)`` sees each epoch's validation metrics (Agg-VAE).
- ``Decoder``: the decoder class (Skip-VAE's skip connections to the output).
- ``prior_std()``: the prior of the decoder's input z in the generative model.

Objective (per document, averaged over the batch):
    loss = -E_{q_dec(z|x)}[log p(x|z)] + kl_weight * regularizer(q) + auxiliary_loss(q)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from .errors import UserError
from .gaussian import DiagonalGaussian
from .networks import Architecture, LSTMDecoder, LSTMEncoder


def require(condition: bool, message: str) -> None:
    """Validate a hyperparameter: raise a one-line UserError naming the fix."""
    if not condition:
        raise UserError(message)


@dataclass(frozen=True)
class Hyperparameters:
    """Hyperparameters every latent-variable method shares."""

    anneal: bool = True  # KL annealing of the protocol; the paper's starred rows turn it off


@dataclass(frozen=True)
class TrainingProgress:
    """Where training is, for schedules: epoch counts from 1, step from 0."""

    epoch: int
    step: int
    steps_per_epoch: int
    kl_start: float
    warmup_epochs: float
    max_epochs: int


class LossTerms(NamedTuple):
    loss: torch.Tensor  # scalar to minimise
    rec: torch.Tensor  # [B] -E_q[log p(x|z)]
    kl: torch.Tensor  # [B] KL(q || N(0, I)) of the KL term's posterior


def linear_annealing(progress: TrainingProgress) -> float:
    """He et al. (2019): the KL weight rises linearly per iteration from kl_start to 1."""
    total = progress.warmup_epochs * progress.steps_per_epoch
    if total <= 0:
        return 1.0
    return min(1.0, progress.kl_start + (1.0 - progress.kl_start) * (progress.step + 1) / total)


class TextVAE(nn.Module):
    """Gaussian text VAE with the LSTM encoder and decoder of the protocol (Kingma & Welling 2014)."""

    name: ClassVar[str] = "vae"
    citation: ClassVar[str] = "Kingma & Welling 2014; Bowman et al. 2016 (KL annealing)"
    Hyperparameters: ClassVar[type] = Hyperparameters
    positional: ClassVar[tuple[str, ...]] = ()  # order of the values in the paper's brackets, e.g. ("des_std", "f_epo")
    has_latent: ClassVar[bool] = True
    # In DU-VAE's code (the "shen2021" lineage) the batch-normalised encoder, GaussianLSTMEncoder, keeps
    # PyTorch's default initialisation (enc_lstm.py:77-79 sets only the BN scale) while the plain encoder
    # and the decoder get U(-0.01, 0.01). True for the methods that would use that encoder there.
    batch_normalised_encoder: ClassVar[bool] = False

    @classmethod
    def relative_cost(cls, hp: Hyperparameters, epochs: int | None = None) -> float:
        """Training cost per epoch (training and validation) relative to a VAE's, averaged over a run of
        ``epochs`` epochs (None: the paper's length); the runner starts costly runs first and estimates
        a sweep's time with it (benchmarks/estimate.py)."""
        return 1.0
    Decoder: ClassVar[type] = LSTMDecoder

    def __init__(self, arch: Architecture, hparams: Hyperparameters | None = None):
        super().__init__()
        self.arch = arch
        self.hp = hparams if hparams is not None else self.Hyperparameters()
        self.encoder = LSTMEncoder(self.encoder_architecture(arch)) if self.has_latent else None
        self.decoder = self.Decoder(arch, nz=arch.nz if self.has_latent else 0)

    @classmethod
    def encoder_architecture(cls, arch: Architecture) -> Architecture:
        """The encoder's sizes and initialisation: PyTorch's default init for a batch-normalised
        encoder under the shen2021 lineage, else the profile's."""
        if arch.lineage == "shen2021" and cls.batch_normalised_encoder:
            return dataclasses.replace(arch, init="default")
        return arch

    # ----------------------------------------------------------------- hooks
    def transform_posterior(self, q: DiagonalGaussian) -> DiagonalGaussian:
        return q

    def decoder_posterior(self, q: DiagonalGaussian) -> DiagonalGaussian:
        return q

    def regularizer(self, q: DiagonalGaussian) -> torch.Tensor:
        """The batch's KL term: mean over documents of KL(q(z|x) || N(0, I))."""
        return q.kl_to_standard_normal().sum(-1).mean()

    def auxiliary_loss(self, q: DiagonalGaussian) -> torch.Tensor | float:
        return 0.0

    def kl_weight(self, progress: TrainingProgress) -> float:
        return linear_annealing(progress) if getattr(self.hp, "anneal", False) else 1.0

    def prior_std(self) -> torch.Tensor | float:
        return 1.0

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def on_epoch_end(self) -> None:
        pass

    def refresh_statistics(self) -> None:
        """Recompute evaluation-time statistics after an epoch: work the published method's code
        does not do, so the trainer records its time as ``statistics_seconds``, not training time."""

    def on_validated(self, record: dict) -> None:
        """Called with each epoch's history record once validation metrics are in it."""

    def resume_state(self) -> dict:
        """Python-side training state (not in the state_dict) that a resumed run needs."""
        return {}

    def load_resume_state(self, state: dict) -> None:
        pass

    def state_summary(self) -> dict[str, float]:
        """Method state worth recording per epoch and in the final metrics."""
        return {}

    def traces(self) -> dict[str, list[dict]]:
        """Finer records of the method's state than ``state_summary``: {file name: rows}, each
        written as NAME.csv in the run's directory. Kept across a resume by ``resume_state``."""
        return {}

    def training_step(self, batch, trainer) -> LossTerms:
        terms = self.loss(batch, trainer.kl_weight)
        trainer.step(terms.loss)
        return terms

    # ---------------------------------------------------------------- shared
    def posterior(self, batch, kl_weight: float = 1.0) -> DiagonalGaussian:
        """q(z|x) of the KL term: the encoder's output after ``transform_posterior``.

        ``kl_weight`` is the weight the objective currently gives the KL term
        (SA-VAE refines the posterior against that objective); evaluation uses 1.
        """
        return self.transform_posterior(self.encoder(batch.tokens, batch.lengths))

    def loss(self, batch, kl_weight: float) -> LossTerms:
        if not self.has_latent:
            rec = -self.decoder.log_likelihood(batch.tokens, batch.lengths, None)[:, 0]
            return LossTerms(rec.mean(), rec, torch.zeros_like(rec))
        q = self.posterior(batch, kl_weight)
        z = self.decoder_posterior(q).rsample(1)
        rec = -self.decoder.log_likelihood(batch.tokens, batch.lengths, z)[:, 0]
        kl = q.kl_to_standard_normal().sum(-1)
        return LossTerms(rec.mean() + kl_weight * self.regularizer(q) + self.auxiliary_loss(q), rec, kl)

    def sample_prior(self, n: int) -> torch.Tensor:
        """z for generation: z ~ N(0, I) scaled by ``prior_std()``."""
        device = self.decoder.output.weight.device
        return torch.randn(n, self.arch.nz, device=device) * torch.as_tensor(self.prior_std(), device=device)

    @classmethod
    def describe_hyperparameters(cls) -> str:
        return ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls.Hyperparameters))
