"""Tables 1-5 of the paper from the collected runs, as data, and the paper's numbers beside them.

A ``Table`` holds, per (row, column), the values of every finished seed, the seeds planned, failed
and ended by the epoch cap; analysis/render.py writes it as LaTeX, markdown and CSV.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import capped_count
from benchmarks.config import load_profile
from models import variants

PAPER_DIR = Path(__file__).with_name("paper")
FAMILY_TITLES = {"yahoo": "Yahoo", "yelp": "Yelp"}
METHOD_TITLES = {
    "lstm_lm": "LSTM-LM", "vae": "VAE", "cyclical": "Cyclical", "beta_vae": "β-VAE", "free_bits": "Free-Bits",
    "delta_vae": "δ-VAE", "sa_vae": "SA-VAE", "skip_vae": "Skip-VAE", "agg_vae": "Agg-VAE", "mae": "MAE",
    "bn_vae": "BN-VAE", "du_vae": "DU-VAE", "scale_vae": "Scale-VAE",
}
DENSITY = [("nll", "NLL", "min", 1), ("kl", "KL", None, 2), ("mi", "MI", "max", 2), ("au", "AU", "max", 1)]


@dataclass(frozen=True)
class Column:
    key: str  # CSV name, also the column of analysis/paper/<table>.csv, e.g. "yahoo_nll"
    title: str  # e.g. "NLL"
    group: str = ""  # header over several columns, e.g. "Yahoo"
    best: str | None = None  # "min" or "max": the best mean is set in bold
    digits: int = 1
    metric: str = ""  # the quantity, e.g. "nll" ("" = the key): a claim names it with its dataset family
    family: str | None = None  # the side of the paper's "a | b" rows its dataset took (yahoo, yelp)
    corpus: str = ""  # a user corpus's name when the column is on one: no paper value compares with it


@dataclass(frozen=True)
class Side:
    """One dataset a table shows: the paper's Yahoo or Yelp (a registered dataset), or a user corpus."""

    family: str | None
    dataset: str  # as the runs name it: "yahoo_small", or the corpus directory as given
    corpus: str = ""  # the corpus's name (its folder's), "" for a registered dataset

    @property
    def prefix(self) -> str:
        """The column keys' prefix: the family (as analysis/paper/*.csv names them) or the corpus."""
        return self.corpus or self.family or self.dataset

    @property
    def title(self) -> str:
        return self.corpus or FAMILY_TITLES.get(self.family, self.family or self.dataset)


@dataclass
class Table:
    name: str
    caption: str
    rows: list[str]  # row names as models/variants.toml writes them
    columns: list[Column]
    label_titles: tuple[str, ...] = ("Model",)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    values: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # per finished seed
    planned: dict[tuple[str, str], int] = field(default_factory=dict)  # seeds planned per cell
    failed: dict[tuple[str, str], int] = field(default_factory=dict)  # failed seeds per cell
    capped: dict[tuple[str, str], int] = field(default_factory=dict)  # finished seeds the epoch cap ended
    notes: list[str] = field(default_factory=list)
    transpose: bool = False  # LaTeX: models as columns (Table 5's layout)
    ceilings: dict[str, float] = field(default_factory=dict)  # column -> the largest value its estimator can give
    skipped: str = ""  # why its experiment did not run on the user corpus (benchmarks.plan.corpus_skips)

    def cell(self, row: str, column: str) -> np.ndarray:
        return self.values.get((row, column), np.array([]))

    def mean(self, row: str, column: str) -> float:
        values = self.cell(row, column)
        return float(values.mean()) if values.size else math.nan

    def std(self, row: str, column: str) -> float:
        values = self.cell(row, column)
        return float(values.std(ddof=1)) if values.size > 1 else math.nan

    def best_rows(self, column: Column) -> set[str]:
        means = {r: self.mean(r, column.key) for r in self.rows}
        means = {r: m for r, m in means.items() if not math.isnan(m)}
        if column.best is None or len(means) < 2:
            return set()
        target = (min if column.best == "min" else max)(means.values())
        return {r for r, m in means.items() if round(m, column.digits) == round(target, column.digits)}


