"""Figures of the reproduction, drawn from the frame of planned runs.

``runs`` has one row per planned run with at least ``experiment``, ``row``, ``method``,
``dataset``, ``setting``, ``seed``, ``run_id``, ``status`` and ``run_dir`` (meaningful when
status is "done"). Every figure is written to ``out_dir`` as PNG (150 dpi) and PDF, and each
function returns the paths it wrote:

- ``latent_space``: the paper's synthetic latent-space experiment (posterior means per model and
  mini-batch partitioning, coloured by Gaussian component, with their silhouette score; the
  scores of every seed for the claim), read from each run's ``latent_means.csv`` (``benchmarks/derived.py``; computed from ``best.pt`` for a run
  of an older store without it);
- ``training_curves``: validation KL, MI and AU per epoch, one line per row;
- ``paper_comparison_bars``: reproduced numbers next to the paper's, per dataset and metric (NLL as the
  difference to VAE's).
"""
from __future__ import annotations

import itertools
import math
import sys
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from analysis.collect import finished  # noqa: E402
from benchmarks import derived  # noqa: E402
from benchmarks.errors import UserError  # noqa: E402

# The paper's three mini-batch partitionings (data distribution / splitting), in its order.
MODES = {"batching=random": "random / unchanged", "batching=resplit": "random / resplit",
         "batching=by_label": "one component per batch / unchanged"}
CURVES = {"valid_kl": "validation KL", "valid_mi": "validation MI", "valid_au": "validation AU"}
MAX_LATENT_DOCS = derived.MAX_LATENT_DOCS
COMPONENT_COLOURS = np.array(sns.color_palette("tab20", 20))  # a component k gets colour k (16 used)
STYLE = "whitegrid"


def save(fig, out_dir, stem: str) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.pdf`` in ``out_dir`` and close it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{ext}" for ext in ("png", "pdf")]
    for path in paths:  # no creation date in the PDF: the same runs give the same bytes
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def row_label(row: str, setting) -> str:
    return f"{row} [{setting}]" if isinstance(setting, str) and setting else row


# --------------------------------------------------------------------------- latent space


def silhouette(points, labels) -> float:
    """Mean silhouette score (Rousseeuw 1987) with Euclidean distances.

    Per point, s = (b - a) / max(a, b), where a is its mean distance to the other members of its
    group and b the smallest mean distance to the members of another group; a point alone in its
    group scores 0 (as in scikit-learn). Near 1: compact, well separated groups; near 0 or below:
    groups mixed together. NaN with fewer than two groups.
    """
    x = torch.as_tensor(np.asarray(points, dtype=np.float64))
    groups = torch.as_tensor(np.unique(np.asarray(labels), return_inverse=True)[1].reshape(-1))
    k = int(groups.max()) + 1 if len(groups) else 0
    if k < 2:
        return float("nan")
    member = torch.nn.functional.one_hot(groups, k).double()  # [n, k]
    sums = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist") @ member  # [n, k] distance sums
    sizes = member.sum(0)
    own = sizes[groups]
    a = sums.gather(1, groups[:, None]).squeeze(1) / (own - 1).clamp_min(1)
    b = (sums / sizes).scatter(1, groups[:, None], math.inf).min(1).values
    top = torch.maximum(a, b)
    scores = torch.where((own > 1) & (top > 0), (b - a) / top.clamp_min(1e-300), torch.zeros_like(a))
    return scores.mean().item()


def decoder_means(run_dir, *, data_dir=None, cache_dir=None, limit: int = MAX_LATENT_DOCS):
    """(means [n, nz], labels [n]) for the first ``limit`` test documents of a finished run: the mean
    of the posterior the decoder consumes (Scale-VAE: f_bar * mu; BN-VAE: the normalised mu), as the
    run's ``latent_means.csv`` records them for the first ``MAX_LATENT_DOCS``; computed from its
    ``best.pt`` for another ``limit`` or a run without the record."""
    if limit == derived.MAX_LATENT_DOCS and (recorded := derived.read_latent(run_dir)) is not None:
        return recorded
    model, corpus, _ = derived.load_checkpoint(run_dir, derived.LATENT, data_dir=data_dir, cache_dir=cache_dir)
    try:
        return derived.decoder_means(model, corpus, limit)
    except ValueError as error:
        raise ValueError(f"run {Path(run_dir).name}: {error}") from None


def plane(means: np.ndarray) -> np.ndarray:
    """2-d means as they are; more dimensions projected on their first two principal axes."""
    if means.shape[1] <= 2:
        return np.pad(means, ((0, 0), (0, 2 - means.shape[1])))
    centred = means - means.mean(0)
    return centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T


LATENT_SCORES = ["row", "setting", "seed", "silhouette"]


