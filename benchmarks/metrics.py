"""Evaluation metrics of the protocol (protocol.md, "Metrics"): IW-NLL, PPL, KL, MI, AU.

Conventions for methods whose decoder consumes a different posterior than the
KL term (Scale-VAE): KL is measured on the KL term's posterior q (what the
objective penalises); MI and AU on the posterior the decoder consumes
(``mi``/``au``) and also on q itself (``mi_unscaled``/``au_unscaled``). The
IW-NLL uses the decoder's posterior as proposal and is reported under two
priors on the decoder's z: the model's own (``nll``; N(0, f_bar^2) for
Scale-VAE) and N(0, I) (``nll_unit_prior``). For every other method the two
coincide.
"""
from __future__ import annotations

import math

import torch

from models.gaussian import DiagonalGaussian, log_normal


def active_units(means: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """AU (Burda et al. 2016): dimensions d with Cov_x(E_q[z_d]) >= threshold.

    ``means`` is [N, nz], the posterior means of N documents; the variance is
    unbiased, as in He et al.'s ``calc_au``.
    """
    variance = means.var(dim=0, unbiased=True)
    return int((variance >= threshold).sum()), variance


def mutual_information(q: DiagonalGaussian) -> float:
    """He et al.'s ``calc_mi_q`` on one batch: E[log q(z|x)] - E[log q(z)].

    q(z) is the mixture of the batch's posteriors; one z is drawn per document.
    """
    batch, nz = q.mu.shape
    neg_entropy = (-0.5 * nz * math.log(2 * math.pi) - 0.5 * (1 + q.logvar).sum(-1)).mean()
    z = q.rsample(1).squeeze(1)  # [B, nz]
    # log q(z_i | x_j) for every pair: [B (z), B (x)]
    pairwise = DiagonalGaussian(q.mu, q.logvar).log_prob(z.unsqueeze(0).expand(batch, -1, -1)).T
    log_qz = torch.logsumexp(pairwise, dim=1) - math.log(batch)
    return (neg_entropy - log_qz.mean()).item()


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


@torch.no_grad()
def latent_statistics(model, batches) -> dict[str, float]:
    """KL, MI and AU over a split (MI per evaluation batch, weighted by batch size)."""
    model.eval()
    docs, kl, mi, mi_unscaled, means, means_unscaled = 0, 0.0, 0.0, 0.0, [], []
    for batch in batches:
        q = model.posterior(batch)
        q_dec = model.decoder_posterior(q)
        docs += batch.size
        kl += q.kl_to_standard_normal().sum().item()
        mi += mutual_information(q_dec) * batch.size
        mi_unscaled += mutual_information(q) * batch.size
        means.append(q_dec.mu)
        means_unscaled.append(q.mu)
    return {"kl": kl / docs, "mi": mi / docs, "au": active_units(torch.cat(means))[0],
            "mi_unscaled": mi_unscaled / docs, "au_unscaled": active_units(torch.cat(means_unscaled))[0]}


@torch.no_grad()
def likelihood_statistics(model, batches, samples: int, memory_mb: int) -> dict[str, float]:
    """IW-NLL under both prior conventions, reconstruction, ELBO and PPL over a split."""
    model.eval()
    docs = words = 0
    nll = nll_unit = rec = kl = 0.0
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
    return {"nll": nll / docs, "nll_unit_prior": nll_unit / docs, "rec": rec / docs,
            "elbo": -(rec + kl) / docs, "ppl": perplexity(nll, words), "ppl_unit_prior": perplexity(nll_unit, words),
            "documents": docs, "words": words}


def evaluate(model, batches, samples: int, memory_mb: int) -> dict[str, float | None]:
    """All test metrics of a run. Methods without z report KL/MI/AU as None."""
    metrics = likelihood_statistics(model, batches, samples, memory_mb)
    if model.has_latent:
        metrics.update(latent_statistics(model, batches))
    else:
        metrics.update(dict.fromkeys(["kl", "mi", "au", "mi_unscaled", "au_unscaled"]))
    return metrics