def row_title(row: str) -> str:
    """The paper's way of writing a row: ``scale_vae*(0.7,1|1.1,7)`` -> ``Scale-VAE☆ (0.7, 1 | 1.1, 7)``."""
    variant = variants.parse(row.split("*quoted")[0])
    title = METHOD_TITLES.get(variant.method, variant.method) + ("☆" if "*" in row.split("(")[0] else "")
    if "(" in row:
        inside = row[row.index("(") + 1:row.rindex(")")]
        title += " (" + " | ".join(", ".join(v.strip() for v in side.split(",")) for side in inside.split("|")) + ")"
    return title


def fill(table: Table, runs: pd.DataFrame, column_of: dict[str, tuple[str, str]], experiment: str,
         transform=None) -> Table:
    """Fill cells from ``runs``: column key -> (dataset, metric), for each row of the table."""
    selected = runs[runs["experiment"] == experiment]
    for row in table.rows:
        for key, (dataset, metric) in column_of.items():
            group = selected[(selected["row"] == row) & (selected["dataset"] == dataset)]
            if group.empty:
                continue
            done = group[group["status"] == "done"]
            values = pd.to_numeric(done[metric], errors="coerce").dropna().to_numpy(float)
            table.values[(row, key)] = transform(values, row, key) if transform else values
            table.planned[(row, key)] = len(group)
            table.failed[(row, key)] = int((group["status"] == "failed").sum())
            if "capped" in done:
                table.capped[(row, key)] = capped_count(done)
    table.labels.update({r: (row_title(r),) for r in table.rows if r not in table.labels})
    return table


def mark_skipped(table: Table, why: str) -> Table:
    """A table whose experiment cannot run on the user corpus: its caption says why, its cells stay empty."""
    table.skipped = why
    table.caption = f"{table.caption.split('. ')[0]}. Not run on your corpus: {why}."
    return table


def density_columns(sides: list[Side]) -> tuple[list[Column], dict[str, tuple[str, str]]]:
    """NLL, KL, MI, AU per dataset (Tables 1 and 3): keys ``yahoo_nll`` ... on the paper's datasets,
    ``<corpus>_nll`` ... on a user corpus."""
    columns, sources = [], {}
    for side in sides:
        for metric, title, best, digits in DENSITY:
            key = f"{side.prefix}_{metric}"
            columns.append(Column(key, title, side.title, best, digits, metric, side.family, side.corpus))
            sources[key] = (side.dataset, metric)
    return columns, sources


def per_side(columns: list[Column], sides: list[Side]) -> tuple[list[Column], dict[str, tuple[str, str]]]:
    """The columns of a one-dataset table (Tables 4 and 5) for its datasets: as they are for one, once per
    dataset (prefixed keys, the dataset in the header) for several corpora; with key -> (dataset, metric)."""
    out, sources = [], {}
    for side in sides or [Side(None, "")]:
        for c in columns:
            if len(sides) > 1:
                key = f"{side.prefix}_{c.key}"
                c = replace(c, key=key, group=f"{side.title}: {c.group}" if c.group else c.group,
                            title=c.title if c.group else f"{c.title} ({side.title})", metric=c.key)
            c = replace(c, metric=c.metric or c.key, family=side.family, corpus=side.corpus)
            out.append(c)
            sources[c.key] = (side.dataset, c.metric)
    return out, sources


def sides_of(runs: pd.DataFrame, experiment: str) -> list[Side]:
    """The datasets of an experiment's planned runs: the paper's in its order (Yahoo, then Yelp; datasets
    without a family, such as the synthetic one, are not table columns), or the user corpora."""
    selected = runs[runs["experiment"] == experiment]
    corpora = selected["corpus"] if "corpus" in selected else pd.Series("", index=selected.index)
    triples = pd.DataFrame({"family": selected["family"], "dataset": selected["dataset"],
                            "corpus": corpora.fillna("")}).drop_duplicates()
    order = {f: i for i, f in enumerate(FAMILY_TITLES)}
    sides = sorted((Side(f, d, c) for f, d, c in triples.itertuples(index=False) if f or c),
                   key=lambda side: (bool(side.corpus), order.get(side.family, 9)))
    names = [s.corpus for s in sides if s.corpus]
    # two corpora of one name (e.g. a/data and b/data) are told apart by their paths
    return [replace(s, corpus=s.dataset) if s.corpus and names.count(s.corpus) > 1 else s for s in sides]


