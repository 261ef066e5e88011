"""Summarise finished runs: mean ± std over seeds of every configuration.

    python -m benchmarks.summarize [--results DIR [--results DIR ...]] [--keys nll,kl,mi,au]

Several ``--results`` (the flag repeated, one directory each) are pooled: a run id in two
stores with the same metrics counts once; with other metrics it is refused in one line
naming both (``benchmarks.records.Pool``).
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import pandas as pd

from .config import load_profile
from .errors import UserError
from .records import Pool
from .store import read_json

DEFAULT_KEYS = ["nll", "nll_unit_prior", "kl", "mi", "au", "ppl", "f_mean", "train_seconds", "eval_seconds"]


@functools.cache
def profile_values(name: str) -> dict:
    return vars(load_profile(name))


def configuration_label(config: dict) -> str:
    """model(hyperparameters) [profile values that differ from the named profile]."""
    hp = ",".join(f"{k}={v}" for k, v in config["hyperparameters"].items() if k != "anneal" or not v)
    label = f"{config['model']}({hp})" if hp else config["model"]
    base = profile_values(config["profile"]["name"])
    changed = ",".join(f"{k}={v}" for k, v in sorted(config["profile"].items()) if base.get(k, v) != v and k != "description")
    return f"{label} [{changed}]" if changed else label


def load_runs(results: list[Path]) -> pd.DataFrame:
    """One row per finished run of the pooled stores ``results``: its metrics plus a ``config`` label
    (model, hyperparameters, overrides)."""
    rows = []
    for run_dir in Pool(results).finished():
        metrics, config = read_json(run_dir / "metrics.json"), read_json(run_dir / "config.json")
        if metrics is None or config is None:
            continue  # read_json said why, in one line
        rows.append({**metrics, "config": configuration_label(config)})
    return pd.DataFrame(rows)


def summary_table(runs: pd.DataFrame, keys: list[str]) -> str:
    keys = [k for k in keys if k in runs]
    grouped = runs.groupby(["dataset", "profile", "config"], sort=True)
    lines = ["| dataset | profile | configuration | seeds | " + " | ".join(keys) + " |",
             "|" + "---|" * (4 + len(keys))]
    for (dataset, profile, config), group in grouped:
        cells = []
        for key in keys:
            values = pd.to_numeric(group[key], errors="coerce").dropna()
            cells.append("-" if values.empty else f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0:.2f}")
        lines.append(f"| {dataset} | {profile} | {config} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.summarize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", action="append", default=None, metavar="DIR",
                        help="results directory (with runs/); repeat it to pool several stores (default: results)")
    parser.add_argument("--keys", default=",".join(DEFAULT_KEYS))
    args = parser.parse_args(argv)
    try:
        results = [Path(r) for r in args.results or ["results"]]
        runs = load_runs(results)
        if runs.empty:
            where = " or ".join(f"{r}/runs" for r in results)
            raise UserError(f"no finished runs under {where}; train some with python -m benchmarks.train")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary_table(runs, args.keys.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
