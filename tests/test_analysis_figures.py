"""Figures of analysis/figures.py: the silhouette score, and each figure on small hand-made inputs."""
import math

import numpy as np
import pandas as pd
import pytest

from analysis import figures
from benchmarks import plan
from benchmarks.train import train_run

from .conftest import DATA_DIR

COLUMNS = ["experiment", "row", "method", "dataset", "setting", "seed", "run_id", "status", "run_dir"]


def assert_figures(paths, stems):
    assert sorted(p.name for p in paths) == sorted(f"{s}.{e}" for s in stems for e in ("png", "pdf"))
    for path in paths:
        head = path.read_bytes()[:4]
        assert head == (b"\x89PNG" if path.suffix == ".png" else b"%PDF")
        assert 1000 < path.stat().st_size < 2_000_000, path


def brute_silhouette(x, y):
    scores = []
    for i in range(len(x)):
        d = np.linalg.norm(x - x[i], axis=1)
        same = (y == y[i]) & (np.arange(len(x)) != i)
        if not same.any():
            scores.append(0.0)
            continue
        a = d[same].mean()
        b = min(d[y == k].mean() for k in set(y) - {y[i]})
        scores.append((b - a) / max(a, b))
    return float(np.mean(scores))


# --------------------------------------------------------------------------- silhouette


def test_silhouette_of_two_well_separated_clusters_is_close_to_one():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(10, 0.1, (50, 2))])
    assert figures.silhouette(x, [0] * 50 + [1] * 50) > 0.97


def test_silhouette_of_mixed_labels_is_near_zero_and_of_swapped_labels_negative():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2))
    assert abs(figures.silhouette(x, rng.integers(0, 4, 400))) < 0.05  # labels unrelated to position
    clusters = np.concatenate([rng.normal(0, 0.1, (30, 2)), rng.normal(5, 0.1, (30, 2))])
    crossed = np.tile([0, 1], 30)  # each label takes half of each cluster
    assert abs(figures.silhouette(clusters, crossed)) < 0.05
    wrong = np.array([0] * 29 + [1] + [1] * 29 + [0])  # one point of each cluster in the other's group
    right = np.array([0] * 30 + [1] * 30)
    assert figures.silhouette(clusters, wrong) < figures.silhouette(clusters, right)


def test_silhouette_matches_the_definition_with_singletons_and_string_labels():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3))
    y = rng.integers(0, 5, 40)
    y[7] = 9  # a group of one scores 0
    assert figures.silhouette(x, y) == pytest.approx(brute_silhouette(x, y), abs=1e-12)
    assert figures.silhouette(x, y.astype(str)) == pytest.approx(brute_silhouette(x, y), abs=1e-12)
    assert math.isnan(figures.silhouette(x, np.zeros(40)))  # one group: undefined


# --------------------------------------------------------------------------- latent space


@pytest.fixture(scope="module")
def latent_runs(tmp_path_factory):
    """latent_space under smoke, seed 0: BN-VAE / random and Scale-VAE / by_label trained (tiny runs),
    the rest pending; plus a seed-1 'done' row whose directory does not exist (must not be read)."""
    root = tmp_path_factory.mktemp("latent")
    cache = root / "cache"
    records = []
    for p in plan.expand("latent_space", "smoke", seeds=1):
        record = dict(experiment="latent_space", row=p.row, method=p.config.model, dataset=p.dataset,
                      setting=p.setting, seed=p.seed, run_id=p.run_id, status="pending", run_dir="")
        if (p.row, p.setting) in {("bn_vae(0.6)", "batching=random"), ("scale_vae(1.1,1)", "batching=by_label")}:
            run_dir, status = train_run(p.config, results_dir=root / "results", data_dir=DATA_DIR,
                                        cache_dir=cache, log=lambda line: None)
            assert status == "done"
            record.update(status="done", run_dir=str(run_dir))
            records.append({**record, "seed": 1, "run_id": p.run_id + "-seed1", "run_dir": str(root / "missing")})
        records.append(record)
    return pd.DataFrame(records, columns=COLUMNS), cache


