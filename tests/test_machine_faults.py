"""Faults of the machine are not results (docs/reliability.md, "Faults of the machine").

A GPU out of memory or a CUDA error leaves its run unfinished, with nothing recorded, and the
next call resumes it; divergence and the run's own errors are still stored as failed. No GPU
is needed: the faults are raised by hand where a GPU raises them, and torch.cuda's RNG calls
are replaced by stubs that behave like a machine with a given number of visible GPUs.
"""
import gc
import pickle
import weakref

import pytest
import torch

import models
from benchmarks import evaluate, train
from benchmarks.config import load_profile, resolve
from benchmarks.data import BatchLoader
from benchmarks.errors import MachineFault, UserError, machine_fault_kind
from benchmarks.protocol import Trainer, TrainingDiverged, UnusableCheckpoint
from benchmarks.store import DONE, FAILED, PARTIAL, PENDING, RunStore, read_json
from benchmarks.train import TIMING_KEYS, train_run

from .helpers import tiny_arch


def out_of_memory():
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
                                       "capacity of 79.19 GiB of which 1.06 GiB is free.")


def illegal_access():
    return RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                        "asynchronously reported at some other API call")


def raising(make_error):
    """A stand-in for a function: whatever it is called with, it raises ``make_error()``."""
    def fail(*args, **kwargs):
        raise make_error()
    return fail


