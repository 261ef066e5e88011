"""Time before work: the runner's estimate of a sweep (benchmarks/estimate.py), calibrated on this machine
(benchmarks/calibration.py)."""
import re

import pytest

from benchmarks import calibration
from benchmarks import estimate as timing
from benchmarks import plan, run
from benchmarks.config import resolve
from benchmarks.progress import CAP, Progress
from benchmarks.store import RunStore, write_json

from .helpers import history, lock

NUMBER = r"estimated time left: \d+ (s|min|h \d+ min) of wall time"


def smoke(tmp_path, data_dir, results, *extra):
    return ["--profile", "smoke", "--only", "table1", "--models", "vae", "--results", str(tmp_path / results),
            "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"), "--offline", *extra]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One worker with one torch thread, as the rest of the suite runs (two threads on a loaded
    2-core machine make every timed step many times slower)."""
    one = run.execution.Workers(run.machine.slots(["cpu"], 1, 1), 1)
    monkeypatch.setattr(run.execution, "workers", lambda devices, jobs, runs_per_device: one)


def test_the_estimate_is_printed_before_the_first_run_on_an_empty_results_dir(tmp_path, data_dir, capsys):
    assert run.main(smoke(tmp_path, data_dir, "r", "--seeds", "2")) == 0
    lines = capsys.readouterr().out.splitlines()
    estimate = next(i for i, line in enumerate(lines) if line.startswith("estimated time left"))
    first_done = next(i for i, line in enumerate(lines) if "[done]" in line)
    assert estimate < first_done
    assert re.match(NUMBER, lines[estimate]) and "calibrated on this machine" in lines[estimate]
    assert "each run counted at its epoch cap, an upper bound" in lines[estimate]  # nothing finished yet
    assert re.match(r"to cut it: --seeds 1 \(1 runs, ~\d+ (s|min|h \d+ min)\)", lines[estimate + 1])


def test_dry_run_on_an_empty_results_dir_prints_a_number(tmp_path, data_dir, capsys):
    assert run.main(smoke(tmp_path, data_dir, "empty", "--seeds", "1", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert re.search(NUMBER, out) and "unknown" not in out
    assert not (tmp_path / "empty").exists()  # a dry run writes nothing


def fake_rates(groups, options, jobs, threads, slots, local=False):
    """Every group at 1 ms + 0.1 ms per time step, no evaluation cost: nothing is timed."""
    return {key: calibration.Rates((1e-3, 1e-4), (1e-3, 1e-4), 0.0, 0.5) for key in groups}


def finish(store: RunStore, config, seconds: float, epochs: int | None = None) -> None:
    folder = store.final(config.run_id)
    folder.mkdir(parents=True)
    write_json(folder / "config.json", config.to_json())
    write_json(folder / "metrics.json", {"model": config.model, "dataset": config.dataset,
                                         "profile": config.profile.name, "seed": config.seed, "epochs": epochs,
                                         "train_seconds": seconds - 10, "statistics_seconds": 4, "eval_seconds": 6})


def test_finished_runs_times_win_over_the_calibrated_model(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(calibration, "calibrate", fake_rates)
    configs = plan.unique_runs(plan.plan("smoke", ["table1"], 2, ["vae", "lstm_lm"]))
    vae = [c for c in configs if c.model == "vae"]
    lm = [c for c in configs if c.model == "lstm_lm"]
    store = RunStore(tmp_path / "r")
    options = {"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache")}

    fresh = timing.estimate(configs, store, 1, options=options)
    assert set(fresh.source.values()) == {"model"} and all(s > 0 for s in fresh.seconds.values())
    assert fresh.epochs == {c.run_id: c.profile.max_epochs for c in configs}  # nothing ran yet: the caps

    cap = vae[0].profile.max_epochs
    finish(store, vae[0], seconds=500.0, epochs=cap - 1)  # seed 0 of the VAE took 500 s, one epoch short of its cap
    known = timing.estimate(configs, store, 1, options=options)
    assert known.seconds[vae[0].run_id] == known.seconds[vae[1].run_id] == 500.0  # seed 1: as its seed 0
    assert known.source[vae[1].run_id] == "measured"
    ratio = 500.0 / fresh.seconds[vae[0].run_id]  # the model was off by this much on this machine
    assert known.ratio == ratio and known.source[lm[0].run_id] == "model"
    assert abs(known.seconds[lm[0].run_id] - ratio * fresh.seconds[lm[0].run_id]) < 1e-6
    assert known.wall([c.run_id for c in vae]) == 1000.0 and known.wall([c.run_id for c in vae] * 2) == 2000.0
    assert known.epochs[vae[1].run_id] == cap - 1  # as its seed 0 ran
    assert known.epochs[lm[0].run_id] == pytest.approx(lm[0].profile.max_epochs * (cap - 1) / cap)  # the plan's share


def test_a_new_configuration_is_estimated_by_the_finished_runs_of_its_nearest_protocol(tmp_path, data_dir, monkeypatch):
    """A study's new SGD line (a harmonic f_bar) is timed by the finished SGD runs of the same method, not by the
    mean of every finished run of the method, which the tables' Adam runs dominate."""
    monkeypatch.setattr(calibration, "calibrate", fake_rates)
    adam = [resolve("scale_vae", "synthetic", "smoke", seed) for seed in (0, 1, 2)]
    sgd = resolve("scale_vae", "synthetic", "smoke", 0, ["optimizer=sgd", "lr=1.0", "init=uniform"])
    harmonic = resolve("scale_vae", "synthetic", "smoke", 0,
                       ["optimizer=sgd", "lr=1.0", "init=uniform", "f_average=harmonic"])
    store = RunStore(tmp_path / "r")
    for config in adam:
        finish(store, config, seconds=100.0, epochs=10)
    finish(store, sgd, seconds=400.0, epochs=40)
    options = {"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache")}
    known = timing.estimate([harmonic], store, 1, options=options)
    assert known.source[harmonic.run_id] == "measured"
    assert known.seconds[harmonic.run_id] == 400.0 and known.epochs[harmonic.run_id] == 40  # not (3 x 100 + 400) / 4
    other_seed = resolve("scale_vae", "synthetic", "smoke", 5)
    assert timing.estimate([other_seed], store, 1, options=options).seconds[other_seed.run_id] == 100.0


