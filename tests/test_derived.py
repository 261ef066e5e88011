"""A run's record is enough (benchmarks/derived.py): scoring a run writes what Table 4, Table 5 and the
latent-space figure need of it, and make_tables gives the same tables and figure data from a store whose
checkpoints were left behind by ``benchmarks.records export``."""
import csv
import shutil

import numpy as np
import pytest

from analysis import figures, make_tables
from analysis import generation as table5
from analysis import probe as table4
from benchmarks import derived, evaluate, generation, plan, probe, records
from benchmarks.store import read_json, write_json
from benchmarks.train import train_run

from .conftest import DATA_DIR

RECORDS = (probe.RECORD, generation.RECORD, generation.SAMPLES, generation.PPL_RECORD, derived.LATENT)
# (experiment, row, setting) in the order they are trained: the LM after BN-VAE and before Scale-VAE, so that
# each way of pairing a generating run with its LM is taken (the LM scores BN-VAE's text, Scale-VAE its own)
RUNS = {"probe": ("table4", "vae", ""), "bn": ("table5", "bn_vae(0.6)", ""), "lm": ("table5", "lstm_lm", ""),
        "scale": ("table5", "scale_vae(1.1,1)", ""), "latent": ("latent_space", "bn_vae(0.6)", "batching=random")}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A smoke store with a Table 4 run, Table 5's three runs and a latent-space run, seed 0."""
    root = tmp_path_factory.mktemp("derived")
    planned = {(p.experiment, p.row, p.setting): p for name in ("table4", "table5", "latent_space")
               for p in plan.expand(name, "smoke", seeds=1)}
    dirs = {}
    for key, spec in RUNS.items():
        dirs[key], status = train_run(planned[spec].config, results_dir=root / "results", data_dir=DATA_DIR,
                                      cache_dir=root / "cache", download=False, log=lambda line: None)
        assert status == "done"
    return root / "results", root / "cache", dirs


def without_records(run_dir, target):
    shutil.copytree(run_dir, target)
    for name in RECORDS:
        (target / name).unlink(missing_ok=True)
    return target


def test_scoring_writes_the_records_each_run_needs(store):
    _, _, dirs = store
    present = {key: {name for name in RECORDS if (run_dir / name).exists()} for key, run_dir in dirs.items()}
    assert present == {"probe": {"probe.json"},  # labelled yelp_small: the probe; no generation there
                       "bn": {"generation.json", "samples.txt", "generation_ppl.json"},  # scored by the LM
                       "lm": {"generation.json", "samples.txt"},
                       "scale": {"generation.json", "samples.txt", "generation_ppl.json"},  # scored by itself
                       "latent": {"probe.json", "latent_means.csv"}}  # synthetic: labelled, no generation
    for key in ("bn", "scale"):
        ppl = read_json(dirs[key] / "generation_ppl.json")
        assert ppl["lm_run"] == dirs["lm"].name and ppl["samples_sha256"] == read_json(
            dirs[key] / "generation.json")["samples_sha256"]
    assert all(read_json(d / "metrics.json")["records_seconds"] > 0 for d in dirs.values())
    assert all((dirs[key] / name).stat().st_size < 150_000 for key, names in present.items() for name in names)


def test_the_records_hold_what_the_analysis_computes_from_the_checkpoints(store, tmp_path, monkeypatch):
    _, cache, dirs = store
    options = {"data_dir": DATA_DIR, "cache_dir": cache}
    copies = {key: without_records(run_dir, tmp_path / run_dir.name) for key, run_dir in dirs.items()}
    computed = {"probe": table4.linear_probe(copies["probe"], **options),
                "generation": {key: table5.generation_metrics(copies[key], dirs["lm"], **options) for key in ("bn", "scale")},
                "latent": figures.decoder_means(copies["latent"], **options)}
    with monkeypatch.context() as patch:
        patch.setattr(derived, "load_trained", lambda *a, **k: pytest.fail("read a checkpoint"))
        assert table4.linear_probe(dirs["probe"], **options) == computed["probe"]
        for key in ("bn", "scale"):
            assert table5.generation_metrics(dirs[key], dirs["lm"], **options) == computed["generation"][key]
        means, labels = figures.decoder_means(dirs["latent"], **options)
    assert np.array_equal(means, computed["latent"][0]) and np.array_equal(labels, computed["latent"][1])
    assert means.dtype == np.float64 and means.shape == (40, 2)  # smoke's 40 synthetic test documents, nz 2
    for key in ("bn", "scale"):  # the same draws: the sample itself is the one the checkpoint gives
        assert (copies[key] / "samples.txt").read_bytes() == (dirs[key] / "samples.txt").read_bytes()


