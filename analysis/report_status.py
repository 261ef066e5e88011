"""What REPORT.md and the console say about the runs: what was asked, how far it got, what was not
run (once, in one line), the verdicts by label, and the report's small per-run sections (Scale-VAE
under both priors, the documents kept per split)."""
from __future__ import annotations

import shlex
from pathlib import Path

import pandas as pd

from benchmarks import plan

from .claims import MARKS, NOT_RUN, Verdict
from .collect import Selection, seeds_option
from .render import md
from .tables import Table

RUNNER = "python -m benchmarks.run"


def has_runs(table: Table | None) -> bool:
    """The table has a finished run in some cell."""
    return table is not None and any(values.size for values in table.values.values())


def with_evidence(verdicts: list[Verdict], tables: dict[str, Table]) -> list[Verdict]:
    """The verdicts of claims whose table has runs (a claim on a table that was not run is left out)."""
    return [v for v in verdicts if v.verdict != NOT_RUN or has_runs(tables.get(v.claim.table))]


def asked_line(selection: Selection) -> str:
    """"Runs asked: ..." in the runner's options, saying which were read from the stores."""
    options = selection.options()
    shown = " ".join(f"`{o}`" for o in options.replace(" --", "\0--").split("\0")) if options else \
        "every experiment of the profile, every seed"
    if selection.inferred:
        shown += (" (read from the store: the experiments and seeds it holds runs of; give "
                  "`make_tables` `--only`, `--seeds` or `--models` as you gave `benchmarks.run` to choose)")
    return f"Runs asked: {shown}."


def status_line(runs: pd.DataFrame) -> str:
    """"Runs: D of N done, ..." over the distinct runs asked."""
    counts = runs.drop_duplicates("run_id")["status"].value_counts() if len(runs) else pd.Series(dtype=int)
    others = ", ".join(f"{n} {s}" for s, n in counts.items() if s != "done")
    return f"Runs: {counts.get('done', 0)} of {int(counts.sum())} done" + (f", {others}" if others else "") + "."


def not_run(runs: pd.DataFrame, skipped: dict[str, str] | None = None) -> list[str]:
    """The experiments (of the profile, less those that cannot run on the corpus) without a finished run."""
    done = set(runs.loc[runs["status"] == "done", "experiment"]) if len(runs) else set()
    return [e for e in plan.available() if e not in done and e not in (skipped or {})]


def runner_options(profile: str, selection: Selection, datasets, corpus_like, results: list[Path]) -> str:
    """The options of ``python -m benchmarks.run`` that add runs to these stores, less ``--only``."""
    parts = [f"--profile {profile}"]
    if selection.seeds is not None:
        parts.append(f"--seeds {seeds_option(selection.seeds)}")
    if selection.models:
        parts.append(f"--models {shlex.quote(','.join(selection.models))}")
    if datasets:
        parts.append(f"--datasets {shlex.quote(','.join(datasets))}" + (f" --corpus-like {corpus_like}" if corpus_like else ""))
    if len(results) == 1 and results[0] != Path("results"):
        parts.append(f"--results {shlex.quote(str(results[0]))}")
    return " ".join(parts)


def not_run_line(experiments: list[str], left_out: int, options: str) -> str | None:
    """One line naming what was not run and the command that adds it (``options``: the runner's other
    options, e.g. ``--profile quick --seeds 1``)."""
    if not experiments:
        return None
    command = " ".join(p for p in (RUNNER, options, f"--only {','.join(experiments)}") if p)
    claims = f"; the {left_out} claim(s) on them are left out" if left_out else ""
    return f"Not run: {', '.join(experiments)} (run `{command}` to add them){claims}."


def verdict_summary(verdicts: list[Verdict]) -> str | None:
    """"Claims: 3 ✅ holds, 1 ⚠️ one seed" (the shown verdicts, by label)."""
    if not verdicts:
        return None
    counts = pd.Series([v.verdict for v in verdicts]).value_counts()
    return "Claims: " + ", ".join(f"{n} {MARKS.get(k, k)}" for k, n in counts.items()) + "."


def untabled(readings: pd.DataFrame) -> list[str]:
    """The "Runs of `core`" section: the metrics of rows that no table shows, mean over the n finished seeds."""
    if readings is None or readings.empty:
        return []
    keep = [c for c in ("row", "dataset", "n", "nll", "nll_unit_prior", "mi", "mi_unscaled", "au", "f_bar") if c in readings]
    frame = readings[keep].rename(columns={"nll": "NLL", "nll_unit_prior": "NLL under N(0, I)", "mi": "MI",
                                           "mi_unscaled": "MI (unscaled)", "au": "AU"})
    return ["## Runs of `core`", "",
            "The `core` experiment is no table of the paper: its rows' metrics, mean over the n finished seeds",
            "(NLL under the model's own prior, MI on the posterior the decoder reads; f_bar: Scale-VAE's factor).",
            "", frame_markdown(frame), ""]


def scale_priors(readings: pd.DataFrame) -> list[str]:
    """The "Scale-VAE under both priors" section from ``conventions`` of the Scale-VAE runs."""
    if readings is None or readings.empty:
        return []
    keep = [c for c in ("row", "setting", "dataset", "n", "f_bar", "nll", "nll_unit_prior") if c in readings]
    frame = readings[keep].rename(columns={"nll": "NLL, own prior N(0, f_bar^2)", "nll_unit_prior": "NLL under N(0, I)"})
    if "setting" in frame and not frame["setting"].fillna("").astype(bool).any():
        frame = frame.drop(columns="setting")
    return ["## Scale-VAE under both priors", "",
            "f_bar is the mean scaling factor of the posterior means; the tables' NLL is under Scale-VAE's own",
            "prior N(0, f_bar^2) on the decoder's z, beside it the same estimator under N(0, I) (mean over the",
            "n finished seeds).", "", frame_markdown(frame), ""]


def documents(kept: pd.DataFrame) -> list[str]:
    """The "Documents kept per split" section from ``collect.kept_documents``."""
    if kept is None or kept.empty:
        return []
    cell = lambda v: "—" if pd.isna(v) else f"{int(v):,}"
    lines = ["## Documents kept per split", "",
             "After the profile's length (max_len) and count filters, the documents the finished runs trained on,",
             "validated on and were scored on (a dataset with several counts: experiments that set other sizes).", "",
             "| dataset | train | valid | test | runs |", "|---|---|---|---|---|"]
    lines += [f"| {md(r.dataset)} | {cell(r.train)} | {cell(r.valid)} | {cell(r.test)} | {r.runs} |"
              for r in kept.itertuples()]
    return lines + [""]


def frame_markdown(frame: pd.DataFrame) -> str:
    shown = lambda v: ("—" if pd.isna(v) else f"{v:.2f}") if isinstance(v, float) else md(v)
    cells = lambda values: "| " + " | ".join(shown(v) for v in values) + " |"
    return "\n".join([cells(frame.columns), "|" + "---|" * len(frame.columns)] +
                     [cells(r) for r in frame.itertuples(index=False)])