def test_the_progress_replaces_estimates_by_measured_times():
    now = [0.0]
    progress = Progress(["a", "b", "c", "d"], {"a": 100.0, "b": 100.0, "c": 50.0, "d": 50.0}, 2,
                               clock=lambda: now[0])
    assert progress.left() == 150.0  # a | b, then c | d
    now[0] = 200.0
    progress.finished("a", 200.0)  # twice its estimate: what is left is scaled alike
    progress.finished("b", 200.0)
    assert progress.left() == 100.0  # c and d at 100 s each, one per worker
    now[0] = 250.0
    progress.finished("c", 50.0)  # as estimated: the runs so far took 450 s against 250 estimated
    assert progress.left() == pytest.approx(50 * 450 / 250 - 50)  # d, started at 200 s, has run 50 s
    assert "left" in progress.postfix()



def test_the_bar_moves_per_epoch_and_the_time_left_follows_the_calibration(tmp_path):
    """Fake histories, fake clocks: nothing trains, nothing is timed."""
    store = RunStore(tmp_path / "r")
    wall, now = [1000.0], [0.0]
    estimates = {"a": 100.0, "b": 100.0, "c": 100.0}
    progress = Progress(["a", "b", "c"], estimates, 2, epochs={"a": 10, "b": 10, "c": 10}, store=store,
                        clock=lambda: now[0], wall=lambda: wall[0])
    lock(store, "c", at=0.0)  # a crashed sweep's lock, from before this one: not in flight
    progress.poll()
    assert progress.position() == 0 and progress.left() == 200.0  # a | b, then c

    lock(store, "a", at=1000.0)
    lock(store, "b", at=1000.0)
    history(store.partial("a") / "history.csv", 2, at=1020.0)
    wall[0] = 1020.0
    progress.poll()
    assert progress.position() == pytest.approx(0.2)  # a: 2 of its 10 epochs; b: none written yet
    assert progress.left() == pytest.approx(180.0)  # a: 80 s to go; b: 100 s less the 20 s since it began; then c

    history(store.partial("a") / "history.csv", 5, at=1050.0)
    history(store.partial("b") / "history.csv", 2, at=1050.0)
    wall[0] = 1050.0
    progress.poll()
    assert progress.position() == pytest.approx(0.7)  # the bar grows with the epochs written
    history(store.partial("a") / "history.csv", 1, at=1051.0)  # read while being rewritten: short
    progress.poll()
    assert progress.position() == pytest.approx(0.7)  # never backwards

    history(store.final("a") / "history.csv", 5, at=1060.0)  # a ends after 5 of 10 epochs, in 150 s, not 100
    (store.partials / "a.lock").unlink()
    progress.finished("a", 150.0)
    lock(store, "c", at=1060.0)
    wall[0] = 1090.0
    progress.poll()
    # b's 2 epochs are 2 of the 5 the runs now take: 0.4 done
    assert progress.epoch_ratio() == 0.5 and progress.position() == pytest.approx(1.4)
    # x1.5 from 1 finished run: b has 150 * 0.6 = 90 s to go less 40 s since its last epoch; c 150 s less 30 s
    assert progress.ratio() == 1.5 and progress.left() == pytest.approx(max(150 * 0.6 - 40, 150 - 30))

    history(store.partial("b") / "history.csv", 50, at=1090.0)  # more epochs than expected: b is still running
    progress.poll()
    assert progress.position() == pytest.approx(1 + CAP)
    progress.finished("b", 100.0)
    progress.finished("c", 100.0, ok=False)
    assert progress.position() == 3 and progress.left() == 0.0