LINEAGE_TITLES = {"he2019": "He et al.'s text.py", "shen2021": "DU-VAE's text.py"}


def protocol_words(profile: str) -> str:
    """The protocol a profile's runs follow, for captions: its code lineage and optimiser."""
    p = load_profile(profile)
    return (f"protocol lineage {p.lineage} ({LINEAGE_TITLES.get(p.lineage, p.lineage)}), "
            f"{'Adam' if p.optimizer == 'adam' else p.optimizer.upper()} lr {p.lr:g}")


def scale_caption(caption: str, profile: str, sides: list[Side]) -> str:
    """A table's caption: what it shows, the data, the profile and its protocol lineage."""
    protocol = protocol_words(profile)
    corpora = [s for s in sides if s.corpus]
    if corpora:
        where = "; ".join(s.corpus + (f" ({s.dataset})" if s.dataset != s.corpus else "") for s in corpora)
        likes = " and ".join(dict.fromkeys(f"{FAMILY_TITLES.get(s.family, s.family)}-like (the "
                                           f"{FAMILY_TITLES.get(s.family, s.family)} side of the paper's a | b rows)"
                                           for s in corpora if s.family))
        return (f"{caption}. User corpus {where}" + (f", run as {likes}" if likes else "")
                + f", at profile {profile} ({protocol}); the paper has no numbers for it; mean over seeds.")
    used = ", ".join(f"{s.title}: {s.dataset}" for s in sides)
    if profile == "paper":
        return f"{caption}. Profile paper ({used}; {protocol}); mean over seeds."
    return (f"{caption}. Reproduced at profile {profile} ({used}; {protocol}): a CPU-scale setting whose numbers are not "
            f"comparable in absolute value with the paper's; mean over seeds.")


def note_mi_ceilings(table: Table, runs: pd.DataFrame, experiment: str, sides: list[Side]) -> Table:
    """Record each MI column's ceiling, log N of the test split (the whole-split estimator cannot exceed it)."""
    selected = runs[(runs["experiment"] == experiment) & (runs["status"] == "done")]
    parts = []
    for side in sides:
        ceiling = pd.to_numeric(selected.loc[selected["dataset"] == side.dataset, "mi_ceiling"], errors="coerce").max()
        if not math.isnan(ceiling):
            table.ceilings[f"{side.prefix}_mi"] = float(ceiling)
            parts.append(f"log {math.exp(ceiling):,.0f} = {ceiling:.2f} on {side.corpus or side.dataset}")
    if parts:
        table.notes.append("MI: the whole-split estimator of the paper's own rows (BN-VAE's and DU-VAE's calc_mi_v3: "
                           "q(z) mixes the posteriors of every test document), on the posterior the decoder reads; "
                           "it cannot exceed log N (" + "; ".join(parts) + "). AU: active units of the encoder's "
                           "own means (He et al.'s calc_au). comparison.md lists He et al.'s per-batch MI and "
                           "Scale-VAE's AU on the scaled means beside them.")
    return table


def table1(runs: pd.DataFrame, profile: str) -> Table:
    sides = sides_of(runs, "table1")
    columns, sources = density_columns(sides)
    table = Table("table1", scale_caption("Density estimation (Table 1)", profile, sides),
                  variants.table_rows()["table1"], columns)
    return note_mi_ceilings(fill(table, runs, sources, "table1"), runs, "table1", sides)


