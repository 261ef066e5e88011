"""The evaluation memory is the device's, not the run's; what bfloat16 really runs in."""
import pytest
import torch

from benchmarks import devices
from benchmarks.config import resolve
from benchmarks.errors import UserError


def test_the_iw_budget_is_no_part_of_a_runs_identity():
    # ids as the code before this change computed them: runs stored by earlier sweeps keep theirs
    assert resolve("vae", "yahoo_small", "quick", 0).run_id == "yahoo_small-vae-quick-s0-b2ce7939c3"
    assert resolve("scale_vae(0.7,1)", "yahoo_small", "paper", 3).run_id == "yahoo_small-scale_vae-paper-s3-6d8744adac"
    with pytest.raises(UserError, match="pass --eval-memory-mb"):
        resolve("vae", "yahoo_small", "quick", 0, ["eval_memory_mb=4096"])


def test_a_gpu_takes_a_share_of_its_free_memory_and_the_cpu_the_profiles_figure(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100 * 2**30, 141 * 2**30))
    assert devices.eval_memory_mb(2048, "cuda:0") == 25 * 1024  # a quarter of 100 GiB free
    assert devices.eval_memory_mb(2048, "cpu") == 2048
    assert devices.eval_memory_mb(2048, "cuda:0", override=512) == 512
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2**30, 141 * 2**30))
    assert devices.eval_memory_mb(2048, "cuda:0") == 2048  # never below the profile's figure


def test_the_precision_report_on_this_cpu():
    report = devices.precision_report("cpu")
    assert report["logits"] == "torch.float32" and report["lstm_weight_grad"] == "torch.float32"
    if not report["bf16_parts"]:  # no AMX: the LSTM computes in float32
        assert report["lstm_weight"] == report["lstm_input"] == "torch.float32"


def test_a_cpu_only_torch_on_a_gpu_machine_is_named(monkeypatch):
    monkeypatch.setattr(devices, "has_nvidia_gpu", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "has no CUDA although the machine has an NVIDIA GPU" in devices.cpu_only_warning(devices.parse_devices("auto"))
    with pytest.raises(UserError, match="install a CUDA build of torch"):
        devices.parse_devices("cuda")
    monkeypatch.setattr(devices, "has_nvidia_gpu", lambda: False)
    assert devices.cpu_only_warning(["cpu"]) is None
