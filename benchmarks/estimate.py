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

``a, b, v, e`` and setup are measured on this machine by benchmarks/calibration.py.

Finished runs win over the model: a configuration (all but the seed) that finished before is
estimated by its measured seconds, then the finished runs of its (method, dataset, profile) whose
profile settings differ from its own in the fewest fields (an SGD protocol of a study by its SGD
runs, not by the Adam runs of the tables); the other runs
get the model's estimate times the ratio measured / modelled over the finished runs of the plan.
The wall time is the schedule of the estimated runs, costliest first, over the workers.
Each run's expected epochs (for the progress bar, benchmarks/progress.py) come alike: those its
finished configuration ran, else its cap times the share of their caps the plan's finished runs ran.
No corpus is downloaded to estimate: runs on data not yet downloaded are left out (and said).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import models

from . import calibration
from . import devices as machine
from . import memory
from .calibration import Corpora, Rates, Shapes, busy_cores, group_key
from .config import RunConfig
from .store import read_json


# ----------------------------------------------------------------------------- the model


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
    value["profile"] = profile_settings(value)
    return json.dumps(value, sort_keys=True)


def profile_settings(config: RunConfig | dict | None) -> dict | None:
    """A run's profile fields (without its description), or None for a run without config.json."""
    if config is None:
        return None
    value = config.to_json() if isinstance(config, RunConfig) else config
    return {k: v for k, v in value.get("profile", {}).items() if k != "description"}


def nearest(runs: list[tuple[dict | None, float, float | None]] | None,
            settings: dict) -> list[tuple[float, float | None]] | None:
    """(seconds, epochs) of the finished runs whose profile settings differ from ``settings`` in the
    fewest fields (a run without its settings counts as differing in all of them)."""
    if not runs:
        return None

    def distance(other: dict | None) -> int:
        if other is None:
            return len(settings) + 1
        return sum(settings.get(k) != other.get(k) for k in settings.keys() | other.keys())
    distances = [distance(other) for other, _, _ in runs]
    closest = min(distances)
    return [(seconds, epochs) for (_, seconds, epochs), d in zip(runs, distances) if d == closest]


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
    by_kind: dict[tuple, list[tuple[dict | None, float, float | None]]] = {}  # and their profile settings
    for config_json, seconds, kind, epochs in finished.values():
        if config_json is not None:
            by_config.setdefault(configuration_key(config_json), []).append((seconds, epochs))
        by_kind.setdefault(kind, []).append((profile_settings(config_json), seconds, epochs))

    def measured_runs_of(c: RunConfig) -> list[tuple[float, float | None]] | None:
        return by_config.get(configuration_key(c)) or nearest(by_kind.get((c.model, c.dataset, c.profile.name)),
                                                              profile_settings(c))

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
        rates = calibration.calibrate(groups, options, jobs, threads, slots, local)
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

