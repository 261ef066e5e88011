"""Fault injection: kills, concurrent runners, divergence, corrupt files, a full disk, bad data.

Each test breaks something for real (SIGKILL of a training process or of a whole
runner, two runners at once, a flipped byte) and checks the promise of the
reliability issue: nothing lost, nothing run twice, nothing half-written read as valid.
"""
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.train import TIMING_KEYS as TIMING
from benchmarks import files, train
from benchmarks.config import resolve
from benchmarks.store import CORRUPT, DONE, FAILED, RunStore, process_alive, read_json
from benchmarks.train import train_run

REPO = Path(__file__).resolve().parents[1]


def env(tmp_path, data_dir) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "VAEBENCH_DATA_DIR": str(data_dir),
            "VAEBENCH_CACHE_DIR": str(tmp_path / "cache")}


def start(args, tmp_path, data_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, env=env(tmp_path, data_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILL the process and everything it started as soon as ``ready()`` is true."""
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None, "finished before it could be killed:\n" + process.stdout.read()
        assert time.time() < deadline, "never reached the moment to kill it"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def without_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


def published(results: Path) -> dict[str, dict]:
    return {d.name: read_json(d / "metrics.json") for d in (results / "runs").iterdir() if d.name != ".partial"}


TRAIN = ["benchmarks.train", "--model", "scale_vae", "--dataset", "yahoo_small", "--profile", "smoke", "--seed", "0",
         "--offline", "--set", "max_epochs=6", "train_docs=600"]


def test_sigkill_mid_epoch_then_restart_gives_the_uninterrupted_numbers(tmp_path, data_dir):
    whole = subprocess.run([sys.executable, "-m", *TRAIN, "--results", str(tmp_path / "whole")], cwd=REPO,
                           env=env(tmp_path, data_dir), capture_output=True, text=True)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    config = resolve("scale_vae", "yahoo_small", "smoke", 0, ["max_epochs=6", "train_docs=600"])
    store = RunStore(tmp_path / "cut")
    checkpoint = store.partial(config.run_id) / "last.pt"
    process = start([*TRAIN, "--results", str(tmp_path / "cut")], tmp_path, data_dir)
    kill_when(process, checkpoint.exists)  # the first epoch's checkpoint is written: now in epoch 2
    assert store.status(config.run_id) == "partial" and not store.final(config.run_id).exists()
    again = subprocess.run([sys.executable, "-m", *TRAIN, "--results", str(tmp_path / "cut")], cwd=REPO,
                           env=env(tmp_path, data_dir), capture_output=True, text=True)
    assert again.returncode == 0 and "resumed from" in again.stdout, again.stdout + again.stderr
    a = read_json(RunStore(tmp_path / "whole").final(config.run_id) / "metrics.json")
    b = read_json(store.final(config.run_id) / "metrics.json")
    assert without_timing(a) == without_timing(b)  # bitwise: the same floats
    assert sorted(p.name for p in store.final(config.run_id).glob("*.pt")) == ["best.pt"]  # disk use bounded


def sweep_args(seeds: int) -> list[str]:
    return ["benchmarks.run", "--profile", "smoke", "--only", "core", "--seeds", str(seeds), "--jobs", "1", "--offline"]


SWEEP = sweep_args(3)


def test_a_killed_runner_restarts_with_only_the_unfinished_runs(tmp_path, data_dir):
    results = tmp_path / "r"
    runs = results / "runs"
    process = start([*SWEEP, "--results", str(results)], tmp_path, data_dir)
    kill_when(process, lambda: runs.exists() and sum(1 for d in runs.iterdir() if d.name != ".partial") >= 2)
    before = published(results)
    assert all(m is not None for m in before.values())  # whatever is published is whole and verified
    stamps = {name: (runs / name / "metrics.json").stat().st_mtime_ns for name in before}
    again = subprocess.run([sys.executable, "-m", *SWEEP, "--results", str(results)], cwd=REPO,
                           env=env(tmp_path, data_dir), capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(before)} done" in again.stdout  # the finished runs were not queued again
    after = published(results)
    assert len(after) == 9 and all(m is not None for m in after.values())
    assert all((runs / name / "metrics.json").stat().st_mtime_ns == stamps[name] for name in before)


def test_sigterm_to_a_runner_stops_its_workers_and_says_how_to_go_on(tmp_path, data_dir):
    """``kill PID`` (or a scheduler's time limit) must not leave workers training, orphaned, with
    the runs' locks held: a rerun would find those runs "busy elsewhere"."""
    results = tmp_path / "r"
    locks = results / "runs" / ".partial"
    process = subprocess.Popen([sys.executable, "-m", *sweep_args(2), "--jobs", "2", "--results", str(results)],
                               cwd=REPO, env=env(tmp_path, data_dir), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (held := [p for p in locks.glob("*.lock") if p.read_text().strip()]):
        assert process.poll() is None and time.time() < deadline, "no worker started training"
        time.sleep(0.01)
    worker = int(held[0].read_text().split()[1])
    assert worker != process.pid  # the lock names a worker process, not the runner
    process.send_signal(signal.SIGTERM)
    out = process.communicate(timeout=60)[0]
    assert process.returncode == 130 and "run the same command again" in out and "Traceback" not in out, out
    deadline = time.time() + 30
    while process_alive(worker):
        assert time.time() < deadline, f"worker {worker} still alive after the runner ended"
        time.sleep(0.1)


def test_two_runners_at_once_train_every_run_exactly_once(tmp_path, data_dir):
    results = tmp_path / "r"
    sweep = [*sweep_args(2), "--results", str(results)]
    first, second = (start(sweep, tmp_path, data_dir) for _ in range(2))
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    after = published(results)
    assert len(after) == 6 and all(m is not None for m in after.values())
    for name in after:
        log = (results / "runs" / name / "train.log").read_text()
        assert log.count("test: ") == 1 and log.count("epoch   1 ") == 1, log  # trained once, by one runner
    assert not list((results / "runs" / ".partial").glob("*.lock"))


def test_exploding_gradients_fail_the_run_with_its_epoch_and_reason(tmp_path, data_dir, monkeypatch):
    import torch
    real = torch.nn.utils.clip_grad_norm_
    calls = []

    def exploding(parameters, max_norm):  # the 5th step's gradient overflows
        calls.append(1)
        norm = real(parameters, max_norm)
        return torch.tensor(float("inf")) if len(calls) == 5 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", exploding)
    config = resolve("vae", "yahoo_small", "smoke", 0)
    path, status = train_run(config, results_dir=tmp_path, data_dir=data_dir, cache_dir=tmp_path / "cache",
                             download=False, log=lambda line: None)
    failure = read_json(path / "failed.json")
    assert status == FAILED and failure["epoch"] == 1 and "gradient norm became non-finite" in failure["reason"]


def trained(tmp_path, data_dir, results="r"):
    config = resolve("vae", "yahoo_small", "smoke", 0)
    path, status = train_run(config, results_dir=tmp_path / results, data_dir=data_dir,
                             cache_dir=tmp_path / "cache", download=False, log=lambda line: None)
    assert status == DONE
    return config, path


@pytest.mark.parametrize("damage", ["truncate", "alter"])
def test_a_corrupt_result_is_detected_and_the_run_trained_again(tmp_path, data_dir, damage, capsys):
    config, path = trained(tmp_path, data_dir)
    original = read_json(path / "metrics.json")
    text = (path / "metrics.json").read_text()
    damaged = text[: len(text) // 2] if damage == "truncate" else text.replace('"au": ', '"au": 1', 1)
    (path / "metrics.json").write_text(damaged)
    assert read_json(path / "metrics.json") is None
    assert "corrupt" in capsys.readouterr().err  # one line names the file
    store = RunStore(tmp_path / "r")
    assert store.status(config.run_id) == CORRUPT
    lines = []
    path, status = train_run(config, results_dir=tmp_path / "r", data_dir=data_dir, cache_dir=tmp_path / "cache",
                             download=False, log=lines.append)
    assert status == DONE and any("corrupt; training it again" in line for line in lines)
    assert without_timing(read_json(path / "metrics.json")) == without_timing(original)


def test_a_truncated_checkpoint_is_reported_and_training_starts_over(tmp_path, data_dir):
    config, path = trained(tmp_path, data_dir, "clean")
    store = RunStore(tmp_path / "r")
    store.prepare()
    partial = store.partial(config.run_id)
    partial.mkdir(parents=True)
    (partial / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    lines = []
    path2, status = train_run(config, results_dir=tmp_path / "r", data_dir=data_dir, cache_dir=tmp_path / "cache",
                              download=False, log=lines.append)
    assert status == DONE and any("unreadable" in line for line in lines)
    assert without_timing(read_json(path2 / "metrics.json")) == without_timing(read_json(path / "metrics.json"))


def test_a_corrupt_best_model_is_one_line_for_the_analysis(tmp_path, data_dir):
    _, path = trained(tmp_path, data_dir)
    (path / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(train.UserError, match="cannot read run .*delete the directory"):
        train.load_trained(path, data_dir=data_dir, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("full_at", ["last.pt", "best.pt", "metrics.json"])
def test_no_space_left_is_one_line_exit_2_and_nothing_published(tmp_path, data_dir, monkeypatch, capsys, full_at):
    """The disk fills while a checkpoint, the best model or the metrics are written (torch.save's
    own writer would hide the OSError in a RuntimeError and the run would be stored as failed)."""
    real = files.atomic_write

    def full_disk(path, payload):
        if Path(path).name == full_at:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, payload)

    monkeypatch.setattr(files, "atomic_write", full_disk)
    code = train.main(["--model", "vae", "--dataset", "yahoo_small", "--profile", "smoke", "--offline",
                       "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"), "--results", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0] and "free space" in err[0]
    assert [d.name for d in (tmp_path / "runs").iterdir()] == [".partial"]  # no run directory published


@pytest.mark.parametrize("content, fragment", [
    (b"", "empty"),
    (b"1\tgood text\n2\tmore\tthan one tab\n", "tab"),
    (b"\xff\xfe bad bytes\n", "UTF-8"),
])
def test_bad_data_files_are_one_line_exit_2_and_nothing_written(tmp_path, data_dir, capsys, content, fragment):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "valid", "test"):
        (corpus / f"{split}.txt").write_bytes(b"a b c\nd e f\n")
    (corpus / "train.txt").write_bytes(content)
    code = train.main(["--model", "vae", "--dataset", str(corpus), "--profile", "smoke", "--offline",
                       "--cache-dir", str(tmp_path / "cache"), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment.lower() in err[0].lower(), err
    assert not (tmp_path / "results" / "runs").exists() or not [
        d for d in (tmp_path / "results" / "runs").iterdir() if d.name != ".partial"]


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads a process's state in /proc (Linux)")
def test_a_killed_worker_not_yet_reaped_holds_no_lock():
    """A zombie still answers kill(pid, 0): the rerun of a killed sweep skipped its run as busy."""
    from benchmarks.store import proc_stat, process_alive
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while proc_stat(child.pid, 3) != "Z":
        assert time.time() < deadline, "the child never exited"
        time.sleep(0.01)
    assert not process_alive(child.pid)  # exited, not yet waited for
    child.wait()
    assert process_alive(os.getpid())
