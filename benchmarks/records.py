"""A run's record: its small text files, without checkpoints, to commit or carry to another machine,
and several stores read as one (:class:`Pool`, for ``make_tables`` and ``benchmarks.summarize``).

    python -m benchmarks.records export --results DIR --to DIR

copies every finished or failed run of ``DIR/runs/`` (``config.json``, ``metrics.json`` or
``failed.json``, ``history.csv``, the method's traces such as ``factor_trace.csv``, ``train.log``)
into ``--to``'s ``runs/``, leaving out ``*.pt`` (checkpoints and best models: megabytes each, for
resuming and re-scoring, not for the tables of the studies) and unfinished runs. A run already in
the destination gains the files it lacks when the files both hold are the same, and is refused, in
one line naming both, when they differ (or when one holds its metrics and the other its failure): two
stores that disagree about one run id are not merged silently.

A :class:`Pool` reads several stores as one: a run id held by two of them with the same
``metrics.json`` content is one run; with other metrics it is refused, in one line naming both.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

from .errors import UserError
from .store import CORRUPT, DONE, FAILED, PARTIAL, PENDING, RunStore, read_json

SKIPPED_SUFFIXES = (".pt",)


def record_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if p.is_file() and p.suffix not in SKIPPED_SUFFIXES)


def same_record(a: Path, b: Path) -> bool:
    """The result files both run directories hold are the same (the log may differ: it has times; a record
    may have grown since, e.g. by a PPL written once its LSTM-LM finished)."""
    shared = {p.name for p in record_files(a)} & {p.name for p in record_files(b)}
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in shared if n.endswith(".json"))


def outcomes_differ(a: Path, b: Path) -> bool:
    """One directory holds the run's metrics and the other its failure: two outcomes, not one record."""
    return any((a / name).exists() and (b / other).exists()
               for name, other in (("metrics.json", "failed.json"), ("failed.json", "metrics.json")))


def export(results: Path, destination: Path) -> tuple[int, int]:
    """Copy the records of ``results``'s finished and failed runs to ``destination``; returns
    (runs copied, runs already there)."""
    source, target = RunStore(results), RunStore(destination)
    if not source.root.is_dir():
        raise UserError(f"no runs under {results}/runs; pass the --results DIR your sweep wrote")
    copied = present = 0
    for run_dir in sorted(p for p in source.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if source.status(run_dir.name) not in (DONE, FAILED):
            continue
        there = target.final(run_dir.name)
        if there.exists():
            if outcomes_differ(run_dir, there) or not same_record(run_dir, there):
                raise UserError(f"run {run_dir.name} differs between {run_dir} and {there}; keep one of them")
            for path in record_files(run_dir):  # files the record gained since it was exported
                if not (there / path.name).exists():
                    shutil.copy2(path, there / path.name)
            present += 1
            continue
        partial = there.with_name(f".{there.name}.export")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for path in record_files(run_dir):
            shutil.copy2(path, partial / path.name)
        partial.rename(there)  # a record appears whole or not at all
        copied += 1
    return copied, present


PREFERENCE = (DONE, FAILED, CORRUPT, PARTIAL, PENDING)  # which store's copy of a run a pool reads


class Pool:
    """Several results stores read as one. A run id in two stores is one run when their ``metrics.json``
    content is the same (its finished copy is read before a failed, corrupt or unfinished one); with other
    metrics it is a :class:`UserError` naming both directories."""

    def __init__(self, results):
        self.stores = [RunStore(r) for r in results]
        self.dirs: dict[str, list[Path]] = {}  # run id -> its run directories, in the stores' order
        for store in self.stores:
            if store.root.is_dir():
                for run_dir in sorted(p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                    self.dirs.setdefault(run_dir.name, []).append(run_dir)
        for run_id, dirs in self.dirs.items():
            if len(dirs) > 1:
                require_same_metrics(run_id, dirs)

    def held(self) -> set[str]:
        """The run ids some store holds a record or an interrupted attempt of."""
        partial = {p.name for s in self.stores if s.partials.is_dir() for p in s.partials.iterdir()
                   if p.is_dir() and (p / "last.pt").exists()}
        return set(self.dirs) | partial

    def locate(self, run_id: str) -> tuple[str, Path]:
        """(status, run directory) of the store whose copy of the run is read."""
        found = [(store.status(run_id), store.final(run_id)) for store in self.stores]
        return min(found, key=lambda f: PREFERENCE.index(f[0]) if f[0] in PREFERENCE else len(PREFERENCE))

    def status(self, run_id: str) -> str:
        return self.locate(run_id)[0]

    def final(self, run_id: str) -> Path:
        return self.locate(run_id)[1]

    def finished(self) -> list[Path]:
        """The run directory of every finished run, each run id once."""
        found = [self.locate(run_id) for run_id in sorted(self.dirs)]
        return [run_dir for status, run_dir in found if status == DONE]


def require_same_metrics(run_id: str, dirs: list[Path]) -> None:
    """The finished copies of one run (``dirs``, in several stores) hold the same metrics."""
    copies = [(d, read_json(d / "metrics.json", warn=False)) for d in dirs if (d / "metrics.json").exists()]
    copies = [(d, m) for d, m in copies if m is not None]  # a corrupt copy is reported as corrupt, not compared
    for run_dir, metrics in copies[1:]:
        if metrics != copies[0][1]:
            raise UserError(f"run {run_id} has other metrics in {run_dir} than in {copies[0][0]}; keep one of them "
                            "(delete the other directory) or tabulate the stores apart")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.records", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    out = commands.add_parser("export", help="copy the runs' records, without checkpoints")
    out.add_argument("--results", required=True, help="the store a sweep wrote (its runs/ folder)")
    out.add_argument("--to", required=True, help="where the records go (a runs/ folder is made there)")
    args = parser.parse_args(argv)
    try:
        copied, present = export(Path(args.results), Path(args.to))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {copied} run records to {Path(args.to) / 'runs'}" + (f", {present} already there" if present else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
