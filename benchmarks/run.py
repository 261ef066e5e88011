"""Run experiments: every configuration over its seeds, in parallel, resumable.

    python -m benchmarks.run --profile quick [--only table1,table3] [--models vae,scale_vae]
        [--datasets yahoo_small] [--seeds 5 | --seeds 3:5] [--jobs N] [--runs-per-device K] [--dry-run] [--retry-failed]
        [--datasets DIR[,DIR...] [--corpus-like yahoo|yelp]]   (your own corpora: docs/your-corpus.md)
        [--backend loky|dask --scheduler ADDRESS] [--data-dir DIR] [--results DIR] [--cache-dir DIR]

joblib drives the runs. On GPUs, runs spread over every visible device, K at a
time per device (each run uses one device). On CPU, ``--jobs`` workers share the
cores, with torch threads divided between them. With ``--backend dask`` the runs
go to an existing Dask cluster (results, data and cache paths must then be
visible to its workers). Finished runs are never trained again; interrupted ones
resume from their last epoch; failures are recorded and listed at the end
(exit code 1).

Before the first run it prints the plan and its estimated wall time on this
machine (benchmarks/estimate.py: finished runs' measured times, else a cost
model calibrated by timing a VAE at the plan's sizes for a few seconds), with
what ``--seeds 1`` and ``--only core`` would take; the progress bar counts the
time left down from that estimate, corrected as runs finish.
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

from . import estimate as timing
from . import evaluate
from . import plan as planning
from .plan import split_list
from .config import RunConfig, load_profile
from .errors import UserError, terminate_as_interrupt
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


def experiment_lines(planned, configs, status: dict[str, str]) -> list[str]:
    lines = []
    for name in dict.fromkeys(p.experiment for p in planned):
        ids = {p.run_id for p in planned if p.experiment == name}
        counts = Counter(status[i] for i in ids)
        lines.append(f"{name:<14} {len(ids):4d} runs: " + ", ".join(f"{counts[s]} {s}" for s in sorted(counts)))
    return lines


def describe_estimate(todo: list[RunConfig], estimate: timing.Estimate) -> str:
    """One line: the wall time of ``todo`` over the workers, and how it was estimated."""
    ids = [c.run_id for c in todo]
    known = estimate.known(ids)
    if not todo:
        return "estimated time left: nothing to train"
    if not known:
        why = (f"no data yet for {', '.join(estimate.missing)}: the first runs download them, the next "
               "invocation estimates" if estimate.missing else estimate.note or "no finished run to learn from")
        return f"estimated time left: unknown ({why})"
    wall, quiet = estimate.wall(known), estimate.quiet_wall(known)
    total = sum(estimate.seconds[r] for r in known)
    measured = sum(estimate.source[r] == "measured" for r in known)
    unknown = sorted({c.dataset for c in todo if c.run_id not in estimate.seconds})
    return (f"estimated time left: {timing.duration(wall)} of wall time with {estimate.jobs} worker(s)"
            + (f", about {timing.duration(quiet)} if nothing else ran" if quiet < 0.85 * wall else "")
            + f" ({len(known)} runs, {timing.duration(total)} of run time; "
            + (f"{measured} from finished runs of their kind, " if measured else "")
            + (estimate.note or "no calibration") + ")"
            + (f"; plus {len(ids) - len(known)} runs on {', '.join(unknown)}, not estimated (data not downloaded yet)"
               if unknown else ""))


def describe_cuts(cuts: dict[str, list[RunConfig]], estimate: timing.Estimate) -> str | None:
    """One line: the options that shorten the sweep, with their estimates."""
    parts = []
    for option, todo in cuts.items():
        wall = estimate.wall([c.run_id for c in todo])
        parts.append(f"{option} ({len(todo)} runs" + (f", ~{timing.duration(wall)})" if wall is not None else ")"))
    return "to cut it: " + ", ".join(parts) if parts else None


def describe_plan(planned, configs, store: RunStore, estimate: timing.Estimate,
                  cuts: dict[str, list[RunConfig]] | None = None) -> str:
    status = {c.run_id: store.status(c.run_id) for c in configs}
    lines = experiment_lines(planned, configs, status)
    todo = [c for c in configs if status[c.run_id] not in (DONE, FAILED)]
    stale = sum(status[c.run_id] == DONE and evaluate.is_stale(store.final(c.run_id)) for c in configs)
    lines.append(f"{'all':<14} {len(configs):4d} distinct runs, {len(todo)} to train"
                 + (f", {stale} to re-score (older metrics version)" if stale else ""))
    for c in todo:
        lines.append(f"  {status[c.run_id]:<8} {c.run_id}")
    lines.append(describe_estimate(todo, estimate))
    if cut := describe_cuts(cuts or {}, estimate):
        lines.append(cut)
    return "\n".join(lines)


def cut_plans(args, profile: str, configs: list[RunConfig]) -> dict[str, list[RunConfig]]:
    """The runs of the same command with --seeds 1, or with --only core: the quick ways to a first result."""
    only, models_, datasets = split_list(args.only), split_list(args.models), split_list(args.datasets)
    cuts = {}
    if not isinstance(args.seeds, slice) and args.seeds != 1:  # a slice has no first-seed cut
        cuts["--seeds 1"] = (only, 1)
    if only != ["core"]:
        cuts["--only core"] = (["core"], args.seeds)
    plans = {}
    for option, (experiments, seeds) in cuts.items():
        try:
            runs = planning.unique_runs(planning.plan(profile, experiments, seeds, models_, datasets, args.corpus_like))
        except UserError:
            continue  # e.g. --models that core does not have
        if len(runs) < len(configs):  # a cut only where it cuts
            plans[option] = runs
    return plans


def estimate_plan(configs, cuts, store: RunStore, args, options: dict) -> timing.Estimate:
    """Seconds per run of the plan and of its cuts: finished runs' times, else the calibrated model."""
    jobs, threads, slots = workers(args)
    every = list({c.run_id: c for c in [*configs, *(c for runs in cuts.values() for c in runs)]}.values())
    todo = sum(store.status(c.run_id) not in (DONE, FAILED) for c in configs)
    busy = min(jobs, max(1, todo))  # calibrate as many workers at once as will run at once
    estimate = timing.estimate(every, store, busy, threads, slots and slots[:busy], options,
                               local=args.backend == "dask")
    estimate.jobs = jobs
    return estimate


