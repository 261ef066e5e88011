"""The precision check of the ``precision`` experiment: float32 against bfloat16 (issue 15).

- ``trained``: the same rows trained in both precisions over the same seeds; per
  row and metric, the mean and standard deviation of each precision, their
  difference and Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``).
  A difference it finds at p < 0.05 is flagged; with 5 seeds a test this small
  only finds large effects, which is why ``same_weights`` exists.
- ``same_weights``: every float32 run's best model scored again in bfloat16 under
  the run's own evaluation seed, i.e. the same draws: per run, bf16 - fp32 of
  each metric (cached as ``precision_check.json`` in the run's directory).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from scipy import stats

from analysis.collect import finished
from benchmarks import precision
from benchmarks.errors import UserError
from benchmarks.metrics import METRICS_VERSION
from benchmarks.store import read_json, write_json
from benchmarks.train import load_trained, loader
from models import bf16_parts

EXPERIMENT = "precision"
METRICS = ["nll", "nll_unit_prior", "kl", "mi", "mi_unscaled", "au", "train_seconds"]
ALPHA = 0.05
CACHE = "precision_check.json"


def precision_of(setting: str) -> str:
    return setting.split("precision=", 1)[1].split(",")[0] if "precision=" in setting else ""


def ran_no_bf16(run_dir) -> bool:
    """Whether a run recorded that no part of it ran in bfloat16 (``bf16_parts`` empty: a bf16 run on a CPU
    without AMX computes in float32, models/networks.py ``bf16_parts``)."""
    return (read_json(Path(run_dir) / "metrics.json", warn=False) or {}).get("bf16_parts") == []


def trained(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per (dataset, row, metric): n, mean and std per precision, bf16 - fp32, Welch's t and p.
    bf16 runs that ran no part in bfloat16 are float32 runs: they are left out (counted in
    ``bf16_left_out``), since a comparison with them would find no difference by construction."""
    done = finished(runs, EXPERIMENT).assign(precision=lambda f: f["setting"].map(precision_of))
    no_bf16 = done["run_dir"].map(ran_no_bf16) if "run_dir" in done else False
    done = done.assign(left_out=(done["precision"] == "bf16") & no_bf16)
    lines = []
    for (dataset, row), group in done.groupby(["dataset", "row"], sort=False):
        left_out = int(group["left_out"].sum())
        group = group[~group["left_out"]]
        low, high = (group[group["precision"] == p] for p in ("fp32", "bf16"))
        for metric in METRICS:
            a, b = low[metric].dropna(), high[metric].dropna()
            line = {"dataset": dataset, "row": row, "metric": metric, "n_fp32": len(a), "n_bf16": len(b),
                    "fp32_mean": a.mean(), "fp32_std": a.std(), "bf16_mean": b.mean(), "bf16_std": b.std(),
                    "difference": b.mean() - a.mean(), "t": float("nan"), "p": float("nan"),
                    "bf16_left_out": left_out}
            if len(a) >= 2 and len(b) >= 2 and (a.std() > 0 or b.std() > 0):
                test = stats.ttest_ind(b, a, equal_var=False)
                line["t"], line["p"] = float(test.statistic), float(test.pvalue)
            line["significant"] = bool(line["p"] < ALPHA)
            lines.append(line)
    return pd.DataFrame(lines)


def same_weights_of_run(run_dir, data_dir=None, cache_dir=None) -> dict:
    """bf16 - fp32 of a float32 run's metrics on its own weights and evaluation draws (cached)."""
    cache = Path(run_dir) / CACHE
    cached = read_json(cache, warn=False)
    if cached and cached.get("metrics_version") == METRICS_VERSION:
        return cached
    model, corpus, config = load_trained(run_dir, data_dir=data_dir, cache_dir=cache_dir, device="cpu")
    batches = list(loader(corpus, "test", config, "cpu", False))
    scores = {}
    for p in ("fp32", "bf16"):  # under the run's own evaluation draws (benchmarks.train.score)
        scores[p], _ = precision.evaluate(precision.with_precision(model, p).eval(), batches, config.profile,
                                          config.seed + 1)
    result = {"metrics_version": METRICS_VERSION, "documents": scores["fp32"]["documents"],
              "difference": {k: scores["bf16"][k] - scores["fp32"][k]
                             for k in precision.COMPARED if scores["fp32"].get(k) is not None},
              "fp32": {k: scores["fp32"][k] for k in precision.COMPARED if scores["fp32"].get(k) is not None}}
    write_json(cache, result)
    return result


