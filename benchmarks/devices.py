"""The machine's devices as the runner sees them: which ones a sweep uses, its slots, their memory.

``--device`` is ``auto`` (every visible GPU, else the CPU), ``cpu``, ``cuda`` (every visible GPU)
or ``cuda:N[,M...]`` (those GPUs, numbered as torch numbers them in this process). A slot is one
run at a time on one device; ``--runs-per-device K`` gives each GPU K slots, listed round-robin
across the GPUs (``cuda:0, cuda:1, ..., cuda:0, cuda:1, ...``) so that a sweep that fills only some
slots still spreads over every GPU. Each GPU slot's worker process sees its GPU alone
(``CUDA_VISIBLE_DEVICES``, with the physical id when this process itself sees a subset), so a run
always computes on ``cuda:0`` of its worker and no worker holds memory on two GPUs.

Nothing here initialises CUDA in the runner's own process: workers are spawned, and a CUDA
context in the parent would be of no use to them.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import UserError
from .scheduler import Slot

CPU, CUDA = "cpu", "cuda"
EVAL_MEMORY_SHARE = 0.25  # of a GPU's free memory, for one IW-NLL chunk's logits (a run shares its GPU)


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_devices(text: str | None) -> list[str]:
    """``--device`` as a list of devices: ["cpu"] or ["cuda:0", "cuda:1", ...]; one UserError line when
    it names no device of this machine."""
    text = (text or "auto").strip().lower()
    if text in ("auto", CUDA):
        count = gpu_count()
        if text == CUDA and not count:
            raise UserError(f"--device cuda: {no_cuda_reason()}; use --device cpu")
        return [f"cuda:{i}" for i in range(count)] or [CPU]
    if text == CPU:
        return [CPU]
    if not text.startswith("cuda:"):
        raise UserError(f"--device takes auto, cpu, cuda or cuda:N[,M...], got {text!r}")
    try:
        indices = [int(part) for part in text[len("cuda:"):].split(",")]
    except ValueError:
        raise UserError(f"--device cuda:N[,M...] takes GPU numbers, got {text!r}") from None
    count = gpu_count()
    if not count:
        raise UserError(f"--device {text}: {no_cuda_reason()}; use --device cpu")
    bad = [i for i in indices if not 0 <= i < count]
    if bad or len(set(indices)) < len(indices):
        raise UserError(f"--device {text}: this machine has GPUs cuda:0 to cuda:{count - 1}; name each once")
    return [f"cuda:{i}" for i in indices]


def physical_id(device: str) -> str:
    """The GPU's id for CUDA_VISIBLE_DEVICES: its place in this process's own CUDA_VISIBLE_DEVICES, if set."""
    index = int(device.split(":")[1])
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[index] if index < len(visible) else str(index)


def slots(devices: list[str], runs_per_device: int, jobs: int) -> list[Slot]:
    """The sweep's slots: ``runs_per_device`` per GPU, round-robin across GPUs; ``jobs`` on the CPU."""
    if devices == [CPU]:
        return [Slot(i, CPU) for i in range(jobs)]
    order = [d for _ in range(runs_per_device) for d in devices]
    return [Slot(i, d, physical_id(d)) for i, d in enumerate(order)]


def default_profile(devices: list[str]) -> str:
    """``paper`` on GPUs, ``quick`` on the CPU (``--device cpu`` on a GPU machine included)."""
    return "quick" if devices == [CPU] else "paper"


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver is loaded, whatever this torch build can use."""
    return Path("/proc/driver/nvidia/version").exists()


def no_cuda_reason() -> str:
    if torch.version.cuda is None and has_nvidia_gpu():
        return (f"this torch build ({torch.__version__}) has no CUDA although the machine has an NVIDIA GPU: "
                "install a CUDA build of torch (requirements.txt pins the version)")
    return "CUDA is not available on this machine"


def cpu_only_warning(devices: list[str]) -> str | None:
    """One line when ``auto`` fell back to the CPU on a machine with an NVIDIA GPU (a CPU-only torch wheel)."""
    if devices == [CPU] and has_nvidia_gpu() and not torch.cuda.is_available():
        return f"warning: {no_cuda_reason()}; running on the CPU"
    return None


def memory_mb(device: str) -> float | None:
    """Total memory of a GPU in MiB (None for the CPU: the memory guard is for GPUs)."""
    if not device.startswith(CUDA):
        return None
    return torch.cuda.get_device_properties(int(device.split(":")[1])).total_memory / 2**20


def eval_memory_mb(profile_mb: int, device, override: int | None = None) -> int:
    """The IW-NLL's memory budget (logits of one chunk) for a run on ``device``: a property of the
    device, not of the run, so it is no part of a run's identity.

    ``override`` (``--eval-memory-mb``) wins; on a GPU, a share of its free memory (at least the
    profile's figure), so one pass computes many samples; on the CPU, the profile's figure.
    """
    if override:
        return int(override)
    device = torch.device(device)
    if device.type == CUDA:
        free, _ = torch.cuda.mem_get_info(device)
        return max(profile_mb, int(free * EVAL_MEMORY_SHARE / 2**20))
    return profile_mb


def precision_report(device: str = "cuda") -> dict:
    """What a bfloat16 LSTM step really computes in on ``device``: the dtypes its LSTM saw (input,
    weights, output: forward hook), the logits and gradients, and, for comparison, what a plain
    ``nn.LSTM`` under ``torch.autocast(dtype=bfloat16)`` gives there (float16 on CUDA's cuDNN: the
    reason ``models.networks.run_lstm`` casts explicitly)."""
    from models import networks

    device = torch.device(device)
    arch = networks.Architecture(vocab_size=1000, emb_dim=64, enc_hidden=128, dec_hidden=128, nz=8, precision="bf16")
    decoder = networks.LSTMDecoder(arch).to(device)
    seen = {}

    def hook(module, args, output):
        seen.update(lstm_input=str(args[0].dtype), lstm_weight=str(module.weight_ih_l0.dtype),
                    lstm_output=str(output[0].dtype))
    decoder.lstm.register_forward_hook(hook)
    tokens = torch.randint(4, 1000, (4, 12), device=device)
    logits = decoder.logits(tokens, torch.randn(4, 8, device=device))
    logits.logsumexp(-1).mean().backward()
    plain = torch.nn.LSTM(16, 16, batch_first=True).to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        autocast_output = plain(torch.randn(2, 3, 16, device=device))[0].dtype
    cudnn = torch.backends.cudnn.version() if device.type == CUDA and torch.backends.cudnn.is_available() else None
    return {"device": str(device), "name": torch.cuda.get_device_name(device) if device.type == CUDA else "cpu",
            "torch": torch.__version__, "cudnn": cudnn, "bf16_parts": sorted(networks.bf16_parts(device.type)),
            **seen, "logits": str(logits.dtype), "lstm_weight_grad": str(decoder.lstm.weight_ih_l0.grad.dtype),
            "autocast_lstm_output": str(autocast_output),
            "float32_matmul": networks.float32_matmul_policy(device)}


def main(argv=None) -> int:
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m benchmarks.devices",
                                     description="what a bfloat16 LSTM step computes in on a device")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--report", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    try:
        device = parse_devices(args.device)[0] if args.device != CPU else CPU
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = precision_report(device)
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