def workers(args) -> tuple[int, int, list[str] | None]:
    """(jobs, torch threads per job, device slots or None)."""
    gpus = torch.cuda.device_count() if args.device in ("auto", "cuda") else 0
    if gpus and args.backend == "loky":
        slots = [f"cuda:{i}" for i in range(gpus) for _ in range(args.runs_per_device)]
        return len(slots), max(1, (os.cpu_count() or 1) // len(slots)), slots
    jobs = args.jobs or (os.cpu_count() or 1)
    return jobs, max(1, (os.cpu_count() or 1) // jobs), None


def costliest_first(configs: list[RunConfig], seconds: dict[str, float] | None = None) -> list[RunConfig]:
    """Longest runs first, so that no worker is left with a long run at the end of a sweep: by their
    estimated seconds where known (benchmarks.estimate), else by method cost x epochs, after them."""
    seconds = seconds or {}

    def cost(c: RunConfig) -> tuple[bool, float]:
        if c.run_id in seconds:
            return True, seconds[c.run_id]
        return False, timing.relative_cost(c) * c.profile.max_epochs
    return sorted(configs, key=cost, reverse=True)  # stable: plan order among equals


def execute(todo: list[RunConfig], args, options: dict, estimate: timing.Estimate | None = None) -> list[dict]:
    jobs, threads, slots = workers(args)
    seconds = estimate.seconds if estimate else {}
    todo = costliest_first(todo, seconds)
    progress = timing.Progress([c.run_id for c in todo], seconds, jobs)
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
            # tqdm's own rate and ETA are left out: with the costliest runs first they mislead for hours
            with tqdm(total=len(todo), unit="run", file=sys.stdout, dynamic_ncols=True, postfix=progress.postfix(),
                      bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} runs [{elapsed}{postfix}]") as bar:
                for summary in stream:
                    results.append(summary)
                    progress.finished(summary["run_id"], summary["seconds"], summary["status"] == DONE)
                    bar.write(format_summary(summary))
                    bar.set_postfix_str(progress.postfix(), refresh=False)
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
    parser.add_argument("--datasets", default=None,
                        help="comma-separated datasets to keep, or corpus directories (train/valid/test.txt) to run "
                             "the experiments on instead of their own datasets")
    parser.add_argument("--corpus-like", default=None, metavar="yahoo|yelp",
                        help="whose side of the paper's 'a | b' rows and per-dataset settings a corpus takes "
                             f"(default {planning.DEFAULT_CORPUS_LIKE}; docs/your-corpus.md)")
    parser.add_argument("--seeds", default=None, help="N: only the first N seeds of each experiment; FROM:TO: "
                        "seeds FROM to TO-1 (e.g. 3:5 on a second machine while the first runs --seeds 3)")
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
        args.seeds = planning.parse_seeds(args.seeds)
        if args.jobs < 0 or args.runs_per_device < 1:
            raise UserError("--jobs must be >= 0 and --runs-per-device >= 1")
        profile = args.profile or ("paper" if torch.cuda.is_available() else "quick")
        load_profile(profile)  # an unknown profile is named before any experiment is read
        only, models = split_list(args.only), split_list(args.models)
        datasets = split_list(args.datasets)
        planned = planning.plan(profile, only, args.seeds, models, datasets, args.corpus_like)
        for line in planning.corpus_skips(only, planning.corpora_of(datasets)):
            print(line)  # experiments that cannot run on a user corpus, one line each
        configs = planning.unique_runs(planned)
        store = RunStore(args.results)
        options = {"results": str(Path(args.results).absolute()),
                   "data_dir": args.data_dir and str(Path(args.data_dir).absolute()),
                   "cache_dir": args.cache_dir and str(Path(args.cache_dir).absolute()), "device": args.device,
                   "download": not args.offline, "retry_failed": args.retry_failed}
        cuts = cut_plans(args, profile, configs)
        estimate = estimate_plan(configs, cuts, store, args, options)
        cuts = {option: [c for c in runs if store.status(c.run_id) not in (DONE, FAILED)]
                for option, runs in cuts.items()}
        if args.dry_run:
            print(describe_plan(planned, configs, store, estimate, cuts))
            return 0
        store.prepare()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    status = {c.run_id: store.status(c.run_id) for c in configs}  # each run's files read once
    todo = [c for c in configs if status[c.run_id] not in ((DONE,) if args.retry_failed else (DONE, FAILED))]
    pending = {c.run_id for c in todo}
    stale = [c for c in configs if c.run_id not in pending and status[c.run_id] == DONE
             and evaluate.is_stale(store.final(c.run_id))]
    pending |= {c.run_id for c in stale}
    skipped = Counter(status[c.run_id] for c in configs if c.run_id not in pending)
    print(f"profile {profile}: {len(configs)} distinct runs, {len(todo)} to train"
          + (f", {len(stale)} to re-score (metrics changed since they ran; no retraining)" if stale else "")
          + "".join(f", {n} {s}" for s, n in skipped.items()))
    if todo:
        print("\n".join(experiment_lines(planned, configs, status)))
        print(describe_estimate(todo, estimate))
        if cut := describe_cuts(cuts, estimate):
            print(cut)
        sys.stdout.flush()
    for c in stale:  # re-scoring costs an evaluation, not a training
        estimate.seconds[c.run_id] = (read_json(store.final(c.run_id) / "metrics.json") or {}).get("eval_seconds", 0.0)
    todo += stale
    try:
        with terminate_as_interrupt():
            results = execute(todo, args, options, estimate) if todo else []
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are kept in {args.results}; run the same command again to go on "
              "(interrupted runs resume from their last epoch)", file=sys.stderr)
        return 130
    failed = [r for r in results if r["status"] == FAILED] + [
        {"run_id": c.run_id, "reason": (read_json(store.final(c.run_id) / "failed.json") or {}).get("reason", "?")}
        for c in configs if c.run_id not in pending and status[c.run_id] == FAILED]
    busy = [r for r in results if r["status"] == "busy"]
    print(f"finished: {sum(r['status'] == DONE for r in results)} trained or re-scored, {len(failed)} failed, {len(busy)} busy elsewhere")
    for f in failed:
        print(f"  failed: {f['run_id']}: {f['reason']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
