"""Read the results stores into one table: a row per planned run of the experiments asked.

Several stores are pooled (``benchmarks.records.Pool``): a run id held by two of them with the
same metrics is one run, read from the store that holds it (its ``run_dir``), and with other
metrics is refused in one line naming both. Works on partial results: runs that are not
finished appear with their status (``pending``, ``partial``, ``failed``) and no metrics, so the
tables can show them as missing or failed instead of dropping them. What was asked (``--only``,
``--seeds``, ``--models`` of ``python -m benchmarks.run``) is given or read from the stores
(:func:`infer_selection`).
"""
from __future__ import annotations

import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # analysis/make_tables.py is run as a script
    sys.path.insert(0, str(REPO))

from benchmarks import data, plan  # noqa: E402
from benchmarks.errors import UserError  # noqa: E402
from benchmarks.evaluate import metrics_version  # noqa: E402
from benchmarks.metrics import METRICS_VERSION  # noqa: E402
from benchmarks.records import Pool  # noqa: E402
from benchmarks.store import DONE, FAILED, read_json  # noqa: E402

METRIC_KEYS = ["nll", "nll_unit_prior", "kl", "mi", "au", "mi_unscaled", "mi_batch", "mi_ceiling", "au_scaled",
               "elbo", "elbo_unit_prior", "training_elbo", "ppl", "f_mean", "train_seconds", "statistics_seconds",
               "eval_seconds", "epochs", "best_epoch", "capped", "metrics_version"]


def stores_of(results) -> list[Path]:
    """One results directory or several, as a list."""
    return [Path(results)] if isinstance(results, (str, os.PathLike)) else [Path(r) for r in results]


def configs(results) -> list[dict]:
    """The stored runs' configurations, each run id once."""
    found = {}
    for store in stores_of(results):
        for path in (store / "runs").glob("*/config.json"):
            if path.parent.name not in found and isinstance(config := read_json(path), dict):
                found[path.parent.name] = config
    return list(found.values())


def infer_profile(results_dir) -> str:
    """The profile most finished runs were trained under (``quick`` when there are none)."""
    counts = Counter(config.get("profile", {}).get("name") for config in configs(results_dir))
    return counts.most_common(1)[0][0] if counts else "quick"


def store_corpora(results_dir, profile: str) -> tuple[dict[str, Counter], bool]:
    """The user corpora of the runs stored under ``profile`` ({directory as written: Counter of the
    families they took}), and whether runs on registered datasets are stored too."""
    corpora: dict[str, Counter] = {}
    registered = False
    for config in configs(results_dir):
        if config.get("profile", {}).get("name") != profile:
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
        where = " and ".join(str(s) for s in stores_of(results_dir))
        return None, corpus_like, [f"note: {where} also holds runs on {', '.join(sorted(corpora))}; tabulate "
                                   "them with --datasets " + ",".join(sorted(corpora))]
    if corpus_like is None:
        counts = sum(corpora.values(), Counter())
        corpus_like = max((f for f in counts if f), key=lambda f: counts[f], default=None)
    return sorted(corpora), corpus_like, []


@dataclass
class Selection:
    """What was asked, as ``python -m benchmarks.run`` takes it: ``--only`` (None: every experiment),
    ``--seeds`` (None: every seed), ``--models`` (None: every row); ``inferred`` names the options read
    from the stores rather than given."""

    experiments: list[str] | None = None
    seeds: int | slice | None = None
    models: list[str] | None = None
    inferred: tuple[str, ...] = ()

    def options(self) -> str:
        """The selection as the runner's options ("" for everything)."""
        parts = [f"--only {','.join(self.experiments)}" if self.experiments else "",
                 f"--seeds {seeds_option(self.seeds)}" if self.seeds is not None else "",
                 f"--models {','.join(self.models)}" if self.models else ""]
        return " ".join(p for p in parts if p)


def seeds_option(seeds: int | slice | None) -> str:
    """``--seeds``'s value for a selection: "2" or "3:5"."""
    return f"{seeds.start}:{seeds.stop}" if isinstance(seeds, slice) else str(seeds)


