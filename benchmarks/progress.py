"""Where a sweep stands while it runs: the progress bar's position and the time left.

A run in flight (its lock in ``runs/.partial/``, taken since the sweep began) counts for the
epochs its ``history.csv`` holds over the epochs expected of it, capped below 1 (``CAP``), so the
bar moves per epoch, not per run. Expected epochs come from the estimate (benchmarks/estimate.py)
and seconds too; as runs finish, both are scaled by measured / expected over the runs finished so
far (their epochs, their seconds). Time left: the share of its scaled estimate a run in flight has
still to go (less the time since its last epoch), then the pending runs, costliest first, over the
workers. Without a run seen in flight, the workers' time not yet accounted by a finished run
stands for their work in flight. Runs without an estimate are counted apart (``unknown``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .estimate import duration, makespan

CAP = 0.95  # the most a run in flight counts for: its evaluation is still to come
LOCK = ".lock"
SLACK_SECONDS = 5.0  # a lock this much older than the sweep's start is still one of its workers' (coarse mtimes)


def history_epochs(path: Path) -> tuple[int, float]:
    """(epochs written, modification time) of a run's ``history.csv``: one line per epoch after its
    header; (0, 0.0) while there is none."""
    try:
        data, mtime = path.read_bytes(), path.stat().st_mtime
    except OSError:
        return 0, 0.0
    return max(0, data.count(b"\n") - 1), mtime


class Progress:
    """A sweep's position (runs done plus the share of the runs in flight) and its time left.

    ``estimates``: run id -> estimated seconds; ``epochs``: run id -> expected epochs; ``store``
    (benchmarks.store.RunStore, optional): where ``poll`` sees the runs in flight.
    """

    def __init__(self, run_ids: list[str], estimates: dict[str, float], jobs: int,
                 epochs: dict[str, float] | None = None, store=None, clock=time.monotonic, wall=time.time):
        self.pending = {r: estimates[r] for r in run_ids if r in estimates}
        self.unknown = {r for r in run_ids if r not in estimates}
        self.open = set(run_ids)  # not finished
        self.epochs = {r: float(e) for r, e in (epochs or {}).items() if r in self.open and e}
        self.jobs, self.clock, self.start = max(1, min(jobs, len(run_ids))), clock, clock()
        self.store, self.wall, self.began = store, wall, wall()
        self.done = 0
        self.measured = self.expected = self.spent = 0.0
        self.epochs_run = self.epochs_expected = 0.0
        self.running: dict[str, tuple[int, float]] = {}  # run id -> (epochs written, wall time of its last news)

    # ------------------------------------------------------------------ what happened

    def finished(self, run_id: str, seconds: float, ok: bool = True) -> None:
        self.unknown.discard(run_id)
        self.open.discard(run_id)
        self.running.pop(run_id, None)
        self.done += 1
        self.spent += seconds
        estimate = self.pending.pop(run_id, None)
        if ok and estimate is not None and seconds > 0:
            self.measured += seconds
            self.expected += estimate
        if ok and self.store is not None and run_id in self.epochs:
            epochs, _ = history_epochs(self.store.final(run_id) / "history.csv")
            if epochs:
                self.epochs_run += epochs
                self.epochs_expected += self.epochs[run_id]

    def poll(self) -> None:
        """The runs in flight, read from the store: a lock taken since the sweep began, and the epochs
        of its ``history.csv`` (never fewer than read before: a history being rewritten reads short)."""
        if self.store is None:
            return
        try:
            locks = {e.name[:-len(LOCK)]: e.stat().st_mtime for e in os.scandir(self.store.partials)
                     if e.name.endswith(LOCK)}
        except OSError:
            locks = {}
        running = {}
        for run_id in self.open & locks.keys():
            if locks[run_id] < self.began - SLACK_SECONDS:
                continue  # an older process's lock (a crashed sweep's): not in flight here
            epochs, written = history_epochs(self.store.partial(run_id) / "history.csv")
            seen, last = self.running.get(run_id, (0, 0.0))
            running[run_id] = (max(epochs, seen), max(locks[run_id], written if epochs else 0.0, last))
        self.running = running

    # ------------------------------------------------------------------ where it stands

    def epoch_ratio(self) -> float:
        """Epochs run / epochs expected over the runs finished so far (1 before any)."""
        return self.epochs_run / self.epochs_expected if self.epochs_expected else 1.0

    def ratio(self) -> float:
        """Measured / estimated seconds over the runs finished so far (1 before any)."""
        return self.measured / self.expected if self.expected else 1.0

    def fraction(self, run_id: str) -> float:
        """The share of a run in flight that is done: its epochs over those expected, at most ``CAP``."""
        epochs, _ = self.running.get(run_id, (0, 0.0))
        expected = self.epochs.get(run_id, 0.0) * self.epoch_ratio()
        return min(CAP, epochs / expected) if expected > 0 else 0.0

    def position(self) -> float:
        """Runs finished plus the done share of each run in flight: the bar's position."""
        return self.done + sum(self.fraction(r) for r in self.running if r in self.open)

    def left(self) -> float:
        if not self.pending:
            return 0.0
        ratio = self.ratio()
        flying = {r: since for r, (_, since) in self.running.items() if r in self.pending}
        if not flying:  # nothing seen in flight: the workers' unaccounted time stands for it
            workers = min(self.jobs, len(self.pending) + len(self.unknown))
            in_flight = max(0.0, (self.clock() - self.start) * self.jobs - self.spent)  # all workers busy so far
            return max(0.0, makespan([t * ratio for t in self.pending.values()], workers) - in_flight / workers)
        now = self.wall()
        busy = [max(0.0, self.pending[r] * ratio * (1 - self.fraction(r)) - max(0.0, now - since))
                for r, since in flying.items()]
        queued = [t * ratio for r, t in self.pending.items() if r not in flying]
        workers = max(len(busy), min(self.jobs, len(self.open)))
        return makespan(queued, workers, busy)

    def postfix(self) -> str:
        left = self.left()
        finish = time.strftime("%H:%M", time.localtime(time.time() + left))
        text = f"~{duration(left)} left, done ~{finish}"
        return text + (f" + {len(self.unknown)} runs not estimated" if self.unknown else "")
