"""The linear probe of the paper's Table 4: how much label information the latent code carries.

Features are the posterior means E_q[z|x] of the trained encoder (for Scale-VAE the
unscaled mean mu, not f_bar * mu). A multinomial logistic regression is fit on n
labelled training documents (n = 100, 500, 1K, 2K, 10K in the paper) and scored on the
whole test split. The probe standardises every feature with the training subset's
mean and standard deviation, so a per-dimension scale such as Scale-VAE's f_bar does
not change its result. The subsets are drawn with the run's own seed, so the 5 seeds
of a configuration also vary the labelled documents.

The result is cached as ``probe.json`` in the run directory.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.errors import UserError
from benchmarks.store import read_json, write_json
from benchmarks.train import load_trained

LABEL_COUNTS = (100, 500, 1000, 2000, 10000)
L2 = 1e-3  # weight of the L2 penalty on the probe's weights (not on its bias)


def cached(path: Path, **key) -> dict | None:
    """The result stored at ``path`` if it is readable and was computed for ``key``; else None."""
    result = read_json(path, warn=False)  # None when missing, truncated or failing its checksum
    return result if isinstance(result, dict) and all(result.get(k) == v for k, v in key.items()) else None


@torch.no_grad()
def posterior_means(model, corpus, split: str, batch_size: int) -> torch.Tensor:
    """E_q[z|x] of every document of ``split``, in the split's order: [documents, nz]."""
    means = torch.empty(len(corpus.split(split)), model.arch.nz)
    for batch in corpus.loader(split, batch_size, shuffle=False):
        means[batch.index] = model.posterior(batch).mu.float()
    return means


def draw_subsets(available: int, counts, seed: int) -> dict[int, np.ndarray]:
    """For each count n (capped at ``available``), n distinct training indices; one draw per
    distinct capped count from ``numpy.random.default_rng(seed)``, in the order given."""
    rng = np.random.default_rng(seed)
    used = dict.fromkeys(min(int(n), available) for n in counts)
    return {n: rng.choice(available, size=n, replace=False) for n in used}


def probe_accuracy(train_x, train_y, test_x, test_y, l2: float = L2, iterations: int = 200) -> float:
    """Test accuracy of a multinomial logistic regression (one linear layer, full-batch LBFGS from
    zero weights, L2 penalty ``l2``) fit on standardised training features."""
    train_x, test_x = (torch.as_tensor(x, dtype=torch.float64) for x in (train_x, test_x))
    train_y, test_y = (torch.as_tensor(y, dtype=torch.long) for y in (train_y, test_y))
    mean, std = train_x.mean(0), train_x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant feature stays 0
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    layer = torch.nn.Linear(train_x.shape[1], classes, dtype=torch.float64)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    optimizer = torch.optim.LBFGS(layer.parameters(), max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(layer(train_x), train_y) + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return (layer(test_x).argmax(1) == test_y).double().mean().item()


def linear_probe(run_dir, label_counts=LABEL_COUNTS, *, data_dir=None, cache_dir=None) -> dict:
    """Table 4 for one run: probe accuracy on the test split per number of labelled documents.

    Returns ``{"accuracy": {"100": 0.87, ...}, "label_counts": [...], "requested_counts": [...],
    "train_documents": N, "test_documents": M, "features": "posterior mean"}``. Counts larger
    than the N labelled training documents are capped at N; ``label_counts`` lists the distinct
    counts actually used, which key ``accuracy``.
    """
    run_dir = Path(run_dir)
    requested = [int(n) for n in label_counts]
    if not requested or min(requested) < 1:
        raise UserError(f"label counts must be positive integers, got {list(label_counts)}")
    result = cached(run_dir / "probe.json", requested_counts=requested)
    if result is not None:
        return result

    model, corpus, config = load_trained(run_dir, data_dir=data_dir, cache_dir=cache_dir)
    train_y, test_y = corpus.labels("train"), corpus.labels("test")
    if train_y is None or test_y is None:
        raise UserError(f"run {run_dir.name} is on {config.dataset!r}, whose documents have no labels; "
                        "probe a run on a labelled dataset (yelp_small, yelp, short_yelp, synthetic)")
    if not model.has_latent:
        raise UserError(f"run {run_dir.name} is a {config.model} without a latent code; probe a VAE run")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # posteriors refined by sampling (SA-VAE) are then reproducible
        train_x, test_x = (posterior_means(model, corpus, split, config.profile.eval_batch_size)
                           for split in ("train", "test"))
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    subsets = draw_subsets(len(train_y), requested, config.seed)
    accuracy = {str(n): probe_accuracy(train_x[idx], train_y[idx], test_x, test_y) for n, idx in subsets.items()}
    result = {"accuracy": accuracy, "label_counts": list(subsets), "requested_counts": requested,
              "train_documents": len(train_y), "test_documents": len(test_y), "features": "posterior mean"}
    write_json(run_dir / "probe.json", result)
    return result
