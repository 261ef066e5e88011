"""The results store: one directory per run under ``<results>/runs/``.

A run is trained in ``runs/.partial/<run-id>/`` (where its per-epoch checkpoint
``last.pt`` lets an interrupted run resume) and published by renaming that
directory to ``runs/<run-id>/`` once complete, so a run directory appears whole
or not at all. A run holds ``metrics.json`` when it finished and ``failed.json``
(reason, epoch) when it diverged or raised; a fault of the machine (GPU out of memory,
a CUDA error) writes neither and leaves the run unfinished. ``runs/.partial/<run-id>.lock``
names the process training it; a lock whose process is gone is reclaimed.

Every JSON file of a run carries the sha256 of its content, verified on read: a
truncated or altered result is reported in one line and the run counts as
``corrupt`` (the runner trains it again) instead of being read as valid.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from . import files
from .errors import UserError

DONE, FAILED, PARTIAL, PENDING, CORRUPT = "done", "failed", "partial", "pending", "corrupt"
# A run stopped by a fault of the machine (errors.MachineFault): a summary's word, not a stored state;
# the store sees it as partial (its last.pt kept) or pending (no epoch finished).
UNFINISHED = "unfinished"
CHECKSUM = "sha256"


def digest(value: dict) -> str:
    """sha256 of a JSON object's content (without its own checksum field)."""
    content = {k: v for k, v in value.items() if k != CHECKSUM}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def write_json(path: Path, value) -> None:
    """Write JSON atomically (files.atomic_write: a temporary file renamed into place); an object
    gets a ``sha256`` field over its content."""
    if isinstance(value, dict):
        value = {**value, CHECKSUM: digest(value)}
    files.atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path, warn: bool = True) -> dict | None:
    """A run file's JSON without its checksum, or None (with one line on stderr unless ``warn`` is
    False) if it is unreadable, truncated or does not match its checksum."""
    try:
        value = json.loads(path.read_text())
        if isinstance(value, dict) and CHECKSUM in value and value[CHECKSUM] != digest(value):
            raise ValueError("content does not match its sha256")
    except (OSError, ValueError) as error:
        if warn:
            print(f"warning: {path} is unreadable or corrupt ({error}); its run will be trained again "
                  f"(or delete {path.parent})", file=sys.stderr)
        return None
    return {k: v for k, v in value.items() if k != CHECKSUM} if isinstance(value, dict) else value


def proc_stat(pid: int, field: int) -> str:
    """Field ``field`` (1-based, as proc(5) numbers them, from 3 on) of /proc/PID/stat; empty where
    /proc is not available or the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[field - 3]
    except (OSError, IndexError):
        return ""


def process_start(pid: int) -> str:
    """The start time of a process (Linux: /proc/PID/stat field 22), so that a reused PID is not
    mistaken for the lock's owner; empty where /proc is not available."""
    return proc_stat(pid, 22)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs: a killed worker not yet reaped (a zombie, state Z in /proc) does not,
    though ``kill(pid, 0)`` still finds it (a runner restarted at once skipped its run as busy)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return proc_stat(pid, 3) not in ("Z", "X")  # without /proc (macOS): "", kill's answer


class RunStore:
    def __init__(self, results_dir="results"):
        self.root = Path(results_dir) / "runs"
        self.partials = self.root / ".partial"

    def final(self, run_id: str) -> Path:
        return self.root / run_id

    def partial(self, run_id: str) -> Path:
        return self.partials / run_id

    def status(self, run_id: str) -> str:
        """done / failed (verified result files), corrupt (a result file that fails its check),
        partial (an interrupted attempt with a checkpoint) or pending."""
        final = self.final(run_id)
        for name, status in (("metrics.json", DONE), ("failed.json", FAILED)):
            if (final / name).exists():
                return status if read_json(final / name, warn=False) is not None else CORRUPT
        if final.exists():
            return CORRUPT  # a run directory without a result: not written by this store
        return PARTIAL if (self.partial(run_id) / "last.pt").exists() else PENDING

    def prepare(self) -> None:
        try:
            self.partials.mkdir(parents=True, exist_ok=True)
            probe = self.partials / f".probe-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as error:
            raise UserError(f"cannot write to results directory {self.root.parent}: {error.strerror}; "
                            "pass a writable --results DIR") from None

    @contextmanager
    def lock(self, run_id: str):
        """Hold the run's lock for the block; yields False if another live process holds it."""
        self.prepare()
        path = self.partials / f"{run_id}.lock"
        acquired = self._acquire(path)
        try:
            yield acquired
        finally:
            if acquired:
                path.unlink(missing_ok=True)

    @staticmethod
    def _acquire(path: Path) -> bool:
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if RunStore._stale(path):
                    path.unlink(missing_ok=True)
                    continue
                return False
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{socket.gethostname()} {os.getpid()} {process_start(os.getpid())}")
            return True
        return False

    @staticmethod
    def _stale(path: Path) -> bool:
        """A lock of a dead process on this host, or of a process whose PID has since been reused
        (or an empty lock older than a minute)."""
        try:
            host, pid, started = (path.read_text().split() + ["", "", ""])[:3]
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        if not host:
            return age > 60
        if host != socket.gethostname() or not pid.isdigit():
            return False
        return not process_alive(int(pid)) or bool(started and process_start(int(pid)) != started)

    def start(self, run_id: str) -> Path:
        """The run's working directory, kept from an interrupted attempt if it has a checkpoint."""
        partial = self.partial(run_id)
        if partial.exists() and not (partial / "last.pt").exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        return partial

    def publish(self, run_id: str) -> Path:
        """Move the finished (or failed) run into place in one rename."""
        partial, final = self.partial(run_id), self.final(run_id)
        (partial / "last.pt").unlink(missing_ok=True)
        if final.exists():  # a failed attempt being replaced
            shutil.rmtree(final)
        os.replace(partial, final)
        return final

    def discard(self, run_id: str) -> None:
        shutil.rmtree(self.partial(run_id), ignore_errors=True)