def test_makespan_hands_the_longest_runs_out_first():
    assert timing.makespan([3, 3, 2, 2, 2], 2) == 7
    assert timing.makespan([5, 1], 4) == 5
    assert timing.makespan([3], 2, busy=[4, 1]) == 4 and timing.makespan([3, 2], 1, busy=[1, 1]) == 4
    assert timing.duration(45) == "45 s" and timing.duration(600) == "10 min" and timing.duration(9300) == "2 h 35 min"


def test_a_cut_whose_runs_are_all_done_is_not_offered():
    config = resolve("vae", "yahoo_small", "smoke", 0)
    estimate = timing.Estimate({config.run_id: 120.0}, {config.run_id: "model"}, jobs=1)
    assert run.describe_cuts({"--only core": [], "--seeds 1": [config]}, estimate) == "to cut it: --seeds 1 (1 runs, ~2 min)"
    assert run.describe_cuts({"--only core": []}, estimate) is None


def test_the_estimate_from_records_hides_an_experiment_and_sets_it_beside_its_measured_times(capsys):
    """scripts/estimate_from_records.py on the committed records: the study's 6 harmonic-f_bar runs are
    estimated from their nearest protocol's runs (no calibration needed), each beside what it took."""
    import importlib.util
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("estimate_from_records", root / "scripts/estimate_from_records.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    records = root / "results/quick/records"
    assert script.main(["--records", str(records), "--only", "scale_regime_f_average", "--seeds", "3"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("yahoo_small-")]
    assert len(rows) == 6 and all(r[1] == "measured" for r in rows)
    assert all(abs(float(r[2]) - float(r[3])) <= 0.25 * float(r[3]) for r in rows)  # each within 25% of its time
    assert script.main(["--records", str(records), "--only", "ladder", "--seeds", "2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
