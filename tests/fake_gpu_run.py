"""Stub runs for the scheduler's tests: each records its process, visible GPUs and time span.

No torch here: the scheduler's spawned workers import this module, and the tests start many.
"""
import json
import os
import time
from pathlib import Path


def record(log: str, run_id: str, seconds: float) -> dict:
    """Sleep ``seconds`` and append {run_id, pid, visible, start, end} to ``log``."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    line = {"run_id": run_id, "pid": os.getpid(), "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "start": start, "end": end}
    with open(log, "a") as fh:
        fh.write(json.dumps(line) + "\n")
    return {"run_id": run_id, "status": "done", "seconds": end - start}


def fault_once(log: str, run_id: str, seconds: float, kind: str) -> dict:
    """A run that hits a fault of the machine the first time it runs (marker file beside ``log``):
    ``kind`` "out_of_memory" or "device_error" is reported, "worker_died" kills the worker."""
    marker = Path(f"{log}.{run_id}.faulted")
    if not marker.exists():
        marker.touch()
        if kind == "worker_died":
            os._exit(3)
        return {"run_id": run_id, "status": "unfinished", "fault": kind, "reason": f"{kind}: simulated",
                "seconds": 0.0, "pid": os.getpid()}
    return record(log, run_id, seconds)


def spans(log) -> list[dict]:
    return [json.loads(line) for line in Path(log).read_text().splitlines()]


def overlapping(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def max_concurrency(lines: list[dict]) -> int:
    events = sorted([(x["start"], 1) for x in lines] + [(x["end"], -1) for x in lines])
    running = best = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    return best


def dask_run(config_json: dict, options: dict, device: str, threads: int = 0) -> dict:
    """``execute.run_one``'s stand-in on a Dask worker: records the device it was given and its worker."""
    from distributed import get_worker

    start = time.time()
    time.sleep(0.3)
    line = {"run_id": config_json["run_id"], "device": device, "worker": get_worker().address,
            "start": start, "end": time.time()}
    with open(options["log"], "a") as fh:
        fh.write(json.dumps(line) + "\n")
    return {"run_id": config_json["run_id"], "status": "done", "seconds": line["end"] - start}
