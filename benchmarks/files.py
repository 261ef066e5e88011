"""Atomic file writes and file checksums: the one writer of the suite's files.

Results (``benchmarks.store``), checkpoints (``benchmarks.protocol``, ``benchmarks.train``),
derived data and downloads (``benchmarks.data``) are all written through :func:`atomic_write`,
so a reader sees the old file or the new one, never a partial one. Light to import: torch is
loaded only by :func:`atomic_torch_save`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_torch_save(path: Path, value) -> None:
    """``torch.save`` through ``atomic_write``. torch's own file writer turns a full disk into an
    opaque RuntimeError; serialised in memory first, a failed write is the OSError it is."""
    import torch  # heavy to import; only this function needs it

    buffer = io.BytesIO()
    torch.save(value, buffer)
    atomic_write(path, buffer.getbuffer())


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``:
    readers see the old file or the new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
