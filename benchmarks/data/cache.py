"""The cache of derived data (``cache_dir``): each derived dataset's files with a manifest of sha256
sums, rebuilt when a source changed or a file is missing or corrupt.

``cache_dir`` (argument, else ``$VAEBENCH_CACHE_DIR``, else ``~/.cache/vaebench``) holds everything
*derived* (subsets, synthetic data), each dataset in its own folder with a ``manifest.json``.
Derived files are never written next to the sources.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from benchmarks.errors import UserError
from benchmarks.files import atomic_write, sha256_file

from .documents import Document, format_documents

_CACHE_FORMAT = 1  # bump when the layout of derived files changes


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Explicit argument, else ``$VAEBENCH_CACHE_DIR``, else ``~/.cache/vaebench``; created if missing."""
    chosen = cache_dir if cache_dir is not None else os.environ.get("VAEBENCH_CACHE_DIR") or "~/.cache/vaebench"
    path = Path(chosen).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"cannot create the cache directory {path} ({err.strerror or err}); "
            "set VAEBENCH_CACHE_DIR (or pass cache_dir) to a writable directory"
        ) from err
    return path


def cached_splits(
    cache_dir: Path,
    key: str,
    sources: Sequence[Path],
    build: Callable[[], dict[str, list[Document]]],
) -> dict[str, Path]:
    """Files of a derived dataset in ``cache_dir/datasets/key``, built by ``build()`` when absent,
    stale (a source's sha256 changed) or corrupt (a file's sha256 differs from the manifest)."""
    folder = cache_dir / "datasets" / key
    manifest_path = folder / "manifest.json"
    source_sums = {p.name: sha256_file(p) for p in sources}

    problem = _cache_problem(folder, manifest_path, source_sums)
    if problem is None:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        return {split: folder / f"{split}.txt" for split in manifest["splits"]}
    if problem:
        print(f"vaebench: {problem}; rebuilding {key} in {folder}", file=sys.stderr)

    splits = build()
    file_sums = {}
    try:
        for split, docs in splits.items():
            data = format_documents(docs)
            atomic_write(folder / f"{split}.txt", data)
            file_sums[f"{split}.txt"] = hashlib.sha256(data).hexdigest()
        manifest = {"format": _CACHE_FORMAT, "dataset": key, "splits": list(splits),
                    "files": file_sums, "sources": source_sums}
        atomic_write(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    except OSError as err:
        raise UserError(
            f"cannot write the derived dataset {key} to {folder} ({err.strerror or err}); "
            "set VAEBENCH_CACHE_DIR (or pass cache_dir) to a writable directory"
        ) from err
    return {split: folder / f"{split}.txt" for split in splits}


def _cache_problem(folder: Path, manifest_path: Path, source_sums: dict[str, str]) -> str | None:
    """None if the cached dataset is usable; '' if it was never built; else why it must be rebuilt."""
    if not manifest_path.exists():
        return ""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files, splits = dict(manifest["files"]), list(manifest["splits"])
    except (ValueError, KeyError, TypeError):
        return f"cached manifest {manifest_path} is corrupt"
    if manifest.get("format") != _CACHE_FORMAT or manifest.get("sources") != source_sums:
        return f"the source files of {folder.name} changed"
    for split in splits:
        name = f"{split}.txt"
        path = folder / name
        if not path.is_file():
            return f"cached file {path} is missing"
        if name not in files or sha256_file(path) != files[name]:
            return f"cached file {path} is corrupt (sha256 mismatch)"
    return None
