"""Where a sweep stands while it runs: the progress bar's position and the time left.

A run in flight (its lock in ``runs/.partial/``, taken since the sweep began) counts for the
epochs its ``history.csv`` holds over the epochs expected of it, capped below 1 (``CAP``), so the
bar moves per epoch, not per run. Expected epochs and seconds come from the estimate
(benchmarks/estimate.py); as runs finish, both are scaled by measured / expected (epochs, seconds).

Per kind (a run's method, ``kinds``): methods differ in how many of their capped epochs the decay
rule lets them train, so one pooled ratio over every finished run is off for each. A run whose kind
has finished runs is scaled by its kind's ratio, shrunk toward the pooled one: the pooled ratio
counts as one more finished run of the kind's mean estimate, ``(sum measured + pooled * mean
estimate) / (sum estimated + mean estimate)``, so a kind's first run moves it half way from the
pooled ratio and each further run more of the way to its own. A kind without a finished run takes
the pooled ratio; without ``kinds`` every run is one kind and the kind's ratio is the pooled one.

A resumed run (its ``history.csv`` in ``runs/.partial/`` already holds epochs when the sweep begins)
trains only the epochs it has left: its seconds are not a whole run's, so they do not enter the
seconds ratios (its epochs, read from its final history, do enter the epoch ratios), and until it is
seen in flight its estimate counts for the share of its expected epochs still to train.

Time left: the time to go of each run in flight, then the pending runs (scaled estimates),
costliest first, over the workers. A run in flight with epochs written since its lock was taken
goes at its own pace: the wall time from its lock to its last epoch written, per epoch, times its
expected epochs left (at least 0), less the time since that epoch (the epoch under way). With
none yet: the share of its scaled estimate still to go, less the time since it began. Its evaluation
is not added to its pace's time: the estimate does not give its evaluation apart.
Without a run seen in flight, the workers' time not yet accounted by a finished run stands for
their work in flight. Runs without an estimate are counted apart (``unknown``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

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


def shrunk(own: float, base: float, n: int, pooled: float) -> float:
    """``own / base`` of a kind's ``n`` finished runs, with the ``pooled`` ratio counted as one more run
    of the kind's mean ``base``; the pooled ratio itself for a kind without any."""
    if n <= 0 or base <= 0:
        return pooled
    prior = base / n
    return (own + pooled * prior) / (base + prior)


class Flight(NamedTuple):
    """What ``poll`` knows of a run in flight."""

    epochs: int  # epochs in its history.csv (never fewer than read before)
    last: float  # wall time of its last news: its lock, then its last epoch written
    lock: float  # wall time its lock was taken: the run's start here
    before: int  # epochs its history held before the lock (a resumed run's), not of this run's pace


