"""The ladder study (issue 24): Scale-VAE against VAE and the LSTM-LM at rungs that grow the quick
profile one axis at a time toward the paper (``benchmarks/experiments/ladder.toml``; docs/ladder.md).

- ``ladder_table``: one line per rung and row: seeds finished / planned, epochs, f_bar, the
  unscaled KL beside nz/2 x des_std^2 (the KL of an encoder whose own means already have Std =
  des_std, i.e. f_bar = 1), MI (on the decoder's posterior) and its ceiling log N, AU, the NLL under
  the model's prior and under N(0, I), and each row's differences to VAE and to the LSTM-LM in
  both conventions (mean over seeds; Welch's p where both sides have 2 or more seeds).
- ``ladder_figure``: those differences and f_bar against the rung.

``python -m analysis.ladder --results DIR [--out DIR]`` writes ``ladder.csv``, ``ladder.md`` and
``ladder.png``; ``make_tables`` writes them when the study has runs.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis import collect  # noqa: E402
from analysis.claims import welch  # noqa: E402
from analysis.figures import STYLE, save  # noqa: E402
from benchmarks import plan  # noqa: E402
from models import variants  # noqa: E402

EXPERIMENT = "ladder"
BASELINES = {"vae": "VAE", "lstm_lm": "LSTM-LM"}
COLUMNS = [("f_mean", "f_bar", 2), ("kl", "KL", 2), ("kl_at_f1", "nz/2·des²", 1), ("mi", "MI", 2),
           ("mi_ceiling", "MI ceiling", 2), ("au", "AU", 1), ("nll", "NLL", 1), ("nll_unit_prior", "NLL N(0,I)", 1),
           ("epochs", "epochs", 1), ("train_minutes", "train min", 1)]
DIFFERENCES = [("nll", "vae"), ("nll_unit_prior", "vae"), ("nll", "lstm_lm"), ("nll_unit_prior", "lstm_lm")]


def rungs(profile: str = "quick") -> list[str]:
    """The rungs in the experiment file's order (its grid labels)."""
    spec = plan.load(EXPERIMENT)
    return [str(entry.get(plan.GRID_LABEL, "")) for entry in spec.get("grid", [{}])]


def kl_at_unit_factor(row: str, nz: int = 32) -> float:
    """nz/2 x des_std^2 for a Scale-VAE row, NaN for others."""
    des_std = variants.parse(row).hyperparameters("yahoo").get("des_std")
    return nz / 2 * des_std**2 if des_std is not None else math.nan


def difference(done: pd.DataFrame, rung: str, row: str, baseline: str, key: str) -> tuple[float, float, int, int]:
    """(mean of row - mean of baseline, Welch's p or NaN, seeds of row, seeds of baseline) at one rung."""
    mine = pd.to_numeric(done[(done["setting"] == rung) & (done["row"] == row)][key], errors="coerce").dropna()
    base = done[(done["setting"] == rung) & (done["method"] == baseline)]
    base = pd.to_numeric(base[key if baseline != "lstm_lm" else "nll"], errors="coerce").dropna()
    if mine.empty or base.empty:
        return math.nan, math.nan, len(mine), len(base)
    p = welch(mine.to_numpy(), base.to_numpy()) if len(mine) >= 2 and len(base) >= 2 else math.nan
    return float(mine.mean() - base.mean()), p, len(mine), len(base)


def ladder_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per (rung, row); see the module's docstring."""
    mine = runs[runs["experiment"] == EXPERIMENT].drop_duplicates("run_id")
    done = mine[mine["status"] == "done"]
    order = {r: i for i, r in enumerate(rungs())}
    lines = []
    for (rung, row), group in mine.groupby(["setting", "row"], sort=False):
        finished = group[group["status"] == "done"]
        line = {"rung": rung, "row": row, "planned": len(group), "finished": len(finished),
                "capped": collect.capped_count(finished), "failed": int((group["status"] == "failed").sum()),
                "kl_at_f1": kl_at_unit_factor(row)}
        finished = finished.assign(train_minutes=pd.to_numeric(finished["train_seconds"], errors="coerce") / 60)
        for key, _, _ in COLUMNS:
            if key == "kl_at_f1":
                continue
            values = pd.to_numeric(finished[key], errors="coerce").dropna()
            line[key], line[f"{key}_std"] = values.mean(), values.std()
        for key, baseline in DIFFERENCES:
            if group["method"].iloc[0] in ("lstm_lm", baseline):
                continue
            delta, p, _, _ = difference(done, rung, row, baseline, key)
            line[f"d_{key}_{baseline}"], line[f"p_{key}_{baseline}"] = delta, p
        lines.append(line)
    table = pd.DataFrame(lines)
    if table.empty:
        return table
    return table.sort_values("rung", key=lambda c: c.map(lambda r: order.get(r, len(order))), kind="stable",
                             ignore_index=True)


