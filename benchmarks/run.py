"""Run experiments: every configuration over its seeds, in parallel, resumable.

    python -m benchmarks.run --profile quick [--only table1,table3] [--models vae,scale_vae]
        [--datasets yahoo_small] [--seeds 5 | --seeds 3:5] [--jobs N] [--runs-per-device K] [--dry-run] [--retry-failed]
        [--datasets DIR[,DIR...] [--corpus-like yahoo|yelp]]   (your own corpora: docs/your-corpus.md)
        [--device auto|cpu|cuda|cuda:N[,M]] [--eval-memory-mb MB]
        [--backend loky|dask --scheduler ADDRESS] [--data-dir DIR] [--results DIR] [--cache-dir DIR]

Plan (benchmarks/plan.py) -> estimate (benchmarks/estimate.py) -> execute
(benchmarks/execute.py) -> summarise (here). On GPUs, runs spread over every
selected device, K at a time per device, each in a worker process pinned to its
GPU, with a memory guard (benchmarks/scheduler.py). On CPU, ``--jobs`` joblib
workers share the cores, with torch threads divided between them. With
``--backend dask`` the runs go to an existing Dask cluster (results, data and
cache paths must then be visible to its workers). Finished runs are never
trained again; interrupted ones resume from their last epoch; failures are
recorded and listed at the end (exit code 1); a fault of the machine (out of
memory, a CUDA error) leaves its run unfinished, to resume on the next
invocation (exit code 1 too).

Before the first run it prints the plan and its estimated wall time on this
machine (benchmarks/estimate.py: finished runs' measured times, else a cost
model calibrated by timing a VAE at the plan's sizes for a few seconds), with
what ``--seeds 1`` and ``--only core`` would take; the progress bar counts the
time left down from that estimate, corrected as runs finish.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from . import devices as machine
from . import estimate as timing
from . import evaluate
from . import execute as execution
from . import plan as planning
from .plan import split_list
from .config import RunConfig, load_profile
from .errors import UserError, terminate_as_interrupt
from .store import DONE, FAILED, UNFINISHED, RunStore, read_json


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
        if not todo:
            continue  # every run of the cut is done: it cuts nothing
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


def estimate_plan(configs, cuts, store: RunStore, args, pool: execution.Workers, options: dict) -> timing.Estimate:
    """Seconds per run of the plan and of its cuts: finished runs' times, else the calibrated model;
    on GPUs also each run's peak memory (the scheduler's guard)."""
    every = list({c.run_id: c for c in [*configs, *(c for runs in cuts.values() for c in runs)]}.values())
    todo = sum(store.status(c.run_id) not in (DONE, FAILED) for c in configs)
    busy = min(pool.jobs, max(1, todo))  # calibrate as many workers at once as will run at once
    estimate = timing.estimate(every, store, busy, pool.threads, pool.slots[:busy] if pool.on_gpus else None,
                               options, local=args.backend == "dask")
    estimate.jobs = pool.jobs
    return estimate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, help="paper, quick or smoke (default: paper on GPUs, quick on the CPU)")
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
    parser.add_argument("--jobs", type=int, default=None, help="CPU workers (default: one per core)")
    parser.add_argument("--runs-per-device", type=int, default=1,
                        help="concurrent runs per GPU (memory permitting: benchmarks/memory.csv)")
    parser.add_argument("--device", default="auto",
                        help="auto (every visible GPU, else the CPU), cpu, cuda, or cuda:N[,M...]")
    parser.add_argument("--eval-memory-mb", type=int, default=None,
                        help="memory for one IW-NLL chunk's logits (default: a quarter of a GPU's free memory, "
                             "the profile's eval_memory_mb on the CPU); not part of a run's identity")
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
        if (args.jobs is not None and args.jobs < 1) or args.runs_per_device < 1:
            raise UserError("--jobs must be >= 1 (leave it out for one per core) and --runs-per-device >= 1")
        if args.eval_memory_mb is not None and args.eval_memory_mb < 1:
            raise UserError("--eval-memory-mb must be >= 1 (leave it out for the device's default)")
        devices = machine.parse_devices(args.device)
        if warning := machine.cpu_only_warning(devices):
            print(warning, file=sys.stderr)
        pool = execution.workers(devices, args.jobs or 0, args.runs_per_device)
        profile = args.profile or machine.default_profile(devices)
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
                   "cache_dir": args.cache_dir and str(Path(args.cache_dir).absolute()),
                   "device": pool.slots[0].run_device, "eval_memory_mb": args.eval_memory_mb,
                   "download": not args.offline, "retry_failed": args.retry_failed}
        cuts = cut_plans(args, profile, configs)
        estimate = estimate_plan(configs, cuts, store, args, pool, options)
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
            results = execution.execute(todo, pool, options, estimate, args.backend, args.scheduler) if todo else []
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are kept in {args.results}; run the same command again to go on "
              "(interrupted runs resume from their last epoch)", file=sys.stderr)
        return 130
    failed = [r for r in results if r["status"] == FAILED] + [
        {"run_id": c.run_id, "reason": (read_json(store.final(c.run_id) / "failed.json") or {}).get("reason", "?")}
        for c in configs if c.run_id not in pending and status[c.run_id] == FAILED]
    busy = [r for r in results if r["status"] == "busy"]
    unfinished = [r for r in results if r["status"] == UNFINISHED]
    print(f"finished: {sum(r['status'] == DONE for r in results)} trained or re-scored, {len(failed)} failed, "
          f"{len(busy)} busy elsewhere" + (f", {len(unfinished)} unfinished (a fault of the machine)" if unfinished else ""))
    for f in failed:
        print(f"  failed: {f['run_id']}: {f['reason']}")
    for u in unfinished:
        print(f"  unfinished: {u['run_id']}: {u['reason']}")
    if unfinished:
        print("the unfinished runs are no results: run the same command again (each resumes from its last epoch; "
              "fewer --runs-per-device if memory ran out)")
    return 1 if failed or unfinished else 0


if __name__ == "__main__":
    sys.exit(main())
