"""Runs on GPUs: one worker process per slot, pinned to its GPU for its whole life, and a memory guard.

Each slot (``benchmarks/devices.py``) gets a spawned worker process whose ``CUDA_VISIBLE_DEVICES``
is its GPU alone, set before anything in it touches CUDA: every run of that worker computes on
its ``cuda:0``, and no worker keeps a CUDA context or cached memory on another GPU. Every GPU run
executes in a worker, never in the runner's own process, so a run that breaks its CUDA context
cannot take the sweep with it.

A free slot takes the first queued run (costliest first) that fits its GPU: a GPU with nothing
on it takes any run; otherwise the estimated peaks (``benchmarks/memory.py``) of its runs and the
newcomer must sum to at most ``MEMORY_MARGIN`` of its memory, and a run with no estimate waits
for a GPU of its own. So two memory-heavy runs (SA-VAE's) never share a card, whatever
``--runs-per-device`` says.

A run that ends with a fault of the machine (``status`` unfinished: out of memory, a CUDA error,
its worker process died) is not a result: it is queued once more, to run alone on its GPU; if it
fails that way again it is left unfinished for the next invocation. A worker whose run hit a
device error exits and a fresh one takes its slot.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
from dataclasses import dataclass
from typing import Callable

# No torch here: a worker imports this module before it is pinned, and tests spawn many of them.
UNFINISHED = "unfinished"  # benchmarks.store.UNFINISHED: a run stopped by a fault of the machine
MEMORY_MARGIN = 0.9  # of a GPU's memory that the estimated peaks of its runs may fill together
POLL_SECONDS = 0.5  # how often a waiting scheduler checks that its workers are alive


@dataclass(frozen=True)
class Slot:
    """One run at a time on ``device`` ("cpu" or "cuda:N", N in the runner's numbering)."""

    index: int
    device: str
    visible: str | None = None  # the worker's CUDA_VISIBLE_DEVICES (the GPU's id as the driver knows it)

    @property
    def run_device(self) -> str:
        """The device a run names inside its worker: the worker sees its one GPU as cuda:0."""
        return "cuda:0" if self.visible is not None else "cpu"


@dataclass
class Task:
    """One run to schedule. ``call(slot)`` gives the function and arguments a worker runs for it."""

    run_id: str
    call: Callable[[Slot], tuple]
    peak_mb: float | None = None
    alone: bool = False  # after a machine fault: nothing else on its GPU
    retried: bool = False


def worker_loop(slot_index: int, visible: str | None, threads: int, inbox, outbox) -> None:
    """A slot's worker: pin the GPU, then run what the scheduler sends until it sends None."""
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible  # before any CUDA call of this process
    if threads:
        import torch
        torch.set_num_threads(threads)
    while (item := inbox.get()) is not None:
        run_id, function, args = item
        try:
            summary = function(*args)
        except Exception as error:  # noqa: BLE001 - reported as the run's failure, the worker goes on
            summary = {"run_id": run_id, "status": "failed", "reason": f"{type(error).__name__}: {error}",
                       "seconds": 0.0}
        outbox.put((slot_index, summary))
        if summary.get("fault") == "device_error":
            return  # its CUDA context may be unusable: the scheduler starts a fresh worker


class Worker:
    def __init__(self, slot: Slot, threads: int, context, outbox):
        self.slot, self.inbox = slot, context.Queue()
        self.process = context.Process(target=worker_loop, args=(slot.index, slot.visible, threads, self.inbox, outbox),
                                       daemon=True, name=f"vaebench-slot{slot.index}-{slot.device}")
        self.process.start()

    def send(self, item) -> None:
        self.inbox.put(item)

    def stop(self, wait: float = 5.0) -> None:
        if self.process.is_alive():
            self.inbox.put(None)
            self.process.join(wait)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(wait)


class DeviceScheduler:
    """Runs tasks on ``slots``; ``capacity_mb`` maps each device to its memory (None: no guard)."""

    def __init__(self, slots: list[Slot], capacity_mb: dict[str, float | None], threads: int = 0):
        self.slots, self.capacity, self.threads = slots, capacity_mb, threads
        self.context = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA state
        self.outbox = self.context.Queue()
        self.workers: dict[int, Worker] = {}
        self.running: dict[int, Task] = {}  # slot index -> its task

    # ------------------------------------------------------------------ placement
    def fits(self, task: Task, device: str) -> bool:
        """Whether ``task`` may start on ``device`` beside the runs already there."""
        beside = [t for i, t in self.running.items() if self.slots[i].device == device]
        if not beside:
            return True
        if task.alone or any(t.alone for t in beside):
            return False
        capacity = self.capacity.get(device)
        if capacity is None:
            return True
        peaks = [task.peak_mb, *(t.peak_mb for t in beside)]
        return None not in peaks and sum(peaks) <= MEMORY_MARGIN * capacity

    def assign(self, waiting: list[Task]) -> None:
        for slot in self.slots:
            if slot.index in self.running:
                continue
            task = next((t for t in waiting if self.fits(t, slot.device)), None)
            if task is None:
                continue
            waiting.remove(task)
            function, args = task.call(slot)
            self.running[slot.index] = task
            self.workers[slot.index].send((task.run_id, function, args))

    # ------------------------------------------------------------------ results
    def next_result(self) -> tuple[int, dict]:
        """The next (slot index, summary); a worker that died mid-run gives an unfinished summary."""
        while True:
            try:
                return self.outbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                pass
            for index, task in list(self.running.items()):
                worker = self.workers[index]
                if not worker.process.is_alive():
                    code = worker.process.exitcode
                    self.restart(index)
                    return index, {"run_id": task.run_id, "status": UNFINISHED, "fault": "worker_died",
                                   "reason": f"its worker process ended (exit code {code})", "seconds": 0.0}

    def restart(self, index: int) -> None:
        self.workers[index].stop(wait=1.0)
        self.workers[index] = Worker(self.slots[index], self.threads, self.context, self.outbox)

    def run(self, tasks: list[Task], report: Callable[[dict], None]) -> list[dict]:
        """Run every task; ``report(summary)`` sees each summary as it comes (``retrying`` set on a
        machine fault that is tried again). Returns the final summaries."""
        waiting, finals = list(tasks), []
        self.workers = {s.index: Worker(s, self.threads, self.context, self.outbox) for s in self.slots}
        try:
            while waiting or self.running:
                self.assign(waiting)
                index, summary = self.next_result()
                task = self.running.pop(index)
                if summary.get("fault") == "device_error":
                    self.restart(index)
                if summary.get("fault") and not task.retried:
                    task.retried, task.alone = True, True
                    waiting.insert(0, task)
                    report({**summary, "retrying": True})
                    continue
                finals.append(summary)
                report(summary)
        finally:
            for worker in self.workers.values():
                worker.stop(wait=0.0 if self.running else 5.0)
        return finals
