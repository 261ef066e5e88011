"""The whole suite on a user's own corpus: python -m benchmarks.run --datasets DIR [--corpus-like yahoo|yelp],
then analysis/make_tables.py, whose tables, captions and report name the corpus."""
import json
import random

import pytest

from analysis import claims, collect, make_tables, tables
from benchmarks import calibration, data, plan, run, train
from benchmarks.config import load_profile, resolve
from benchmarks.metrics import METRICS_VERSION

SMOKE_MAX_LEN = 20  # benchmarks/profiles.toml [smoke]: longer documents are dropped


def write_corpus(folder, data_dir, labelled=False, seed=0, sizes=(300, 60, 60)):
    """A few hundred short documents sampled from Yahoo's validation file (cut to 6-18 tokens)."""
    lines = [l for l in (data_dir / "yahoo_data" / "yahoo.valid.txt").read_text().split("\n") if l.strip()]
    rng = random.Random(seed)
    docs = [" ".join(line.split()[:rng.randint(6, 18)]) for line in rng.sample(lines, sum(sizes))]
    folder.mkdir(parents=True)
    start = 0
    for split, n in zip(data.SPLITS, sizes):
        chosen = docs[start:start + n]
        start += n
        text = [f"{i % 3}\t{d}" if labelled else d for i, d in enumerate(chosen)]
        (folder / f"{split}.txt").write_text("\n".join(text) + "\n")
    return folder


@pytest.fixture
def corpus(tmp_path, data_dir):
    return write_corpus(tmp_path / "my_corpus", data_dir)


@pytest.fixture
def no_calibration(monkeypatch):
    monkeypatch.setattr(calibration, "calibrate", lambda *args, **kwargs: {})  # tests/test_estimate.py times it


def test_a_sweep_on_a_corpus_directory_gives_tables_that_name_it(tmp_path, corpus, data_dir, no_calibration, capsys):
    results = tmp_path / "results"
    models = "vae,scale_vae(1.1,1|1.1,7)"
    code = run.main(["--profile", "smoke", "--only", "table1", "--models", models, "--seeds", "1",
                     "--datasets", str(corpus), "--results", str(results), "--data-dir", str(data_dir),
                     "--cache-dir", str(tmp_path / "cache"), "--offline", "--jobs", "1"])
    assert code == 0, capsys.readouterr()
    expected = {c.run_id for c in plan.unique_runs(plan.plan("smoke", ["table1"], 1, run.split_list(models),
                                                              [str(corpus)]))}
    configs = {p.parent.name: json.loads(p.read_text()) for p in (results / "runs").glob("*/config.json")}
    assert set(configs) == expected and len(expected) == 2
    assert all((results / "runs" / r / "metrics.json").exists() for r in expected)
    assert {(c["dataset"], c["family"]) for c in configs.values()} == {(str(corpus), "yahoo")}
    assert all(r.startswith("my_corpus-") for r in expected)
    # make_tables finds the corpus and its family in the runs' configurations: no option needed
    assert make_tables.main(["--results", str(results), "--no-figures", "--no-pdf"]) == 0
    latex = (results / "tables" / "table1.tex").read_text()
    caption = next(line for line in latex.splitlines() if line.startswith(r"\caption"))
    assert "User corpus my" in caption and str(corpus).replace("_", r"\_") in caption and "Yahoo-like" in caption
    assert r"\multicolumn{4}{c}{my\_corpus}" in latex and r"{c}{Yahoo}" not in latex and r"yahoo\_small" not in latex
    assert "Scale-VAE (1.1, 1 $\\mid$ 1.1, 7) &" in latex and "--- & --- & --- & --- " in latex  # rows run, rows not
    report = (results / "REPORT.md").read_text()
    assert report.startswith("# Scale-VAE's comparison on your corpus: `my_corpus`")
    assert "| Scale-VAE(1.1, 1) has a lower NLL than VAE on my_corpus |" in report
    assert "on Yelp" not in report and "yelp_small" not in report and "yahoo_small" not in report
    assert "- table4: skipped on" in report and "- latent_space: skipped on" in report


def test_corpus_like_chooses_the_side_of_the_rows_and_the_settings(corpus):
    row = "scale_vae(1.1,1|1.1,7)"
    yahoo = {p.row: p.config for p in plan.plan("quick", ["table1"], 1, datasets=[str(corpus)])}
    yelp = {p.row: p.config for p in plan.plan("quick", ["table1"], 1, datasets=[str(corpus)], corpus_like="yelp")}
    assert yahoo[row].hyperparameters["f_epo"] == 1 and yelp[row].hyperparameters["f_epo"] == 7
    assert yahoo[row].profile == load_profile("quick")  # Yahoo's settings: the profile's own
    assert (yelp[row].profile.train_docs, yelp[row].profile.test_docs) == (6000, 1000)  # table1's yelp_small settings
    assert (yahoo["vae"].family, yelp["vae"].family) == ("yahoo", "yelp") and yahoo["vae"].run_id != yelp["vae"].run_id
    assert data.get_dataset(str(corpus), family="yelp").family == "yelp"
    assert data.get_dataset(str(corpus)).family is None  # benchmarks.train without --corpus-like: name a side
    # the same run by hand: benchmarks.train --dataset DIR --corpus-like yahoo
    assert resolve("vae", str(corpus), "quick", 0, [], "yahoo").run_id == yahoo["vae"].run_id


