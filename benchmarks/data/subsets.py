"""The derived subsets (yahoo_small, yelp_small, short_yelp): which documents of the public files
each holds, drawn reproducibly (a fixed seed, label-balanced) and kept in the derived-data cache."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from .cache import cached_splits
from .documents import Document, read_documents
from .sources import shen_file, yang_file

# Fixed seed of every derived subset (shuffles before balancing); part of the cache key.
SUBSET_SEED = 2024


def seeded_order(n: int, *, seed: int, tag: str) -> list[int]:
    """A permutation of ``range(n)`` fixed by (seed, tag): sorting by a keyed hash, so it is the
    same on every platform and library version (derived files are identical byte for byte)."""
    prefix = f"{seed}/{tag}/".encode()
    return sorted(range(n), key=lambda i: hashlib.blake2b(prefix + str(i).encode(), digest_size=8).digest())


def balanced_interleave(groups: Sequence[Sequence[Document]], *, seed: int, tag: str) -> list[Document]:
    """Shuffle each group (seeded), keep as many per group as the smallest group has, and interleave
    them: g0[0], g1[0], g0[1], g1[1], ... Any prefix whose length is a multiple of len(groups) is balanced."""
    shuffled = [[group[i] for i in seeded_order(len(group), seed=seed, tag=f"{tag}/{k}")]
                for k, group in enumerate(groups)]
    return [doc for row in zip(*shuffled) for doc in row]


def prepare_yahoo_small(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
    valid = yang_file("yahoo", "valid").require(data_dir, dataset="yahoo_small", download=download)
    test = yang_file("yahoo", "test").require(data_dir, dataset="yahoo_small", download=download)

    def build():
        docs = read_documents(valid)  # 10,000 documents (checksum-verified)
        return {"train": docs[:9000], "valid": docs[-1000:]}

    return {**cached_splits(cache_dir, "yahoo_small", [valid], build), "test": test}


def prepare_yelp_small(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
    files = {(s, y): shen_file(s, y).require(data_dir, dataset="yelp_small", download=download)
             for s in ("dev", "test") for y in (0, 1)}

    def build():
        train = balanced_interleave([read_documents(files["test", y], y) for y in (0, 1)], seed=SUBSET_SEED, tag="test")
        dev = balanced_interleave([read_documents(files["dev", y], y) for y in (0, 1)], seed=SUBSET_SEED, tag="dev")
        return {"train": train, "valid": dev[:10_000], "test": dev[10_000:20_000]}

    return cached_splits(cache_dir, f"yelp_small-seed{SUBSET_SEED}", list(files.values()), build)


def prepare_short_yelp(data_dir: Path, cache_dir: Path, download: bool) -> dict[str, Path]:
    files = {(s, y): shen_file(s, y).require(data_dir, dataset="short_yelp", download=download)
             for s in ("train", "dev", "test") for y in (0, 1)}

    def take(split: str, n: int) -> list[Document]:
        groups = [read_documents(files[split, y], y) for y in (0, 1)]
        return balanced_interleave(groups, seed=SUBSET_SEED, tag=split)[:n]

    def build():
        return {"train": take("train", 100_000), "valid": take("dev", 10_000), "test": take("test", 10_000)}

    return cached_splits(cache_dir, f"short_yelp-seed{SUBSET_SEED}", list(files.values()), build)
