"""The readings of a claim beyond its table's (``analysis/claims.py``), from the collected runs.

The issue: "A claim on a quantity with two conventions (MI on the scaled or unscaled posterior, NLL
under the model's prior or N(0, I)) gets a verdict under each, side by side. A claim about generation
says how many samples hit the length cap, and is scored on uncapped samples too. Table 2's times
come from runs that had the machine to themselves, or the claim says they did not."

- Second conventions: a copy of Table 1 / Table 3 whose cells are read from the runs' other column
  (``CONVENTIONS``). For methods other than Scale-VAE both conventions give the same numbers.
- Table 5 on uncapped samples: Dist-1/2/3 and the unigram entropy of the sentences that drew the
  end token, over a word budget common to the runs of a dataset (``analysis.generation.uncapped_statistics``).
  PPL is not re-scored there (that needs the LSTM-LM).
- Context: how many samples of the compared rows hit the length cap (Table 5); whether the timed
  runs had the machine to themselves (Table 2: ``concurrent_runs`` in metrics.json, written by
  ``benchmarks/train.py`` from the runner's ``VAEBENCH_CONCURRENT_RUNS``).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmarks.store import read_json

from .collect import finished
from .tables import Table, fill, sides_of

# metric -> (the tables' convention, which is the paper's; the other convention; the runs' column of the other)
CONVENTIONS = {
    "nll": ("model's prior", "N(0, I) prior", "nll_unit_prior"),  # Scale-VAE's prior is N(0, f_bar^2)
    "mi": ("scaled posterior", "unscaled posterior", "mi_unscaled"),  # the paper's: the posterior the decoder reads
    "au": ("encoder's means", "scaled means", "au_scaled"),  # He et al.'s calc_au; scaled: f_bar * mu (Scale-VAE)
}
DENSITY_TABLES = ("table1", "table3")
ALL_SAMPLES, UNCAPPED = "all samples", "uncapped samples"
DIVERSITY = ("dist1", "dist2", "dist3", "entropy")
NOT_SCORED_UNCAPPED = {"ppl": "PPL is not re-scored on the uncapped samples alone (that needs the LSTM-LM)"}


def metric_of(table: Table | None, key: str) -> str:
    """The quantity a column holds, e.g. "nll" for "yahoo_nll"."""
    column = next((c for c in (table.columns if table else []) if c.key == key), None)
    return column.metric if column is not None and column.metric else key.rsplit("_", 1)[-1]


def conventions(table_name: str, metric: str) -> tuple[str, list[str]]:
    """(the tables' convention, the other conventions) of a metric of a table; ("", []) with one."""
    if table_name in DENSITY_TABLES and metric in CONVENTIONS:
        return CONVENTIONS[metric][0], [CONVENTIONS[metric][1]]
    if table_name == "table5" and metric in (*DIVERSITY, *NOT_SCORED_UNCAPPED):
        return ALL_SAMPLES, [UNCAPPED]
    return "", []


def column_datasets(table: Table, runs: pd.DataFrame) -> dict[str, str]:
    """Column key -> the dataset its runs are on (as the runs frame names it)."""
    sides = {(s.family, s.corpus): s.dataset for s in sides_of(runs, table.name)}
    return {c.key: sides[(c.family, c.corpus)] for c in table.columns if (c.family, c.corpus) in sides}


def refilled(table: Table, runs: pd.DataFrame, read_from: dict[str, str]) -> Table:
    """A copy of ``table`` (rows, columns, ceilings) whose cells of each metric m hold the runs' column
    ``read_from[m]``; the other cells are empty."""
    copy = Table(table.name, table.caption, list(table.rows), table.columns, ceilings=dict(table.ceilings))
    datasets = column_datasets(table, runs)
    sources = {c.key: (datasets[c.key], read_from[metric]) for c in table.columns
               if (metric := c.metric or c.key) in read_from and c.key in datasets and read_from[metric] in runs}
    return fill(copy, runs, sources, table.name)


def concurrent_runs(run) -> float:
    """How many runs the runner trained at once beside ``run`` (a row of the runs frame); nan if not recorded."""
    value = getattr(run, "concurrent_runs", math.nan)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        value = (read_json(Path(run.run_dir) / "metrics.json", warn=False) or {}).get("concurrent_runs")
    return float(value) if isinstance(value, (int, float)) else math.nan


def machine_sharing(timed: pd.DataFrame) -> str:
    """Whether the timed runs had the machine to themselves, in words."""
    counts = [concurrent_runs(r) for r in timed.itertuples()]
    known = [n for n in counts if not math.isnan(n)]
    if not known:
        return "not recorded whether the timed runs shared the machine"
    unknown = f"; {len(counts) - len(known)} of {len(counts)} not recorded" if len(known) < len(counts) else ""
    shared = [n for n in known if n > 1]
    if not shared:
        return f"the timed runs had the machine to themselves (one run at a time){unknown}"
    return (f"{len(shared)} of {len(counts)} timed runs shared the machine (up to {max(shared):g} runs at once): "
            f"their times are not the methods' own{unknown}")


class Readings:
    """The claims' other readings from ``runs`` (``analysis.collect.collect``'s frame), built when first asked for."""

    def __init__(self, runs: pd.DataFrame):
        self.runs = runs
        self.built: dict[tuple[str, str], tuple[Table, str]] = {}
        self.samples: dict[str, dict] | None = None  # run_id -> uncapped statistics (Table 5)

    def alternate(self, convention: str, claim, table: Table | None) -> tuple[Table | None, str]:
        """(the table under ``convention``, a note for the evidence), or (None, why there is none)."""
        if table is None:
            return None, "no finished run"
        if convention == UNCAPPED and (why := NOT_SCORED_UNCAPPED.get(metric_of(table, claim.column))):
            return None, why
        if (convention, table.name) not in self.built:
            self.built[(convention, table.name)] = self.build(convention, table)
        return self.built[(convention, table.name)]

    def build(self, convention: str, table: Table) -> tuple[Table, str]:
        """``table`` under ``convention``, with a note for the evidence."""
        if convention != UNCAPPED:
            read_from = {metric: column for metric, (_, name, column) in CONVENTIONS.items() if name == convention}
            return refilled(table, self.runs, read_from), ""
        statistics = self.uncapped()
        frame = self.runs[self.runs["experiment"] == table.name].copy()
        for key in DIVERSITY:
            frame[key] = [statistics.get(r, {}).get(key, math.nan) for r in frame["run_id"]]
        budgets = sorted({s["tokens"] for s in statistics.values() if s.get("tokens")})
        note = (f"Dist-n and entropy over the first {' / '.join(f'{b:,}' for b in budgets)} words of the uncapped "
                "samples of each run" if budgets else "no run with uncapped samples")
        return refilled(table, frame, {key: key for key in DIVERSITY}), note

    def uncapped(self) -> dict[str, dict]:
        """run_id -> Table 5's diversity on its uncapped samples, with ``capped`` and ``sentences``."""
        if self.samples is None:
            from . import generation  # torch and the models: only when Table 5 has a claim to check

            done = finished(self.runs, "table5")
            done = done[done["method"] != "lstm_lm"]
            self.samples = {}
            for _, group in done.groupby("dataset", sort=False):
                self.samples.update(generation.uncapped_statistics(dict(zip(group["run_id"], group["run_dir"]))))
        return self.samples

    def context(self, claim, table: Table | None) -> str:
        """What a Table 5 or Table 2 claim's evidence owes: samples that hit the length cap, or whether the
        timed runs shared the machine ("" for other tables)."""
        if claim.table not in ("table2", "table5") or table is None:
            return ""
        dataset = column_datasets(table, self.runs).get(claim.column)
        rows = [claim.row, claim.other] if claim.other else table.rows
        done = finished(self.runs, claim.table)
        done = done[done["row"].isin(rows) & (done["dataset"] == dataset)]
        if claim.table == "table2":
            return machine_sharing(done) if not done.empty else ""
        statistics = self.uncapped()
        parts = []
        for row in rows:
            found = [statistics[r] for r in done.loc[done["row"] == row, "run_id"] if r in statistics]
            if found:
                parts.append(f"{row} {sum(s['capped'] for s in found):,} of {sum(s['sentences'] for s in found):,}")
        if not parts:
            return "" if done.empty else "how many samples hit the length cap is not known (no samples.txt)"
        return "samples that hit the length cap (all seeds): " + "; ".join(parts)
