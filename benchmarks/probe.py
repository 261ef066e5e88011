"""The linear probe of the paper's Table 4: how much label information the latent code carries.

The probe is the one in DU-VAE's code (repository SmilesDZgk/DU-VAE, file ``text_ss.py`` with
``modules/discriminators/discriminator_linear.py`` and ``data/text_data.py``). ``text_ss.py`` is in
commits 0f2f855 and d929f6e (line numbers below) and was deleted in 1239c96, so the current master
lacks it; ``data/text_data.py`` was committed only then (line numbers of master 6c59092). The
paper's Table 4 quotes DU-VAE's rows, so we take its protocol:

* features: the posterior means E_q[z|x] of the trained encoder in evaluation mode, RAW: no
  standardisation or other rescaling (text_ss.py:308, ``mu, logvar = vae.encoder(batch_data)``;
  for BN-VAE/DU-VAE this is the mean after the batch normalisation, with its running statistics);
* classifier: one ``nn.Linear(nz, classes)`` with PyTorch's default initialisation
  (discriminator_linear.py:15-17), trained on the mean cross-entropy of each batch
  (discriminator_linear.py:18-24, text_ss.py:342-346);
* optimiser: plain SGD, learning rate 1.0, no momentum (text_ss.py:42, 69, 265-266), with the
  gradient norm clipped at 5 (text_ss.py:22, 348);
* batches of at most 16 documents of the same token length: the labelled documents are sorted
  by length and each run of equal lengths is cut into chunks of 16, fixed for the whole fit;
  each epoch visits the chunks in a fresh random order, and a chunk with a single document is
  skipped (text_ss.py:71, 282-284, 324-327; text_data.py:177-217);
* after every epoch, the mean cross-entropy on the whole validation split (text_ss.py:162-194,
  371); the model with the lowest validation loss so far is kept (text_ss.py:374-379);
* learning-rate decay (text_ss.py:23-25, 381-404): when the validation loss exceeds the reference
  loss for 2 epochs running, the rate is halved, the kept (best) model is reloaded and a new SGD
  optimiser is made; the reference is the last validation loss that did not exceed it, and at a
  decay it becomes the current (worse) loss. Training stops after the 5th decay or 100 epochs
  (text_ss.py:73, 319, 403-404);
* the reported number is the test-split accuracy of the kept model (text_ss.py:413-417).

The labelled training documents are n documents of the training split (n = 100, 500, 1K, 2K, 10K
in the paper), validation is the whole valid split and the score is on the whole test split, as in
DU-VAE's configurations (config/config_yelp.py and config_short_yelp.py, ``params_ss_*``).

Where we differ, and why:

* DU-VAE reads fixed files of n labelled documents (``yelp.train.100.txt``, ...); we draw the n
  documents from the training split with the run's own seed (``draw_subsets``), so the 5 seeds of
  a configuration also vary the labelled documents. Inside a run of equal lengths the documents
  keep the order of that draw (a stable sort; DU-VAE's ``np.argsort`` is not stable).
* The randomness (the layer's initialisation, the batch order of every epoch) comes from one
  ``torch.Generator`` seeded with the run's seed, not from the global numpy/torch streams.
* The number of classes is that of the dataset's labels (DU-VAE configures ``ncluster``: 5 for
  Yelp, 10 for its short Yelp, whatever the labels).
* The best and the reference loss start at +infinity (DU-VAE: 1e4, so a model whose validation
  loss never falls below 1e4 would have no checkpoint at all). If no epoch ever has a finite
  validation loss, the untrained initial layer is kept.
* Computation in float32 as DU-VAE; validation losses are summed in float64.

Features. For Scale-VAE we probe the unscaled encoder mean mu, the mean of q(z|x) in the KL term,
not the decoder's f_bar * mu: it is what the encoder outputs, as ``vae.encoder`` outputs it in
DU-VAE's code (the Scale-VAE authors' code is not available to check). Without standardisation a
per-dimension scale does change the probe (SGD with a fixed rate is not scale invariant), so this
choice matters: a collapsed dimension with a tiny spread stays tiny, as the table should show.

The result is part of the run's record: ``probe.json`` in the run directory, written when the run
is scored (``benchmarks.derived``) for a run with a latent code on a corpus whose every split is
labelled, under the protocol's name (``PROTOCOL``), so that a result of an earlier probe is not
taken for this one. ``probe_run`` computes it from a run's ``best.pt`` instead, for runs of an
older store whose record lacks it; ``analysis/probe.py`` reads it for Table 4.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import SPLITS
from .errors import UserError
from .store import read_json, write_json

LABEL_COUNTS = (100, 500, 1000, 2000, 10000)

# The protocol of SmilesDZgk/DU-VAE text_ss.py (commit d929f6e); line numbers of that file.
LEARNING_RATE = 1.0  # --lr default, line 69; optim.SGD(..., lr=args.lr, ...) at line 266
MOMENTUM = 0.0  # --momentum default, line 42
BATCH_SIZE = 16  # --batch_size default, line 71 (params_ss_* do not override it)
MIN_BATCH = 2  # "if batch_data.size(0) < 2: continue", lines 326-327
CLIP_GRAD = 5.0  # clip_grad, line 22; clip_grad_norm_ at line 348
DECAY_PATIENCE = 2  # decay_epoch, line 23
LR_DECAY = 0.5  # lr_decay, line 24
MAX_DECAYS = 5  # max_decay, line 25; "if decay_cnt == max_decay: break", lines 403-404
MAX_EPOCHS = 100  # --epochs default, line 73 (params_ss_* do not override it)
PROTOCOL = "sgd-best-valid (DU-VAE text_ss.py)"  # names the probe in probe.json
RECORD = "probe.json"  # the run's record of its probe, beside metrics.json


def cached(path: Path, **key) -> dict | None:
    """The result stored at ``path`` if it is readable and was computed for ``key``; else None."""
    result = read_json(path, warn=False)  # None when missing, truncated or failing its checksum
    return result if isinstance(result, dict) and all(result.get(k) == v for k, v in key.items()) else None


@torch.no_grad()
def posterior_means(model, corpus, split: str, batch_size: int) -> torch.Tensor:
    """E_q[z|x] of every document of ``split``, in the split's order: [documents, nz], on the CPU
    (computed on the model's device)."""
    means = torch.empty(len(corpus.split(split)), model.arch.nz)
    for batch in corpus.loader(split, batch_size, shuffle=False, device=model.decoder.output.weight.device):
        means[batch.index.cpu()] = model.posterior(batch).mu.float().cpu()
    return means


def draw_subsets(available: int, counts, seed: int) -> dict[int, np.ndarray]:
    """For each count n (capped at ``available``), n distinct training indices; one draw per
    distinct capped count from ``numpy.random.default_rng(seed)``, in the order given."""
    rng = np.random.default_rng(seed)
    used = dict.fromkeys(min(int(n), available) for n in counts)
    return {n: rng.choice(available, size=n, replace=False) for n in used}


def length_batches(lengths, batch_size: int = BATCH_SIZE) -> list[np.ndarray]:
    """DU-VAE's batching of the labelled documents (``create_data_batch_labels``): positions sorted
    by length (stably), each run of equal lengths cut into consecutive chunks of ``batch_size``.
    The last chunk of a run may be short, down to one document."""
    lengths = np.asarray(lengths)
    order = np.argsort(lengths, kind="stable")
    runs = np.split(order, np.flatnonzero(np.diff(lengths[order])) + 1)
    return [run[i: i + batch_size] for run in runs if len(run) for i in range(0, len(run), batch_size)]


@dataclass
class DecayRule:
    """DU-VAE's learning-rate decay (text_ss.py:381-404), one ``update`` per epoch."""
    reference: float = math.inf  # the last validation loss that did not exceed the reference
    not_improved: int = 0  # epochs running whose loss exceeded the reference
    decays: int = 0

    def update(self, valid_loss: float) -> bool:
        """Record an epoch's validation loss; True when the learning rate is to be decayed now."""
        if valid_loss > self.reference:
            self.not_improved += 1
            if self.not_improved >= DECAY_PATIENCE:
                self.reference, self.not_improved = valid_loss, 0
                self.decays += 1
                return True
        else:  # includes a loss equal to the reference (and NaN, as in the authors' comparison)
            self.reference, self.not_improved = valid_loss, 0
        return False

    @property
    def finished(self) -> bool:
        return self.decays >= MAX_DECAYS


@dataclass
class ProbeFit:
    """A trained probe: the kept (best-validation) layer and the history of the fit."""
    layer: torch.nn.Linear
    best_epoch: int  # 1-based epoch whose model was kept; 0 if no epoch had a finite validation loss
    valid_losses: list[float] = field(default_factory=list)  # per epoch, before any reload
    learning_rates: list[float] = field(default_factory=list)  # the rate each epoch trained with
    decays: list[int] = field(default_factory=list)  # epochs after which the rate was halved
    batched_documents: int = 0  # labelled documents in batches that train (>= MIN_BATCH)

    @property
    def epochs(self) -> int:
        return len(self.valid_losses)


def _generator(seed: int | torch.Generator) -> torch.Generator:
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))