def cell(value: float, std: float | None, digits: int) -> str:
    if pd.isna(value):
        return "—"
    return f"{value:.{digits}f}" + ("" if std is None or pd.isna(std) else f" ± {std:.{digits}f}")


def signed(delta: float, p: float) -> str:
    if pd.isna(delta):
        return "—"
    return f"{delta:+.1f}" + ("" if pd.isna(p) else f" (p={p:.2g})")


def markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return f"No run of the {EXPERIMENT} study yet (python -m benchmarks.run --only {EXPERIMENT}).\n"
    head = (["rung", "row", "finished / planned", "capped"] + [t for _, t, _ in COLUMNS]
            + ["ΔNLL vs VAE", "ΔNLL N(0,I) vs VAE", "ΔNLL vs LSTM-LM", "ΔNLL N(0,I) vs LSTM-LM"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.to_dict("records"):
        cells = [r["rung"], r["row"], f"{r['finished']} / {r['planned']}", str(r["capped"])]
        cells += [cell(r.get(k, math.nan), r.get(f"{k}_std"), d) for k, _, d in COLUMNS]
        cells += [signed(r.get(f"d_{k}_{b}", math.nan), r.get(f"p_{k}_{b}", math.nan)) for k, b in DIFFERENCES]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + (
        "\n\nMean ± std over finished seeds. KL is the unscaled KL(q || N(0, I)) of the objective; nz/2·des² is the KL "
        "of an encoder whose own means have Std = des_std (f_bar = 1). MI is the whole-split MI on the decoder's "
        "posterior, at most log N (the ceiling). train min: training minutes per run (other load on the "
        "machine included). Δ: the row's mean NLL minus the baseline's (the LSTM-LM has one NLL), "
        "negative = better than the baseline; Welch's p where both have 2+ seeds.\n")


def ladder_figure(table: pd.DataFrame, out_dir) -> list[Path]:
    """ΔNLL to VAE and to the LSTM-LM in both conventions, and f_bar, against the rung."""
    latent = table[table["row"].map(lambda r: variants.parse(r).method not in BASELINES)]
    if latent.empty:
        return []
    order = [r for r in rungs() if r in set(latent["rung"])]
    rows = list(dict.fromkeys(latent["row"]))
    palette = dict(zip(rows, sns.color_palette("tab10", len(rows))))
    panels = [(f"d_{k}_{b}", f"{'NLL' if k == 'nll' else 'NLL under N(0, I)'} − {BASELINES[b]}'s") for k, b in DIFFERENCES]
    panels.append(("f_mean", "f_bar (Scale-VAE)"))
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
        for ax, (column, title) in zip(axes[0], panels):
            for row in rows:
                mine = latent[latent["row"] == row].set_index("rung").reindex(order)
                if column in mine and mine[column].notna().any():
                    ax.plot(np.arange(len(order)), mine[column].to_numpy(dtype=float), marker="o", color=palette[row])
            if column != "f_mean":
                ax.axhline(0, color="grey", linewidth=0.8)
            ax.set_xticks(np.arange(len(order)), order, rotation=30, ha="right", fontsize=8)
            ax.set(title=title + (" (nats)" if column != "f_mean" else ""))
        handles = [plt.Line2D([], [], color=palette[r], marker="o") for r in rows]
        fig.legend(handles, rows, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
        fig.suptitle("The ladder: below 0 = better than the baseline (means over seeds)")
        fig.tight_layout()
    return save(fig, out_dir, EXPERIMENT)


def write(runs: pd.DataFrame, tables_dir: Path, figures_dir: Path | None) -> list[Path]:
    """``ladder.csv`` and ``ladder.md`` (and the figure) when the study has finished runs."""
    table = ladder_table(runs)
    if table.empty or not table["finished"].sum():
        return []
    paths = collect.write_study(table, EXPERIMENT, markdown(table), tables_dir)
    return paths + (ladder_figure(table, figures_dir) if figures_dir is not None else [])


def main(argv=None) -> int:
    return collect.study_cli(argv, "python -m analysis.ladder", __doc__.split("\n\n")[0], ladder_table, markdown, write)


if __name__ == "__main__":
    sys.exit(main())
