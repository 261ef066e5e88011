"""Tiny hand-made batches and models for unit tests (no data files needed)."""
import json
import os
from dataclasses import dataclass

import torch

import models


@dataclass
class FakeBatch:
    tokens: torch.Tensor
    lengths: torch.Tensor

    @property
    def size(self):
        return self.tokens.shape[0]

    @property
    def num_words(self):
        return int((self.lengths - 1).sum())


def random_batch(batch=8, steps=6, vocab=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, vocab, (batch, steps), generator=g)
    tokens[:, 0] = 1
    lengths = torch.randint(3, steps + 1, (batch,), generator=g)
    for i, n in enumerate(lengths):
        tokens[i, n - 1] = 2
        tokens[i, n:] = 0
    return FakeBatch(tokens, lengths)


def tiny_arch(vocab=12, nz=3):
    return models.Architecture(vocab_size=vocab, emb_dim=8, enc_hidden=10, dec_hidden=10, nz=nz,
                               dropout_in=0.0, dropout_out=0.0, init="default")


def write_finished_run(results, planned, **metrics):
    """A finished smoke run of a planned configuration with the given metrics, written by hand (no training)."""
    from benchmarks.metrics import METRICS_VERSION
    run_dir = results / "runs" / planned.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(planned.config.to_json()))
    values = {"model": planned.config.model, "dataset": planned.dataset, "profile": "smoke", "seed": planned.seed,
              "run_id": planned.run_id, "kl": 1.0, "mi": 0.5, "au": 3, "train_seconds": 3600.0, "eval_seconds": 1.0,
              "metrics_version": METRICS_VERSION}
    (run_dir / "metrics.json").write_text(json.dumps({**values, **metrics}))
    return run_dir


# ---- the store of a sweep in flight, for the progress bar's tests

def history(path, epochs: int, at: float) -> None:
    """A run's history.csv with ``epochs`` lines after its header, last written at wall time ``at``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("epoch,seconds\n" + "".join(f"{e},1.0\n" for e in range(1, epochs + 1)))
    os.utime(path, (at, at))


def lock(store, run_id: str, at: float) -> None:
    path = store.partials / f"{run_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("host 1 1")
    os.utime(path, (at, at))
