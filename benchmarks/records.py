"""A run's record: its small text files, without checkpoints, to commit or carry to another machine.

    python -m benchmarks.records export --results DIR --to DIR

copies every finished or failed run of ``DIR/runs/`` (``config.json``, ``metrics.json`` or
``failed.json``, ``history.csv``, the method's traces such as ``factor_trace.csv``, ``train.log``)
into ``--to``'s ``runs/``, leaving out ``*.pt`` (checkpoints and best models: megabytes each, for
resuming and re-scoring, not for the tables of the studies) and unfinished runs. A run already in
the destination gains the files it lacks when the files both hold are the same, and is refused, in
one line naming both, when they differ: two stores that disagree about one run id are not merged silently.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

from .errors import UserError
from .store import DONE, FAILED, RunStore

SKIPPED_SUFFIXES = (".pt",)


def record_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if p.is_file() and p.suffix not in SKIPPED_SUFFIXES)


def same_record(a: Path, b: Path) -> bool:
    """The result files both run directories hold are the same (the log may differ: it has times; a record
    may have grown since, e.g. by a PPL written once its LSTM-LM finished)."""
    shared = {p.name for p in record_files(a)} & {p.name for p in record_files(b)}
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in shared if n.endswith(".json"))


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
            if not same_record(run_dir, there):
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
