"""The ``scale_regime`` study (issue 14): Scale-VAE and its baselines trained to convergence under
each protocol of the experiment's grid, with ``scale_regime_f_average``'s other reading of how
Algorithm 1 averages an epoch's factors (its protocols are named with ``f_average=harmonic``).

- ``study_table``: per protocol and row, mean ± std over finished seeds of f_bar, the unscaled KL,
  MI (both posteriors), AU, NLL under both priors and the epochs trained; how many runs the epoch
  cap ended and how many diverged (with the epoch). For Scale-VAE also each seed's final f_bar (a
  mean hides a protocol where seeds split) and, from ``factor_trace.csv``, the factor of the first
  training batch and f_bar after epoch 1: where the first epoch's factors start and end.
- ``curves_figure``: per protocol, Scale-VAE's factor of every batch of its first f_epo epochs
  (``factor_trace.csv``), then f_bar, validation KL (unscaled), MI and IW-NLL per epoch (each seed
  and their mean; a diverged run's epochs are drawn too, from the history it kept).

``python -m analysis.steady_state --results DIR [--out DIR]``; ``make_tables`` writes both
(``tables/scale_regime.md``, ``figures/scale_regime.png``) when the study has runs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.figures import STYLE, save  # noqa: E402
from analysis import collect  # noqa: E402
from benchmarks.store import read_json  # noqa: E402

EXPERIMENT = "scale_regime"
SUMMARY = [("f_first_batch", "f, 1st batch", 0), ("f_bar_epoch1", "f_bar, epoch 1", 1), ("f_mean", "f_bar", 2),
           ("kl", "KL", 2), ("mi", "MI", 2), ("mi_unscaled", "MI unscaled", 2),
           ("au", "AU", 1), ("nll", "NLL", 1), ("nll_unit_prior", "NLL N(0,I)", 1), ("epochs", "epochs", 1)]
MI_FLOOR = -2.0  # the MI panels' lowest value shown
CURVES = {"f_mean": "f_bar (mean over dims)", "valid_kl": "validation KL (unscaled)", "valid_mi": "validation MI",
          "valid_nll": "validation IW-NLL"}


def protocol(setting) -> str:
    return setting if isinstance(setting, str) and setting else "profile's own"


def study_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["experiment"].isin(collect.STUDY_EXPERIMENTS)].drop_duplicates("run_id")


def trace_start(run_dir) -> dict[str, float]:
    """From a Scale-VAE run's ``factor_trace.csv``: the first batch's factor and f_bar after epoch 1
    (means over dimensions); empty for a run without a trace."""
    path = Path(run_dir) / "factor_trace.csv"
    try:
        trace = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return {}
    batches, f_bars = trace[trace["kind"] == "batch"], trace[(trace["kind"] == "f_bar") & (trace["epoch"] == 1)]
    return {"f_first_batch": batches["f_mean"].iloc[0] if len(batches) else float("nan"),
            "f_bar_epoch1": f_bars["f_mean"].iloc[0] if len(f_bars) else float("nan")}


def study_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One line per (protocol, row): seeds planned, finished, capped, diverged, and each SUMMARY mean ± std."""
    lines = []
    for (setting, row), group in study_runs(runs).groupby(["setting", "row"], sort=False):
        group = group.assign(**pd.DataFrame([trace_start(d) for d in group["run_dir"]], index=group.index,
                                            columns=["f_first_batch", "f_bar_epoch1"]))
        done = group[group["status"] == "done"]
        failed = group[group["status"] == "failed"]
        epochs = [(read_json(Path(d) / "failed.json", warn=False) or {}).get("epoch") for d in failed["run_dir"]]
        line = {"protocol": protocol(setting), "row": row, "planned": len(group), "finished": len(done),
                "capped": collect.capped_count(done),
                "diverged": len(failed), "diverged_at_epoch": ", ".join(str(e) for e in epochs if e is not None)}
        for key, _, _ in SUMMARY:
            values = pd.to_numeric(done[key], errors="coerce").dropna()
            line[f"{key}_mean"], line[f"{key}_std"] = values.mean(), values.std()
        f_bars = pd.to_numeric(done.sort_values("seed")["f_mean"], errors="coerce").dropna()
        line["f_bar_per_seed"] = ", ".join(f"{f:.3g}" for f in f_bars)
        lines.append(line)
    table = pd.DataFrame(lines)
    if table.empty:
        return table
    rows = {row: i for i, row in enumerate(dict.fromkeys(table["row"]))}  # a row's protocols together
    return table.sort_values("row", key=lambda column: column.map(rows), kind="stable", ignore_index=True)


def number(value: float, digits: int) -> str:
    """Fixed decimals, or 3 significant digits for values a run away from settling reaches (1e5 and more)."""
    return f"{value:.3g}" if abs(value) >= 1e5 else f"{value:.{digits}f}"


def markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return (f"No run of the {EXPERIMENT} study (python -m benchmarks.run --only "
                f"{','.join(collect.STUDY_EXPERIMENTS)}).\n")
    head = (["protocol", "row", "finished / planned", "capped", "diverged (epoch)"] + [t for _, t, _ in SUMMARY]
            + ["f_bar per seed"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.itertuples():
        cells = [r.protocol, r.row, f"{r.finished} / {r.planned}", str(r.capped),
                 f"{r.diverged}" + (f" ({r.diverged_at_epoch})" if r.diverged_at_epoch else "")]
        for key, _, digits in SUMMARY:
            mean, std = getattr(r, f"{key}_mean"), getattr(r, f"{key}_std")
            cells.append("—" if pd.isna(mean) else number(mean, digits) + ("" if pd.isna(std) else f" ± {number(std, digits)}"))
        cells.append(r.f_bar_per_seed or "—")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + ("\n\nMean ± std over finished seeds. Scale-VAE only: f (mean over dimensions) of the first "
                                "training batch, f_bar after epoch 1 and at the end, MI unscaled.\n")


def study_files(runs: pd.DataFrame, name: str, columns: list[str]) -> pd.DataFrame:
    """Every finished or diverged study run's ``name`` CSV (its ``columns``), with protocol, row and seed."""
    frames = []
    for run in study_runs(runs).itertuples():
        path = Path(run.run_dir) / name
        if run.status in ("done", "failed") and path.exists():
            try:
                frame = pd.read_csv(path)
            except (pd.errors.ParserError, pd.errors.EmptyDataError):
                print(f"warning: skipping {run.run_id}: unreadable {name}", file=sys.stderr)
                continue
            frames.append(frame.reindex(columns=columns).assign(protocol=protocol(run.setting), row=run.row,
                                                                seed=run.seed))
    return pd.concat(frames) if frames else pd.DataFrame(columns=[*columns, "protocol", "row", "seed"])


def histories(runs: pd.DataFrame) -> pd.DataFrame:
    """Every study run's history.csv (finished or diverged), with its protocol and row."""
    return study_files(runs, "history.csv", ["epoch", *CURVES])


def first_factors(runs: pd.DataFrame) -> pd.DataFrame:
    """The factor of every batch of the first f_epo epochs (mean over dimensions), numbered from 1."""
    trace = study_files(runs, "factor_trace.csv", ["epoch", "batch", "kind", "f_mean"])
    trace = trace[trace["kind"] == "batch"].copy()
    trace["step"] = trace.groupby(["protocol", "row", "seed"]).cumcount() + 1
    return trace


def curves_figure(runs: pd.DataFrame, out_dir) -> list[Path]:
    """One row of panels per protocol: Scale-VAE's factor per batch of its first epoch(s), then
    CURVES per epoch; a thin line per seed and a thick one for their mean, a colour per model row."""
    curves, trace = histories(runs), first_factors(runs)
    if curves.empty:
        return []
    protocols = list(dict.fromkeys(curves["protocol"]))
    rows = list(dict.fromkeys(curves["row"]))
    palette = dict(zip(rows, sns.color_palette("tab10", len(rows))))
    panels = [("step", "f_mean", "f per batch, first f_epo epochs\n(factor_trace.csv)", trace)]
    panels += [("epoch", column, title, curves) for column, title in CURVES.items()]
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(len(protocols), len(panels), figsize=(4.2 * len(panels), 3.0 * len(protocols)),
                                 squeeze=False)
        for i, name in enumerate(protocols):
            for j, (x, column, title, frame) in enumerate(panels):
                ax = axes[i][j]
                for row in rows:
                    mine = frame[(frame["protocol"] == name) & (frame["row"] == row)].dropna(subset=[column])
                    for _, seed in mine.groupby("seed"):
                        ax.plot(seed[x], seed[column], color=palette[row], linewidth=0.6, alpha=0.45)
                    if not mine.empty:
                        mean = mine.groupby(x)[column].mean()
                        ax.plot(mean.index, mean.values, color=palette[row], linewidth=1.6)
                if column == "f_mean":
                    ax.set_yscale("log")
                if column == "valid_mi" and ax.get_ylim()[0] < MI_FLOOR:
                    ax.set_ylim(bottom=MI_FLOOR)  # a run whose factor ran away gives estimates of -100 and less
                    title += f" (axis cut at {MI_FLOOR:g})"
                ax.set(title=f"{name}\n{title}" if j == 0 else title, xlabel="training batch" if x == "step" else x)
        handles = [plt.Line2D([], [], color=palette[r]) for r in rows]
        fig.legend(handles, rows, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
        fig.suptitle(f"{EXPERIMENT}: thin lines one seed each, thick their mean (diverged runs up to their last epoch)")
        fig.tight_layout()
    return save(fig, out_dir, EXPERIMENT)


def write(runs: pd.DataFrame, tables_dir: Path, figures_dir: Path | None) -> list[Path]:
    """``scale_regime.md``/``.csv`` (and the figure) when the study has runs; the paths written."""
    table = study_table(runs)
    if table.empty or not table["finished"].sum() + table["diverged"].sum():
        return []
    paths = collect.write_study(table, EXPERIMENT, markdown(table), tables_dir)
    return paths + (curves_figure(runs, figures_dir) if figures_dir is not None else [])


def main(argv=None) -> int:
    return collect.study_cli(argv, "python -m analysis.steady_state", __doc__.split("\n\n")[0], study_table, markdown, write)


if __name__ == "__main__":
    sys.exit(main())