def infer_selection(results, profile: str, datasets: list[str] | None = None, corpus_like: str | None = None,
                    given: Selection | None = None) -> Selection:
    """``given`` with what it leaves out read from the stores: the seeds of the stored runs of the plan
    (``--seeds N`` when they are seeds 0 to N-1, FROM:TO otherwise), and the experiments whose runs are all
    stored, with the fewest others that cover the rest of the stored runs (runs are shared: ``--only core``
    also stores runs of Tables 1 and 3, which were not asked). Stores without a run of the plan: everything."""
    given = given or Selection()
    if given.experiments is not None and given.seeds is not None:
        return given
    planned = plan.plan(profile, given.experiments, given.seeds, given.models, datasets, corpus_like)
    held = Pool(stores_of(results)).held()
    stored = [p for p in planned if p.run_id in held]
    if not stored:
        return given
    seeds, inferred = given.seeds, list(given.inferred)
    if seeds is None:
        first, last = min(p.seed for p in stored), max(p.seed for p in stored) + 1
        if first > 0:
            seeds = slice(first, last)
        elif last <= max(p.seed for p in planned):
            seeds = last
        inferred.append("--seeds")
    experiments = given.experiments
    if experiments is None:
        kept = {p.run_id for p in planned if p.seed in plan.seeds_of(p.seed + 1, seeds)}
        runs = {}
        for p in planned:
            if p.run_id in kept:
                runs.setdefault(p.experiment, set()).add(p.run_id)
        chosen = [e for e, ids in runs.items() if ids <= held]  # every run stored: asked, or as good as
        uncovered = (held & kept) - {r for e in chosen for r in runs[e]}
        while uncovered:  # the fewest experiments that explain the other stored runs, the largest first
            best = max(sorted(runs), key=lambda e: (len(runs[e] & uncovered), len(runs[e])))
            chosen.append(best)
            uncovered -= runs[best]
        experiments = [e for e in plan.available() if e in chosen]
        if experiments == [e for e in plan.available() if e in runs]:
            experiments = None  # every experiment: nothing to name
        inferred.append("--only")
    return Selection(experiments, seeds, given.models, tuple(inferred))


def collect(results_dir, profile: str, datasets: list[str] | None = None, corpus_like: str | None = None,
            seeds: int | slice | None = None, experiments: list[str] | None = None,
            models: list[str] | None = None) -> pd.DataFrame:
    """Every run the experiments plan under ``profile``, with its status and metrics, read from one
    results directory or several pooled (``results_dir``: a path or a list of them). ``experiments``,
    ``seeds``, ``models``, ``datasets`` and ``corpus_like`` select as ``python -m benchmarks.run --only
    --seeds --models --datasets --corpus-like`` do.

    Columns: experiment, row, method, dataset, family, corpus, setting, seed, run_id,
    status, reason, run_dir and METRIC_KEYS (NaN where not finished). ``family`` is the
    side of the paper's rows a dataset takes (a user corpus: the one it was run as);
    ``corpus`` the name of a user corpus ("" for a registered dataset); ``run_dir`` the
    directory of the store the run was read from. A finished run whose metrics file is
    unreadable is reported as ``corrupt``.
    """
    store = Pool(stores_of(results_dir))
    records = []
    for p in plan.plan(profile, experiments, seeds, models, datasets, corpus_like):
        status, run_dir = store.locate(p.run_id)
        spec = data.get_dataset(p.dataset, family=p.config.family)
        record = {"experiment": p.experiment, "row": p.row, "method": p.config.model, "dataset": p.dataset,
                  "family": spec.family, "corpus": spec.name if spec.scale == "user" else "", "setting": p.setting,
                  "seed": p.seed,
                  "run_id": p.run_id, "status": status, "reason": "", "run_dir": str(run_dir)}
        if status == DONE:
            metrics = read_json(run_dir / "metrics.json")
            if metrics is None:
                record["status"], record["reason"] = "corrupt", "metrics.json is unreadable"
            else:
                record.update({k: metrics.get(k) for k in METRIC_KEYS})
                record["metrics_version"] = metrics_version(metrics)
        elif status == FAILED:
            failure = read_json(run_dir / "failed.json") or {}
            record["reason"] = failure.get("reason", "unknown")
        records.append(record)
    frame = pd.DataFrame(records)
    for key in METRIC_KEYS:
        frame[key] = pd.to_numeric(frame[key], errors="coerce") if key in frame else float("nan")
    require_current_metrics(frame)
    return frame