def _as_inputs(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(np.asarray(x), dtype=torch.float32), torch.as_tensor(np.asarray(y), dtype=torch.long)


@torch.no_grad()
def mean_loss(layer: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean cross-entropy of ``layer`` on (x, y), summed in float64."""
    return F.cross_entropy(layer(x).double(), y, reduction="sum").item() / len(y)


@torch.no_grad()
def accuracy(layer: torch.nn.Linear, x, y) -> float:
    x, y = _as_inputs(x, y)
    return (layer(x).argmax(1) == y).double().mean().item()


def fit_probe(train_x, train_y, valid_x, valid_y, *, classes: int | None = None, lengths=None,
              seed: int | torch.Generator = 0, max_epochs: int = MAX_EPOCHS) -> ProbeFit:
    """Train DU-VAE's linear probe on raw features and keep its best-validation model.

    ``lengths`` are the token counts of the training documents, which form the batches
    (``length_batches``); None puts all documents in one run, i.e. chunks of 16 in the given order.
    ``seed`` (an int or a ``torch.Generator``) drives the initialisation and the batch orders.
    """
    train_x, train_y = _as_inputs(train_x, train_y)
    valid_x, valid_y = _as_inputs(valid_x, valid_y)
    if classes is None:
        classes = int(max(train_y.max(), valid_y.max())) + 1
    generator = _generator(seed)
    layer = torch.nn.utils.skip_init(torch.nn.Linear, train_x.shape[1], classes)  # leaves the global RNG alone
    bound = 1 / math.sqrt(train_x.shape[1])  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)

    if lengths is not None and len(lengths) != len(train_y):
        raise ValueError(f"{len(lengths)} lengths for {len(train_y)} training documents")
    chunks = length_batches(np.zeros(len(train_y)) if lengths is None else lengths)
    batches = [(train_x[b], train_y[b]) for b in map(torch.as_tensor, chunks) if len(b) >= MIN_BATCH]
    fit = ProbeFit(layer, 0, batched_documents=sum(len(y) for _, y in batches))
    best_loss, best_state = math.inf, {k: v.clone() for k, v in layer.state_dict().items()}
    rule, rate = DecayRule(), LEARNING_RATE
    optimizer = torch.optim.SGD(layer.parameters(), lr=rate, momentum=MOMENTUM)
    for epoch in range(1, max_epochs + 1):
        fit.learning_rates.append(rate)
        with torch.enable_grad():
            for k in torch.randperm(len(batches), generator=generator).tolist():
                x, y = batches[k]
                loss = F.cross_entropy(layer(x), y)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(layer.parameters(), CLIP_GRAD)
                optimizer.step()
        valid_loss = mean_loss(layer, valid_x, valid_y)
        fit.valid_losses.append(valid_loss)
        if valid_loss < best_loss:
            best_loss, fit.best_epoch = valid_loss, epoch
            best_state = {k: v.clone() for k, v in layer.state_dict().items()}
        if rule.update(valid_loss):
            rate *= LR_DECAY
            fit.decays.append(epoch)
            layer.load_state_dict(best_state)
            optimizer = torch.optim.SGD(layer.parameters(), lr=rate, momentum=MOMENTUM)
        if rule.finished:
            break
    layer.load_state_dict(best_state)
    return fit


def probe_accuracy(train_x, train_y, valid_x, valid_y, test_x, test_y, *, lengths=None,
                   seed: int | torch.Generator = 0) -> float:
    """Test accuracy of DU-VAE's linear probe (``fit_probe``) trained on (train_x, train_y) and
    chosen on (valid_x, valid_y)."""
    classes = int(max(np.max(train_y), np.max(valid_y), np.max(test_y))) + 1
    fit = fit_probe(train_x, train_y, valid_x, valid_y, classes=classes, lengths=lengths, seed=seed)
    return accuracy(fit.layer, test_x, test_y)


def requested_counts(label_counts) -> list[int]:
    """The label counts as a list of positive integers (one UserError line otherwise)."""
    requested = [int(n) for n in label_counts]
    if not requested or min(requested) < 1:
        raise UserError(f"label counts must be positive integers, got {list(label_counts)}")
    return requested


def probes(model, corpus) -> bool:
    """Whether a run gets a probe record: a model with a latent code on a corpus whose every split is labelled."""
    return model.has_latent and all(corpus.labels(split) is not None for split in SPLITS)


def probe_model(model, corpus, config, label_counts=LABEL_COUNTS) -> dict:
    """Table 4 for one trained model (in evaluation mode, on the CPU): probe accuracy on the test split
    per number of labelled documents.

    Returns ``{"accuracy": {"100": 0.87, ...}, "label_counts": [...], "requested_counts": [...],
    "train_documents": N, "valid_documents": V, "test_documents": M, "features": "posterior mean",
    "probe": PROTOCOL, "best_epoch": {"100": 7, ...}, "batched_documents": {"100": 98, ...}}``.
    Counts larger than the N labelled training documents are capped at N; ``label_counts`` lists
    the distinct counts actually used, which key ``accuracy``, ``best_epoch`` (the epoch of the
    kept probe) and ``batched_documents`` (labelled documents in batches of 2 or more, the ones
    that train the probe).
    """
    requested = requested_counts(label_counts)
    labels = {split: corpus.labels(split) for split in SPLITS}
    if any(y is None for y in labels.values()):
        raise UserError(f"run {config.run_id} is on {config.dataset!r}, whose documents have no labels; "
                        "probe a run on a labelled dataset (yelp_small, yelp, short_yelp, synthetic)")
    if not model.has_latent:
        raise UserError(f"run {config.run_id} is a {config.model} without a latent code; probe a VAE run")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # posteriors refined by sampling (SA-VAE) are then reproducible
        features = {split: posterior_means(model, corpus, split, config.profile.eval_batch_size) for split in SPLITS}
    labels = {split: np.asarray(y) for split, y in labels.items()}
    classes = int(max(y.max() for y in labels.values())) + 1
    lengths = np.array([len(doc.tokens) for doc in corpus.split("train")])
    subsets = draw_subsets(len(labels["train"]), requested, config.seed)
    scores, best_epoch, batched = {}, {}, {}
    for n, idx in subsets.items():
        fit = fit_probe(features["train"][idx], labels["train"][idx], features["valid"], labels["valid"],
                        classes=classes, lengths=lengths[idx], seed=config.seed)
        scores[str(n)] = accuracy(fit.layer, features["test"], labels["test"])
        best_epoch[str(n)], batched[str(n)] = fit.best_epoch, fit.batched_documents
    return {"accuracy": scores, "label_counts": list(subsets), "requested_counts": requested,
            "train_documents": len(labels["train"]), "valid_documents": len(labels["valid"]),
            "test_documents": len(labels["test"]), "features": "posterior mean", "probe": PROTOCOL,
            "best_epoch": best_epoch, "batched_documents": batched}


def probe_run(run_dir, label_counts=LABEL_COUNTS, *, data_dir=None, cache_dir=None) -> dict:
    """``probe_model`` of a finished run, from its ``best.pt``: for runs scored before the probe was part of
    the record (metrics version 2 and older). Written as the run's ``probe.json`` for ``LABEL_COUNTS`` only."""
    from .derived import load_checkpoint

    run_dir = Path(run_dir)
    model, corpus, config = load_checkpoint(run_dir, RECORD, data_dir=data_dir, cache_dir=cache_dir)
    result = probe_model(model, corpus, config, label_counts)
    if result["requested_counts"] == list(LABEL_COUNTS):
        write_json(run_dir / RECORD, result)
    return result
