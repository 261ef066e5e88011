"""The experiment runner: plans, parallel sweeps, reuse of finished runs, the Dask backend."""

import pytest

from benchmarks.train import TIMING_KEYS as TIMING
from benchmarks import calibration, plan, run
from benchmarks.config import load_profile
from benchmarks.errors import UserError
from benchmarks.store import read_json



@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_experiment_resolves_on_every_profile(profile, capsys, monkeypatch):
    monkeypatch.setattr(calibration, "calibrate", lambda *args, **kwargs: {})  # tests/test_estimate.py times
    planned = plan.plan(profile)
    assert {p.experiment for p in planned} == set(plan.available())
    assert run.main(["--profile", profile, "--dry-run", "--results", "/nonexistent/never-written"]) == 0
    assert "distinct runs" in capsys.readouterr().out


def test_identical_configurations_across_experiments_are_one_run():
    table1 = plan.unique_runs(plan.plan("quick", ["table1"]))
    both = plan.unique_runs(plan.plan("quick", ["table1", "table2"]))
    assert [c.run_id for c in both] == [c.run_id for c in table1]  # Table 2 trains nothing new
    table3 = {p.row: p.run_id for p in plan.expand("table3", "quick") if p.seed == 0}
    table1_yahoo = {p.row: p.run_id for p in plan.expand("table1", "quick") if p.seed == 0 and p.dataset == "yahoo_small"}
    assert table3["scale_vae(1.1,1)"] == table1_yahoo["scale_vae(1.1,1|1.1,7)"]


def test_experiment_settings_apply_per_profile_dataset_and_grid():
    yelp = [p for p in plan.expand("table1", "quick", seeds=1) if p.dataset == "yelp_small"][0]
    assert yelp.config.profile.train_docs == 6000
    yahoo = [p for p in plan.expand("table1", "quick", seeds=1) if p.dataset == "yahoo_small"][0]
    assert yahoo.config.profile == load_profile("quick")
    latent = plan.expand("latent_space", "quick", seeds=1)
    assert {p.config.profile.batching for p in latent} == {"random", "resplit", "by_label"}
    assert {p.config.profile.nz for p in latent} == {2} and len(latent) == 6


def sweep(tmp_path, data_dir, results, *extra):
    return run.main(["--profile", "smoke", "--only", "table1", "--models", "vae,lstm_lm", "--seeds", "2",
                     "--results", str(tmp_path / results), "--data-dir", str(data_dir),
                     "--cache-dir", str(tmp_path / "cache"), "--offline", *extra])


def finished(tmp_path, results):
    return {p.parent.name: read_json(p) for p in (tmp_path / results / "runs").glob("*/metrics.json")}


def test_a_sweep_with_two_workers_trains_each_run_once(tmp_path, data_dir, capsys):
    assert sweep(tmp_path, data_dir, "r", "--jobs", "2") == 0
    runs = finished(tmp_path, "r")
    expected = {c.run_id for c in plan.unique_runs(plan.plan("smoke", ["table1"], 2, ["vae", "lstm_lm"]))}
    assert set(runs) == expected and len(expected) == 4
    assert {m.get("concurrent_runs") for m in runs.values()} == {2}  # Table 2 can tell a shared machine
    assert "[done]" in capsys.readouterr().out
    stamps = {p: (tmp_path / "r" / "runs" / p / "metrics.json").stat().st_mtime_ns for p in runs}
    assert sweep(tmp_path, data_dir, "r", "--jobs", "2") == 0
    assert "0 to train" in capsys.readouterr().out
    assert stamps == {p: (tmp_path / "r" / "runs" / p / "metrics.json").stat().st_mtime_ns for p in runs}


def test_seed_slices_partition_the_plan_and_their_stores_add_up(tmp_path, data_dir, capsys):
    def ids(seeds):
        return {c.run_id for c in plan.unique_runs(plan.plan("quick", ["table1", "scale_regime"], seeds))}
    first, rest = ids(3), ids(plan.parse_seeds("3:5"))
    assert first | rest == ids(None) and not first & rest
    assert ids(plan.parse_seeds("3:9")) == rest  # past an experiment's seeds there is nothing more
    assert {p.seed for p in plan.expand("scale_regime", "quick", plan.parse_seeds("1:2"))} == {1}
    assert sweep(tmp_path, data_dir, "r", "--seeds", "1:2") == 0  # a second machine's share first
    assert {read_json(p.parent / "config.json")["seed"] for p in (tmp_path / "r" / "runs").glob("*/metrics.json")} == {1}
    assert sweep(tmp_path, data_dir, "r", "--seeds", "1") == 0  # the first machine's share
    capsys.readouterr()
    assert sweep(tmp_path, data_dir, "r", "--dry-run") == 0  # both seeds, as one machine would have run them
    assert ", 0 to train" in capsys.readouterr().out
    assert set(finished(tmp_path, "r")) == {c.run_id for c in plan.unique_runs(plan.plan("smoke", ["table1"], 2, ["vae", "lstm_lm"]))}


def test_the_dask_backend_gives_the_same_results_as_the_local_one(tmp_path, data_dir):
    distributed = pytest.importorskip("distributed")
    assert sweep(tmp_path, data_dir, "local", "--jobs", "2") == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert sweep(tmp_path, data_dir, "dask", "--jobs", "2", "--backend", "dask", "--scheduler", cluster.scheduler_address) == 0
    local, remote = finished(tmp_path, "local"), finished(tmp_path, "dask")
    assert set(local) == set(remote) and len(local) == 4
    for run_id in local:
        assert {k: v for k, v in local[run_id].items() if k not in TIMING} == \
               {k: v for k, v in remote[run_id].items() if k not in TIMING}


