"""The results store: one directory per run under ``<results>/runs/``.

A run is trained in ``runs/.partial/<run-id>/`` (where its per-epoch checkpoint
``last.pt`` lets an interrupted run resume) and published by renaming that
directory to ``runs/<run-id>/`` once complete, so a run directory appears whole
or not at all. A run holds ``metrics.json`` when it finished and ``failed.json``
(reason, epoch) when it diverged or raised. ``runs/.partial/<run-id>.lock``
names the process training it; a lock whose process is gone is reclaimed.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

DONE, FAILED, PARTIAL, PENDING = "done", "failed", "partial", "pending"


def write_json(path: Path, value) -> None:
    """Write JSON atomically (data.atomic_write: a temporary file renamed into place)."""
    from .data import atomic_write  # data is heavy to import; the store alone is not

    atomic_write(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> dict | None:
    """A run file's JSON, or None (with one line on stderr) if it is unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        print(f"warning: {path} is unreadable ({type(error).__name__}); delete its run directory to re-run it",
              file=sys.stderr)
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    def __init__(self, results_dir="results"):
        self.root = Path(results_dir) / "runs"
        self.partials = self.root / ".partial"

    def final(self, run_id: str) -> Path:
        return self.root / run_id

    def partial(self, run_id: str) -> Path:
        return self.partials / run_id

    def status(self, run_id: str) -> str:
        final = self.final(run_id)
        if (final / "metrics.json").exists():
            return DONE
        if (final / "failed.json").exists():
            return FAILED
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
                fh.write(f"{socket.gethostname()} {os.getpid()}")
            return True
        return False

    @staticmethod
    def _stale(path: Path) -> bool:
        """A lock of a dead process on this host (or an empty one older than a minute)."""
        try:
            host, _, pid = path.read_text().partition(" ")
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        if not host:
            return age > 60
        return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))

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
