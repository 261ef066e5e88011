"""A run's derived records: what the tables, claims and figures need of a finished run beyond its
metrics, computed when the run is scored (``train.fit_and_evaluate``, ``evaluate.rescore``) and kept
as small files beside ``metrics.json``, so that a store without checkpoints (``python -m
benchmarks.records export``) gives the tables of the store it came from:

- ``probe.json`` (``benchmarks/probe.py``): Table 4's linear probe, for a run with a latent code on
  a corpus whose every split is labelled;
- ``samples.txt`` and ``generation.json`` (``benchmarks/generation.py``): Table 5's generated text
  and the statistics of it that need no other run, for runs on the datasets Table 5 uses;
- ``generation_ppl.json``: the PPL of that text under the LSTM-LM of the same data, profile and
  seed, naming the LM's run: written when the second of the two is scored in the same store (the
  LM scores the samples of its finished partners; a generating run scores its own when the LM had
  finished first), else by ``analysis/make_tables.py`` while the LM's ``best.pt`` is there;
- ``latent_means.csv``: the points of the latent-space figure, the decoder-side posterior means of
  the first ``MAX_LATENT_DOCS`` test documents with their Gaussian component, for runs with a
  latent code on the latent-space experiment's dataset (synthetic).

Each is computed from a copy of the trained model, rebuilt as ``load_trained`` rebuilds it from
``best.pt``, on the device that scored the run: on the CPU the numbers are exactly those the analysis
of the checkpoint gives (it runs on the CPU); on a GPU the posterior means and the draws are the
GPU's (the CPU would take hours for the probe's features at the paper's sizes). A record that cannot
be computed is named in one line of the run's log and left out (a fault of the machine is raised, as
in scoring); the run's metrics stand, and the analysis computes the record from ``best.pt``.
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import data, files, generation, plan, probe
from .config import RunConfig
from .errors import UserError, machine_fault_kind
from .store import read_json, write_json
from .train import build_trained, load_trained

LATENT = "latent_means.csv"
MAX_LATENT_DOCS = 2000  # test documents the latent-space figure plots


def latent_datasets() -> set[str]:
    """The datasets of the latent-space experiment, under any profile (benchmarks/experiments/latent_space.toml)."""
    return {name for names in plan.load("latent_space")["datasets"].values() for name in names}


def fresh_copy(model, config: RunConfig, vocab: data.Vocabulary, device="cpu"):
    """The trained model as ``load_trained`` would rebuild it from its ``best.pt``, on ``device``, in eval mode."""
    return build_trained(config, vocab, {k: v.detach().cpu() for k, v in model.state_dict().items()}, device)


def load_checkpoint(run_dir, record: str, *, data_dir=None, cache_dir=None):
    """``load_trained`` of a run whose directory lacks ``record``; one UserError line when its ``best.pt``
    is not there either (a record exported without the run's derived files, or trained elsewhere)."""
    run_dir = Path(run_dir)
    if not (run_dir / "best.pt").exists():
        raise UserError(f"run {run_dir.name} has no {record} and no best.pt to compute it from; re-score it where it "
                        "was trained (python -m benchmarks.evaluate --force --results DIR) and export its record again")
    return load_trained(run_dir, data_dir=data_dir, cache_dir=cache_dir)


# --------------------------------------------------------------------------- latent means


@torch.no_grad()
def decoder_means(model, corpus, limit: int = MAX_LATENT_DOCS) -> tuple[np.ndarray, np.ndarray]:
    """(means [n, nz], labels [n]) for the first ``limit`` test documents, in the order of their batches
    (by length): the mean of the posterior the decoder consumes (Scale-VAE: f_bar * mu; BN-VAE: the
    normalised mu), in float64, and each document's label (a synthetic document's Gaussian component)."""
    labels = corpus.labels("test")
    if labels is None:
        raise ValueError(f"the test split of {corpus.name} has no labels")
    batches = data.BatchLoader(corpus.encoded("test")[:limit], 256, pad_id=corpus.vocab.pad_id, labels=labels[:limit],
                               mode="length", shuffle=False, device=model.decoder.output.weight.device)
    means, components = [], []
    for batch in batches:
        means.append(model.decoder_posterior(model.posterior(batch)).mu.cpu())
        components.append(batch.labels.cpu())
    return torch.cat(means).double().numpy(), torch.cat(components).numpy()


def latent_csv(means: np.ndarray, labels: np.ndarray) -> bytes:
    """``latent_means.csv``: a header ``component,mean_0,...``, then one document a line; the means
    written as Python's shortest exact repr, so that they read back bit for bit."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["component", *(f"mean_{d}" for d in range(means.shape[1]))])
    writer.writerows([int(label), *map(repr, row.tolist())] for label, row in zip(labels, means))
    return out.getvalue().encode()


def read_latent(run_dir) -> tuple[np.ndarray, np.ndarray] | None:
    """A run's ``latent_means.csv`` as ``decoder_means`` returned it, or None when it has none (or an unreadable one)."""
    try:
        rows = list(csv.reader(io.StringIO((Path(run_dir) / LATENT).read_text())))
        header, body = rows[0], rows[1:]
        means = np.array([[float(v) for v in row[1:]] for row in body], dtype=np.float64).reshape(len(body), len(header) - 1)
        return means, np.array([int(row[0]) for row in body], dtype=np.int64)
    except (OSError, IndexError, ValueError):
        return None


# --------------------------------------------------------------------------- generation and its PPL


def pairing(config: RunConfig) -> str:
    """What a generating run and the LSTM-LM that scores its text share: data, profile and seed."""
    return json.dumps({**config.to_json(), "model": None, "hyperparameters": None}, sort_keys=True)


def partners(runs_dir, config: RunConfig) -> list[Path]:
    """The finished runs of ``runs_dir`` that pair with ``config`` (``pairing``): its LSTM-LMs for a
    generating run, the generating runs for an LSTM-LM."""
    key, wanted_lm = pairing(config), config.model != "lstm_lm"
    dataset, _, rest = config.run_id.partition(f"-{config.model}-")  # run ids: DATASET-MODEL-PROFILE-sSEED-DIGEST
    same = rest.rpartition("-")[0]  # PROFILE-sSEED: runs without it in their id are not read
    found = []
    for run_dir in sorted(Path(runs_dir).iterdir()) if runs_dir and Path(runs_dir).is_dir() else []:
        name = run_dir.name
        if not (name.startswith(f"{dataset}-") and f"-{same}-" in name) or name == config.run_id \
                or not (run_dir / "metrics.json").exists():
            continue
        value = read_json(run_dir / "config.json", warn=False)
        try:
            other = RunConfig.from_json(value)
        except (TypeError, KeyError, ValueError, UserError):
            continue
        if (other.model == "lstm_lm") == wanted_lm and pairing(other) == key:
            found.append(run_dir)
    return found


def pair(run_dir: Path, model, corpus, config: RunConfig, runs_dir) -> None:
    """The PPLs that the run's finished partners in ``runs_dir`` make possible (its ``samples.txt`` and
    ``generation.json`` written): an LSTM-LM scores the samples that wait for it; a generating run has its
    own scored by an LM that finished first."""
    batch_size = config.profile.eval_batch_size
    if config.model == "lstm_lm":
        for other in partners(runs_dir, config):
            stored = generation.read_record(other)
            if stored is not None and generation.stored_perplexity(other, stored, config.run_id) is None:
                generation.score_samples(other, stored, model, corpus.vocab, config.run_id, batch_size)
        return
    record = generation.read_record(run_dir)
    for lm_dir in partners(runs_dir, config):
        if record is None or not (lm_dir / "best.pt").exists():
            continue
        if generation.stored_perplexity(run_dir, record, lm_dir.name) is not None:  # re-scored: already there
            return
        checkpoint = torch.load(lm_dir / "best.pt", map_location="cpu")
        vocab = data.Vocabulary.from_json(checkpoint["vocab"])
        if vocab == corpus.vocab:
            lm = build_trained(RunConfig.from_json(read_json(lm_dir / "config.json")), vocab, checkpoint["model"],
                               model.decoder.output.weight.device)
            generation.score_samples(run_dir, record, lm, vocab, lm_dir.name, batch_size)
            return


# --------------------------------------------------------------------------- all of them


def write_records(run_dir, model, corpus, config: RunConfig, *, device="cpu", runs_dir=None, log=print) -> float:
    """Compute and write the derived records of a scored run into ``run_dir`` (see the module's
    docstring) on ``device``; returns the seconds it took. ``runs_dir``: the store's runs, where the
    partners of its generated text are looked for (None: none)."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    trained = fresh_copy(model, config, corpus.vocab, device)
    steps = []
    if probe.probes(trained, corpus):
        steps.append((probe.RECORD, lambda: write_json(run_dir / probe.RECORD, probe.probe_model(trained, corpus, config))))
    if generation.generates(config):
        steps.append((generation.RECORD, lambda: generation.write_record(
            run_dir, *generation.generation_record(trained, corpus, config))))
        steps.append((generation.PPL_RECORD, lambda: pair(run_dir, trained, corpus, config, runs_dir)))
    if trained.has_latent and config.dataset in latent_datasets() and corpus.labels("test") is not None:
        steps.append((LATENT, lambda: files.atomic_write(run_dir / LATENT, latent_csv(*decoder_means(trained, corpus)))))
    for name, step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 - the run's metrics stand; the analysis falls back on best.pt
            if machine_fault_kind(error) is not None:
                raise
            log(f"record {name} not written: {type(error).__name__}: {error}")
    return time.perf_counter() - start
