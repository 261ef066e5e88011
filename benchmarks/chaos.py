"""Kill a sweep at random moments, restart it until it is done, and compare with an uninterrupted one.

    python -m benchmarks.chaos [--profile smoke] [--only core,table1] [--seeds N] [--kills 5] [--jobs 2] [--out DIR]

The check behind the reliability promises, at sweep scale: the runner (with all
its workers) gets SIGKILL at ``--kills`` random moments, is started again each
time, and finally runs to the end. Every run's metrics (timings aside) must then
equal those of the same sweep run once without interruption, no run may be
missing or duplicated, and no published directory may be incomplete.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from .train import TIMING_KEYS as TIMING
from .store import read_json



def sweep_command(args, results: Path) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.run", "--profile", args.profile, "--jobs", str(args.jobs),
               "--results", str(results), "--offline"]
    if args.only:
        command += ["--only", args.only]
    if args.seeds:
        command += ["--seeds", str(args.seeds)]
    return command


def run_to_end(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"the sweep failed to start: {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def killed_at(command: list[str], after: float) -> bool:
    """Start the sweep and SIGKILL its whole process group after ``after`` seconds; False if it ended first."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        process.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def results_of(results: Path) -> dict[str, dict | None]:
    runs = results / "runs"
    return {d.name: read_json(d / "metrics.json", warn=False) if (d / "metrics.json").exists()
            else read_json(d / "failed.json", warn=False)
            for d in runs.iterdir() if d.is_dir() and d.name != ".partial"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--only", default=None)
    parser.add_argument("--seeds", default=None, help="N or FROM:TO, passed to the runner")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--out", default="results/chaos")
    args = parser.parse_args(argv)
    out = Path(args.out)
    calm, chaos = out / "uninterrupted", out / "killed"
    wall = run_to_end(sweep_command(args, calm))
    print(f"uninterrupted sweep: {wall:.0f} s, {len(results_of(calm))} runs")
    rng = random.Random(args.seed)
    kills, total, finished = [], max(1, len(results_of(calm))), 0
    while len(kills) < args.kills:
        # a moment within the first half of what is left (so that every kill can land mid-sweep),
        # but never before the runner has had 5% of the sweep's time to start training
        after = max(0.05, rng.uniform(0.05, 0.5) * (1 - finished / total)) * wall
        if not killed_at(sweep_command(args, chaos), after):
            break  # it finished before this kill: nothing left to interrupt
        kills.append(after)
        finished = sum(1 for r in results_of(chaos).values() if r is not None) if (chaos / "runs").exists() else 0
        print(f"kill {len(kills)} after {after:.1f} s: {finished} runs published so far")
    run_to_end(sweep_command(args, chaos))
    a, b = results_of(calm), results_of(chaos)
    same = [k for k in a if k in b and a[k] is not None and b[k] is not None
            and {x: v for x, v in a[k].items() if x not in TIMING} == {x: v for x, v in b[k].items() if x not in TIMING}]
    unreadable = [k for k, v in b.items() if v is None]
    partial_left = list((chaos / "runs" / ".partial").glob("*")) if (chaos / "runs" / ".partial").exists() else []
    print(f"after {len(kills)} kills and restarts: {len(b)} runs (uninterrupted: {len(a)}), {len(same)} with "
          f"identical metrics, {len(set(a) ^ set(b))} missing or extra, {len(unreadable)} unreadable, "
          f"{len(partial_left)} leftovers in runs/.partial")
    return 0 if len(same) == len(a) == len(b) and not unreadable and not partial_left else 1


if __name__ == "__main__":
    sys.exit(main())
