"""Re-score finished runs with the current metrics code, without training them again.

    python -m benchmarks.evaluate [--results DIR] [--only table1,...] [--models vae,...] [--datasets ...]
        [--profile P] [--seeds N|FROM:TO] [--force] [--jobs N] [--device cpu|cuda] [--data-dir DIR] [--cache-dir DIR]

Every ``metrics.json`` records the ``metrics_version`` that scored it (a file
without one was scored by version 1). This command reloads the stored
best-validation model (``best.pt``) of each selected finished run whose version
is older than ``benchmarks.metrics.METRICS_VERSION`` (every selected run with
``--force``), scores it on the test split with the run's own seed (the same
numbers a fresh run would report), writes its derived records as a fresh run's
scoring does (``benchmarks/derived.py``: the probe, the generated text, the latent
means) and rewrites ``metrics.json``: the training record (times, epochs, method
state) is kept, the evaluation is replaced. The
runner (``benchmarks.run``) does the same for finished runs it finds stale.
Without a filter every finished run under ``--results`` is selected. A fault of
the machine (GPU out of memory, a CUDA error) while re-scoring writes nothing: the
run keeps its metrics, is listed as unfinished (exit code 1) and is re-scored on
the next invocation.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import joblib

import models

from . import derived
from . import devices as machine
from . import metrics
from . import plan as planning
from .errors import MachineFault, UserError, machine_fault_kind, terminate_as_interrupt
from .plan import split_list
from .protocol import describe
from .store import DONE, UNFINISHED, RunStore, read_json, write_json
from .train import load_trained, release_device_memory, resolve_device, score


def metrics_version(result: dict) -> int:
    return int(result.get("metrics_version", 1))


def is_stale(run_dir: Path) -> bool:
    """A finished run scored by an older version of the metrics."""
    result = read_json(Path(run_dir) / "metrics.json", warn=False)
    return result is not None and metrics_version(result) < metrics.METRICS_VERSION


def rescore(run_dir, *, data_dir=None, cache_dir=None, device="cpu", eval_memory_mb: int | None = None) -> dict:
    """Score a finished run's best model again, write its derived records (``derived.write_records``) and
    rewrite its ``metrics.json``; returns the new metrics.

    A fault of the machine raises MachineFault before anything is written: it is no
    failure of the run, which keeps its metrics as they were and is re-scored next time.
    """
    run_dir = Path(run_dir)
    old = read_json(run_dir / "metrics.json")
    if old is None:
        raise UserError(f"{run_dir}/metrics.json is unreadable; train the run again (python -m benchmarks.run)")
    device = resolve_device(device)
    try:
        model, corpus, config = load_trained(run_dir, data_dir=data_dir, cache_dir=cache_dir, device=device)
        models.networks.float32_matmul_policy(device)  # as in training: IEEE float32, no TF32 on CUDA
        budget = machine.eval_memory_mb(config.profile.eval_memory_mb, device, eval_memory_mb)
        fresh = score(model, corpus, config, device, budget)
        fresh["records_seconds"] = derived.write_records(
            run_dir, model, corpus, config, device=device, runs_dir=run_dir.parent,
            log=lambda line: print(f"{run_dir.name}: {line}", file=sys.stderr))
    except Exception as error:
        if (kind := machine_fault_kind(error)) is None:
            raise
        release_device_memory(error)
        raise MachineFault(kind, run_dir.name, describe(error)) from error
    kept = {k: v for k, v in old.items() if k not in metrics.RETIRED_KEYS}
    result = {**kept, **fresh, "scored_by": {"metrics_version": fresh["metrics_version"], "device": str(device),
                                             "previous_version": metrics_version(old)}}
    write_json(run_dir / "metrics.json", result)
    return result


def rescore_locked(results_dir, run_id: str, **options) -> tuple[Path, str]:
    """``rescore`` under the run's lock (a run being trained or re-scored elsewhere is left alone)."""
    store = RunStore(results_dir)
    with store.lock(run_id) as acquired:
        if not acquired:
            return store.final(run_id), "busy"
        rescore(store.final(run_id), **options)
    return store.final(run_id), DONE


