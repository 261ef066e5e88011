"""The results store: resume after an interruption, per-run locks, failure records."""
import json
import os
import subprocess
import sys

import pytest

from benchmarks.train import TIMING_KEYS as TIMING
from benchmarks.config import resolve
from benchmarks.store import DONE, FAILED, PARTIAL, RunStore, process_start, read_json
from benchmarks.train import train_run



def run(config, tmp_path, data_dir, results, log=lambda line: None, **kw):
    return train_run(config, results_dir=tmp_path / results, data_dir=data_dir, cache_dir=tmp_path / "cache",
                     device="cpu", download=False, log=log, **kw)


def interrupt_at(marker):
    def log(line):
        if line.startswith(marker):
            raise KeyboardInterrupt
    return log


def test_an_interrupted_run_resumes_and_ends_with_the_same_numbers(tmp_path, data_dir):
    config = resolve("scale_vae", "yahoo_small", "smoke", 0, ["max_epochs=3"])
    whole, status = run(config, tmp_path, data_dir, "whole")
    assert status == DONE
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path, data_dir, "cut", log=interrupt_at("epoch   2"))  # dies in epoch 2, before its checkpoint
    store = RunStore(tmp_path / "cut")
    assert store.status(config.run_id) == PARTIAL and not store.final(config.run_id).exists()
    lines = []
    resumed, status = run(config, tmp_path, data_dir, "cut", log=lines.append)
    assert status == DONE and any("resumed" in line and "after epoch 1" in line for line in lines)
    a, b = (read_json(d / "metrics.json") for d in (whole, resumed))
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    assert (whole / "history.csv").read_text().count("\n") == (resumed / "history.csv").read_text().count("\n")
    assert not (resumed / "last.pt").exists() and not store.partial(config.run_id).exists()


def test_a_run_held_by_a_live_process_is_skipped_and_a_stale_lock_is_reclaimed(tmp_path):
    store = RunStore(tmp_path)
    with store.lock("r1") as first:
        with store.lock("r1") as second:
            assert first and not second
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.prepare()
    (store.partials / "r2.lock").write_text(f"{os.uname().nodename} {dead.stdout.strip()}")
    with store.lock("r2") as acquired:
        assert acquired  # its process is gone
    assert not (store.partials / "r2.lock").exists()


def test_a_diverging_run_is_recorded_as_failed_and_not_retried_by_default(tmp_path, data_dir):
    config = resolve("vae", "yahoo_small", "smoke", 0, ["max_epochs=2", "lr=1e30", "clip=1e30", "optimizer=sgd"])
    path, status = run(config, tmp_path, data_dir, "r")
    assert status == FAILED
    failure = json.loads((path / "failed.json").read_text())
    assert "loss became" in failure["reason"] and failure["epoch"] == 1
    assert not (path / "metrics.json").exists() and (path / "config.json").exists()
    lines = []
    assert run(config, tmp_path, data_dir, "r", log=lines.append)[1] == FAILED and "already failed" in lines[0]
    assert run(config, tmp_path, data_dir, "r", retry_failed=True)[1] == FAILED  # retried (and fails again)


def test_a_lock_whose_pid_was_reused_by_another_process_is_stale(tmp_path):
    store = RunStore(tmp_path)
    store.prepare()
    me = f"{os.uname().nodename} {os.getpid()}"
    (store.partials / "r3.lock").write_text(f"{me} 1")  # our PID, but a start time that is not ours
    with store.lock("r3") as acquired:
        assert acquired
    (store.partials / "r4.lock").write_text(f"{me} {process_start(os.getpid())}")  # really ours: live
    with store.lock("r4") as acquired:
        assert not acquired
