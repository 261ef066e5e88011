"""The GPU scheduler on a fake machine of 2 and of 8 GPUs: no GPU needed.

The device count is patched; the runs are stubs (tests/fake_gpu_run.py) that record their
process, the GPUs their worker sees and their time span, in real spawned worker processes.
"""
from collections import defaultdict

import pytest
import torch

from benchmarks import devices, execute, store
from benchmarks.errors import UserError
from benchmarks.scheduler import UNFINISHED, DeviceScheduler, Task
from tests import fake_gpu_run
from tests.fake_gpu_run import max_concurrency, overlapping, spans

RUN_SECONDS = 0.6


@pytest.fixture
def fake_gpus(monkeypatch):
    """A machine with N GPUs as torch sees them (no CUDA call is made)."""
    def install(count: int):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return install


def tasks_of(log, names, peaks=None, seconds=RUN_SECONDS, function=fake_gpu_run.record, extra=()):
    peaks = peaks or {}
    return [Task(name, lambda slot, name=name: (function, (str(log), name, seconds, *extra)), peaks.get(name))
            for name in names]


def run(slots, tasks, capacity=None):
    reports = []
    finals = DeviceScheduler(slots, capacity or {s.device: None for s in slots}).run(tasks, reports.append)
    return finals, reports


def test_slots_are_interleaved_across_gpus_and_each_worker_sees_one_gpu(tmp_path, fake_gpus):
    fake_gpus(8)
    pool = execute.workers(devices.parse_devices("auto"), 0, 2)
    assert [s.device for s in pool.slots[:9]] == [f"cuda:{i}" for i in range(8)] + ["cuda:0"]
    assert len(pool.slots) == 16 and all(s.run_device == "cuda:0" for s in pool.slots)
    log = tmp_path / "log"
    # 8 runs on 16 slots: interleaving puts one on every GPU (listed GPU by GPU, they would pair up on 4)
    finals, _ = run(pool.slots[:8], tasks_of(log, [f"r{i}" for i in range(8)]))
    lines = spans(log)
    assert {f["status"] for f in finals} == {"done"} and len(lines) == 8
    assert sorted(x["visible"] for x in lines) == [str(i) for i in range(8)]
    assert len({x["pid"] for x in lines}) == 8  # one worker per slot, none of them the runner


def test_at_most_n_runs_per_gpu_and_a_worker_keeps_its_gpu(tmp_path, fake_gpus):
    fake_gpus(2)
    pool = execute.workers(devices.parse_devices("cuda"), 0, 2)
    log = tmp_path / "log"
    run(pool.slots, tasks_of(log, [f"r{i}" for i in range(10)]))
    lines = spans(log)
    by_gpu = defaultdict(list)
    for line in lines:
        by_gpu[line["visible"]].append(line)
    assert set(by_gpu) == {"0", "1"}
    assert all(max_concurrency(group) <= 2 for group in by_gpu.values())
    assert max(max_concurrency(group) for group in by_gpu.values()) == 2  # the slots are used
    visible_of_pid = defaultdict(set)
    for line in lines:
        visible_of_pid[line["pid"]].add(line["visible"])
    assert len(visible_of_pid) == 4 and all(len(v) == 1 for v in visible_of_pid.values())


def test_memory_heavy_runs_never_share_a_gpu(tmp_path, fake_gpus):
    fake_gpus(1)
    pool = execute.workers(devices.parse_devices("cuda:0"), 0, 2)
    log = tmp_path / "log"
    peaks = {"heavy1": 50_000, "heavy2": 50_000, "light1": 10_000, "light2": 10_000, "unknown": None}
    finals, _ = run(pool.slots, tasks_of(log, list(peaks), peaks), {"cuda:0": 81_000})
    assert len(finals) == 5
    by_id = {x["run_id"]: x for x in spans(log)}
    assert not overlapping(by_id["heavy1"], by_id["heavy2"])
    assert any(overlapping(by_id[h], by_id[lt]) for h in ("heavy1", "heavy2") for lt in ("light1", "light2"))
    assert not any(overlapping(by_id["unknown"], by_id[o]) for o in by_id if o != "unknown")  # no estimate: alone


