"""Committed results regenerate exactly from committed run records, with no checkpoint and no training.

Each entry of REGENERATED names a committed store of records (``python -m benchmarks.records
export``), the ``make_tables`` options that produced a committed output, and that output: the test
runs ``python analysis/make_tables.py`` on the records into a temporary directory and compares every
text file it writes (REPORT.md, the tables as markdown, CSV and LaTeX) byte for byte with the
committed one, and the figures by name. A difference fails with the command that writes the
committed output again: run it when the analysis changed on purpose, and commit what it writes.
"""
from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

TEXT_SUFFIXES = {".md", ".csv", ".tex"}
FIGURE_SUFFIXES = {".png"}

QUICK_SWEEP = ("core", "latent_space", "table1", "table2", "table3", "table4", "table5", "scale_regime",
               "scale_regime_f_average")

# (records, make_tables options, committed output): the output's REPORT.md beside its tables/
REGENERATED = [
    # a small sample: the three runs of `--only core --seeds 1` (the ladder's rung R0 holds them)
    ("results/ladder/records", ["--only", "core", "--seeds", "1"], "tests/expected/core-s1"),
    # the committed results: every run of the 5-seed quick sweep (every experiment but precision and the ladder)
    ("results/quick/records", ["--only", ",".join(QUICK_SWEEP), "--seeds", "5"], "results/quick"),
]
COMPILED = "tables/tables.png"  # the tables compiled by pdflatex, which the test leaves out (--no-pdf)


def written(root: Path, suffixes: set[str]) -> set[str]:
    """What make_tables writes under root (REPORT.md, tables/, figures/); not the records kept beside them."""
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.suffix in suffixes and p.relative_to(root).parts[0] != "records"}


@pytest.mark.parametrize("records,options,committed", REGENERATED, ids=[c for _, _, c in REGENERATED])
def test_committed_output_regenerates_exactly_from_its_records(tmp_path, records, options, committed):
    out = tmp_path / "out"
    command = [sys.executable, "analysis/make_tables.py", "--results", records, "--profile", "quick",
               *options, "--no-pdf"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run([*command, "--out", str(out / "tables")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    again = " ".join([*command[1:], "--out", f"{committed}/tables"])
    expected, got = REPO / committed, out
    assert written(got, TEXT_SUFFIXES) == written(expected, TEXT_SUFFIXES), f"other files; write them again: python {again}"
    figures = written(expected, FIGURE_SUFFIXES) - {COMPILED}
    assert written(got, FIGURE_SUFFIXES) == figures, f"other figures; python {again}"
    for name in sorted(written(expected, TEXT_SUFFIXES)):
        old = (expected / name).read_text(encoding="utf-8")
        new = (got / name).read_text(encoding="utf-8")
        diff = "".join(list(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{committed}/{name}",
                                                 "regenerated"))[:40])
        assert new == old, f"{committed}/{name} differs from what its records give now:\n{diff}\nwrite it again: python {again}"