def same_weights(runs: pd.DataFrame, data_dir=None, cache_dir=None) -> pd.DataFrame:
    """One line per finished float32 run of the experiment: bf16 - fp32 of each metric. Empty on a CPU that
    runs no part in bfloat16 (no AMX), where both scorings would be float32's by construction."""
    if not bf16_parts("cpu"):
        return pd.DataFrame()
    done = finished(runs, EXPERIMENT)
    lines = []
    for run in done[done["setting"].map(precision_of) == "fp32"].itertuples():
        try:
            checked = same_weights_of_run(run.run_dir, data_dir, cache_dir)
        except (UserError, OSError, RuntimeError, ValueError) as error:
            print(f"warning: {run.run_id}: {error}; left out of the same-weights check", file=sys.stderr)
            continue
        lines.append({"dataset": run.dataset, "row": run.row, "seed": run.seed,
                      **{f"d_{k}": v for k, v in checked["difference"].items()}})
    return pd.DataFrame(lines)


def number(value: float, digits: int = 2) -> str:
    return "—" if pd.isna(value) else f"{value:.{digits}f}"


def markdown(comparison: pd.DataFrame, weights: pd.DataFrame) -> str:
    """The two tables as Markdown, with what they say in one line each."""
    if comparison.empty:
        return "No finished run of the precision experiment (python -m benchmarks.run --only precision).\n"
    lines = ["## Trained in float32 and in bfloat16 (Welch's t-test per metric)", "",
             "| dataset | row | metric | fp32 (n) | bf16 (n) | bf16 - fp32 | p |", "|---|---|---|---|---|---|---|"]
    for r in comparison.itertuples():
        flag = " **(p < 0.05)**" if r.significant else ""
        lines.append(f"| {r.dataset} | {r.row} | {r.metric} | {number(r.fp32_mean)} ± {number(r.fp32_std)} "
                     f"({r.n_fp32}) | {number(r.bf16_mean)} ± {number(r.bf16_std)} ({r.n_bf16}) | "
                     f"{number(r.difference, 3)} | {number(r.p, 3)}{flag} |")
    metrics = comparison[comparison["metric"] != "train_seconds"]
    found, tested = metrics[metrics["significant"]], metrics["p"].notna()
    lines += ["", f"Differences in a metric found at p < {ALPHA}: {len(found)} of {int(tested.sum())} tested"
                  + (f" ({int((~tested).sum())} not testable: fewer than 2 seeds a side, or no spread)"
                     if (~tested).any() else "") + " (train_seconds is the speed, not a metric)."]
    left_out = int(comparison.drop_duplicates(["dataset", "row"])["bf16_left_out"].sum()) \
        if "bf16_left_out" in comparison else 0
    if left_out:
        lines += ["", f"**{left_out} bf16 run(s) ran no part in bfloat16** (their `bf16_parts` is empty: the machine "
                      "that trained them has no AMX, models/networks.py `bf16_parts`). They computed in float32 and are "
                      "left out: compared with the float32 runs they would agree by construction, so they say nothing "
                      "about bfloat16. Train them on a CPU with AMX or on a GPU."]
    if weights.empty and not bf16_parts("cpu"):
        lines += ["", "The same-weights check was not run: this machine's CPU runs no part in bfloat16 (no AMX, "
                      "models/networks.py `bf16_parts`), so both of its scorings would be float32's."]
    if not weights.empty:
        columns = [f"d_{k}" for k in precision.COMPARED if f"d_{k}" in weights]
        lines += ["", "## The same weights evaluated in both precisions (bf16 - fp32, same draws)", "",
                  "| dataset | row | runs | " + " | ".join(c[2:] for c in columns) + " |",
                  "|---|---|---|" + "---|" * len(columns)]
        for (dataset, row), group in weights.groupby(["dataset", "row"], sort=False):
            cells = [f"{group[c].mean():+.4f} (max abs {group[c].abs().max():.4f})" for c in columns]
            lines.append(f"| {dataset} | {row} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write(runs: pd.DataFrame, out: Path, data_dir=None, cache_dir=None) -> Path | None:
    """``precision.md`` and ``precision.csv`` beside the tables when the experiment has finished runs
    in both precisions (its bfloat16 runs alone are other experiments' runs, and compare nothing)."""
    if len(set(finished(runs, EXPERIMENT)["setting"].map(precision_of))) < 2:
        return None
    comparison = trained(runs)
    weights = same_weights(runs, data_dir, cache_dir)
    comparison.to_csv(out / "precision.csv", index=False)
    if not weights.empty:
        weights.to_csv(out / "precision_same_weights.csv", index=False)
    path = out / "precision.md"
    path.write_text(markdown(comparison, weights), encoding="utf-8")
    return path


def main(argv=None) -> int:
    import argparse

    from analysis import collect
    parser = argparse.ArgumentParser(prog="python -m analysis.precision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", help="results directory (with runs/)")
    parser.add_argument("--out", default=None, help="also write precision.md and the CSVs here")
    parser.add_argument("--profile", default=None, help="default: the one most runs used")
    args = parser.parse_args(argv)
    try:
        results = Path(args.results)
        frame = collect.collect(results, args.profile or collect.infer_profile(results))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            path = write(frame, Path(args.out))
            print(path.read_text(encoding="utf-8") if path else markdown(pd.DataFrame(), pd.DataFrame()))
        else:
            print(markdown(trained(frame), same_weights(frame)))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
