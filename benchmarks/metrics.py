"""Evaluation metrics of the protocol (protocol.md, "Metrics"): IW-NLL, PPL, KL, MI, AU, ELBO.

Which posterior each metric reads, for methods whose decoder consumes a
different posterior q_dec than the KL term's q (Scale-VAE: q_dec = N(f_bar mu,
sigma^2)); for every other method q_dec = q and the paired names coincide:

- ``kl``: KL(q || N(0, I)), what the objective penalises.
- ``mi``: whole-split MI on q_dec (``calc_mi_v3`` of BN-VAE's and DU-VAE's
  code, the estimator of the paper's own rows): one z per document, q(z) the
  mixture of the posteriors of EVERY document of the split; at most log N
  (9.21 for a 10k test split, 6.21 for quick's 500). ``mi_unscaled``: the same on q.
  ``mi_batch``: He et al.'s ``calc_mi_q``, the mixture over each evaluation
  batch, averaged over batches; at most log(batch size) = 3.47 for 32 (the
  starred rows of the paper, and Agg-VAE's stopping rule).
- ``au``: He et al.'s ``calc_au`` on the encoder's own means, those of q (for
  BN-VAE after its batch normalisation, which belongs to the encoder). ``au_scaled``:
  the same on q_dec's means, whose spread is des_std by construction for Scale-VAE.
- ``nll`` / ``nll_unit_prior``: IW estimates with proposal q_dec under the
  model's prior on the decoder's z (N(0, f_bar^2) for Scale-VAE) and N(0, I).
- ``elbo`` / ``elbo_unit_prior``: E_{q_dec}[log p(x|z)] - KL(q_dec || prior),
  lower bounds of the log-likelihoods that ``-nll`` and ``-nll_unit_prior``
  estimate (same priors). ``training_elbo``: E_{q_dec}[log p(x|z)] - KL(q || N(0, I)),
  the objective at KL weight 1 (Scale-VAE's mixes two posteriors and bounds nothing).

``METRICS_VERSION`` is stored in every ``metrics.json``; a run scored by an older
version is re-scored, not retrained (``python -m benchmarks.evaluate``).
"""
from __future__ import annotations

import math

import torch

from models.gaussian import DiagonalGaussian, log_normal

# 1: per-batch MI as ``mi``, AU on q_dec, elbo = -(rec + KL(q)); 2: this module. The derived records that scoring
# writes now (benchmarks/derived.py) change no metric: a run scored before them gets them from its checkpoint the
# first time the analysis reads it (or when re-scored), so they bump no version and force no re-scoring.
METRICS_VERSION = 2
RETIRED_KEYS = ("au_unscaled",)  # written by older versions only; dropped when a run is re-scored
MI_CHUNK = 1024  # rows of z per block of the whole-split MI: [chunk, N] float64, 80 MB for N = 10k


