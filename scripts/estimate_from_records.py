"""The runner's estimate of an experiment's runs made without them, against the time they took.

    python scripts/estimate_from_records.py --records results/quick/records --only scale_regime_f_average \
        --profile quick --seeds 3 [--jobs 2]

Hides the experiment's runs from the store of records (a temporary store of links to every other
run), asks ``benchmarks.estimate`` for their seconds and wall time as the runner would before
training them, and prints each run's estimate beside its measured seconds (train + statistics +
evaluation, from its ``metrics.json``) and the wall times over ``--jobs`` workers. Needs no training
and no calibration when every hidden run has finished neighbours (their source is "measured").
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import estimate as timing  # noqa: E402
from benchmarks import plan  # noqa: E402
from benchmarks.errors import UserError  # noqa: E402
from benchmarks.store import RunStore, read_json  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", required=True, type=Path, help="a store of run records (with runs/)")
    parser.add_argument("--only", required=True, help="the experiment whose runs are hidden and estimated")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        configs = plan.unique_runs(plan.plan(args.profile, [args.only], args.seeds))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    hidden = {c.run_id for c in configs}
    runs = args.records / "runs"
    missing = [r for r in hidden if not (runs / r / "metrics.json").exists()]
    if missing:
        print(f"error: {len(missing)} of the {len(hidden)} runs of {args.only} have no record in {runs}; "
              "run them first or pick an experiment the records hold", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "runs").mkdir()
        for run_dir in runs.iterdir():
            if run_dir.is_dir() and run_dir.name not in hidden:
                (Path(tmp) / "runs" / run_dir.name).symlink_to(run_dir.resolve())
        estimate = timing.estimate(configs, RunStore(Path(tmp)), args.jobs, options={})
    measured = {c.run_id: timing.run_seconds(read_json(runs / c.run_id / "metrics.json")) for c in configs}
    others = sum(1 for p in runs.iterdir() if p.is_dir() and p.name not in hidden)
    print(f"{args.only}: {len(configs)} runs estimated from the other {others} "
          f"records of {args.records}")
    print(f"{'run':<48} {'source':<9} {'estimated s':>11} {'measured s':>10} {'epochs est':>10}")
    for c in configs:
        print(f"{c.run_id:<48} {estimate.source.get(c.run_id, '-'):<9} {estimate.seconds.get(c.run_id, float('nan')):>11.0f} "
              f"{measured[c.run_id]:>10.0f} {estimate.epochs.get(c.run_id, float('nan')):>10.1f}")
    wall, taken = estimate.wall(sorted(hidden)), timing.makespan(list(measured.values()), args.jobs)
    said = f"{wall:.0f} s ({timing.duration(wall)})" if wall else "unknown"
    print(f"wall time with {args.jobs} workers: estimated {said}; the measured runs scheduled alike "
          f"{taken:.0f} s ({timing.duration(taken)}), before the runner's own overhead")
    return 0


if __name__ == "__main__":
    sys.exit(main())