def test_latent_space_draws_run_panels_with_finite_silhouettes(latent_runs, tmp_path):
    runs, cache = latent_runs
    result = figures.latent_space(runs, tmp_path / "out", data_dir=DATA_DIR, cache_dir=cache)
    assert_figures(result["paths"], ["latent_space"])
    assert set(result["silhouette"]) == {("bn_vae(0.6)", "batching=random"), ("scale_vae(1.1,1)", "batching=by_label")}
    assert all(-1 <= s <= 1 for s in result["silhouette"].values())
    seeds = result["seeds"]  # every finished run with a record once; the fixture's seed-1 runs have none
    assert sorted(zip(seeds["row"], seeds["setting"], seeds["seed"])) == [
        ("bn_vae(0.6)", "batching=random", 0), ("scale_vae(1.1,1)", "batching=by_label", 0)]
    assert dict(zip(zip(seeds["row"], seeds["setting"]), seeds["silhouette"])) == result["silhouette"]


def test_decoder_means_are_two_dimensional_with_component_labels(latent_runs):
    runs, cache = latent_runs
    run_dir = runs[(runs.status == "done") & (runs.seed == 0)].run_dir.iloc[0]
    means, labels = figures.decoder_means(run_dir, data_dir=DATA_DIR, cache_dir=cache, limit=30)
    assert means.shape == (30, 2) and np.isfinite(means).all()
    assert labels.shape == (30,) and set(labels) <= set(range(16))
    assert figures.plane(np.ones((5, 4))).shape == (5, 2) and figures.plane(np.ones((5, 1))).shape == (5, 2)


def test_latent_space_without_finished_runs_writes_nothing(latent_runs, tmp_path):
    runs, _ = latent_runs
    pending = runs.assign(status="pending")
    result = figures.latent_space(pending, tmp_path / "out")
    assert result["paths"] == [] and result["silhouette"] == {} and result["seeds"].empty
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- training curves


def fake_run(tmp_path, run_id, columns):
    run_dir = tmp_path / "runs" / run_id
    run_dir.mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2, 3], "lr": 0.001, "train_loss": [9.0, 8.0, 7.0], **columns}).to_csv(
        run_dir / "history.csv", index=False)
    return str(run_dir)


def test_training_curves_average_seeds_and_skip_rows_without_the_metric(tmp_path):
    latent = {"valid_kl": [1.0, 2.0, 3.0], "valid_mi": [0.5, 1.0, 1.5], "valid_au": [1, 2, 2]}
    shifted = {k: [v + 1 for v in values] for k, values in latent.items()}
    specs = [  # (row, dataset, seed, status, history columns)
        ("vae", "yahoo_small", 0, "done", latent),
        ("vae", "yahoo_small", 1, "done", shifted),
        ("lstm_lm", "yahoo_small", 0, "done", {}),
        ("bn_vae(0.6)", "yahoo_small", 0, "failed", latent),
        ("vae", "yelp_small", 0, "done", latent),
    ]
    runs = pd.DataFrame([dict(experiment="table1", row=row, method=row.split("(")[0], dataset=dataset, setting="",
                              seed=seed, run_id=f"{dataset}-{row}-{seed}", status=status,
                              run_dir=fake_run(tmp_path, f"{dataset}-{row}-{seed}", columns))
                         for row, dataset, seed, status, columns in specs], columns=COLUMNS)
    runs.loc[len(runs)] = ["table1", "vae", "vae", "yahoo_small", "", 2, "x", "pending", ""]

    curves = figures.mean_curves(figures.finished(runs, "table1")[lambda r: r.dataset == "yahoo_small"])
    vae = curves[curves.label == "vae"]
    assert vae.epoch.tolist() == [1, 2, 3] and vae.valid_kl.tolist() == [1.5, 2.5, 3.5]
    assert curves[curves.label == "lstm_lm"][list(figures.CURVES)].isna().all().all()

    paths = figures.training_curves(runs, tmp_path / "out")
    assert_figures(paths, ["curves_yahoo_small", "curves_yelp_small"])
    assert figures.training_curves(runs, tmp_path / "none", experiment="table3") == []


# --------------------------------------------------------------------------- paper comparison