def table2(runs: pd.DataFrame, profile: str) -> Table:
    """Hours to convergence (the run's recorded training time) and the ratio to VAE's mean."""
    sides = sides_of(runs, "table2")
    columns, sources = [], {}
    for side in sides:
        columns += [Column(f"{side.prefix}_hours", "Hours", side.title, "min", 3, "hours", side.family, side.corpus),
                    Column(f"{side.prefix}_ratio", "Ratio", side.title, "min", 2, "ratio", side.family, side.corpus)]
        sources[f"{side.prefix}_hours"] = sources[f"{side.prefix}_ratio"] = (side.dataset, "train_seconds")
    table = Table("table2", scale_caption("Training time to convergence (Table 2); Ratio: relative to VAE",
                                          profile, sides), variants.table_rows()["table2"], columns)
    fill(table, runs, sources, "table2", lambda values, row, key: values / 3600)
    for side in sides:
        vae = table.mean("vae", f"{side.prefix}_hours")
        for row in table.rows:
            hours = table.cell(row, f"{side.prefix}_hours")
            table.values[(row, f"{side.prefix}_ratio")] = hours / vae if hours.size and vae > 0 else np.array([])
    table.notes.append("Times are wall-clock training times of runs that shared the machine with other runs. "
                       "BN-VAE's and DU-VAE's exclude the end-of-epoch pass that recomputes their evaluation-time "
                       "batch-norm statistics (ours, not in the authors' code; recorded as statistics_seconds).")
    return table


def table3(runs: pd.DataFrame, profile: str) -> Table:
    sides = sides_of(runs, "table3")
    columns, sources = density_columns(sides)
    rows = variants.table_rows()["table3"]
    table = Table("table3", scale_caption("Scale-VAE's des_std x f_epo grid (Table 3)", profile, sides), rows,
                  columns, label_titles=("des_std", "f_epo"))
    for row in rows:
        values = variants.parse(row).hyperparameters(None)
        table.labels[row] = (f"{values['des_std']:g}", f"{values['f_epo']:g}")
    return note_mi_ceilings(fill(table, runs, sources, "table3"), runs, "table3", sides)


def table4(runs: pd.DataFrame, profile: str, probes: dict[str, dict]) -> Table:
    """Linear-probe accuracy (%) per number of labelled examples; ``probes`` maps run_id to probe results."""
    sides = sides_of(runs, "table4")
    requested = sorted({int(n) for p in probes.values() for n in p["requested_counts"]}) or [100, 500, 1000, 2000, 10000]
    available = min((p["train_documents"] for p in probes.values()), default=0)
    used = {n: min(n, available) for n in requested}  # the probe caps a count at the labelled training set

    def accuracy(run_id: str, n: int) -> float:
        probe = probes.get(run_id)
        value = probe and probe["accuracy"].get(str(min(n, probe["train_documents"])))
        return 100 * value if value is not None else math.nan
    columns, sources = per_side([Column(f"acc_{n}", f"{n // 1000}K" if n >= 1000 else str(n), "#labelled data",
                                        "max", 1) for n in requested], sides[:1] if not any(s.corpus for s in sides) else sides)
    table = Table("table4", scale_caption("Linear-probe accuracy (%) on posterior means (Table 4)", profile, sides),
                  variants.table_rows()["table4"], columns)
    frame = runs[runs["experiment"] == "table4"].copy()
    for n in requested:
        frame[f"acc_{n}"] = [accuracy(r, n) for r in frame["run_id"]]
    fill(table, frame, sources, "table4")
    capped = [f"{n} -> {used[n]}" for n in requested if probes and used[n] < n]
    if capped:
        table.notes.append("Label counts larger than the labelled training set were capped: " + ", ".join(capped) + ".")
    return table


TABLE5_METRICS = [("ppl", "PPL", "min", 2), ("gram2", "Gram-2", "max", 2), ("gram3", "Gram-3", "max", 2),
                  ("gram4", "Gram-4", "max", 2), ("entropy", "Entropy", "max", 2), ("dist1", "Dist-1", "max", 4),
                  ("dist2", "Dist-2", "max", 4), ("dist3", "Dist-3", "max", 4)]