def tabulate(results, out, capsys, *extra) -> str:
    """make_tables on ``results`` into ``out``; returns what it wrote on stderr."""
    capsys.readouterr()
    assert make_tables.main(["--results", str(results), "--out", str(out / "tables"), "--profile", "smoke",
                             "--no-pdf", "--data-dir", str(DATA_DIR), *extra]) == 0
    return capsys.readouterr().err


def table(path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        return {row["row"]: row for row in csv.DictReader(fh)}


def silhouettes(report_dir) -> list[str]:
    return [line for line in (report_dir / "REPORT.md").read_text().splitlines() if line.startswith("- bn_vae(0.6), batching")]


def test_make_tables_gives_the_same_tables_and_figure_data_without_checkpoints(store, tmp_path, capsys):
    results, _, dirs = store
    assert tabulate(results, tmp_path / "before", capsys).count("warning") == 0
    assert records.main(["export", "--results", str(results), "--to", str(tmp_path / "exported")]) == 0
    assert not list((tmp_path / "exported").rglob("*.pt"))
    assert tabulate(tmp_path / "exported", tmp_path / "after", capsys).count("warning") == 0
    for name in ("table4", "table5"):
        assert (tmp_path / "after" / "tables" / f"{name}.csv").read_text() == \
            (tmp_path / "before" / "tables" / f"{name}.csv").read_text()
    four, five = table(tmp_path / "after/tables/table4.csv"), table(tmp_path / "after/tables/table5.csv")
    assert four["vae"]["acc_100_mean"] and five["bn_vae(0.6)"]["ppl_mean"] and five["scale_vae(1.1,1)"]["dist2_mean"]
    assert silhouettes(tmp_path / "after") == silhouettes(tmp_path / "before") and len(silhouettes(tmp_path / "after")) == 1
    exported = tmp_path / "exported" / "runs" / dirs["latent"].name
    for a, b in zip(figures.decoder_means(exported), figures.decoder_means(dirs["latent"])):
        assert np.array_equal(a, b)


def test_a_missing_ppl_is_computed_from_the_lm_checkpoint_or_left_empty_with_one_line(store, tmp_path, capsys):
    results, _, dirs = store
    shutil.copytree(results, tmp_path / "a", ignore=shutil.ignore_patterns(".partial"))
    bn, scale = (tmp_path / "a" / "runs" / dirs[k].name for k in ("bn", "scale"))
    (bn / generation.PPL_RECORD).unlink()
    assert tabulate(tmp_path / "a", tmp_path / "a", capsys, "--no-figures").count("warning") == 0
    assert read_json(bn / generation.PPL_RECORD) == read_json(dirs["bn"] / generation.PPL_RECORD)  # written by make_tables
    assert records.main(["export", "--results", str(tmp_path / "a"), "--to", str(tmp_path / "b")]) == 0
    (tmp_path / "b" / "runs" / scale.name / generation.PPL_RECORD).unlink()  # no LM checkpoint there to compute it
    err = tabulate(tmp_path / "b", tmp_path / "b", capsys, "--no-figures")
    assert err.count("\n") == 1 and err.startswith(f"warning: {scale.name}: ") and "PPL cell is left empty" in err
    five, before = table(tmp_path / "b/tables/table5.csv"), table(tmp_path / "a/tables/table5.csv")
    assert five["scale_vae(1.1,1)"]["ppl_mean"] == "" and before["scale_vae(1.1,1)"]["ppl_mean"] != ""
    assert {k: v for k, v in five["scale_vae(1.1,1)"].items() if not k.startswith("ppl")} == \
        {k: v for k, v in before["scale_vae(1.1,1)"].items() if not k.startswith("ppl")}  # its other cells stand
    assert five["bn_vae(0.6)"] == before["bn_vae(0.6)"]


def test_rescoring_a_run_scored_before_the_records_writes_them(store, tmp_path):
    results, cache, dirs = store
    for key in ("probe", "bn"):
        run_dir = without_records(dirs[key], tmp_path / "runs" / dirs[key].name)
        values = read_json(run_dir / "metrics.json")
        write_json(run_dir / "metrics.json", {**values, "metrics_version": 1})
        assert evaluate.is_stale(run_dir)
        evaluate.rescore(run_dir, data_dir=DATA_DIR, cache_dir=cache)
        assert not evaluate.is_stale(run_dir)
        for name in RECORDS:
            if name != generation.PPL_RECORD:  # the LM is not in this store
                assert (run_dir / name).exists() == (dirs[key] / name).exists()
                if name.endswith(".json") and (run_dir / name).exists():
                    assert read_json(run_dir / name) == read_json(dirs[key] / name), name
        assert (run_dir / "samples.txt").exists() == (key == "bn")
