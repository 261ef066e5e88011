"""The runner's third step: execute the planned runs, costliest first, and show their progress.

Three ways, one summary per run:

- GPUs (``--device`` auto/cuda/cuda:N,M with GPUs present): ``benchmarks/scheduler.py``, one
  pinned worker process per slot, the memory guard, machine faults retried once alone;
- the CPU: joblib's loky workers, ``--jobs`` of them, torch threads divided between them;
- ``--backend dask``: an existing Dask cluster. Workers that declare a ``GPU`` resource (start one
  worker per GPU: ``CUDA_VISIBLE_DEVICES=i dask worker ADDRESS --nthreads 1 --resources GPU=1``) get
  one run at a time on their ``cuda``; otherwise runs go to the workers' CPUs.

The progress bar moves per epoch: a thread reads the runs in flight from the store every
``POLL_SECONDS`` (benchmarks/progress.py), whichever way the runs execute.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import joblib
import torch
from tqdm import tqdm

from . import devices as machine
from . import estimate as timing
from . import evaluate
from .progress import Progress
from .config import RunConfig
from .errors import MachineFault, UserError
from .scheduler import DeviceScheduler, Task
from .store import DONE, FAILED, UNFINISHED, RunStore, read_json
from .train import CONCURRENT_RUNS_VARIABLE, train_run

SUMMARY_KEYS = ("nll", "kl", "mi", "au")
GPU_RESOURCE = "GPU"  # the Dask worker resource that marks one GPU
POLL_SECONDS = 5.0  # how often the progress bar reads the runs in flight


@dataclass(frozen=True)
class Workers:
    """Where runs execute: ``slots`` (one run each at a time) and torch threads per run."""

    slots: list[machine.Slot]
    threads: int

    @property
    def jobs(self) -> int:
        return len(self.slots)

    @property
    def on_gpus(self) -> bool:
        return self.slots[0].device != machine.CPU


def workers(devices: list[str], jobs: int, runs_per_device: int) -> Workers:
    """The slots of ``devices``: ``runs_per_device`` per GPU (interleaved), else ``jobs`` CPU workers
    (0: one per core)."""
    cores = os.cpu_count() or 1
    if devices != [machine.CPU]:
        slots = machine.slots(devices, runs_per_device, 0)
        return Workers(slots, max(1, cores // len(slots)))
    jobs = jobs or cores
    return Workers(machine.slots(devices, 1, jobs), max(1, cores // jobs))


def run_one(config_json: dict, options: dict, device: str, threads: int = 0) -> dict:
    """Train one run in a worker (or re-score it, if it finished under older metrics) on ``device``;
    returns a small summary for the progress display. A fault of the machine (out of memory, a CUDA
    error) leaves the run unfinished, not failed: its summary says which fault."""
    if threads:
        torch.set_num_threads(threads)
    if options.get("concurrent_runs"):  # recorded in metrics.json: Table 2 says whether a time had the machine alone
        os.environ[CONCURRENT_RUNS_VARIABLE] = str(options["concurrent_runs"])
    start = time.perf_counter()
    run_id = config_json.get("run_id", "?")
    try:
        config = RunConfig.from_json(config_json)
        store = RunStore(options["results"])
        if store.status(config.run_id) == DONE and evaluate.is_stale(store.final(config.run_id)):
            path, status = evaluate.rescore_locked(options["results"], config.run_id, data_dir=options["data_dir"],
                                                   cache_dir=options["cache_dir"], device=device,
                                                   eval_memory_mb=options.get("eval_memory_mb"))
        else:
            path, status = train_run(config, results_dir=options["results"], data_dir=options["data_dir"],
                                     cache_dir=options["cache_dir"], device=device, download=options["download"],
                                     retry_failed=options["retry_failed"], log=lambda line: None,
                                     eval_memory_mb=options.get("eval_memory_mb"))
    except UserError as error:
        return {"run_id": run_id, "status": FAILED, "reason": str(error), "seconds": 0}
    except MachineFault as fault:
        cause = str(fault.__cause__ or fault).splitlines() or [""]
        return {"run_id": run_id, "status": UNFINISHED, "fault": fault.kind, "reason": f"{fault.kind}: {cause[0][:200]}",
                "seconds": time.perf_counter() - start}
    summary = {"run_id": config.run_id, "status": status, "seconds": time.perf_counter() - start}
    if status == DONE:
        metrics = read_json(path / "metrics.json") or {}
        summary.update({k: metrics.get(k) for k in SUMMARY_KEYS})
    elif status == FAILED:
        summary["reason"] = (read_json(path / "failed.json") or {}).get("reason", "unknown")
    return summary


def costliest_first(configs: list[RunConfig], seconds: dict[str, float] | None = None) -> list[RunConfig]:
    """Longest runs first, so that no worker is left with a long run at the end of a sweep: by their
    estimated seconds where known (benchmarks.estimate), else by method cost x epochs, after them."""
    seconds = seconds or {}

    def cost(c: RunConfig) -> tuple[bool, float]:
        if c.run_id in seconds:
            return True, seconds[c.run_id]
        return False, timing.relative_cost(c) * c.profile.max_epochs
    return sorted(configs, key=cost, reverse=True)  # stable: plan order among equals


def payload(config: RunConfig) -> dict:
    return {**config.to_json(), "run_id": config.run_id}


def on_gpus(todo: list[RunConfig], pool: Workers, options: dict, peaks: dict[str, float | None], report) -> list[dict]:
    capacity = {slot.device: machine.memory_mb(slot.device) for slot in pool.slots}
    tasks = [Task(c.run_id, lambda slot, c=c: (run_one, (payload(c), options, slot.run_device, pool.threads)),
                  peaks.get(c.run_id)) for c in todo]
    return DeviceScheduler(pool.slots, capacity, pool.threads).run(tasks, report)


def on_cpus(todo: list[RunConfig], pool: Workers, options: dict, report) -> list[dict]:
    tasks = (joblib.delayed(run_one)(payload(c), options, machine.CPU, pool.threads) for c in todo)
    results = []
    # loky replaces a worker whose memory grew 300 MB over a task (a long run's allocator caches) and
    # warns of "a worker stopped ... a memory leak": the run had finished and its result is kept, so
    # the warning is noise here. A worker that dies in a run is a machine fault, reported apart.
    warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given", category=UserWarning)
    with joblib.parallel_config(backend="loky"):
        for summary in joblib.Parallel(n_jobs=pool.jobs, return_as="generator_unordered")(tasks):
            results.append(summary)
            report(summary)
    return results


def on_dask(todo: list[RunConfig], scheduler: str, options: dict, threads: int, report) -> list[dict]:
    from dask.distributed import Client, as_completed

    results = []
    with Client(scheduler) as client:
        gpus = any(GPU_RESOURCE in (w.get("resources") or {}) for w in client.scheduler_info()["workers"].values())
        device, resources = ("cuda", {GPU_RESOURCE: 1}) if gpus else (machine.CPU, None)
        futures = [client.submit(run_one, payload(c), options, device, threads, key=f"vaebench-{c.run_id}",
                                 pure=False, resources=resources) for c in todo]
        for future in as_completed(futures):
            results.append(future.result())
            report(results[-1])
    return results


def execute(todo: list[RunConfig], pool: Workers, options: dict, estimate: timing.Estimate | None = None,
            backend: str = "loky", scheduler: str | None = None) -> list[dict]:
    """Every run of ``todo``, costliest first, with a progress bar; returns one summary per run."""
    seconds = estimate.seconds if estimate else {}
    todo = costliest_first(todo, seconds)
    if backend != "dask":  # a Dask cluster's concurrency is the cluster's: its runs record none
        options = {**options, "concurrent_runs": pool.jobs}
    epochs = {c.run_id: (estimate.epochs.get(c.run_id) if estimate else None) or c.profile.max_epochs for c in todo}
    progress = Progress([c.run_id for c in todo], seconds, pool.jobs, epochs, RunStore(options["results"]),
                        kinds={c.run_id: c.model for c in todo})  # each method's runs scale its own
    lock, stop = threading.Lock(), threading.Event()
    # tqdm's own rate and ETA are left out: with the costliest runs first they mislead for hours
    with tqdm(total=len(todo), unit="run", file=sys.stdout, dynamic_ncols=True, postfix=progress.postfix(),
              bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} runs [{elapsed}{postfix}]") as bar:
        shown = [bar.n, bar.postfix]

        def show() -> None:  # under ``lock``; writes only what changed (a log file gets no line per poll)
            position, postfix = progress.position(), progress.postfix()
            if [position, postfix] != shown:
                shown[:] = [position, postfix]
                bar.n = position
                bar.set_postfix_str(postfix, refresh=False)
                bar.refresh()

        def report(summary: dict) -> None:
            bar.write(format_summary(summary))
            if summary.get("retrying"):
                return
            with lock:
                progress.finished(summary["run_id"], summary["seconds"], summary["status"] == DONE)
                show()

        def poll() -> None:
            while not stop.wait(POLL_SECONDS):
                with lock:
                    progress.poll()
                    show()

        watcher = threading.Thread(target=poll, name="progress", daemon=True)
        watcher.start()
        try:
            if backend == "dask":
                return on_dask(todo, scheduler, options, pool.threads, report)
            if pool.on_gpus:
                return on_gpus(todo, pool, options, estimate.peak_mb if estimate else {}, report)
            return on_cpus(todo, pool, options, report)
        finally:
            stop.set()
            watcher.join()


def format_summary(s: dict) -> str:
    if s["status"] == DONE:
        values = " ".join(f"{k}={s[k]:.2f}" if isinstance(s[k], float) else f"{k}={s[k]}" for k in SUMMARY_KEYS)
        return f"[done]   {s['run_id']}: {values} ({s['seconds']:.0f}s)"
    if s.get("retrying"):
        return f"[{s['status']}] {s['run_id']}: {s.get('reason', '')}; trying it once more, alone on its GPU"
    return f"[{s['status']}] {s['run_id']}: {s.get('reason', '')}"
