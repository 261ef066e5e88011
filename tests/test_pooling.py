"""Several results stores read as one (benchmarks/records.py ``Pool``): by make_tables, by
benchmarks.summarize and by analysis.collect; one run id with other metrics in two stores is refused."""
import json

import pytest

from analysis import collect, make_tables
from benchmarks import plan, summarize
from benchmarks.errors import UserError
from benchmarks.metrics import METRICS_VERSION
from benchmarks.records import Pool
from .helpers import write_finished_run

SCALE = "scale_vae(1.1,1|1.1,7)"


def write_run(results, planned, **metrics):
    """A finished smoke run with known metrics (no training): NLL 100 + seed unless given."""
    return write_finished_run(results, planned, **{"nll": 100.0 + planned.seed, "train_seconds": 60.0, **metrics})


@pytest.fixture
def stores(tmp_path):
    """Table 1's VAE and Scale-VAE on Yahoo, seeds 0-2 in store a and seeds 2-4 in store b: seed 2 in both."""
    runs = {(p.row, p.dataset, p.seed): p for p in plan.expand("table1", "smoke")}
    for row in ("vae", SCALE):
        for seed in range(5):
            for store in ("a",) * (seed <= 2) + ("b",) * (seed >= 2):
                write_run(tmp_path / store, runs[(row, "yahoo_small", seed)], nll=(90.0 if row == SCALE else 100.0) + seed)
    return tmp_path / "a", tmp_path / "b", runs


def test_a_run_in_two_stores_with_the_same_metrics_is_one_run(stores, tmp_path, capsys):
    a, b, runs = stores
    frame = collect.collect([a, b], "smoke", experiments=["table1"], models=["vae", SCALE])
    done = frame[frame["status"] == "done"]
    assert len(done) == len(done.drop_duplicates("run_id")) == 10  # seed 2 once per row
    shared = runs[("vae", "yahoo_small", 2)].run_id
    assert frame.set_index("run_id").loc[shared, "run_dir"] == str(a / "runs" / shared)  # the first store's copy
    late = runs[("vae", "yahoo_small", 4)].run_id
    assert frame.set_index("run_id").loc[late, "run_dir"] == str(b / "runs" / late)  # each run its own store
    assert len(summarize.load_runs([a, b])) == 10
    assert summarize.main(["--results", str(a), "--results", str(b), "--keys", "nll"]) == 0
    assert "| yahoo_small | smoke | vae | 5 | 102.00 ± 1.58 |" in capsys.readouterr().out
    out = tmp_path / "pooled" / "tables"
    assert make_tables.main(["--results", str(a), "--results", str(b), "--out", str(out), "--no-figures",
                             "--no-pdf"]) == 0
    assert "| vae | Yahoo NLL | 102.0 ± 1.6 |" in (out / "comparison.md").read_text()
    assert "Runs: 10 of " in (tmp_path / "pooled" / "REPORT.md").read_text()


def test_a_run_in_two_stores_with_other_metrics_is_refused_in_one_line_naming_both(stores, tmp_path, capsys):
    a, b, runs = stores
    shared = runs[(SCALE, "yahoo_small", 2)].run_id
    write_run(b, runs[(SCALE, "yahoo_small", 2)], nll=95.5)
    with pytest.raises(UserError, match="other metrics"):
        Pool([a, b])
    for main, extra in ((make_tables.main, ["--out", str(tmp_path / "t"), "--no-figures", "--no-pdf"]),
                        (summarize.main, [])):
        capsys.readouterr()
        assert main(["--results", str(a), "--results", str(b), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(a / "runs" / shared) in err and str(b / "runs" / shared) in err


def test_runs_of_another_metrics_version_in_a_pooled_store_are_refused(stores, tmp_path, capsys):
    a, b, runs = stores
    write_run(b, runs[("vae", "yahoo_small", 4)], metrics_version=METRICS_VERSION - 1)
    assert make_tables.main(["--results", str(a), "--results", str(b), "--out", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{b} holds 1 run(s) of version {METRICS_VERSION - 1}" in err
    assert f"python -m benchmarks.evaluate --results {b}" in err and f"--results {a}" not in err


def test_several_stores_need_an_out_directory(stores, capsys):
    a, b, _ = stores
    assert make_tables.main(["--results", str(a), "--results", str(b), "--no-figures", "--no-pdf"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out DIR" in err
    assert not (a / "tables").exists() and not (b / "tables").exists()


def test_a_finished_copy_is_read_before_a_failed_one(stores):
    a, b, runs = stores
    planned = runs[("bn_vae(0.6)", "yahoo_small", 0)]
    failed = a / "runs" / planned.run_id
    failed.mkdir(parents=True)
    (failed / "failed.json").write_text(json.dumps({"reason": "loss became nan in epoch 2", "epoch": 2}))
    assert Pool([a, b]).locate(planned.run_id) == ("failed", failed)
    done = write_run(b, planned)
    assert Pool([a, b]).locate(planned.run_id) == ("done", done)
    assert Pool([a, b]).locate("no-such-run") == ("pending", a / "runs" / "no-such-run")
