"""End to end from the command line on the smoke profile, and the one-line errors."""
import csv
import json
import math
import subprocess
import sys

import pytest

from benchmarks.store import read_json
from benchmarks.train import TIMING_KEYS

from .conftest import REPO

CORE_KEYS = {"nll", "nll_unit_prior", "kl", "mi", "au", "ppl", "rec", "elbo", "train_seconds", "eval_seconds",
             "statistics_seconds", "epochs", "device", "versions", "metrics_version"}
LATENT_KEYS = {"mi_unscaled", "mi_batch", "mi_ceiling", "au_scaled", "elbo_unit_prior", "training_elbo"}


def train(tmp_path, data_dir, *args):
    command = [sys.executable, "-m", "benchmarks.train", "--dataset", "yahoo_small", "--profile", "smoke",
               "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"), "--offline", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def results_of(tmp_path, data_dir, model, *args, results="results"):
    done = train(tmp_path, data_dir, "--model", model, "--seed", "0", "--results", str(tmp_path / results), *args)
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / results / "runs" / done.stdout.strip().splitlines()[-1].split("/")[-1]
    assert done.stdout.strip().splitlines()[-1] == str(run_dir)
    return run_dir, read_json(run_dir / "metrics.json")


@pytest.mark.parametrize("model, extra", [("lstm_lm", []), ("vae", []), ("scale_vae", ["--set", "des_std=0.7", "f_epo=1"])])
def test_each_core_method_runs_end_to_end(tmp_path, data_dir, model, extra):
    run_dir, metrics = results_of(tmp_path, data_dir, model, *extra)
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "metrics.json", "history.csv", "best.pt", "train.log"}
    assert CORE_KEYS <= set(metrics)
    assert metrics["nll"] > 0 and metrics["ppl"] > 1 and metrics["epochs"] == 2
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == model and config["profile"]["name"] == "smoke" and config["seed"] == 0
    with open(run_dir / "history.csv") as fh:
        history = list(csv.DictReader(fh))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert {"train_loss", "train_kl", "kl_weight", "lr", "valid_loss", "seconds"} <= set(history[0])
    if model == "lstm_lm":
        assert metrics["kl"] is None and metrics["nll"] == metrics["nll_unit_prior"]
    else:
        assert {"valid_kl", "valid_mi", "valid_mi_batch", "valid_au"} <= set(history[0])
        assert LATENT_KEYS <= set(metrics)
        assert metrics["mi_ceiling"] == pytest.approx(math.log(40))  # smoke's 40 test documents
    if model == "vae":
        assert metrics["nll"] == metrics["nll_unit_prior"]
        assert metrics["elbo"] == metrics["elbo_unit_prior"] == metrics["training_elbo"]
    if model == "scale_vae":
        assert {"f_mean", "f_min", "f_max"} <= set(metrics)
        # both ELBOs bound the log-likelihood that the matching IW estimate measures (up to Monte-Carlo error)
        assert metrics["elbo"] <= -metrics["nll"] + 0.05
        assert metrics["elbo_unit_prior"] <= -metrics["nll_unit_prior"] + 0.05
        assert {"f_mean", "f_min", "f_max"} <= set(history[0])
        assert metrics["f_min"] <= metrics["f_mean"] <= metrics["f_max"]
        assert float(history[-1]["f_mean"]) == pytest.approx(metrics["f_mean"], rel=1e-4)


def test_same_seed_same_numbers_and_finished_runs_are_not_retrained(tmp_path, data_dir):
    first_dir, first = results_of(tmp_path, data_dir, "scale_vae", results="a")
    _, second = results_of(tmp_path, data_dir, "scale_vae", results="b")
    timing = TIMING_KEYS
    assert {k: v for k, v in first.items() if k not in timing} == {k: v for k, v in second.items() if k not in timing}
    stamp = (first_dir / "metrics.json").stat().st_mtime_ns
    again = train(tmp_path, data_dir, "--model", "scale_vae", "--seed", "0", "--results", str(tmp_path / "a"))
    assert again.returncode == 0 and "already done" in again.stdout
    assert (first_dir / "metrics.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("args, fragment", [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model", "scale_vae", "--set", "des_std=-1"], "des_std must be > 0"),
    (["--model", "vae", "--set", "colour=red"], "unknown key 'colour'"),
    (["--model", "vae", "--set", "lr=fast"], "lr must be of type float"),
    (["--model", "vae", "--profile", "huge"], "unknown profile 'huge'"),
    (["--model", "vae", "--dataset", "imdb"], "unknown dataset"),
    (["--model", "vae", "--set", "eval_memory_mb=9"], "pass --eval-memory-mb"),
])
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path, data_dir, args, fragment):
    done = train(tmp_path, data_dir, "--results", str(tmp_path / "r"), *args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and fragment in done.stderr
    assert not [p for p in (tmp_path / "r").rglob("*") if p.is_file()]  # nothing written


def test_missing_data_names_the_file_and_how_to_get_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = train(tmp_path, empty, "--model", "vae", "--results", str(tmp_path / "r"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "yahoo.valid.txt" in done.stderr and "yahoo_small" in done.stderr
    assert not [p for p in (tmp_path / "r").rglob("*") if p.is_file()]  # nothing half-written is left behind


def test_scale_vae_checkpoint_carries_f_bar_and_reproduces_the_evaluation(tmp_path, data_dir):
    import torch

    from benchmarks import metrics
    from benchmarks.train import load_trained, loader

    run_dir, result = results_of(tmp_path, data_dir, "scale_vae")
    model, corpus, config = load_trained(run_dir, data_dir=data_dir, cache_dir=tmp_path / "cache")
    assert model.f_bar.mean().item() == pytest.approx(result["f_mean"], rel=1e-6)
    assert model.f_bar.min().item() > 1.0  # the factor really scales (the encoder's means start small)
    torch.manual_seed(config.seed + 1)  # the seed the run's evaluation used
    again = metrics.evaluate(model, loader(corpus, "test", config, "cpu", False), config.profile.iw_samples,
                             config.profile.eval_memory_mb)
    for key in ("nll", "nll_unit_prior", "kl", "mi", "au"):
        assert again[key] == pytest.approx(result[key], rel=1e-5), key