@pytest.mark.parametrize("error, kind", [
    (out_of_memory(), "out_of_memory"),
    (torch.OutOfMemoryError("HIP out of memory. Tried to allocate 20.00 MiB"), "out_of_memory"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "out_of_memory"),  # torch before 1.13
    (RuntimeError("CUDA error: out of memory"), "out_of_memory"),
    (torch.AcceleratorError("CUDA error: unspecified launch failure"), "device_error"),
    (illegal_access(), "device_error"),
    (RuntimeError("CUDA error: device-side assert triggered"), "device_error"),
    (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb, m, n, k)`"),
     "device_error"),
    (RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"), "device_error"),
    (RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1296, unhandled cuda error"), "device_error"),
    (RuntimeError("No CUDA GPUs are available"), "device_error"),
    (RuntimeError("CUDA driver initialization failed, you might not have a CUDA gpu."), "device_error"),
    (RuntimeError("bad shape"), None),
    (RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 4000000000 bytes."), None),
    (MemoryError(), None),
    (TrainingDiverged("training loss became nan in epoch 3", 3), None),  # a RuntimeError too
    (ValueError("CUDA error: a message is not enough, a RuntimeError is needed"), None),
    (UserError("--device cuda: CUDA is not available on this machine; use --device cpu"), None),
])
def test_machine_fault_kind(error, kind):
    assert machine_fault_kind(error) == kind


def test_a_machine_fault_comes_back_whole_from_a_worker_process():
    """joblib pickles a worker's exception: kind and run_id must survive for the runner's summary."""
    fault = pickle.loads(pickle.dumps(MachineFault("out_of_memory", "run-1", "OutOfMemoryError: CUDA out of memory")))
    assert (fault.kind, fault.run_id) == ("out_of_memory", "run-1") and "run the same command again" in str(fault)


# ------------------------------------------------------------------ training
def run(config, tmp_path, data_dir, results="r"):
    return train_run(config, results_dir=tmp_path / results, data_dir=data_dir, cache_dir=tmp_path / "cache",
                     download=False, log=lambda line: None)


def without_timing(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in TIMING_KEYS}


def fail_in_epoch(monkeypatch, epoch: int, make_error) -> list:
    """The first optimiser step of ``epoch`` raises ``make_error()``; returns weak references
    to the models it failed."""
    real = Trainer.step
    failed = []

    def step(self, loss, update=("encoder", "decoder")):
        if self.epoch + 1 == epoch:
            failed.append(weakref.ref(self.model))
            raise make_error()
        return real(self, loss, update)
    monkeypatch.setattr(Trainer, "step", step)
    return failed


@pytest.mark.parametrize("make_error, kind, epoch, left", [
    (out_of_memory, "out_of_memory", 2, PARTIAL),  # after epoch 1's checkpoint
    (illegal_access, "device_error", 1, PENDING),  # before any checkpoint
], ids=["out-of-memory-in-epoch-2", "cuda-error-in-epoch-1"])
def test_a_machine_fault_leaves_the_run_unfinished_and_the_next_call_resumes_it(
        tmp_path, data_dir, monkeypatch, make_error, kind, epoch, left):
    config = resolve("vae", "yahoo_small", "smoke", 0)
    store = RunStore(tmp_path / "r")
    with monkeypatch.context() as patch:
        failed = fail_in_epoch(patch, epoch, make_error)
        with pytest.raises(MachineFault) as caught:
            run(config, tmp_path, data_dir)
    fault = caught.value
    assert (fault.kind, fault.run_id) == (kind, config.run_id) and type(fault.__cause__) is type(make_error())
    gc.collect()
    assert failed and failed[0]() is None  # its traceback no longer holds the model (on a GPU: its memory)
    assert store.status(config.run_id) == left and not store.final(config.run_id).exists()  # no failed.json
    log = (store.partial(config.run_id) / "train.log").read_text()
    assert f"machine fault ({kind}): " in log and "resumes on the next invocation" in log and "FAILED" not in log

    path, status = run(config, tmp_path, data_dir)
    assert status == DONE
    log = (path / "train.log").read_text()
    if left == PARTIAL:
        assert "after epoch 1" in log and log.count("epoch   1 ") == 1  # resumed, epoch 1 not trained again
    else:
        assert "resumed from" not in log
    assert [int(row.split(",")[0]) for row in (path / "history.csv").read_text().splitlines()[1:]] == [1, 2]
    whole, _ = run(config, tmp_path, data_dir, results="whole")
    assert without_timing(read_json(path / "metrics.json")) == without_timing(read_json(whole / "metrics.json"))


def test_the_command_line_says_it_in_one_line_and_exits_with_code_3(tmp_path, data_dir, monkeypatch, capsys):
    fail_in_epoch(monkeypatch, 1, out_of_memory)
    code = train.main(["--model", "vae", "--dataset", "yahoo_small", "--profile", "smoke", "--offline",
                       "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"), "--results", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and "machine fault (out_of_memory" in err[0] and "run the same command" in err[0]


def test_a_machine_fault_in_the_final_evaluation_is_evaluated_again_without_retraining(
        tmp_path, data_dir, monkeypatch):
    config = resolve("vae", "yahoo_small", "smoke", 0)
    store = RunStore(tmp_path / "r")
    with monkeypatch.context() as patch:
        patch.setattr(train, "score", raising(out_of_memory))
        with pytest.raises(MachineFault, match="out_of_memory"):
            run(config, tmp_path, data_dir)
    assert store.status(config.run_id) == PARTIAL  # last.pt stays until the run is published

    def no_training(self):
        raise AssertionError("the run was trained again")
    monkeypatch.setattr(Trainer, "train_epoch", no_training)
    path, status = run(config, tmp_path, data_dir)
    log = (path / "train.log").read_text()
    assert status == DONE and "after epoch 2" in log and log.count("test: ") == 1
    assert read_json(path / "metrics.json")["epochs"] == 2


@pytest.mark.parametrize("make_error, reason", [
    (lambda: RuntimeError("bad shape"), "RuntimeError: bad shape"),
    (lambda: TrainingDiverged("training loss became nan in epoch 1", 1), "TrainingDiverged: training loss"),
], ids=["own-error", "divergence"])
def test_the_runs_own_errors_and_divergence_are_still_failed(tmp_path, data_dir, monkeypatch, make_error, reason):
    fail_in_epoch(monkeypatch, 1, make_error)
    path, status = run(resolve("vae", "yahoo_small", "smoke", 0), tmp_path, data_dir)
    assert status == FAILED and read_json(path / "failed.json")["reason"].startswith(reason)


def test_a_checkpoint_that_cannot_be_restored_is_kept_and_the_run_not_recorded(tmp_path, data_dir, monkeypatch):
    """Readable but not restorable (a bug, other code): stop and say so; the user's progress stays."""
    config = resolve("vae", "yahoo_small", "smoke", 0)
    store = RunStore(tmp_path / "r")
    with monkeypatch.context() as patch:
        fail_in_epoch(patch, 2, out_of_memory)
        with pytest.raises(MachineFault):
            run(config, tmp_path, data_dir)
    checkpoint = store.partial(config.run_id) / "last.pt"
    state = torch.load(checkpoint, weights_only=False)
    del state["loader"]  # what a checkpoint of other code might lack
    torch.save(state, checkpoint)
    with pytest.raises(UnusableCheckpoint, match="KeyError: 'loader'.*delete it"):
        run(config, tmp_path, data_dir)
    assert checkpoint.exists() and store.status(config.run_id) == PARTIAL
    assert "cannot be restored (KeyError" in (store.partial(config.run_id) / "train.log").read_text()


# ------------------------------------------------------- resuming on fewer GPUs
class FakeCudaRng:
    """torch.cuda's RNG calls on a machine showing ``visible`` GPUs: like torch's own, an index
    beyond them fails (``torch.cuda.default_generators[index]``)."""

    def __init__(self, visible: int):
        self.visible, self.restored = visible, []

    def index(self, device) -> int:
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        index = 0 if device.index is None else device.index  # the current device: 0
        if index >= self.visible:
            raise IndexError("tuple index out of range")
        return index

    def get_rng_state(self, device="cuda"):
        return torch.full((8,), 10 + self.index(device), dtype=torch.uint8)

    def set_rng_state(self, state, device="cuda"):
        self.restored.append((self.index(device), state.clone()))

    def install(self, monkeypatch, run_device: torch.device) -> "FakeCudaRng":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        for module in (torch.cuda, torch.cuda.random):  # torch.cuda.random's *_all call its own names
            monkeypatch.setattr(module, "device_count", lambda: self.visible)
            monkeypatch.setattr(module, "get_rng_state", self.get_rng_state)
            monkeypatch.setattr(module, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(Trainer, "device", property(lambda trainer: run_device))  # the model stays on the CPU
        return self


def tiny_trainer(lines=None) -> Trainer:
    torch.manual_seed(0)
    docs = [[1, 4 + i % 8, 5 + i % 7, 2] for i in range(12)]
    batches = BatchLoader(docs, 4, pad_id=0)
    log = lines.append if lines is not None else (lambda line: None)
    return Trainer(models.build("vae", tiny_arch()), load_profile("smoke"), batches, BatchLoader(docs, 4, pad_id=0),
                   log=log)


@pytest.mark.parametrize("saved_by, visible, now_on, expected", [
    ("older code, 2 GPUs visible", 1, 0, 10),  # the list's state for the current device's index
    ("older code, 1 GPU visible", 2, 1, 10),  # no state for index 1: the first
    ("this code, on cuda:1 of 2", 1, 0, 11),  # cuda:1's state, restored to the run's device now
])
def test_a_checkpoint_resumes_where_fewer_gpus_are_visible(tmp_path, monkeypatch, saved_by, visible, now_on, expected):
    checkpoint = tmp_path / "last.pt"
    with monkeypatch.context() as patch:
        if saved_by.startswith("older"):  # get_rng_state_all(): one state per visible GPU
            state = tiny_trainer().state_dict()
            gpus = int(saved_by.split(", ")[1][0])
            state["rng"]["cuda"] = [torch.full((8,), 10 + i, dtype=torch.uint8) for i in range(gpus)]
            torch.save(state, checkpoint)
        else:
            FakeCudaRng(2).install(patch, torch.device("cuda", 1))
            tiny_trainer().save_checkpoint(checkpoint)
            assert torch.load(checkpoint, weights_only=False)["rng"]["cuda"].tolist() == [11] * 8  # cuda:1's only
    rng = FakeCudaRng(visible).install(monkeypatch, torch.device("cuda", now_on))
    lines = []
    assert tiny_trainer(lines).resume(checkpoint), lines
    assert checkpoint.exists()
    assert [(index, state.tolist()) for index, state in rng.restored] == [(now_on, [expected] * 8)]


@pytest.mark.parametrize("breakage, raised", [
    ("a key missing", UnusableCheckpoint),
    ("out of GPU memory while restoring", torch.OutOfMemoryError),
])
def test_a_readable_checkpoint_that_fails_to_restore_is_kept(tmp_path, monkeypatch, breakage, raised):
    checkpoint = tmp_path / "last.pt"
    tiny_trainer().save_checkpoint(checkpoint)
    if breakage == "a key missing":
        state = torch.load(checkpoint, weights_only=False)
        del state["optimizers"]
        torch.save(state, checkpoint)
    else:
        monkeypatch.setattr(torch.optim.Adam, "load_state_dict", raising(out_of_memory))
    lines = []
    with pytest.raises(raised):
        tiny_trainer(lines).resume(checkpoint)
    assert checkpoint.exists(), lines


# ------------------------------------------------------------------ re-scoring
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from .conftest import DATA_DIR
    results = tmp_path_factory.mktemp("results")
    path, status = train_run(resolve("vae", "yahoo_small", "smoke", 0), results_dir=results, data_dir=DATA_DIR,
                             cache_dir=results / "cache", download=False, log=lambda line: None)
    assert status == DONE
    return results, path


@pytest.mark.parametrize("where", ["loading best.pt", "scoring"])
def test_a_machine_fault_while_rescoring_writes_nothing(finished_run, data_dir, monkeypatch, capsys, where):
    results, path = finished_run
    before = (path / "metrics.json").read_bytes()
    with monkeypatch.context() as patch:
        if where == "scoring":
            patch.setattr(evaluate, "score", raising(out_of_memory))
        else:
            patch.setattr(torch, "load", raising(illegal_access))
        with pytest.raises(MachineFault) as caught:
            evaluate.rescore(path, data_dir=data_dir, cache_dir=results / "cache")
        assert caught.value.run_id == path.name
        code = evaluate.main(["--results", str(results), "--force", "--data-dir", str(data_dir),
                              "--cache-dir", str(results / "cache")])
    out = capsys.readouterr().out
    assert code == 1 and f"[unfinished] {path.name}" in out and "1 left unfinished" in out, out
    assert (path / "metrics.json").read_bytes() == before
