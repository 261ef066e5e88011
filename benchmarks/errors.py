"""How the command-line entry points end on bad input, and when a signal stops them.

:class:`UserError`, for bad user input, is defined in ``models.errors`` (the bottom of
the import order) and re-exported here, so that ``except UserError`` in the harness also
catches the models' validation errors. Every entry point catches it and prints its message
as a single line (``error: ...``) with exit code 2, so a user never sees a traceback for a
mistake they can fix. Messages name the fix.

:func:`terminate_as_interrupt` makes SIGTERM (``kill PID``, a batch scheduler's time limit)
end a command the way Ctrl-C does, so that joblib stops its worker processes instead of
leaving them training, orphaned, with the runs' locks held.

:class:`MachineFault` and :func:`machine_fault_kind`: a GPU out of memory or a CUDA error
says nothing about the method or its hyperparameters, so it must not be stored as the
run's result (``failed.json`` is reused by every later sweep); the run is left unfinished
and resumes from its last checkpoint on the next invocation (docs/reliability.md).
"""

import signal
from contextlib import contextmanager

import torch

from models.errors import UserError

__all__ = ["MachineFault", "UserError", "machine_fault_kind", "terminate_as_interrupt"]

OUT_OF_MEMORY, DEVICE_ERROR = "out_of_memory", "device_error"

# In torch 2.13 (torch/cuda/__init__.py) torch.cuda.OutOfMemoryError is torch.OutOfMemoryError and
# torch.cuda.AcceleratorError is torch.AcceleratorError (a failed CUDA call), both RuntimeErrors;
# torch.cuda.CudaError is what torch.cuda's own runtime calls raise. getattr: older builds lack some.
_OUT_OF_MEMORY_TYPES = tuple(t for t in (getattr(torch.cuda, "OutOfMemoryError", None),
                                         getattr(torch, "OutOfMemoryError", None)) if isinstance(t, type))
_DEVICE_ERROR_TYPES = tuple(t for t in (getattr(torch, "AcceleratorError", None),
                                        getattr(torch.cuda, "CudaError", None)) if isinstance(t, type))
# What older builds (a plain RuntimeError) and the vendor libraries put in the message, compared
# in lower case. Every failed CUDA runtime call reads "CUDA error: <cudaGetErrorString>", which
# covers a lost device ("unspecified launch failure", "an illegal memory access", "device not ready").
_OUT_OF_MEMORY_MARKERS = ("cuda out of memory", "hip out of memory", "cuda error: out of memory",
                          "hip error: out of memory")
_DEVICE_ERROR_MARKERS = ("cuda error", "hip error", "cublas_status", "cudnn_status", "cudnn error", "nccl",
                         "device-side assert", "unspecified launch failure", "no cuda gpus are available",
                         "cuda driver", "cuda-capable device")


class MachineFault(Exception):
    """A run stopped by the machine (``kind``: "out_of_memory" or "device_error"), not by itself.

    Nothing is recorded for ``run_id``: it keeps its checkpoint and resumes on the next
    invocation. The original exception is ``__cause__``.
    """

    def __init__(self, kind: str, run_id: str, detail: str = ""):
        super().__init__(f"{run_id}: machine fault ({kind}{': ' + detail if detail else ''}); left unfinished, "
                         "run the same command again to resume it")
        self.kind, self.run_id, self.detail = kind, run_id, detail

    def __reduce__(self):  # joblib sends it back from a worker process: rebuild it from its fields
        return type(self), (self.kind, self.run_id, self.detail)


def machine_fault_kind(error: BaseException) -> str | None:
    """"out_of_memory", "device_error", or None when ``error`` is the run's own (a bug, a divergence,
    bad input): those stay results. Only the GPU's faults count: a GPU is shared by several runs,
    and a lost one is the machine's. The CPU's memory is not counted: running out of it usually
    ends in the kernel's OOM killer (a kill, which resumes anyway), not an exception."""
    if isinstance(error, UserError):
        return None
    if isinstance(error, _OUT_OF_MEMORY_TYPES):
        return OUT_OF_MEMORY
    message = str(error).lower()
    if isinstance(error, RuntimeError) and any(marker in message for marker in _OUT_OF_MEMORY_MARKERS):
        return OUT_OF_MEMORY
    if isinstance(error, _DEVICE_ERROR_TYPES):
        return DEVICE_ERROR
    if isinstance(error, RuntimeError) and any(marker in message for marker in _DEVICE_ERROR_MARKERS):
        return DEVICE_ERROR
    return None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