def test_failures_are_listed_and_make_the_exit_code_non_zero(tmp_path, data_dir, capsys, monkeypatch):
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "boom.toml").write_text(
        'rows = ["vae"]\nseeds = 1\n[datasets]\nsmoke = ["yahoo_small"]\n'
        '[settings.smoke]\nlr = 1e30\nclip = 1e30\noptimizer = "sgd"\nmax_epochs = 1\n')
    monkeypatch.setattr(plan, "EXPERIMENTS_DIR", tmp_path / "exp")
    code = run.main(["--profile", "smoke", "--only", "boom", "--results", str(tmp_path / "r"), "--data-dir", str(data_dir),
                     "--cache-dir", str(tmp_path / "cache"), "--offline", "--jobs", "1"])
    out = capsys.readouterr().out
    assert code == 1 and "1 failed" in out and "loss became" in out


def test_ctrl_c_says_how_to_go_on_instead_of_a_traceback(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(run.execution, "execute", interrupted)
    code = run.main(["--profile", "smoke", "--only", "core", "--seeds", "1", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 130 and "run the same command again" in err and "Traceback" not in err


@pytest.mark.parametrize("args, fragment", [
    (["--only", "table9"], "unknown experiment 'table9'"),
    (["--models", "nope"], "'nope' is in none of the selected experiments"),
    (["--backend", "dask"], "needs --scheduler"),
    (["--seeds", "0"], "--seeds takes N >= 1"),
    (["--seeds", "4:2"], "FROM:TO with 0 <= FROM < TO"),
    (["--seeds", "two"], "got 'two'"),
    (["--profile", "huge"], "unknown profile 'huge'"),
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--device", "gpu"], "--device takes auto, cpu, cuda"),
    (["--device", "cuda:0"], "use --device cpu"),
    (["--eval-memory-mb", "0"], "--eval-memory-mb must be >= 1"),
])
def test_bad_input_gives_one_line_and_exit_code_2(args, fragment, capsys):
    assert run.main(["--dry-run", "--profile", "smoke", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_malformed_experiment_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "bad.toml").write_text("rows = [\n")
    monkeypatch.setattr(plan, "EXPERIMENTS_DIR", tmp_path)
    with pytest.raises(UserError, match="bad.toml: malformed TOML"):
        plan.expand("bad", "smoke")


def test_model_lists_keep_the_commas_of_the_paper_rows():
    assert run.split_list("vae, mae(1,0.2|2,0.2),scale_vae*(0.7,1|1.1,7)") == \
        ["vae", "mae(1,0.2|2,0.2)", "scale_vae*(0.7,1|1.1,7)"]
    assert run.split_list(None) is None
    planned = plan.plan("smoke", ["table1"], 1, run.split_list("mae(1,0.2|2,0.2),vae"))
    assert {p.row for p in planned} == {"mae(1,0.2|2,0.2)", "vae"}


def test_run_all_dry_run_prints_the_plan_and_runs_no_analysis(tmp_path, data_dir):
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(["bash", str(root / "run_all.sh"), "--profile", "smoke", "--only", "core", "--seeds", "1",
                           "--dry-run", "--results", str(tmp_path / "r"), "--data-dir", str(data_dir), "--offline"],
                          capture_output=True, text=True, cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "estimated time left" in done.stdout and "error" not in done.stderr
    assert not (tmp_path / "r").exists()  # nothing trained, nothing tabulated


def test_the_progress_bar_moves_per_epoch_while_a_run_trains(tmp_path, monkeypatch, capsys):
    """execute's watcher reads the run in flight from the store: fake files, nothing trains or is timed."""
    import time

    from benchmarks import estimate as timing
    from benchmarks.store import RunStore
    todo = plan.unique_runs(plan.plan("smoke", ["table1"], 1, ["vae"]))
    store = RunStore(tmp_path / "r")
    positions = []

    class Watched(run.execution.Progress):
        def poll(self):
            super().poll()
            positions.append(self.position())

    def one_run_in_flight(todo, pool, options, report):
        first = todo[0].run_id
        store.partial(first).mkdir(parents=True)
        (store.partials / f"{first}.lock").write_text("host 1 1")
        (store.partial(first) / "history.csv").write_text("epoch,seconds\n1,1.0\n2,1.0\n3,1.0\n")  # 3 of 10 epochs
        deadline = time.monotonic() + 60
        while not any(p > 0 for p in positions) and time.monotonic() < deadline:
            time.sleep(0.01)
        summaries = [{"run_id": c.run_id, "status": "done", "nll": 1.0, "kl": 2.0, "mi": 0.5, "au": 3, "seconds": 7.0}
                     for c in todo]
        for summary in summaries:
            report(summary)
        return summaries

    monkeypatch.setattr(run.execution, "Progress", Watched)
    monkeypatch.setattr(run.execution, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(run.execution, "on_cpus", one_run_in_flight)
    estimate = timing.Estimate({c.run_id: 100.0 for c in todo}, {}, 1, epochs={c.run_id: 10 for c in todo})
    pool = run.execution.Workers(run.machine.slots(["cpu"], 1, 1), 1)
    assert len(run.execution.execute(todo, pool, {"results": str(tmp_path / "r")}, estimate)) == len(todo)
    assert pytest.approx(0.3) in positions  # the bar moved before the run finished
    out = capsys.readouterr().out
    assert f"0.3/{len(todo)} runs" in out and f"{len(todo)}.0/{len(todo)} runs" in out
    assert f"[done]   {todo[0].run_id}: nll=1.00 kl=2.00 mi=0.50 au=3 (7s)" in out.splitlines()  # as before