def require_current_metrics(frame: pd.DataFrame) -> None:
    """Refuse runs scored by another metrics version than this code's: a table must not mix
    definitions (MI per batch or over the split, AU on which means); the fix re-scores, not retrains."""
    done = frame[frame["status"] == DONE].drop_duplicates("run_id")  # a run can serve several experiments
    done = done[done["metrics_version"].notna()]
    old = done[done["metrics_version"].astype(int) != METRICS_VERSION]
    if old.empty:
        return
    found, fixes = [], []
    for store, runs in old.groupby(old["run_dir"].map(lambda d: str(Path(d).parent.parent)), sort=True):
        versions = runs["metrics_version"].astype(int).value_counts()
        found.append(f"{store} holds " + ", ".join(f"{n} run(s) of version {v}" for v, n in sorted(versions.items())))
        fixes.append(f"python -m benchmarks.evaluate --results {store}")
    raise UserError(f"{'; '.join(found)}, scored before the current metrics (version {METRICS_VERSION}); "
                    f"re-score them without training: {' and '.join(fixes)}")


DOCUMENTS = re.compile(r"\b(\d+)/(\d+)/(\d+) documents\b")  # train.log: "9000/1000/500 documents, device cpu"
SPLITS = ("train", "valid", "test")


def documents_of(run_dir) -> dict[str, int | None]:
    """The documents a run kept per split after its profile's length and count filters: from its
    ``train.log`` (the last attempt's line), else the test split's from ``metrics.json``."""
    try:
        found = DOCUMENTS.findall(Path(run_dir, "train.log").read_text(errors="replace"))
    except OSError:
        found = []
    if found:
        return dict(zip(SPLITS, map(int, found[-1])))
    test = (read_json(Path(run_dir) / "metrics.json", warn=False) or {}).get("documents")
    return {"train": None, "valid": None, "test": test if isinstance(test, int) else None}


def kept_documents(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, the documents its finished runs kept per split (one row per distinct count, with
    the number of runs that kept it; runs whose record says nothing of it left out): columns dataset,
    train, valid, test, runs."""
    done = runs[runs["status"] == DONE].drop_duplicates("run_id")
    rows = [{"dataset": r.corpus or r.dataset, **documents_of(r.run_dir)} for r in done.itertuples()]
    if not rows:
        return pd.DataFrame(columns=["dataset", *SPLITS, "runs"])
    frame = pd.DataFrame(rows).astype({s: "Int64" for s in SPLITS}).dropna(how="all", subset=list(SPLITS))
    if frame.empty:
        return pd.DataFrame(columns=["dataset", *SPLITS, "runs"])
    return frame.groupby(["dataset", *SPLITS], dropna=False, sort=True).size().reset_index(name="runs")


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
    parser.add_argument("--results", action="append", default=None, metavar="DIR",
                        help="results directory (with runs/); repeat it to pool several stores (default: results)")
    parser.add_argument("--out", default=None, help="write the table and the figure here")
    parser.add_argument("--profile", default=None, help="the profile of the runs (default: most of the stored runs')")
    args = parser.parse_args(argv)
    try:
        results = stores_of(args.results or ["results"])
        runs = collect(results, args.profile or infer_profile(results))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown(table(runs)))
    if args.out:
        for path in write(runs, Path(args.out), Path(args.out)):
            print(f"wrote {path}")
    return 0