def generation_protocol(generations: dict[str, dict]) -> str:
    """How the finished runs' text was generated, for Table 5's caption: the word budget of the
    n-gram statistics and the sampling cap, as the results record them."""
    budgets = sorted({g["token_budget"] for g in generations.values() if "token_budget" in g})
    caps = sorted({g["max_tokens"] for g in generations.values() if "max_tokens" in g})
    if not budgets:
        from .generation import DEFAULT_TOKENS  # torch and the models: only when there is nothing to read
        budgets = [DEFAULT_TOKENS]
    words = " / ".join(f"{b:,}" for b in budgets)
    cap = f" (at most {' / '.join(map(str, caps))} tokens each, the end token included)" if caps else ""
    return (f"Sentences sampled from the prior{cap}; Gram-n, Entropy and Dist-n over exactly the first {words} "
            f"generated words of each run, PPL over the whole sampled sentences under the LSTM-LM of the same seed")


def table5(runs: pd.DataFrame, profile: str, generations: dict[str, dict]) -> Table:
    """Generation metrics; ``generations`` maps run_id to the metrics of its generated text."""
    sides = sides_of(runs, "table5")
    rows = [r for r in variants.table_rows()["table5"] if variants.parse(r).method != "lstm_lm"]
    columns, sources = per_side([Column(key, title, "", best, digits) for key, title, best, digits in TABLE5_METRICS],
                                sides[:1] if not any(s.corpus for s in sides) else sides)
    caption = scale_caption("Quality and diversity of generated sentences (Table 5). " + generation_protocol(generations)
                            + "; Gram-n in %, Entropy in nats, Dist-n = "
                            "distinct / generated n-grams as a ratio (the paper prints Dist-1 in units of E-02 and "
                            "Dist-2/3 in E-05; its Dist-2/3, hundreds of times below its Dist-1, are hard to "
                            "reconcile with ratios of this kind, since every distinct word that is not only "
                            "sentence-final starts a distinct bigram)", profile, sides)
    table = Table("table5", caption, rows, columns, transpose=True)
    frame = runs[runs["experiment"] == "table5"].copy()
    for key, *_ in TABLE5_METRICS:
        scale = 100 if key.startswith("gram") else 1
        frame[key] = [scale * value if (value := generations.get(r, {}).get(key)) is not None else math.nan
                      for r in frame["run_id"]]
    fill(table, frame, sources, "table5")
    capped, short = [], []
    for row in rows:
        results = [generations[r] for r in frame.loc[frame["row"] == row, "run_id"] if r in generations]
        if any("capped" in g for g in results):
            capped.append(f"{row_title(row)} {sum(g.get('capped', 0) for g in results):,} of "
                          f"{sum(g.get('sentences', 0) for g in results):,}")
        if any(g.get("tokens", 0) < g.get("token_budget", 0) for g in results):
            short.append(row_title(row))
    if capped:
        table.notes.append("Samples that reached the cap without drawing the end token (scored without one), over "
                           "all seeds: " + "; ".join(capped) + ".")
    if short:
        table.notes.append("Runs whose sentences were too short to fill the word budget (their statistics use "
                           "fewer words): " + ", ".join(short) + ".")
    return table


UNIT = re.compile(r"\(E-(\d+)\)")  # a unit in the paper's printed label, e.g. "Dist-2 (E-05)"


def paper_units(name: str) -> dict[str, int]:
    """Columns the paper prints in units of 10^-k (Table 5's Dist-n): {column key: k}."""
    if name != "table5":
        return {}
    with open(PAPER_DIR / f"{name}.csv", newline="", encoding="utf-8") as fh:
        return {r["metric"]: int(m.group(1)) for r in csv.DictReader(fh) if (m := UNIT.search(r.get("label") or ""))}


def paper_values(name: str) -> dict[tuple[str, str], float]:
    """The paper's numbers of one table (analysis/paper/<name>.csv) as {(row, column key): value}, as
    plain numbers: a value printed in units of E-k (Table 5's Dist-n) is read as <value>e-k, so
    that it compares with our ratios."""
    with open(PAPER_DIR / f"{name}.csv", newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    if name == "table5":  # stored with models as columns, as printed
        units = paper_units(name)
        return {(model, r["metric"]): float(f"{r[model]}e-{units.get(r['metric'], 0)}")  # 0.82 at E-02 -> 0.0082
                for r in records for model in r if model not in ("metric", "label")}
    return {(r["row"], key): float(value) for r in records for key, value in r.items()
            if key not in ("row", "label", "des_std", "f_epo") and value not in ("", None)}