@pytest.mark.parametrize("kind", ["out_of_memory", "device_error", "worker_died"])
def test_a_machine_fault_is_retried_once_alone_and_is_no_result(tmp_path, fake_gpus, kind):
    fake_gpus(1)
    pool = execute.workers(devices.parse_devices("cuda"), 0, 2)
    log = tmp_path / "log"
    tasks = tasks_of(log, ["faulty"], seconds=RUN_SECONDS, function=fake_gpu_run.fault_once, extra=(kind,)) \
        + tasks_of(log, ["other1", "other2"])
    finals, reports = run(pool.slots, tasks, {"cuda:0": 81_000})
    assert {f["run_id"]: f["status"] for f in finals} == {"faulty": "done", "other1": "done", "other2": "done"}
    retry = [r for r in reports if r.get("retrying")]
    assert [r["run_id"] for r in retry] == ["faulty"] and retry[0]["status"] == UNFINISHED
    by_id = {x["run_id"]: x for x in spans(log)}
    assert not any(overlapping(by_id["faulty"], by_id[o]) for o in ("other1", "other2"))  # the retry ran alone


def test_a_second_fault_leaves_the_run_unfinished(tmp_path, fake_gpus):
    fake_gpus(1)
    pool = execute.workers(devices.parse_devices("cuda"), 0, 1)
    logs = iter(["first", "retry"])  # a task's call is made at each assignment: a fresh marker, a fault again
    tasks = [Task("faulty", lambda slot: (fake_gpu_run.fault_once, (str(tmp_path / next(logs)), "faulty", 0.1,
                                                                    "out_of_memory")))]
    finals, reports = run(pool.slots, tasks)
    assert [f["status"] for f in finals] == [UNFINISHED] and len(reports) == 2
    assert store.UNFINISHED == UNFINISHED


def test_device_option(fake_gpus, monkeypatch):
    fake_gpus(4)
    assert devices.parse_devices("cuda:1,3") == ["cuda:1", "cuda:3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    slots = devices.slots(devices.parse_devices("cuda:1,3"), 1, 0)
    assert [s.visible for s in slots] == ["5", "7"]  # the physical ids under the runner's own mask
    for bad in ("cuda:4", "cuda:1,1", "gpu", "cuda:x"):
        with pytest.raises(UserError):
            devices.parse_devices(bad)
    assert devices.default_profile(devices.parse_devices("cpu")) == "quick"
    assert devices.default_profile(devices.parse_devices("auto")) == "paper"
    fake_gpus(0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.parse_devices("auto") == ["cpu"]
    with pytest.raises(UserError, match="use --device cpu"):
        devices.parse_devices("cuda")


@pytest.mark.parametrize("gpus", [True, False])
def test_dask_workers_that_declare_a_gpu_get_one_run_at_a_time_on_cuda(tmp_path, monkeypatch, gpus):
    distributed = pytest.importorskip("distributed")
    from benchmarks import plan
    monkeypatch.setattr(execute, "run_one", fake_gpu_run.dask_run)
    todo = plan.unique_runs(plan.plan("smoke", ["core"], 2))
    log = tmp_path / "log"
    resources = {"resources": {"GPU": 1}} if gpus else {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=False, dashboard_address=None,
                                  **resources) as cluster:
        finals = execute.on_dask(todo, cluster.scheduler_address, {"log": str(log)}, 1, lambda summary: None)
    lines = spans(log)
    assert len(finals) == len(todo) == len(lines) == 6
    assert {x["device"] for x in lines} == ({"cuda"} if gpus else {"cpu"})
    by_worker = defaultdict(list)
    for line in lines:
        by_worker[line["worker"]].append(line)
    # a GPU worker takes one run at a time though it has two threads; a CPU one runs two at once
    assert max(max_concurrency(group) for group in by_worker.values()) == (1 if gpus else 2)


def test_the_estimate_on_gpus_calibrates_in_the_slots_workers(monkeypatch, fake_gpus):
    from benchmarks import calibration
    fake_gpus(2)
    slots = devices.slots(devices.parse_devices("cuda"), 2, 0)
    seen = {}

    def on_gpus(configs, options, threads, used):
        seen["slots"] = used
        return [[{"step": (1e-3, 1e-4), "forward": (1e-3, 1e-4), "iw": 0.0, "setup": 0.5, "share": 1.0}]
                for _ in used]
    monkeypatch.setattr(calibration, "calibrate_on_gpus", on_gpus)
    from benchmarks import plan
    config = plan.unique_runs(plan.plan("smoke", ["core"], 1, ["vae"]))[0]
    rates = calibration.calibrate({"g": config}, {"device": "cuda:0"}, 4, 1, slots)
    assert seen["slots"] == slots and rates["g"].step == (1e-3, 1e-4)
