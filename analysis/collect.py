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
from benchmarks.errors import UserError  # noqa: E402
from benchmarks.evaluate import metrics_version  # noqa: E402
from benchmarks.metrics import METRICS_VERSION  # noqa: E402
from benchmarks.store import DONE, FAILED, RunStore, read_json  # noqa: E402

METRIC_KEYS = ["nll", "nll_unit_prior", "kl", "mi", "au", "mi_unscaled", "mi_batch", "mi_ceiling", "au_scaled",
               "elbo", "elbo_unit_prior", "training_elbo", "ppl", "f_mean", "train_seconds", "statistics_seconds",
               "eval_seconds", "epochs", "best_epoch", "capped", "metrics_version"]


def infer_profile(results_dir: Path) -> str:
    """The profile most finished runs were trained under (``quick`` when there are none)."""
    counts = Counter()
    for path in (Path(results_dir) / "runs").glob("*/config.json"):
        if (config := read_json(path)) is not None:
            counts[config.get("profile", {}).get("name")] += 1
    return counts.most_common(1)[0][0] if counts else "quick"


def store_corpora(results_dir, profile: str) -> tuple[dict[str, Counter], bool]:
    """The user corpora of the runs stored under ``profile`` ({directory as written: Counter of the
    families they took}), and whether runs on registered datasets are stored too."""
    corpora: dict[str, Counter] = {}
    registered = False
    for path in (Path(results_dir) / "runs").glob("*/config.json"):
        config = read_json(path)
        if not isinstance(config, dict) or config.get("profile", {}).get("name") != profile:
            continue
        dataset = config.get("dataset")
        if dataset in data.DATASETS:
            registered = True
        elif isinstance(dataset, str) and dataset:
            corpora.setdefault(dataset, Counter())[config.get("family")] += 1
    return corpora, registered


def infer_datasets(results_dir, profile: str, corpus_like: str | None = None) -> tuple[list[str] | None, str | None, list[str]]:
    """Which plan to tabulate when ``--datasets`` is not given: the user corpora of the stored runs when
    every stored run of ``profile`` is on one (taking the family most of their runs took, unless
    ``corpus_like`` says), else the experiments' own datasets. Returns (datasets, corpus_like, notes)."""
    corpora, registered = store_corpora(results_dir, profile)
    if not corpora:
        return None, corpus_like, []
    if registered:
        return None, corpus_like, [f"note: {results_dir} also holds runs on {', '.join(sorted(corpora))}; tabulate "
                                   "them with --datasets " + ",".join(sorted(corpora))]
    if corpus_like is None:
        counts = sum(corpora.values(), Counter())
        corpus_like = max((f for f in counts if f), key=lambda f: counts[f], default=None)
    return sorted(corpora), corpus_like, []


def collect(results_dir, profile: str, datasets: list[str] | None = None, corpus_like: str | None = None,
            seeds: int | slice | None = None) -> pd.DataFrame:
    """Every run the experiments plan under ``profile``, with its status and metrics (with ``datasets``,
    ``corpus_like`` and ``seeds``, the plan of ``python -m benchmarks.run --datasets ... --corpus-like ...
    --seeds ...``).

    Columns: experiment, row, method, dataset, family, corpus, setting, seed, run_id,
    status, reason, run_dir and METRIC_KEYS (NaN where not finished). ``family`` is the
    side of the paper's rows a dataset takes (a user corpus: the one it was run as);
    ``corpus`` the name of a user corpus ("" for a registered dataset). A finished run
    whose metrics file is unreadable is reported as ``corrupt``.
    """
    store = RunStore(results_dir)
    records = []
    for p in plan.plan(profile, seeds=seeds, datasets=datasets, corpus_like=corpus_like):
        status = store.status(p.run_id)
        spec = data.get_dataset(p.dataset, family=p.config.family)
        record = {"experiment": p.experiment, "row": p.row, "method": p.config.model, "dataset": p.dataset,
                  "family": spec.family, "corpus": spec.name if spec.scale == "user" else "", "setting": p.setting,
                  "seed": p.seed,
                  "run_id": p.run_id, "status": status, "reason": "", "run_dir": str(store.final(p.run_id))}
        if status == DONE:
            metrics = read_json(store.final(p.run_id) / "metrics.json")
            if metrics is None:
                record["status"], record["reason"] = "corrupt", "metrics.json is unreadable"
            else:
                record.update({k: metrics.get(k) for k in METRIC_KEYS})
                record["metrics_version"] = metrics_version(metrics)
        elif status == FAILED:
            failure = read_json(store.final(p.run_id) / "failed.json") or {}
            record["reason"] = failure.get("reason", "unknown")
        records.append(record)
    frame = pd.DataFrame(records)
    for key in METRIC_KEYS:
        frame[key] = pd.to_numeric(frame[key], errors="coerce") if key in frame else float("nan")
    require_current_metrics(frame, results_dir)
    return frame


