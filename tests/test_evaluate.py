"""Re-scoring finished runs with the current metrics, without retraining (benchmarks.evaluate and the runner)."""
import pytest

from benchmarks import evaluate, metrics, protocol, run
from benchmarks.config import resolve
from benchmarks.store import read_json, write_json
from benchmarks.train import TIMING_KEYS, train_run


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """Two finished smoke runs (VAE, Scale-VAE) in one store, as this code scored them."""
    from .conftest import DATA_DIR
    results = tmp_path_factory.mktemp("results")
    dirs = {}
    for model in ("vae", "scale_vae"):
        config = resolve(model, "yahoo_small", "smoke", 0, [])
        dirs[model], status = train_run(config, results_dir=results, data_dir=DATA_DIR,
                                        cache_dir=results / "cache", download=False, log=lambda line: None)
        assert status == "done"
    return results, dirs, {m: read_json(d / "metrics.json") for m, d in dirs.items()}


def make_stale(run_dir):
    """What an older version wrote: no metrics_version, a retired key, a metric of another definition."""
    values = read_json(run_dir / "metrics.json")
    values = {k: v for k, v in values.items() if k not in ("metrics_version", "mi_batch", "au_scaled")}
    write_json(run_dir / "metrics.json", {**values, "mi": 3.3, "au_unscaled": 7})


def evaluation(result):
    return {k: v for k, v in result.items() if k not in TIMING_KEYS and k != "scored_by"}


def stamps(run_dir):
    return {name: (run_dir / name).stat().st_mtime_ns for name in ("best.pt", "history.csv", "train.log")}


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("re-scoring trained a model")
    monkeypatch.setattr(protocol.Trainer, "fit", refuse)


def test_evaluate_gives_the_fresh_runs_numbers_and_is_repeatable(finished_runs, no_training, capsys):
    from .conftest import DATA_DIR
    results, dirs, original = finished_runs
    for run_dir in dirs.values():
        make_stale(run_dir)
    before = {m: stamps(d) for m, d in dirs.items()}
    args = ["--results", str(results), "--data-dir", str(DATA_DIR), "--cache-dir", str(results / "cache")]
    assert evaluate.main(args) == 0
    assert "2 to re-score" in capsys.readouterr().out
    for model, run_dir in dirs.items():
        again = read_json(run_dir / "metrics.json")
        assert again["metrics_version"] == metrics.METRICS_VERSION and "au_unscaled" not in again
        assert evaluation(again) == evaluation(original[model])  # the numbers a fresh run reported
        assert again["scored_by"]["previous_version"] == 1
        assert stamps(run_dir) == before[model]  # the model and its training record are untouched
    assert evaluate.main(args) == 0 and "0 to re-score" in capsys.readouterr().out  # current runs are left alone
    assert evaluate.main(args + ["--force", "--models", "vae", "--profile", "smoke"]) == 0
    assert "1 to re-score" in capsys.readouterr().out
    assert evaluation(read_json(dirs["vae"] / "metrics.json")) == evaluation(original["vae"])  # twice: same numbers


def test_the_runner_rescores_stale_runs_instead_of_training_them(finished_runs, capsys):
    from .conftest import DATA_DIR
    results, dirs, original = finished_runs
    make_stale(dirs["vae"])
    before = stamps(dirs["vae"])
    code = run.main(["--profile", "smoke", "--only", "table1", "--models", "vae", "--seeds", "1",
                     "--results", str(results), "--data-dir", str(DATA_DIR), "--cache-dir", str(results / "cache"),
                     "--offline", "--jobs", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "0 to train, 1 to re-score" in out
    assert stamps(dirs["vae"]) == before  # not retrained: best.pt and history as they were
    assert evaluation(read_json(dirs["vae"] / "metrics.json")) == evaluation(original["vae"])


@pytest.mark.parametrize("args, fragment", [
    (["--results", "/nonexistent/store"], "no runs under /nonexistent/store/runs"),
    (["--jobs", "0"], "--jobs must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, fragment, capsys):
    assert evaluate.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err
