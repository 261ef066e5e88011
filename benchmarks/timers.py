"""Timing a training step: the clock and the step shared by the performance benchmark
(``python -m benchmarks.perf``), the precision check (benchmarks/precision.py), the memory
table (benchmarks/memory.py) and the runner's calibration (benchmarks/calibration.py).

- ``synchronize``, ``timed``, ``median``: wall seconds of work on a device, medians of repeats;
- ``TrainingStep``: a method's model and trainer in their first epoch, timed step by step;
- ``vae_step_flops``: the analytic matmul count of a VAE step;
- ``first_documents``: a batch cut to its first documents (a smaller timed step).
"""
from __future__ import annotations

import time

import torch

import models

from .config import RunConfig
from .data import Batch
from .protocol import Trainer
from .train import loader, seed_everything


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def timed(fn, device, repeats: int, warm_up: bool = True) -> float:
    """Seconds per call: the median of ``repeats`` calls after one untimed warm-up call."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return median(times)


def vae_step_flops(arch: models.Architecture, tokens: int, documents: int) -> float:
    """Matmul FLOPs of one VAE training step: encoder LSTM, decoder LSTM (input [emb; z]) and the
    output layer per token, the posterior projection per document; backward counted as 2x forward."""
    per_token = 2 * (4 * arch.enc_hidden * (arch.emb_dim + arch.enc_hidden)
                     + 4 * arch.dec_hidden * (arch.emb_dim + arch.nz + arch.dec_hidden)
                     + arch.dec_hidden * arch.vocab_size)
    return 3 * (per_token * tokens + 2 * arch.enc_hidden * 2 * arch.nz * documents)


class TrainingStep:
    """One method's model and trainer in its first training epoch, ready to time optimisation steps.

    ``config``: the run whose model, sizes and batches are timed; ``row``: the name its figures
    go under (default: the config's model)."""

    def __init__(self, config: RunConfig, corpus, device, row: str | None = None):
        seed_everything(0)
        self.row, self.device, self.hyperparameters = row or config.model, device, config.hyperparameters
        self.model = models.build(config.model, config.profile.architecture(len(corpus.vocab)),
                                  **config.hyperparameters).to(device)
        self.trainer = Trainer(self.model, config.profile, loader(corpus, "train", config, device, True),
                               loader(corpus, "valid", config, device, False), log=lambda line: None)
        self.model.train()
        self.model.on_epoch_start(1)  # Agg-VAE: the aggressive phase; Scale-VAE: per-batch factors
        self.trainer.kl_weight = config.profile.kl_start

    def seconds_per_step(self, batches: list) -> float:
        """Wall seconds of one pass over ``batches``, per batch."""
        synchronize(self.device)
        start = time.perf_counter()
        for batch in batches:
            self.model.training_step(batch, self.trainer)
        synchronize(self.device)
        return (time.perf_counter() - start) / len(batches)

    def entry(self, batches: list, passes: list[float]) -> dict:
        """The step's figures from the seconds per step of each timed pass (their median)."""
        seconds = median(passes)
        tokens = sum(int(b.lengths.sum()) - b.size for b in batches) / len(batches)  # predicted tokens per batch
        documents = sum(b.size for b in batches) / len(batches)
        return {"row": self.row, "step_ms": 1000 * seconds, "tokens_per_s": tokens / seconds,
                "pass_step_ms": [1000 * t for t in passes],
                "flops_per_step_vae_count": vae_step_flops(self.model.arch, tokens, documents),
                "hyperparameters": self.hyperparameters}


def first_documents(batch, n: int):
    """The batch's first ``n`` documents (the whole batch when it has no more)."""
    if n >= batch.size:
        return batch
    width = int(batch.lengths[:n].max())
    return Batch(batch.tokens[:n, :width], batch.lengths[:n], None if batch.labels is None else batch.labels[:n],
                 batch.index[:n])