def require_current_metrics(frame: pd.DataFrame, results_dir) -> None:
    """Refuse runs scored by another metrics version than this code's: a table must not mix
    definitions (MI per batch or over the split, AU on which means); the fix re-scores, not retrains."""
    done = frame[frame["status"] == DONE].drop_duplicates("run_id")  # a run can serve several experiments
    versions = done["metrics_version"].dropna().astype(int)
    old = versions[versions != METRICS_VERSION]
    if not old.empty:
        found = ", ".join(f"{n} run(s) of version {v}" for v, n in sorted(old.value_counts().items()))
        raise UserError(f"{results_dir} holds {found}, scored before the current metrics (version {METRICS_VERSION}); "
                        f"re-score them without training: python -m benchmarks.evaluate --results {results_dir}")


def finished(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The finished runs of one experiment, each run once."""
    return runs[(runs["experiment"] == experiment) & (runs["status"] == DONE)].drop_duplicates("run_id")


# The scale_regime study's experiments: their own table (analysis/steady_state.py) reports them,
# including the runs the epoch cap ended, so the tables' count of capped runs leaves them out.
STUDY_EXPERIMENTS = ("scale_regime", "scale_regime_f_average")
STUDIES = (*STUDY_EXPERIMENTS, "ladder")  # every study with a table of its own (analysis/ladder.py too)


def capped_count(runs: pd.DataFrame) -> int:
    """How many of ``runs`` the epoch cap ended rather than the decay rule (metrics.json "capped")."""
    return int((pd.to_numeric(runs["capped"], errors="coerce") == 1).sum()) if "capped" in runs else 0


def planned_datasets(experiment: str, profile: str) -> list[str]:
    return plan.load(experiment).get("datasets", {}).get(profile, [])


def write_study(table: pd.DataFrame, name: str, text: str, tables_dir: Path) -> list[Path]:
    """A study's table as ``NAME.csv`` and its markdown as ``NAME.md`` in ``tables_dir``; the paths written."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(tables_dir / f"{name}.csv", index=False)
    (tables_dir / f"{name}.md").write_text(text, encoding="utf-8")
    return [tables_dir / f"{name}.md"]


def study_cli(argv, prog: str, description: str, table, markdown, write) -> int:
    """The command line of a study module (analysis/steady_state.py, analysis/ladder.py): print the study's
    table from ``--results`` and, with ``--out``, write its files there."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--results", default="results")
    parser.add_argument("--out", default=None, help="write the table and the figure here")
    parser.add_argument("--profile", default=None, help="the profile of the runs (default: most of the stored runs')")
    args = parser.parse_args(argv)
    try:
        results = Path(args.results)
        runs = collect(results, args.profile or infer_profile(results))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown(table(runs)))
    if args.out:
        for path in write(runs, Path(args.out), Path(args.out)):
            print(f"wrote {path}")
    return 0
