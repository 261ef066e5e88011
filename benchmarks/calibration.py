"""The shapes of a run's batches and the timing of a VAE step on this machine: the rates of the
sweep's cost model (benchmarks/estimate.py).

``a, b, v, e`` and setup are timed here, on real batches of a VAE at the run's sizes
(one calibration per distinct architecture and batch size of the plan, a few seconds in all),
with ``benchmarks/timers.py``'s timers; each batch keeps its fastest of two passes. With several
workers the calibration runs in that many worker processes at once, each with the runs' torch
threads and device, so the slowdown of runs sharing cores (or a GPU) is measured, not assumed.
Other processes' load is measured too (CPU time / wall time of the timed threads): when the
machine was busy, ``quiet`` holds what the runs would take with the cores to themselves.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import torch

import models

from . import devices as machine
from . import metrics
from .config import RunConfig
from .errors import UserError
from .timers import TrainingStep, first_documents, timed, vae_step_flops
from .train import load_data, loader, resolve_device

CALIBRATION_STEPS = 6  # training batches timed per calibration, spread over the widths
PASSES = 2  # each batch is timed this many times and keeps its fastest (others' bursts of load left out)
EVAL_DOCS = 8  # documents of the timed IW chunk
FLOP_CAP = 4e9  # a timed step larger than this (paper sizes on a CPU) is timed on fewer documents
BARRIER_SECONDS = 120  # workers wait this long for each other before timing


# ----------------------------------------------------------------------------- shapes


def corpus_key(config: RunConfig) -> tuple:
    p = config.profile
    return (config.dataset, p.max_len, p.vocab_size, p.train_docs, p.valid_docs, p.test_docs)


def group_key(config: RunConfig, vocab: int) -> tuple:
    """Runs whose VAE steps cost the same: architecture, vocabulary and batch sizes."""
    p = config.profile
    return (p.emb_dim, p.enc_hidden, p.dec_hidden, p.nz, vocab, p.batch_size, p.eval_batch_size, p.eval_memory_mb)


@dataclass
class Shapes:
    """The (documents, width) of every batch a run sees, per split, and its corpus's vocabulary."""

    vocab: int
    train: list[tuple[int, int]]
    valid: list[tuple[int, int]]
    test: list[tuple[int, int]]


def batch_shapes(corpus, split: str, config: RunConfig, train: bool) -> list[tuple[int, int]]:
    return [(b.size, int(b.tokens.shape[1])) for b in loader(corpus, split, config, "cpu", train)]


class Corpora:
    """Corpora and batch shapes, each loaded or cut once (never downloaded)."""

    def __init__(self, data_dir=None, cache_dir=None):
        self.data_dir, self.cache_dir = data_dir, cache_dir
        self.corpora: dict[tuple, object] = {}
        self.missing: dict[str, str] = {}  # dataset -> why it cannot be loaded
        self._shapes: dict[tuple, Shapes] = {}

    def corpus(self, config: RunConfig):
        key = corpus_key(config)
        if key not in self.corpora:
            try:
                self.corpora[key] = load_data(config, self.data_dir, self.cache_dir, download=False)
            except UserError as error:
                self.corpora[key] = None
                self.missing.setdefault(config.dataset, str(error))
        return self.corpora[key]

    def shapes(self, config: RunConfig) -> Shapes | None:
        p = config.profile
        key = (corpus_key(config), p.batch_size, p.batching, p.eval_batch_size)
        if key not in self._shapes:
            corpus = self.corpus(config)
            if corpus is None:
                return None
            seed0 = dataclasses.replace(config, seed=0)  # random partitions: one draw stands for every seed
            self._shapes[key] = Shapes(len(corpus.vocab), batch_shapes(corpus, "train", seed0, True),
                                       batch_shapes(corpus, "valid", seed0, False),
                                       batch_shapes(corpus, "test", seed0, False))
        return self._shapes[key]


