"""How long a sweep will take, before it starts: a cost model per run, calibrated on this machine.

A run's seconds are

    setup + max_epochs * relative_cost * (VAE epoch) + evaluation

- *VAE epoch*: its training batches, each ``a + b * width`` seconds (``width``: the batch's
  padded length), plus its validation batches, each ``v * (a + b * width)``. The batches are the
  run's own (its corpus, batch size and batching mode, cut as the run cuts them).
- *max_epochs*: the profile's cap. Where the decay rule ends runs first (every profile) this is an
  upper bound until runs of the plan finish: their measured / modelled ratio then scales the rest.
- *relative_cost*: the method's training cost per epoch relative to a VAE's
  (``TextVAE.relative_cost(hp, epochs)`` in models/).
- *evaluation*: the IW-NLL's ``e`` seconds per document x sample x time step, times the
  profile's ``iw_samples`` and the test batches' documents x widths, plus one validation-like
  pass over the test split (a method without z: that pass only).
- *setup*: loading the corpus and building the model.

``a, b, v, e`` and setup are timed here, on real batches of a VAE at the run's sizes
(one calibration per distinct architecture and batch size of the plan, a few seconds in all),
with ``benchmarks.perf``'s timers; each batch keeps its fastest of two passes. With several
workers the calibration runs in that many worker processes at once, each with the runs' torch
threads and device, so the slowdown of runs sharing cores (or a GPU) is measured, not assumed.
Other processes' load is measured too (CPU time / wall time of the timed threads): when the
machine was busy, ``quiet`` holds what the runs would take with the cores to themselves.

Finished runs win over the model: a configuration (all but the seed) that finished before is
estimated by its measured seconds, then (method, dataset, profile) as before; the other runs
get the model's estimate times the ratio measured / modelled over the finished runs of the plan.
The wall time is the schedule of the estimated runs, costliest first, over the workers.
Each run's expected epochs (for the progress bar, benchmarks/progress.py) come alike: those its
finished configuration ran, else its cap times the share of their caps the plan's finished runs ran.
No corpus is downloaded to estimate: runs on data not yet downloaded are left out (and said).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field

import torch

import models

from . import devices as machine
from . import memory, metrics, perf
from .config import RunConfig
from .errors import UserError
from .protocol import Trainer
from .store import read_json
from .train import load_data, loader, resolve_device, seed_everything

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


class VAEStep(perf.TrainingStep):
    """perf's timed training step, for a VAE at a given run's configuration (not perf's dataset)."""

    def __init__(self, config: RunConfig, corpus, device):  # noqa: D107 - perf.TrainingStep's body, any config
        seed_everything(0)
        self.row, self.device, self.hyperparameters = config.model, device, config.hyperparameters
        self.model = models.build(config.model, config.profile.architecture(len(corpus.vocab)),
                                  **config.hyperparameters).to(device)
        self.trainer = Trainer(self.model, config.profile, loader(corpus, "train", config, device, True),
                               loader(corpus, "valid", config, device, False), log=lambda line: None)
        self.model.train()
        self.model.on_epoch_start(1)
        self.trainer.kl_weight = config.profile.kl_start


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
    step = VAEStep(config, corpus, device)
    setup = time.perf_counter() - start
    p, arch = config.profile, step.model.arch
    batches = spread(list(loader(corpus, "train", config, device, True)), CALIBRATION_STEPS)
    full = max(b.size for b in batches)
    widest = batches[-1]
    flops = perf.vae_step_flops(arch, int(widest.lengths.sum()), widest.size)
    capped = device.type == "cpu"  # a GPU times whole batches and every IW sample: its time is not linear in them
    docs = max(2, min(full, int(full * FLOP_CAP / flops))) if capped and flops > FLOP_CAP else full
    batches = [perf.first_documents(b, docs) for b in batches]
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
    validation = perf.timed(trainer.validate, device, 1) / sum(t for _, t in train)
    tests = spread(list(loader(corpus, "test", config, device, False)), 3)
    test = tests[len(tests) // 2]
    chunk = perf.first_documents(test, EVAL_DOCS)
    width = int(chunk.tokens.shape[1])
    per_sample = perf.vae_step_flops(arch, int(chunk.lengths.sum()), chunk.size) / 3
    samples = max(1, min(p.iw_samples, int(FLOP_CAP / per_sample))) if capped else p.iw_samples
    budget = machine.eval_memory_mb(p.eval_memory_mb, device, options.get("eval_memory_mb"))
    seconds = perf.timed(lambda: metrics.evaluate(model, [chunk], samples, budget), device, 3)
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


# ----------------------------------------------------------------------------- the model


def busy_cores() -> float:
    """Cores other processes kept busy over the last minute (the 1-minute load average)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def relative_cost(config: RunConfig) -> float:
    """The method's training cost per epoch relative to a VAE's, over the run's epochs."""
    method = models.registry.method(config.model)
    return method.relative_cost(models.hyperparameters(config.model, **config.hyperparameters),
                                epochs=config.profile.max_epochs)


def modelled_seconds(config: RunConfig, shapes: Shapes, rates: Rates) -> float:
    p = config.profile
    av, bv = rates.forward
    test_pass = sum(av + bv * w for _, w in shapes.test)
    evaluation = test_pass
    if models.registry.method(config.model).has_latent:
        evaluation += rates.iw * p.iw_samples * sum(n * w for n, w in shapes.test)
    return rates.setup + p.max_epochs * relative_cost(config) * rates.epoch(shapes) + evaluation


def configuration_key(config: RunConfig | dict) -> str:
    """A run's configuration without its seed (seeds of one configuration take about as long)."""
    value = config.to_json() if isinstance(config, RunConfig) else dict(config)
    value.pop("seed", None)
    value["profile"] = {k: v for k, v in value["profile"].items() if k != "description"}
    return json.dumps(value, sort_keys=True)


def run_seconds(metrics_json: dict) -> float:
    return sum(metrics_json.get(k) or 0.0 for k in ("train_seconds", "statistics_seconds", "eval_seconds"))


def measured_runs(store) -> dict[str, tuple[dict | None, float, tuple, float | None]]:
    """run id -> (its config.json, its measured seconds, (method, dataset, profile), its epochs) of
    finished runs."""
    found = {}
    if not store.root.is_dir():
        return found
    for path in store.root.glob("*/metrics.json"):
        m = read_json(path, warn=False)
        if m is None or "train_seconds" not in m:
            continue
        config = read_json(path.parent / "config.json", warn=False)
        found[path.parent.name] = (config, run_seconds(m), (m.get("model"), m.get("dataset"), m.get("profile")),
                                   m.get("epochs"))
    return found


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@dataclass
class Estimate:
    """Seconds per run of a plan and where each number comes from."""

    seconds: dict[str, float]  # run id -> estimated seconds of one worker
    source: dict[str, str]  # run id -> "measured" (a finished run of its kind) or "model"
    jobs: int
    note: str = ""
    missing: dict[str, str] = field(default_factory=dict)  # dataset -> why its runs have no estimate
    ratio: float = 1.0  # measured / modelled over finished runs (applied to the model's numbers)
    quiet: dict[str, float] = field(default_factory=dict)  # run id -> seconds if nothing else used the CPU
    peak_mb: dict[str, float | None] = field(default_factory=dict)  # run id -> estimated GPU peak (GPUs only)
    epochs: dict[str, float] = field(default_factory=dict)  # run id -> expected epochs

    def quiet_wall(self, run_ids) -> float | None:
        """As ``wall``, with the model's runs at the speed the calibration would have had alone."""
        times = [self.quiet.get(r, self.seconds.get(r)) for r in run_ids]
        return None if any(t is None for t in times) else makespan(times, self.jobs)

    def wall(self, run_ids) -> float | None:
        """Wall seconds of these runs over the workers, costliest first; None if one has no estimate."""
        times = [self.seconds.get(r) for r in run_ids]
        if any(t is None for t in times):
            return None
        return makespan(times, self.jobs)

    def known(self, run_ids) -> list[str]:
        return [r for r in run_ids if r in self.seconds]


def makespan(times: list[float], jobs: int, busy: list[float] = ()) -> float:
    """Wall time of runs handed, longest first, to whichever of ``jobs`` workers is free first;
    ``busy``: the seconds some workers have still to go on their runs in flight."""
    loads = [*busy, *[0.0] * (max(1, jobs) - len(busy))]
    for t in sorted(times, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


def estimate(configs: list[RunConfig], store, jobs: int, threads: int = 0, slots: list[machine.Slot] | None = None,
             options: dict | None = None, local: bool = False) -> Estimate:
    """Estimated seconds of every run of ``configs`` (see the module's docstring)."""
    options = options or {}
    started = time.perf_counter()
    finished = measured_runs(store)
    by_config: dict[str, list[tuple[float, float | None]]] = {}  # (seconds, epochs) of finished runs
    by_kind: dict[tuple, list[tuple[float, float | None]]] = {}
    for config_json, seconds, kind, epochs in finished.values():
        if config_json is not None:
            by_config.setdefault(configuration_key(config_json), []).append((seconds, epochs))
        by_kind.setdefault(kind, []).append((seconds, epochs))

    def measured_runs_of(c: RunConfig) -> list[tuple[float, float | None]] | None:
        return by_config.get(configuration_key(c)) or by_kind.get((c.model, c.dataset, c.profile.name))

    def measured(c: RunConfig) -> list[float] | None:
        return [s for s, _ in measured_runs_of(c) or []] or None

    needed = [c for c in configs if not measured(c)]  # the model is needed for these only
    corpora = Corpora(options.get("data_dir"), options.get("cache_dir"))
    shapes = {c.run_id: corpora.shapes(c) for c in needed}
    groups: dict[tuple, RunConfig] = {}
    for c in needed:
        if shapes[c.run_id] is not None:
            groups.setdefault(group_key(c, shapes[c.run_id].vocab), c)
    note, rates = "", {}
    busy = busy_cores() if groups and not slots else 0.0
    try:
        rates = calibrate(groups, options, jobs, threads, slots, local)
    except Exception as error:  # noqa: BLE001 - no estimate is better than no sweep
        note = f"calibration failed ({type(error).__name__}: {error})"
    if rates:
        step = [r.step[0] + r.step[1] * mean([w for _, w in shapes[c.run_id].train])
                for key, c in groups.items() for r in [rates[key]]]
        note = (f"calibrated on this machine in {time.perf_counter() - started:.0f} s: a VAE training step "
                + "/".join(f"{1000 * s:.0f}" for s in step) + " ms at the plan's sizes"
                + (f", {jobs} workers timed at once" if jobs > 1 and not local else "")
                + (f"; the machine was busy (load {busy:.1f} on {os.cpu_count()} cores, the timed threads "
                   f"got {100 * mean([r.share for r in rates.values()]):.0f}% of their time)" if busy >= 1 else ""))
    modelled = {}
    for c in configs:  # the runs to come, and the finished runs of the plan (to check the model against)
        if rates and (c.run_id in shapes or c.run_id in finished):
            shape = shapes[c.run_id] if c.run_id in shapes else corpora.shapes(c)
            if shape is not None and (key := group_key(c, shape.vocab)) in rates:
                modelled[c.run_id] = modelled_seconds(c, shape, rates[key])
    pairs = [(finished[r][1], modelled[r]) for r in modelled if r in finished]
    ratio = sum(m for m, _ in pairs) / sum(e for _, e in pairs) if pairs else 1.0
    if pairs:
        note += f"; x{ratio:.2f} from {len(pairs)} finished runs of the plan"
    elif modelled and any(c.profile.max_decays > 0 for c in needed):
        note += "; each run counted at its epoch cap, an upper bound: the decay rule ends most runs earlier"
    seconds, source = {}, {}
    every = [s for _, s, _, _ in finished.values()]
    for c in configs:
        if same := measured(c):
            seconds[c.run_id], source[c.run_id] = mean(same), "measured"
        elif c.run_id in modelled:
            seconds[c.run_id], source[c.run_id] = modelled[c.run_id] * ratio, "model"
        elif every:  # no data to calibrate on: the mean finished run
            seconds[c.run_id], source[c.run_id] = mean(every), "measured"
    quiet = {c.run_id: seconds[c.run_id] * rates[group_key(c, shapes[c.run_id].vocab)].share
             for c in configs if source.get(c.run_id) == "model" and not pairs}  # finished runs: their ratio
    plan_epochs = [(finished[c.run_id][3], c.profile.max_epochs) for c in configs
                   if c.run_id in finished and finished[c.run_id][3]]
    share = sum(e for e, _ in plan_epochs) / sum(cap for _, cap in plan_epochs) if plan_epochs else 1.0
    epochs = {}
    for c in configs:
        ran = [e for _, e in measured_runs_of(c) or [] if e]
        epochs[c.run_id] = mean(ran) if ran else c.profile.max_epochs * share
    peaks = {}
    if slots:  # the memory guard's figures: the method's table rows at the run's widest training batch
        for c in configs:
            if (shape := corpora.shapes(c)) is not None:
                width = max(w for _, w in shape.train)
                peaks[c.run_id] = memory.peak_mb(c.model, c.profile, shape.vocab, width)
    return Estimate(seconds, source, jobs, note, corpora.missing, ratio, quiet, peaks, epochs)


# ----------------------------------------------------------------------------- words


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"