class Progress:
    """A sweep's position (runs done plus the share of the runs in flight) and its time left.

    ``estimates``: run id -> estimated seconds; ``epochs``: run id -> expected epochs; ``store``
    (benchmarks.store.RunStore, optional): where ``poll`` sees the runs in flight; ``kinds``: run id
    -> its kind (the method) whose finished runs scale it (default: every run one kind).
    """

    def __init__(self, run_ids: list[str], estimates: dict[str, float], jobs: int,
                 epochs: dict[str, float] | None = None, store=None, clock=time.monotonic, wall=time.time,
                 kinds: dict[str, str] | None = None):
        self.pending = {r: estimates[r] for r in run_ids if r in estimates}
        self.unknown = {r for r in run_ids if r not in estimates}
        self.open = set(run_ids)  # not finished
        self.epochs = {r: float(e) for r, e in (epochs or {}).items() if r in self.open and e}
        self.kinds = dict(kinds or {})
        self.jobs, self.clock, self.start = max(1, min(jobs, len(run_ids))), clock, clock()
        self.store, self.wall, self.began = store, wall, wall()
        self.done = 0
        self.measured = self.expected = self.spent = 0.0
        self.epochs_run = self.epochs_expected = 0.0
        self.seconds_of: dict[str, list[float]] = {}  # kind -> [measured, estimated, runs]
        self.epochs_of: dict[str, list[float]] = {}  # kind -> [epochs run, epochs expected, runs]
        self.running: dict[str, Flight] = {}
        self.resumed = {}  # run id -> epochs its partial history held when the sweep began
        for run_id in self.epochs if store is not None else ():
            epochs, _ = history_epochs(store.partial(run_id) / "history.csv")
            if epochs:
                self.resumed[run_id] = epochs

    def kind(self, run_id: str) -> str:
        return self.kinds.get(run_id, "")

    # ------------------------------------------------------------------ what happened

    def finished(self, run_id: str, seconds: float, ok: bool = True) -> None:
        self.unknown.discard(run_id)
        self.open.discard(run_id)
        self.running.pop(run_id, None)
        self.done += 1
        self.spent += seconds
        estimate = self.pending.pop(run_id, None)
        if ok and estimate is not None and seconds > 0 and run_id not in self.resumed:
            self.measured += seconds
            self.expected += estimate
            add(self.seconds_of, self.kind(run_id), seconds, estimate)
        if ok and self.store is not None and run_id in self.epochs:
            epochs, _ = history_epochs(self.store.final(run_id) / "history.csv")
            if epochs:
                self.epochs_run += epochs
                self.epochs_expected += self.epochs[run_id]
                add(self.epochs_of, self.kind(run_id), epochs, self.epochs[run_id])

    def poll(self) -> None:
        """The runs in flight, read from the store: a lock taken since the sweep began, and the epochs
        of its ``history.csv`` (never fewer than read before: a history being rewritten reads short).
        A history first seen older than its lock is a resumed run's: those epochs are not its pace."""
        if self.store is None:
            return
        try:
            locks = {e.name[:-len(LOCK)]: e.stat().st_mtime for e in os.scandir(self.store.partials)
                     if e.name.endswith(LOCK)}
        except OSError:
            locks = {}
        running = {}
        for run_id in self.open & locks.keys():
            taken = locks[run_id]
            if taken < self.began - SLACK_SECONDS:
                continue  # an older process's lock (a crashed sweep's): not in flight here
            epochs, written = history_epochs(self.store.partial(run_id) / "history.csv")
            seen = self.running.get(run_id, Flight(0, 0.0, taken, 0))
            before = seen.before if run_id in self.running and seen.lock == taken else (
                epochs if epochs and written < taken else 0)  # first seen (or locked anew)
            running[run_id] = Flight(max(epochs, seen.epochs), max(taken, written if epochs else 0.0, seen.last),
                                     taken, before)
        self.running = running

    # ------------------------------------------------------------------ where it stands

    def epoch_ratio(self, kind: str | None = None) -> float:
        """Epochs run / epochs expected over the runs finished so far (1 before any); of ``kind``'s
        runs shrunk toward it (see ``shrunk``) where a kind is given."""
        pooled = self.epochs_run / self.epochs_expected if self.epochs_expected else 1.0
        return pooled if kind is None else shrunk(*self.epochs_of.get(kind, (0.0, 0.0, 0)), pooled)

    def ratio(self, kind: str | None = None) -> float:
        """Measured / estimated seconds over the runs finished so far (1 before any); of ``kind``'s runs
        shrunk toward it where a kind is given."""
        pooled = self.measured / self.expected if self.expected else 1.0
        return pooled if kind is None else shrunk(*self.seconds_of.get(kind, (0.0, 0.0, 0)), pooled)

    def expected_epochs(self, run_id: str) -> float:
        """The epochs a run is expected to train, scaled by what its kind's finished runs trained."""
        return self.epochs.get(run_id, 0.0) * self.epoch_ratio(self.kind(run_id))

    def fraction(self, run_id: str) -> float:
        """The share of a run in flight that is done: its epochs over those expected, at most ``CAP``."""
        flight = self.running.get(run_id)
        expected = self.expected_epochs(run_id)
        return min(CAP, (flight.epochs if flight else 0) / expected) if expected > 0 else 0.0

    def share_left(self, run_id: str) -> float:
        """The share of a queued run still to train: 1, or a resumed run's epochs left over those
        expected (at least ``1 - CAP``: its evaluation is still to come)."""
        expected = self.expected_epochs(run_id)
        before = self.resumed.get(run_id, 0)
        return 1.0 - min(CAP, before / expected) if before and expected > 0 else 1.0

    def position(self) -> float:
        """Runs finished plus the done share of each run in flight: the bar's position."""
        return self.done + sum(self.fraction(r) for r in self.running if r in self.open)

    def to_go(self, run_id: str, now: float) -> float:
        """Seconds a run in flight has still to go (see the module's docstring)."""
        flight = self.running[run_id]
        since = max(0.0, now - flight.last)
        ran = flight.epochs - flight.before  # epochs of this run's pace
        if ran >= 1 and run_id in self.epochs and flight.last > flight.lock:
            pace = (flight.last - flight.lock) / ran
            return max(0.0, pace * max(0.0, self.expected_epochs(run_id) - flight.epochs) - since)
        return max(0.0, self.pending[run_id] * self.ratio(self.kind(run_id)) * (1 - self.fraction(run_id)) - since)

    def left(self) -> float:
        if not self.pending:
            return 0.0
        scaled = {r: t * self.ratio(self.kind(r)) * self.share_left(r) for r, t in self.pending.items()}
        flying = [r for r in self.running if r in self.pending]
        if not flying:  # nothing seen in flight: the workers' unaccounted time stands for it
            workers = min(self.jobs, len(self.pending) + len(self.unknown))
            in_flight = max(0.0, (self.clock() - self.start) * self.jobs - self.spent)  # all workers busy so far
            return max(0.0, makespan(list(scaled.values()), workers) - in_flight / workers)
        now = self.wall()
        busy = [self.to_go(r, now) for r in flying]
        queued = [t for r, t in scaled.items() if r not in self.running]
        workers = max(len(busy), min(self.jobs, len(self.open)))
        return makespan(queued, workers, busy)

    def postfix(self) -> str:
        left = self.left()
        finish = time.strftime("%H:%M", time.localtime(time.time() + left))
        text = f"~{duration(left)} left, done ~{finish}"
        return text + (f" + {len(self.unknown)} runs not estimated" if self.unknown else "")


def add(totals: dict[str, list[float]], kind: str, value: float, expected: float) -> None:
    """One finished run of ``kind`` into ``totals``: [values, expected values, runs]."""
    row = totals.setdefault(kind, [0.0, 0.0, 0])
    row[0] += value
    row[1] += expected
    row[2] += 1