def active_units(means: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """AU (Burda et al. 2016): dimensions d with Cov_x(E_q[z_d]) >= threshold.

    ``means`` is [N, nz], the posterior means of N documents; the variance is
    unbiased, as in He et al.'s ``calc_au``.
    """
    variance = means.var(dim=0, unbiased=True)
    return int((variance >= threshold).sum()), variance


def batch_mutual_information(q: DiagonalGaussian) -> float:
    """He et al.'s ``calc_mi_q`` on one batch: E[log q(z|x)] - E[log q(z)].

    q(z) is the mixture of the batch's posteriors; one z is drawn per document.
    At most log(batch size) in expectation.
    """
    batch = q.mu.shape[0]
    neg_entropy = negative_entropy(q).mean()
    z = q.rsample(1).squeeze(1)  # [B, nz]
    # log q(z_i | x_j) for every pair: [B (z), B (x)]
    pairwise = DiagonalGaussian(q.mu, q.logvar).log_prob(z.unsqueeze(0).expand(batch, -1, -1)).T
    log_qz = torch.logsumexp(pairwise, dim=1) - math.log(batch)
    return (neg_entropy - log_qz.mean()).item()


def negative_entropy(q: DiagonalGaussian) -> torch.Tensor:
    """E_{q(z|x)}[log q(z|x)] per document, [N]."""
    return -0.5 * q.mu.shape[1] * math.log(2 * math.pi) - 0.5 * (1 + q.logvar).sum(-1)


def mixture_log_density(z: torch.Tensor, q: DiagonalGaussian, chunk: int = MI_CHUNK) -> torch.Tensor:
    """log (1/N) sum_j N(z_i; mu_j, diag(var_j)) for every row z_i of ``z`` [M, nz]: [M].

    The exponent is linear in (z^2, z, 1), so one float64 matrix product per block
    of ``chunk`` rows gives every log N(z_i; mu_j, var_j): memory is [chunk, N]
    rather than [chunk, N, nz].
    """
    mu, logvar = q.mu.double(), q.logvar.double()
    precision = (-logvar).exp()  # [N, nz]
    constant = -0.5 * ((mu**2 * precision).sum(-1) + logvar.sum(-1) + mu.shape[1] * math.log(2 * math.pi))  # [N]
    coefficients = torch.cat([-0.5 * precision, mu * precision, constant.unsqueeze(1)], dim=1).T  # [2 nz + 1, N]
    out = []
    for rows in z.double().split(chunk):
        features = torch.cat([rows**2, rows, torch.ones_like(rows[:, :1])], dim=1)  # [chunk, 2 nz + 1]
        log_density = features @ coefficients  # [chunk, N]
        top = log_density.max(dim=1, keepdim=True).values
        # logsumexp, with terms below e^-700 of the largest (0 in float64 anyway) clamped there: torch's
        # exp is several times slower on arguments that underflow, which most do for separated posteriors
        total = (log_density - top).clamp_min_(-700.0).exp_().sum(dim=1).log_()
        out.append(top.squeeze(1) + total - math.log(mu.shape[0]))
    return torch.cat(out)


def mutual_information(q: DiagonalGaussian, chunk: int = MI_CHUNK) -> float:
    """Whole-split MI, ``calc_mi_v3`` of BN-VAE's and DU-VAE's ``utils.py``: E[log q(z|x)] - E[log q(z)].

    ``q`` holds the posteriors of all N documents of a split; one z is drawn per
    document and q(z) is the mixture of all N posteriors (itself included). The
    estimate is at most log N (reached when the posteriors do not overlap).
    """
    z = q.rsample(1).squeeze(1)
    return (negative_entropy(q).double().mean() - mixture_log_density(z, q, chunk).mean()).item()


def importance_weighted_log_likelihood(log_likelihood, proposal: DiagonalGaussian, prior_stds,
                                       samples: int, chunk: int):
    """IW estimate of log p(x) (Burda et al. 2016) under one or more priors.

    ``log_likelihood(z)`` maps z [B, k, nz] to log p(x|z) [B, k]; the proposal
    is q(z|x); each prior is N(0, diag(std^2)). Samples are drawn in chunks of
    ``chunk`` per document, all documents at once. Returns (log p(x) [B] per
    prior, mean log p(x|z) over the samples [B]).
    """
    log_weights = [[] for _ in prior_stds]
    log_liks = []
    for start in range(0, samples, chunk):
        z = proposal.rsample(min(chunk, samples - start))
        log_px_z = log_likelihood(z)
        log_q = proposal.log_prob(z)
        log_liks.append(log_px_z)
        for weights, std in zip(log_weights, prior_stds):
            weights.append(log_px_z + log_normal(z, std) - log_q)
    estimates = [torch.logsumexp(torch.cat(w, 1), dim=1) - math.log(samples) for w in log_weights]
    return estimates, torch.cat(log_liks, 1).mean(1)


def perplexity(total_nll: float, words: int) -> float:
    """exp(total NLL / predicted words); infinite, not an error, for a diverged model."""
    per_word = total_nll / words
    return math.exp(per_word) if per_word < 700 else math.inf


def samples_per_chunk(batch, vocab_size: int, memory_mb: int) -> int:
    """How many samples per document fit the logits budget (logits + their softmax)."""
    floats = batch.size * int(batch.tokens.shape[1]) * vocab_size * 3
    return max(1, int(memory_mb * 2**20 / 4 // floats))


def concatenate(posteriors: list[DiagonalGaussian]) -> DiagonalGaussian:
    return DiagonalGaussian(torch.cat([q.mu for q in posteriors]), torch.cat([q.logvar for q in posteriors]))


@torch.no_grad()
def latent_statistics(model, batches) -> dict[str, float]:
    """KL, MI (whole split and per batch) and AU over a split; see the module's docstring."""
    model.eval()
    docs, kl, mi_batch, posteriors, decoder_posteriors = 0, 0.0, 0.0, [], []
    for batch in batches:
        q = model.posterior(batch)
        q_dec = model.decoder_posterior(q)
        docs += batch.size
        kl += q.kl_to_standard_normal().sum().item()
        mi_batch += batch_mutual_information(q_dec) * batch.size
        posteriors.append(q)
        decoder_posteriors.append(q_dec)
    same = all(a is b for a, b in zip(posteriors, decoder_posteriors))  # the decoder reads q itself
    q, q_dec = concatenate(posteriors), concatenate(decoder_posteriors)
    mi = mutual_information(q_dec)
    return {"kl": kl / docs, "mi": mi, "mi_unscaled": mi if same else mutual_information(q),
            "mi_batch": mi_batch / docs, "mi_ceiling": math.log(docs),
            "au": active_units(q.mu)[0], "au_scaled": active_units(q_dec.mu)[0]}


@torch.no_grad()
def likelihood_statistics(model, batches, samples: int, memory_mb: int) -> dict[str, float]:
    """IW-NLL under both prior conventions, reconstruction, ELBO and PPL over a split."""
    model.eval()
    docs = words = 0
    nll = nll_unit = rec = kl = kl_dec = kl_dec_unit = 0.0
    for batch in batches:
        docs += batch.size
        words += batch.num_words
        if not model.has_latent:
            exact = -model.decoder.log_likelihood(batch.tokens, batch.lengths, None)[:, 0].sum().item()
            nll, nll_unit, rec = nll + exact, nll_unit + exact, rec + exact
            continue
        q = model.posterior(batch)
        q_dec = model.decoder_posterior(q)
        chunk = samples_per_chunk(batch, model.arch.vocab_size, memory_mb)
        (log_px, log_px_unit), log_px_z = importance_weighted_log_likelihood(
            lambda z: model.decoder.log_likelihood(batch.tokens, batch.lengths, z),
            q_dec, [model.prior_std(), 1.0], samples, chunk)
        nll -= log_px.sum().item()
        nll_unit -= log_px_unit.sum().item()
        rec -= log_px_z.sum().item()
        kl += q.kl_to_standard_normal().sum().item()
        kl_dec += q_dec.kl_to_normal(model.prior_std()).sum().item()
        kl_dec_unit += q_dec.kl_to_standard_normal().sum().item()
    return {"nll": nll / docs, "nll_unit_prior": nll_unit / docs, "rec": rec / docs,
            "elbo": -(rec + kl_dec) / docs, "elbo_unit_prior": -(rec + kl_dec_unit) / docs,
            "training_elbo": -(rec + kl) / docs,
            "ppl": perplexity(nll, words), "ppl_unit_prior": perplexity(nll_unit, words),
            "documents": docs, "words": words}


def evaluate(model, batches, samples: int, memory_mb: int) -> dict[str, float | None]:
    """All test metrics of a run, with ``metrics_version``. Methods without z report KL/MI/AU as None."""
    metrics = likelihood_statistics(model, batches, samples, memory_mb)
    if model.has_latent:
        metrics.update(latent_statistics(model, batches))
    else:
        metrics.update(dict.fromkeys(LATENT_KEYS))
    return {**metrics, "metrics_version": METRICS_VERSION}


LATENT_KEYS = ("kl", "mi", "mi_unscaled", "mi_batch", "mi_ceiling", "au", "au_scaled")