def latent_space(runs: pd.DataFrame, out_dir, *, data_dir=None, cache_dir=None) -> dict:
    """The paper's "latent space property" experiment (synthetic data from 16 Gaussian components).

    The paper trains BN-VAE(0.6) and Scale-VAE(1.1, 1) under three mini-batch partitionings
    (random / unchanged, random / resplit, one component per batch / unchanged) and shows that
    BN-VAE, which normalises every mini-batch with that batch's own statistics, clutters the latent
    space when batches are not random, while Scale-VAE, whose decoder uses one factor f_bar for all
    data, does not. Panels: rows = models, columns = partitionings; each shows the test documents'
    decoder-side posterior means of the lowest finished seed with a record, coloured by component,
    with the silhouette score of the means grouped by component (higher = less clutter). Unrun
    panels read "not run".

    Writes ``latent_space.png/.pdf``; returns {"paths": [...], "silhouette": {(row, setting): the
    drawn seed's score}, "seeds": a frame of LATENT_SCORES, one line per finished run with a record}
    (empty, and nothing written, when no latent_space run has finished).
    """
    done = finished(runs, "latent_space").sort_values(["seed", "run_id"])
    seeds = pd.DataFrame(columns=LATENT_SCORES)
    if done.empty:
        return {"paths": [], "silhouette": {}, "seeds": seeds}
    planned = runs[runs["experiment"] == "latent_space"]
    rows = list(dict.fromkeys(planned["row"]))
    settings = list(MODES) + [s for s in dict.fromkeys(planned["setting"]) if s not in MODES]
    drawn, lines = {}, []  # drawn: (row, setting) -> (means, labels, seed, score) of its lowest seed
    for run in done.itertuples():
        try:
            means, labels = decoder_means(run.run_dir, data_dir=data_dir, cache_dir=cache_dir)
        except (UserError, OSError, ValueError) as error:
            print(f"warning: {Path(run.run_dir).name}: {error}; the run is left out of the latent space",
                  file=sys.stderr)
            continue
        score = silhouette(means, labels)
        lines.append({"row": run.row, "setting": run.setting, "seed": run.seed, "silhouette": score})
        drawn.setdefault((run.row, run.setting), (means, labels, run.seed, score))
    seeds = pd.DataFrame(lines, columns=LATENT_SCORES)
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(len(rows), len(settings), figsize=(3.3 * len(settings), 3.2 * len(rows)),
                                 squeeze=False)
        for (i, row), (j, setting) in itertools.product(enumerate(rows), enumerate(settings)):
            ax = axes[i, j]
            ax.set_title(MODES.get(setting, setting) if i == 0 else "", fontsize=10)
            ax.set_ylabel(row if j == 0 else "", fontsize=10)
            if (row, setting) not in drawn:
                ran = ((done["row"] == row) & (done["setting"] == setting)).any()
                ax.text(0.5, 0.5, "no record" if ran else "not run", ha="center", va="center", color="grey",
                        transform=ax.transAxes)
                ax.set(xticks=[], yticks=[])
                continue
            means, labels, seed, score = drawn[row, setting]
            xy = plane(means)
            ax.scatter(xy[:, 0], xy[:, 1], c=COMPONENT_COLOURS[labels % len(COMPONENT_COLOURS)], s=5,
                       linewidths=0, rasterized=True)
            ax.text(0.03, 0.97, f"seed {seed}: silhouette {score:.2f}", transform=ax.transAxes, va="top",
                    fontsize=9, bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})
            ax.tick_params(labelsize=7)
        fig.suptitle("Posterior means the decoder consumes, synthetic test split (colour = Gaussian component)")
        fig.tight_layout()
    scores = {key: value[3] for key, value in drawn.items()}
    return {"paths": save(fig, out_dir, "latent_space"), "silhouette": scores, "seeds": seeds}


# --------------------------------------------------------------------------- training curves


def mean_curves(done: pd.DataFrame) -> pd.DataFrame:
    """Per (row label, epoch): the mean over the runs' ``history.csv`` of each CURVES column
    (NaN for rows whose histories lack it, e.g. lstm_lm's KL). Unreadable histories are skipped."""
    frames = []
    for run in done.itertuples():
        try:
            history = pd.read_csv(Path(run.run_dir) / "history.csv")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            print(f"warning: skipping {run.run_id}: unreadable history ({error})", file=sys.stderr)
            continue
        frames.append(history.reindex(columns=["epoch", *CURVES]).assign(label=row_label(run.row, run.setting)))
    if not frames:
        return pd.DataFrame(columns=["label", "epoch", *CURVES])
    return pd.concat(frames).groupby(["label", "epoch"], sort=False).mean().reset_index()


def training_curves(runs: pd.DataFrame, out_dir, experiment: str = "table1") -> list[Path]:
    """Validation KL, MI and AU per epoch: the paper's posterior-collapse diagnostics (Table 1 reports
    them at the end of training; a collapsed posterior has KL = MI = AU = 0). One figure per dataset of
    ``experiment``, one line per row (mean over its finished seeds), legend outside the panels.
    Writes ``curves_<dataset>.png/.pdf``."""
    paths = []
    for dataset, done in finished(runs, experiment).groupby("dataset", sort=False):
        curves = mean_curves(done)
        labels = [label for label, group in curves.groupby("label", sort=False)
                  if group[list(CURVES)].notna().any().any()]
        if not labels:
            continue
        palette = sns.color_palette("tab20" if len(labels) <= 20 else "husl", len(labels))
        with sns.axes_style(STYLE):
            fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.4))
            for ax, (column, title) in zip(axes, CURVES.items()):
                for label, colour in zip(labels, palette):
                    line = curves[(curves["label"] == label) & curves[column].notna()]
                    ax.plot(line["epoch"], line[column], color=colour, label=label, marker=".", linewidth=1.2)
                ax.set(title=title, xlabel="epoch")
                ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            fig.suptitle(f"{experiment}: {dataset} (mean over finished seeds)")
            handles = [plt.Line2D([], [], color=colour) for colour in palette]
            fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
            fig.tight_layout()
        paths += save(fig, out_dir, f"curves_{Path(dataset).expanduser().absolute().name}")  # a corpus: its folder
    return paths