def selected_runs(store: RunStore, args) -> list[str]:
    """Finished runs under the store, narrowed by the plan's filters when any is given."""
    done = sorted(p.parent.name for p in store.root.glob("*/metrics.json"))
    if not (args.only or args.models or args.datasets or args.seeds):
        return done
    profiles = [args.profile] if args.profile else sorted(
        {c["profile"]["name"] for r in done if (c := read_json(store.final(r) / "config.json", warn=False))})
    wanted = {c.run_id for profile in profiles for c in planning.unique_runs(planning.plan(
        profile, split_list(args.only), args.seeds, split_list(args.models), split_list(args.datasets)))}
    return [r for r in done if r in wanted]


def rescore_one(results_dir: str, run_id: str, options: dict, threads: int) -> dict:
    import torch
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        _, status = rescore_locked(results_dir, run_id, **options)
    except UserError as error:
        return {"run_id": run_id, "status": "failed", "reason": str(error), "seconds": 0.0}
    except MachineFault as fault:
        return {"run_id": run_id, "status": UNFINISHED, "reason": str(fault), "seconds": 0.0}
    return {"run_id": run_id, "status": status, "seconds": time.perf_counter() - start}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--profile", default=None, help="the profile the filters plan under (default: the runs')")
    parser.add_argument("--only", default=None, help="comma-separated experiments")
    parser.add_argument("--models", default=None, help="comma-separated rows or methods")
    parser.add_argument("--datasets", default=None, help="comma-separated datasets")
    parser.add_argument("--seeds", default=None, help="N (the first N seeds of each experiment) or FROM:TO")
    parser.add_argument("--force", action="store_true", help="re-score runs whose metrics are already current")
    parser.add_argument("--jobs", type=int, default=1, help="runs re-scored in parallel (CPU)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--eval-memory-mb", type=int, default=None,
                        help="memory for one IW-NLL chunk's logits (default: a quarter of a GPU's free memory, the "
                             "profile's eval_memory_mb on the CPU)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        if args.jobs < 1:
            raise UserError(f"--jobs must be >= 1, got {args.jobs}")
        resolve_device(args.device)
        args.seeds = planning.parse_seeds(args.seeds)
        store = RunStore(args.results)
        if not store.root.is_dir():
            raise UserError(f"no runs under {args.results}/runs; pass the --results DIR your sweep wrote")
        runs = selected_runs(store, args)
        todo = [r for r in runs if args.force or is_stale(store.final(r))]
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(runs)} finished runs selected, {len(todo)} to re-score with metrics version {metrics.METRICS_VERSION}")
    options = {"data_dir": args.data_dir, "cache_dir": args.cache_dir, "device": args.device,
               "eval_memory_mb": args.eval_memory_mb}
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    tasks = (joblib.delayed(rescore_one)(str(Path(args.results).absolute()), r, options, threads) for r in todo)
    failed = unfinished = 0
    try:
        with terminate_as_interrupt():
            for summary in joblib.Parallel(n_jobs=args.jobs, return_as="generator_unordered")(tasks):
                failed += summary["status"] == "failed"
                unfinished += summary["status"] == UNFINISHED
                print(f"[{summary['status']}] {summary['run_id']}" + (f": {summary['reason']}" if "reason" in summary
                                                                       else f" ({summary['seconds']:.1f}s)"), flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: re-scored runs are kept; run the same command again to go on", file=sys.stderr)
        return 130
    print(f"re-scored {len(todo) - failed - unfinished} runs in {time.perf_counter() - start:.0f}s, {failed} failed"
          + (f", {unfinished} left unfinished by faults of the machine: run the same command again" if unfinished
             else ""))
    return 1 if failed or unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
