"""Run experiments: every configuration over its seeds, in parallel, resumable.

    python -m benchmarks.run --profile quick [--only table1,table3] [--models vae,scale_vae]
        [--datasets yahoo_small] [--seeds 5] [--jobs N] [--runs-per-device K] [--dry-run] [--retry-failed]
        [--backend loky|dask --scheduler ADDRESS] [--data-dir DIR] [--results DIR] [--cache-dir DIR]

joblib drives the runs. On GPUs, runs spread over every visible device, K at a
time per device (each run uses one device). On CPU, ``--jobs`` workers share the
cores, with torch threads divided between them. With ``--backend dask`` the runs
go to an existing Dask cluster (results, data and cache paths must then be
visible to its workers). Finished runs are never trained again; interrupted ones
resume from their last epoch; failures are recorded and listed at the end
(exit code 1).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import joblib
import torch
from tqdm import tqdm

import models

from . import evaluate
from . import plan as planning
from .plan import split_list
from .config import RunConfig, load_profile
from .errors import UserError
from .store import DONE, FAILED, RunStore, read_json
from .train import train_run

SUMMARY_KEYS = ("nll", "kl", "mi", "au")


def run_one(config_json: dict, options: dict, devices=None, threads: int = 0) -> dict:
    """Train one run in a worker (or re-score it, if it finished under older metrics); returns a small
    summary for the progress display."""
    if threads:
        torch.set_num_threads(threads)
    device = devices.get() if devices is not None else options["device"]
    start = time.perf_counter()
    try:
        config = RunConfig.from_json(config_json)
        store = RunStore(options["results"])
        if store.status(config.run_id) == DONE and evaluate.is_stale(store.final(config.run_id)):
            path, status = evaluate.rescore_locked(options["results"], config.run_id, data_dir=options["data_dir"],
                                                   cache_dir=options["cache_dir"], device=device)
        else:
            path, status = train_run(config, results_dir=options["results"], data_dir=options["data_dir"],
                                 cache_dir=options["cache_dir"], device=device, download=options["download"],
                                 retry_failed=options["retry_failed"], log=lambda line: None)
    except UserError as error:
        return {"run_id": config_json.get("run_id", "?"), "status": FAILED, "reason": str(error), "seconds": 0}
    finally:
        if devices is not None:
            devices.put(device)
    summary = {"run_id": config.run_id, "status": status, "seconds": time.perf_counter() - start}
    if status == DONE:
        metrics = read_json(path / "metrics.json") or {}
        summary.update({k: metrics.get(k) for k in SUMMARY_KEYS})
    elif status == FAILED:
        summary["reason"] = (read_json(path / "failed.json") or {}).get("reason", "unknown")
    return summary


def estimate_seconds(configs: list[RunConfig], store: RunStore) -> float | None:
    """Time left: each pending run costs what finished runs of its method and dataset cost on average."""
    by_kind: dict[tuple, list[float]] = {}
    for path in store.root.glob("*/metrics.json"):
        if (m := read_json(path)) is None:
            continue
        by_kind.setdefault((m["model"], m["dataset"], m["profile"]), []).append(m["train_seconds"] + m["eval_seconds"])
    every = [t for times in by_kind.values() for t in times]
    if not every:
        return None
    fallback = sum(every) / len(every)
    return sum(sum(t) / len(t) if (t := by_kind.get((c.model, c.dataset, c.profile.name))) else fallback
               for c in configs)


def describe_plan(planned, configs, store: RunStore, jobs: int) -> str:
    status = {c.run_id: store.status(c.run_id) for c in configs}
    lines = []
    for name in dict.fromkeys(p.experiment for p in planned):
        ids = {p.run_id for p in planned if p.experiment == name}
        counts = Counter(status[i] for i in ids)
        lines.append(f"{name:<14} {len(ids):4d} runs: " + ", ".join(f"{counts[s]} {s}" for s in sorted(counts)))
    todo = [c for c in configs if status[c.run_id] not in (DONE, FAILED)]
    stale = sum(status[c.run_id] == DONE and evaluate.is_stale(store.final(c.run_id)) for c in configs)
    lines.append(f"{'all':<14} {len(configs):4d} distinct runs, {len(todo)} to train"
                 + (f", {stale} to re-score (older metrics version)" if stale else ""))
    for c in todo:
        lines.append(f"  {status[c.run_id]:<8} {c.run_id}")
    left = estimate_seconds(todo, store)
    lines.append("estimated time left: " + ("unknown (no finished run to learn from)" if left is None
                                             else f"{left / jobs / 60:.1f} min with {jobs} worker(s)"))
    return "\n".join(lines)


def workers(args) -> tuple[int, int, list[str] | None]:
    """(jobs, torch threads per job, device slots or None)."""
    gpus = torch.cuda.device_count() if args.device in ("auto", "cuda") else 0
    if gpus and args.backend == "loky":
        slots = [f"cuda:{i}" for i in range(gpus) for _ in range(args.runs_per_device)]
        return len(slots), max(1, (os.cpu_count() or 1) // len(slots)), slots
    jobs = args.jobs or (os.cpu_count() or 1)
    return jobs, max(1, (os.cpu_count() or 1) // jobs), None


def costliest_first(configs: list[RunConfig]) -> list[RunConfig]:
    """Longest runs first, so that no worker is left with a long run at the end of a sweep."""
    def cost(c: RunConfig) -> float:
        method = models.registry.method(c.model)
        return method.relative_cost(models.hyperparameters(c.model, **c.hyperparameters)) * c.profile.max_epochs
    return sorted(configs, key=cost, reverse=True)  # stable: plan order among equals


def execute(todo: list[RunConfig], args, options: dict) -> list[dict]:
    jobs, threads, slots = workers(args)
    todo = costliest_first(todo)
    devices = None
    if slots:
        import multiprocessing
        devices = multiprocessing.Manager().Queue()
        for slot in slots:
            devices.put(slot)
    tasks = (joblib.delayed(run_one)({**c.to_json(), "run_id": c.run_id}, options, devices, threads) for c in todo)
    if args.backend == "dask":
        from dask.distributed import Client
        client = Client(args.scheduler)
        context = joblib.parallel_config(backend="dask")
        jobs = -1
    else:
        client, context = None, joblib.parallel_config(backend="loky")
    results = []
    try:
        with context:
            stream = joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")(tasks)
            with tqdm(total=len(todo), unit="run", file=sys.stdout, dynamic_ncols=True) as bar:
                for summary in stream:
                    results.append(summary)
                    bar.write(format_summary(summary))
                    bar.update(1)
    finally:
        if client is not None:
            client.close()
    return results


def format_summary(s: dict) -> str:
    if s["status"] == DONE:
        values = " ".join(f"{k}={s[k]:.2f}" if isinstance(s[k], float) else f"{k}={s[k]}" for k in SUMMARY_KEYS)
        return f"[done]   {s['run_id']}: {values} ({s['seconds']:.0f}s)"
    return f"[{s['status']}] {s['run_id']}: {s.get('reason', '')}"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, help="paper, quick or smoke (default: paper with a GPU, else quick)")
    parser.add_argument("--only", default=None, help="comma-separated experiments (default: all): "
                                                     + ", ".join(planning.available()))
    parser.add_argument("--models", default=None, help="comma-separated rows or methods to keep")
    parser.add_argument("--datasets", default=None, help="comma-separated datasets to keep")
    parser.add_argument("--seeds", type=int, default=None, help="only the first N seeds of each experiment")
    parser.add_argument("--jobs", type=int, default=0, help="CPU workers (default: one per core)")
    parser.add_argument("--runs-per-device", type=int, default=1, help="concurrent runs per GPU")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--dry-run", action="store_true", help="list what would run, what is done, the time left")
    parser.add_argument("--retry-failed", action="store_true", help="train again runs recorded as failed")
    parser.add_argument("--backend", choices=("loky", "dask"), default="loky")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://host:port)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--results", default="results")
    parser.add_argument("--offline", action="store_true", help="never download missing data")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.backend == "dask" and not args.scheduler:
            raise UserError("--backend dask needs --scheduler tcp://HOST:PORT of a running Dask scheduler")
        if args.seeds is not None and args.seeds < 1:
            raise UserError(f"--seeds must be >= 1, got {args.seeds}")
        if args.jobs < 0 or args.runs_per_device < 1:
            raise UserError("--jobs must be >= 0 and --runs-per-device >= 1")
        profile = args.profile or ("paper" if torch.cuda.is_available() else "quick")
        load_profile(profile)  # an unknown profile is named before any experiment is read
        only, models = split_list(args.only), split_list(args.models)
        datasets = split_list(args.datasets)
        planned = planning.plan(profile, only, args.seeds, models, datasets)
        configs = planning.unique_runs(planned)
        store = RunStore(args.results)
        if args.dry_run:
            print(describe_plan(planned, configs, store, workers(args)[0]))
            return 0
        store.prepare()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    todo = [c for c in configs if store.status(c.run_id) not in ((DONE,) if args.retry_failed else (DONE, FAILED))]
    stale = [c for c in configs if c not in todo and store.status(c.run_id) == DONE
             and evaluate.is_stale(store.final(c.run_id))]
    skipped = Counter(store.status(c.run_id) for c in configs if c not in todo and c not in stale)
    print(f"profile {profile}: {len(configs)} distinct runs, {len(todo)} to train"
          + (f", {len(stale)} to re-score (metrics changed since they ran; no retraining)" if stale else "")
          + "".join(f", {n} {s}" for s, n in skipped.items()))
    todo += stale
    options = {"results": str(Path(args.results).absolute()), "data_dir": args.data_dir and str(Path(args.data_dir).absolute()),
               "cache_dir": args.cache_dir and str(Path(args.cache_dir).absolute()), "device": args.device,
               "download": not args.offline, "retry_failed": args.retry_failed}
    try:
        results = execute(todo, args, options) if todo else []
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are kept in {args.results}; run the same command again to go on "
              "(interrupted runs resume from their last epoch)", file=sys.stderr)
        return 130
    failed = [r for r in results if r["status"] == FAILED] + [
        {"run_id": c.run_id, "reason": (read_json(store.final(c.run_id) / "failed.json") or {}).get("reason", "?")}
        for c in configs if c not in todo and store.status(c.run_id) == FAILED]
    busy = [r for r in results if r["status"] == "busy"]
    print(f"finished: {sum(r['status'] == DONE for r in results)} trained or re-scored, {len(failed)} failed, {len(busy)} busy elsewhere")
    for f in failed:
        print(f"  failed: {f['run_id']}: {f['reason']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