# --------------------------------------------------------------------------- comparison with the paper


REFERENCE = "vae"  # the NLL panels plot each row's NLL minus this row's: the ordering the paper's claims are about
RELATIVE = "NLL"  # the metric drawn relative to REFERENCE
RELATIVE_LABEL = "NLL − VAE's NLL (nats; lower is better)"


def relative_to_reference(frame: pd.DataFrame, metric: str = RELATIVE, reference: str = REFERENCE) -> pd.DataFrame:
    """``frame`` (rows x (family, metric)) as numbers, each ``metric`` column minus the ``reference`` row's value
    in it: the reference reads 0, a row or a reference without a value NaN. Other columns as they are."""
    out = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    for column in [c for c in out.columns if c[1] == metric]:
        base = out.at[reference, column] if reference in out.index else math.nan
        out[column] = out[column] - base
    return out


def paper_comparison_bars(reproduced: pd.DataFrame, paper: pd.DataFrame, out_dir, name: str = "table1_vs_paper",
                          *, caption: str | None = None, reproduced_std: pd.DataFrame | None = None) -> list[Path]:
    """Reproduced numbers (mean over seeds) next to the paper's, e.g. Table 1's NLL, KL, MI and AU on
    Yahoo and Yelp. Both frames are indexed by row name with (dataset family, metric) columns; one panel
    per column, paired horizontal bars per row; a missing value (not run, or the paper's "-") draws no
    bar and reads "n/a". NLL panels draw each row's NLL minus VAE's of the same source
    (``relative_to_reference``), so that absolute values of different scales still show the ordering;
    ``reproduced_std`` (same layout, seed std) adds error bars to ours there: the row's own spread over
    seeds (VAE's, at 0, the spread of the reference). ``caption`` becomes the title, e.g. to say that a
    non-paper profile's absolute values are on another scale. Writes ``<name>.png/.pdf``."""
    rows = list(dict.fromkeys([*paper.index, *reproduced.index]))
    columns = list(dict.fromkeys([*paper.columns, *reproduced.columns]))
    families, metrics = (list(dict.fromkeys(c[k] for c in columns)) for k in (0, 1))
    sources = {"reproduced": relative_to_reference(reproduced), "paper": relative_to_reference(paper)}
    errors = {"reproduced": reproduced_std}
    colours = sns.color_palette("deep", len(sources))
    y, height = np.arange(len(rows)), 0.4
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(len(families), len(metrics), sharey=True, squeeze=False,
                                 figsize=(3.0 * len(metrics), 0.3 * len(rows) * len(families) + 1.5))
        for (i, family), (j, metric) in itertools.product(enumerate(families), enumerate(metrics)):
            ax = axes[i, j]
            if (family, metric) not in columns:
                ax.axis("off")
                continue
            relative = metric == RELATIVE
            for k, ((source, frame), colour) in enumerate(zip(sources.items(), colours)):
                values = frame.reindex(index=rows, columns=[(family, metric)]).iloc[:, 0].to_numpy(dtype=float)
                spread = errors.get(source)
                xerr = None
                if relative and spread is not None:
                    xerr = pd.to_numeric(spread.reindex(index=rows, columns=[(family, metric)]).iloc[:, 0],
                                         errors="coerce").to_numpy(dtype=float)
                    xerr = np.where(np.isnan(values), np.nan, xerr)
                    xerr = None if np.isnan(xerr).all() else np.nan_to_num(xerr)
                offset = (k - 0.5) * height
                ax.barh(y + offset, np.nan_to_num(values), height=height, color=colour, label=source, xerr=xerr,
                        error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "0.3"})
                for missing in y[np.isnan(values)]:
                    ax.text(0, missing + offset, " n/a", va="center", fontsize=6, color="grey")
            if relative:
                ax.axvline(0, color="0.3", linewidth=0.8)
                ax.set_xlabel(RELATIVE_LABEL, fontsize=7)
            ax.set_title(f"{family} {metric}" + (" − VAE" if relative else ""), fontsize=10)
            ax.tick_params(labelsize=7)
        axes[0, 0].set_yticks(y, rows)
        axes[0, 0].invert_yaxis()
        handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for colour in colours]
        fig.legend(handles, list(sources), loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False, ncols=len(sources))
        if caption:
            fig.suptitle(textwrap.fill(caption, 110), fontsize=10, y=1.02)
        fig.tight_layout()
    return save(fig, out_dir, name)
