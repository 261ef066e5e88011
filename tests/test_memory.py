"""The memory guard's table (benchmarks/memory.py): a run's peak from its method's measured rows."""
import csv

from benchmarks import memory
from benchmarks.config import load_profile

PAPER = load_profile("paper")
SIZES = {"emb_dim": 512, "enc_hidden": 1024, "dec_hidden": 1024, "nz": 32, "batch_size": 32}


def row(method, length, peak, precision="fp32", source="cpu (x)", vocab=20001):
    return {"method": method, "vocab": vocab, "length": length, **SIZES, "precision": precision,
            "peak_mb": peak, "step_seconds": 1.0, "source": source}


TABLE = [row("vae", 80, 1000), row("vae", 200, 2200), row("sa_vae", 80, 20000)]


def test_a_run_takes_its_methods_rows_linear_in_its_widest_batch():
    assert memory.peak_mb("vae", PAPER, 20001, 140, TABLE) == 1600
    assert memory.peak_mb("vae", PAPER, 20001, 260, TABLE) == 2800  # extrapolated on the same line
    assert memory.peak_mb("sa_vae", PAPER, 20001, 160, TABLE) == 40000  # one row: proportional


def test_vae_stands_in_for_light_methods_but_not_for_heavy_ones_nor_other_sizes():
    assert memory.peak_mb("du_vae", PAPER, 19997, 200, TABLE) == 2200  # Yelp's vocabulary, within 10%
    assert memory.peak_mb("agg_vae", PAPER, 20001, 200, TABLE) is None  # OWN_ROWS: runs alone
    assert memory.peak_mb("vae", PAPER, 5000, 200, TABLE) is None
    assert memory.peak_mb("vae", load_profile("quick"), 2000, 40, TABLE) is None


def test_gpu_rows_replace_cpu_rows_of_the_same_sizes(tmp_path):
    path = tmp_path / "memory.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, memory.COLUMNS)
        writer.writeheader()
        writer.writerows([row("vae", 80, 1000), row("vae", 80, 900, source="cuda (H200)"), row("vae", 200, 2200)])
    rows = memory.load_table(path)
    assert sorted((r["length"], r["peak_mb"]) for r in rows) == [(80, 900), (200, 2200)]


def test_the_committed_table_covers_the_paper_runs_of_vae_scale_vae_and_bn_vae():
    for method in ("vae", "scale_vae", "bn_vae", "beta_vae"):
        peak = memory.peak_mb(method, PAPER, 20001, 200)
        assert peak is not None and 1000 < peak < 80_000
