"""Read the results store into one table: a row per planned run of every experiment.

Works on partial results: runs that are not finished appear with their status
(``pending``, ``partial``, ``failed``) and no metrics, so the tables can show
them as missing or failed instead of dropping them.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # analysis/make_tables.py is run as a script
    sys.path.insert(0, str(REPO))

from benchmarks import data, plan  # noqa: E402
from benchmarks.store import DONE, FAILED, RunStore, read_json  # noqa: E402

METRIC_KEYS = ["nll", "nll_unit_prior", "kl", "mi", "au", "mi_unscaled", "au_unscaled", "ppl", "f_mean",
               "train_seconds", "eval_seconds", "epochs", "best_epoch"]


def infer_profile(results_dir: Path) -> str:
    """The profile most finished runs were trained under (``quick`` when there are none)."""
    counts = Counter()
    for path in (Path(results_dir) / "runs").glob("*/config.json"):
        if (config := read_json(path)) is not None:
            counts[config.get("profile", {}).get("name")] += 1
    return counts.most_common(1)[0][0] if counts else "quick"


def collect(results_dir, profile: str) -> pd.DataFrame:
    """Every run the experiments plan under ``profile``, with its status and metrics.

    Columns: experiment, row, method, dataset, family, setting, seed, run_id,
    status, reason, run_dir and METRIC_KEYS (NaN where not finished). A
    finished run whose metrics file is unreadable is reported as ``corrupt``.
    """
    store = RunStore(results_dir)
    records = []
    for p in plan.plan(profile):
        status = store.status(p.run_id)
        record = {"experiment": p.experiment, "row": p.row, "method": p.config.model, "dataset": p.dataset,
                  "family": data.get_dataset(p.dataset).family, "setting": p.setting, "seed": p.seed,
                  "run_id": p.run_id, "status": status, "reason": "", "run_dir": str(store.final(p.run_id))}
        if status == DONE:
            metrics = read_json(store.final(p.run_id) / "metrics.json")
            if metrics is None:
                record["status"], record["reason"] = "corrupt", "metrics.json is unreadable"
            else:
                record.update({k: metrics.get(k) for k in METRIC_KEYS})
        elif status == FAILED:
            failure = read_json(store.final(p.run_id) / "failed.json") or {}
            record["reason"] = failure.get("reason", "unknown")
        records.append(record)
    frame = pd.DataFrame(records)
    for key in METRIC_KEYS:
        frame[key] = pd.to_numeric(frame[key], errors="coerce") if key in frame else float("nan")
    return frame


def finished(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The finished runs of one experiment, each run once."""
    return runs[(runs["experiment"] == experiment) & (runs["status"] == DONE)].drop_duplicates("run_id")


def planned_datasets(experiment: str, profile: str) -> list[str]:
    return plan.load(experiment).get("datasets", {}).get(profile, [])
