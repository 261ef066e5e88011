"""Table 4's linear probe, read from each run's record.

The probe (DU-VAE's ``text_ss.py`` protocol on the raw posterior means) is ``benchmarks/probe.py``;
it runs when a run is scored, and its result is the run's ``probe.json`` (``benchmarks/derived.py``).
A run of an older store whose record lacks it is probed here from its ``best.pt``, and the result
written where the scoring would have put it.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks import probe
from benchmarks.probe import LABEL_COUNTS, PROTOCOL


def linear_probe(run_dir, label_counts=LABEL_COUNTS, *, data_dir=None, cache_dir=None) -> dict:
    """Table 4 for one run (``benchmarks.probe.probe_model`` says what it holds): the run's
    ``probe.json`` when it was computed for these label counts under this protocol, else the probe
    of its ``best.pt`` (one UserError line when that is not there either)."""
    requested = probe.requested_counts(label_counts)
    record = probe.cached(Path(run_dir) / probe.RECORD, requested_counts=requested, probe=PROTOCOL)
    if record is not None:
        return record
    return probe.probe_run(run_dir, requested, data_dir=data_dir, cache_dir=cache_dir)