# ----------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Rates:
    """A VAE's measured costs at one group's sizes (seconds)."""

    step: tuple[float, float]  # training batch: a + b * width
    forward: tuple[float, float]  # validation batch: a_v + b_v * width
    iw: float  # IW-NLL per document x sample x time step
    setup: float  # corpus load and model build
    share: float = 1.0  # CPU time / wall time of the timed threads (1: nothing else ran)

    def epoch(self, shapes: Shapes) -> float:
        (a, b), (av, bv) = self.step, self.forward
        return sum(a + b * w for _, w in shapes.train) + sum(av + bv * w for _, w in shapes.valid)


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares t = a + b * w, with a, b >= 0 (a proportional fit when the line would not be)."""
    n = len(points)
    mean_w = sum(w for w, _ in points) / n
    mean_t = sum(t for _, t in points) / n
    spread = sum((w - mean_w) ** 2 for w, _ in points)
    b = sum((w - mean_w) * (t - mean_t) for w, t in points) / spread if spread else 0.0
    a = mean_t - b * mean_w
    if b <= 0:
        return mean_t, 0.0
    if a < 0:
        return 0.0, mean_t / mean_w
    return a, b


def spread(batches: list, n: int) -> list:
    """Up to ``n`` batches of distinct widths, evenly spread from the narrowest to the widest."""
    by_width = {int(b.tokens.shape[1]): b for b in batches}
    ordered = [by_width[w] for w in sorted(by_width)]
    if len(ordered) <= n:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (n - 1))] for i in range(n)]


def calibrate_group(config: RunConfig, options: dict, device, barrier=None) -> dict:
    """Time a VAE at ``config``'s sizes: training steps, validation batches, one IW chunk."""
    start = time.perf_counter()
    corpus = load_data(config, options.get("data_dir"), options.get("cache_dir"), download=False)
    step = TrainingStep(config, corpus, device)
    setup = time.perf_counter() - start
    p, arch = config.profile, step.model.arch
    batches = spread(list(loader(corpus, "train", config, device, True)), CALIBRATION_STEPS)
    full = max(b.size for b in batches)
    widest = batches[-1]
    flops = vae_step_flops(arch, int(widest.lengths.sum()), widest.size)
    capped = device.type == "cpu"  # a GPU times whole batches and every IW sample: its time is not linear in them
    docs = max(2, min(full, int(full * FLOP_CAP / flops))) if capped and flops > FLOP_CAP else full
    batches = [first_documents(b, docs) for b in batches]
    scale = full / docs  # documents timed per batch -> a whole batch (only at sizes where time ~ documents)
    step.seconds_per_step(batches[-1:])  # warm-up at the largest shapes
    if barrier is not None:
        try:
            barrier.wait(BARRIER_SECONDS)
        except Exception:  # noqa: BLE001 - a worker that never came: time unsynchronised
            pass
    wall, cpu = time.perf_counter(), time.process_time()
    passes = [[step.seconds_per_step([b]) for b in batches] for _ in range(PASSES)]
    train = [(int(b.tokens.shape[1]), min(times)) for b, times in zip(batches, zip(*passes))]
    trainer, model = step.trainer, step.model
    trainer.valid_batches = batches  # validation (loss and latent statistics) of the same batches
    validation = timed(trainer.validate, device, 1) / sum(t for _, t in train)
    tests = spread(list(loader(corpus, "test", config, device, False)), 3)
    test = tests[len(tests) // 2]
    chunk = first_documents(test, EVAL_DOCS)
    width = int(chunk.tokens.shape[1])
    per_sample = vae_step_flops(arch, int(chunk.lengths.sum()), chunk.size) / 3
    samples = max(1, min(p.iw_samples, int(FLOP_CAP / per_sample))) if capped else p.iw_samples
    budget = machine.eval_memory_mb(p.eval_memory_mb, device, options.get("eval_memory_mb"))
    seconds = timed(lambda: metrics.evaluate(model, [chunk], samples, budget), device, 3)
    # the share of its threads' time this process got while timing: below 1 when other processes
    # (not the runs' own workers, which are timed too) kept the cores busy
    share = (time.process_time() - cpu) / ((time.perf_counter() - wall) * torch.get_num_threads())
    a, b = fit_line(train)
    return {"step": (a, b * scale), "forward": (a * validation, b * scale * validation),
            "iw": seconds / (chunk.size * samples * width), "setup": setup,
            "share": min(1.0, share) if device.type == "cpu" else 1.0}


def calibrate_worker(configs_json: list[dict], options: dict, threads: int, device, barrier=None) -> list[dict]:
    """Every group's calibration in this process (a runner's worker, or the runner itself)."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as every run does
    try:
        device = torch.device(device)
        return [calibrate_group(RunConfig.from_json(c), options, device, barrier) for c in configs_json]
    finally:
        torch.set_num_threads(previous)


def calibration_task(configs_json: list[dict], options: dict, threads: int, device, barrier) -> dict:
    """``calibrate_worker`` as a task of a GPU slot's worker (benchmarks/scheduler.py)."""
    return {"run_id": "calibration", "status": "done",
            "rates": calibrate_worker(configs_json, options, threads, device, barrier)}


def calibrate_on_gpus(configs: list[dict], options: dict, threads: int, slots: list[machine.Slot]) -> list[list[dict]]:
    """The calibration in the sweep's own GPU workers, one per slot, all at once (runs sharing a GPU
    are timed sharing it); never in this process, which holds no CUDA context."""
    import multiprocessing

    from .scheduler import DeviceScheduler, Task

    manager = multiprocessing.Manager()
    try:
        barrier = manager.Barrier(len(slots))
        tasks = [Task(f"calibration-{s.index}", lambda slot: (calibration_task, (configs, options, threads,
                                                                                 slot.run_device, barrier)))
                 for s in slots]
        done = DeviceScheduler(slots, {s.device: None for s in slots}, threads).run(tasks, lambda summary: None)
    finally:
        manager.shutdown()
    if any("rates" not in d for d in done):
        raise RuntimeError(next(d.get("reason", "a worker failed") for d in done if "rates" not in d))
    return [d["rates"] for d in done]


def calibrate(groups: dict[tuple, RunConfig], options: dict, jobs: int, threads: int,
              slots: list[machine.Slot] | None, local: bool = False) -> dict[tuple, Rates]:
    """Each group's rates: timed in ``jobs`` worker processes at once (the runs' sharing of the
    machine), or in this process when ``jobs`` is 1 or ``local``; on GPUs in the ``slots``' workers."""
    if not groups:
        return {}
    vae = dataclasses.asdict(models.hyperparameters("vae"))
    configs = [dataclasses.replace(c, model="vae", hyperparameters=vae).to_json() for c in groups.values()]
    devices = [str(resolve_device(options.get("device")))] * max(1, jobs)
    if slots:
        results = calibrate_on_gpus(configs, options, threads, slots)
    elif jobs <= 1 or local:
        results = [calibrate_worker(configs, options, threads, devices[0])]
    else:
        import multiprocessing

        import joblib
        manager = multiprocessing.Manager()
        try:
            barrier = manager.Barrier(jobs)
            tasks = (joblib.delayed(calibrate_worker)(configs, options, threads, devices[i], barrier)
                     for i in range(jobs))
            with joblib.parallel_config(backend="loky"):
                results = joblib.Parallel(n_jobs=jobs)(tasks)
        finally:
            manager.shutdown()
    rates = {}
    for i, key in enumerate(groups):
        timed = [r[i] for r in results]
        mean = lambda f: sum(f(t) for t in timed) / len(timed)  # noqa: E731
        rates[key] = Rates((mean(lambda t: t["step"][0]), mean(lambda t: t["step"][1])),
                           (mean(lambda t: t["forward"][0]), mean(lambda t: t["forward"][1])),
                           mean(lambda t: t["iw"]), mean(lambda t: t["setup"]),
                           mean(lambda t: t["share"]))
    return rates


def busy_cores() -> float:
    """Cores other processes kept busy over the last minute (the 1-minute load average)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