def test_experiments_that_cannot_run_on_a_corpus_are_skipped_with_one_line(tmp_path, corpus, data_dir, no_calibration,
                                                                          capsys):
    assert run.main(["--profile", "smoke", "--dry-run", "--datasets", str(corpus)]) == 0
    out = capsys.readouterr().out.splitlines()
    skipped = [line for line in out if ": skipped on " in line]
    assert [line.split(":")[0] for line in skipped] == ["ladder", "latent_space", "precision", "scale_regime",
                                                          "scale_regime_f_average", "table4"]
    assert "label" in skipped[5] and not any(line.startswith(("latent_space ", "precision ", "table4 ")) for line in out)
    labelled = write_corpus(tmp_path / "labelled", data_dir, labelled=True)
    assert {p.experiment for p in plan.plan("smoke", datasets=[str(labelled)])} == \
        set(plan.available()) - {"ladder", "latent_space", "precision", "scale_regime",
                                 "scale_regime_f_average"}  # a labelled corpus has Table 4's probe
    assert run.main(["--profile", "smoke", "--dry-run", "--only", "latent_space", "--datasets", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none of the selected experiments runs on a user corpus" in err


def bad_corpus(tmp_path, data_dir, kind):
    folder = tmp_path / "bad"
    if kind == "missing directory":
        return folder
    write_corpus(folder, data_dir, labelled=kind == "mixed labels")
    if kind == "missing split":
        (folder / "valid.txt").unlink()
    elif kind == "empty file":
        (folder / "test.txt").write_text("\n  \n")
    elif kind == "mixed labels":
        (folder / "train.txt").write_text((folder / "train.txt").read_text() + "a line without a label\n")
    elif kind == "too long for the profile":
        (folder / "train.txt").write_text(" ".join(["word"] * (SMOKE_MAX_LEN + 1)) + "\n")
    return folder


@pytest.mark.parametrize("kind, fragment", [
    ("missing directory", "does not exist"),
    ("missing split", "has no valid.txt"),
    ("empty file", "holds no documents (empty file)"),
    ("mixed labels", "label every line"),
    ("too long for the profile", "keeps documents of at most 20 tokens"),
])
def test_a_bad_corpus_is_one_line_exit_2_and_nothing_written(tmp_path, data_dir, kind, fragment, capsys):
    folder = bad_corpus(tmp_path, data_dir, kind)
    results = tmp_path / "results"
    code = run.main(["--profile", "smoke", "--only", "core", "--seeds", "1", "--datasets", str(folder),
                     "--results", str(results), "--cache-dir", str(tmp_path / "cache"), "--offline"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and fragment in err and not results.exists()
    if kind != "too long for the profile":  # the same line as benchmarks.train --dataset DIR
        assert train.main(["--model", "vae", "--dataset", str(folder), "--profile", "smoke",
                           "--results", str(tmp_path / "train"), "--cache-dir", str(tmp_path / "cache")]) == 2
        assert capsys.readouterr().err == err


@pytest.mark.parametrize("extra, fragment", [
    (["--datasets", "yahoo_small,{corpus}"], "mixes registered datasets (yahoo_small) with corpus directories"),
    (["--datasets", "{corpus}", "--corpus-like", "imdb"], "--corpus-like must be one of yahoo, yelp"),
    (["--corpus-like", "yelp"], "--corpus-like yelp is for user corpora"),
])
def test_bad_corpus_options_are_one_line_and_exit_2(tmp_path, corpus, extra, fragment, capsys):
    extra = [e.format(corpus=corpus) for e in extra]
    assert run.main(["--profile", "smoke", "--dry-run", "--only", "core", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def fake_run(results, planned, nll):
    """A finished run with known metrics (no training)."""
    run_dir = results / "runs" / planned.run_id
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(planned.config.to_json()))
    (run_dir / "metrics.json").write_text(json.dumps({
        "model": planned.config.model, "dataset": planned.dataset, "profile": "smoke", "seed": planned.seed,
        "run_id": planned.run_id, "nll": nll, "kl": 1.0, "mi": 0.5, "au": 2, "train_seconds": 60.0,
        "eval_seconds": 1.0, "metrics_version": METRICS_VERSION}))


def test_two_yelp_like_corpora_get_a_column_group_each_and_the_yelp_claims(tmp_path, data_dir):
    corpora = [str(write_corpus(tmp_path / name, data_dir, seed=i)) for i, name in enumerate(("reviews", "tweets"))]
    results = tmp_path / "results"
    scale = "scale_vae(1.1,1|1.1,7)"
    for p in plan.plan("smoke", ["table1"], datasets=corpora, corpus_like="yelp"):
        if p.row in ("vae", scale):
            fake_run(results, p, (100.0 if p.row == "vae" else 90.0) + p.seed + 5 * corpora.index(p.dataset))
    runs = collect.collect(results, "smoke", *collect.infer_datasets(results, "smoke")[:2])
    table = tables.table1(runs, "smoke")
    assert [c.group for c in table.columns] == ["reviews"] * 4 + ["tweets"] * 4
    assert table.mean(scale, "tweets_nll") == pytest.approx(97.0) and "Yelp-like" in table.caption
    assert "reviews" in table.caption and "tweets" in table.caption
    texts = [v.claim.text for v in claims.check_all({"table1": table}) if v.verdict == claims.HOLDS]
    assert "Scale-VAE(1.1, 7) has a lower NLL than VAE on reviews" in texts
    assert "Scale-VAE(1.1, 7) has a lower NLL than VAE on tweets" in texts
    assert not any("Yahoo" in t or "(1.1, 1)" in t for t in texts)  # the Yahoo side is not what ran
    assert make_tables.main(["--results", str(results), "--no-figures", "--no-pdf"]) == 0
    assert "reviews_nll_mean" in (results / "tables" / "table1.csv").read_text()