def test_paper_comparison_bars_with_missing_cells(tmp_path):
    columns = pd.MultiIndex.from_product([["Yahoo", "Yelp"], ["NLL", "KL", "MI", "AU"]])
    paper = pd.DataFrame(np.arange(24, dtype=float).reshape(3, 8), index=["lstm_lm", "vae", "bn_vae(0.6)"],
                         columns=columns)
    paper.loc["lstm_lm", (slice(None), ["KL", "MI", "AU"])] = np.nan  # the paper's "-"
    reproduced = paper.drop(index="bn_vae(0.6)").drop(columns=[("Yelp", "AU")]) * 0.9
    reproduced.loc["scale_vae(1.1,1)"] = 1.0  # a row the paper frame lacks
    reproduced.loc["vae", ("Yahoo", "KL")] = np.nan
    paths = figures.paper_comparison_bars(reproduced, paper, tmp_path / "out",
                                          caption="quick profile: absolute values differ in scale from the paper's")
    assert_figures(paths, ["table1_vs_paper"])
    paths = figures.paper_comparison_bars(reproduced[[("Yahoo", "NLL")]], paper[[("Yahoo", "NLL")]],
                                          tmp_path / "out", name="single")
    assert_figures(paths, ["single"])


def drawn_bars(fig, title):
    """{source: bar lengths} and {source: error-bar half-widths or None} of the panel titled ``title``."""
    from matplotlib.container import BarContainer
    ax = next(a for a in fig.axes if a.get_title() == title)
    bars = {c.get_label(): [p.get_width() for p in c.patches] for c in ax.containers if isinstance(c, BarContainer)}
    spans = {}
    for c in ax.containers:
        if isinstance(c, BarContainer):
            segments = c.errorbar.lines[2][0].get_segments() if c.errorbar is not None else None
            spans[c.get_label()] = None if segments is None else [(s[1, 0] - s[0, 0]) / 2 for s in segments]
    return ax, bars, spans


def test_paper_comparison_draws_nll_as_the_difference_to_vae(tmp_path, monkeypatch):
    drawn = []
    save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, out_dir, stem: (drawn.append(fig), save(fig, out_dir, stem))[1])
    columns = pd.MultiIndex.from_product([["Yahoo", "Yelp"], ["NLL", "KL"]])
    rows = ["lstm_lm", "vae", "bn_vae(0.6)", "scale_vae(1.1,1)"]
    paper = pd.DataFrame([[320.0, np.nan, 350.0, np.nan], [328.0, 0.0, 357.0, 0.0], [327.0, 8.0, 356.0, 6.0],
                          [325.0, 9.0, 354.0, 8.0]], index=rows, columns=columns)
    reproduced = pd.DataFrame([[120.0, np.nan, 150.0, np.nan], [128.0, 0.5, np.nan, 0.2],
                               [126.5, 4.0, 149.0, 3.0]], index=["lstm_lm", "vae", "scale_vae(1.1,1)"], columns=columns)
    std = reproduced * 0 + 0.25
    std.loc["vae", ("Yahoo", "NLL")] = 0.5
    paths = figures.paper_comparison_bars(reproduced, paper, tmp_path / "out", reproduced_std=std)
    assert_figures(paths, ["table1_vs_paper"])
    fig, = drawn

    ax, bars, spans = drawn_bars(fig, "Yahoo NLL − VAE")
    assert ax.get_xlabel() == "NLL − VAE's NLL (nats; lower is better)"
    assert bars["paper"] == pytest.approx([-8.0, 0.0, -1.0, -3.0])
    assert bars["reproduced"] == pytest.approx([-8.0, 0.0, 0.0, -1.5])  # bn_vae not run: no bar (n/a)
    assert "n/a" in [t.get_text().strip() for t in ax.texts]
    assert spans["reproduced"] == pytest.approx([0.25, 0.5, 0.0, 0.25]) and spans["paper"] is None
    _, bars, _ = drawn_bars(fig, "Yelp NLL − VAE")  # our VAE lacks Yelp's NLL: no bar of ours there
    assert bars["paper"] == pytest.approx([-7.0, 0.0, -1.0, -3.0]) and bars["reproduced"] == [0.0] * 4
    _, bars, spans = drawn_bars(fig, "Yahoo KL")  # the other metrics as they are
    assert bars["paper"] == pytest.approx([0.0, 0.0, 8.0, 9.0]) and bars["reproduced"] == pytest.approx([0, 0.5, 0, 4.0])
    assert spans["reproduced"] is None

    relative = figures.relative_to_reference(paper)
    assert relative[("Yelp", "NLL")].tolist() == [-7.0, 0.0, -1.0, -3.0]
    assert relative[("Yelp", "KL")].equals(paper[("Yelp", "KL")])
    assert figures.relative_to_reference(paper.drop(index="vae"))[("Yahoo", "NLL")].isna().all()
