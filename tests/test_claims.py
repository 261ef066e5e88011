"""Claim verdicts say exactly what the evidence says (analysis/claims.py, analysis/claim_readings.py):
holds / contradicted / not shown with its direction / no verdict / by construction, both conventions of
a two-convention quantity, Table 5 on uncapped samples, and whether Table 2's runs shared the machine."""
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import claims, collect, generation, tables
from benchmarks import generation as sampling
from benchmarks import plan, train
from benchmarks.metrics import METRICS_VERSION
from benchmarks.store import read_json

SCALE = claims.SCALE_BEST


def claim(text: str) -> claims.Claim:
    return next(c for c in claims.CLAIMS if c.text == text)


def table_of(column: str, cells: dict[str, list[float]], name: str = "table1", ceiling: float | None = None) -> tables.Table:
    table = tables.Table(name, "", list(cells), [tables.Column(column, column)])
    table.values = {(r, column): np.array(v, float) for r, v in cells.items()}
    if ceiling is not None:
        table.ceilings[column] = ceiling
    return table


LOWER_NLL = claim("Scale-VAE(1.1, 1) has a lower NLL than VAE on Yahoo")


@pytest.mark.parametrize("scale, vae, verdict, direction", [
    ([90, 91, 92], [100, 101, 102], claims.HOLDS, claims.PAPERS_WAY),
    ([110, 111, 112], [100, 101, 102], claims.CONTRADICTED, claims.OTHER_WAY),
    ([99, 103, 98], [100, 101, 102], claims.NOT_SHOWN, claims.PAPERS_WAY),
    ([102, 99, 104], [100, 101, 102], claims.NOT_SHOWN, claims.OTHER_WAY),
    ([95.0], [100, 101, 102], claims.ONE_SEED, claims.PAPERS_WAY),
])
def test_two_row_claims_by_welch(scale, vae, verdict, direction):
    result = claims.check(LOWER_NLL, table_of("yahoo_nll", {SCALE: scale, "vae": vae}))
    assert (result.verdict, result.direction) == (verdict, direction)
    if len(scale) > 1:
        assert f"Welch p={stats.ttest_ind(scale, vae, equal_var=False).pvalue:.3g}" in result.evidence
    else:
        assert "one seed, no test" in result.evidence and "nan" not in result.evidence
    assert direction in result.evidence
    assert ("not significant" in result.evidence) == (verdict == claims.NOT_SHOWN)
    assert result.mark.startswith(claims.MARKS[verdict])
    assert (f"({direction})" in result.mark) == (verdict in (claims.NOT_SHOWN, claims.ONE_SEED))


def test_a_mean_at_the_estimators_ceiling_gets_no_verdict():
    higher = claim("Scale-VAE has a higher MI than BN-VAE(0.6) on Yahoo")
    cells = {SCALE: [6.18, 6.19, 6.2], "bn_vae(0.6)": [4.0, 4.1, 4.2]}
    assert claims.check(higher, table_of("yahoo_mi", cells, ceiling=6.2146)).verdict == claims.AT_CEILING
    assert claims.check(higher, table_of("yahoo_mi", cells, ceiling=9.21)).verdict == claims.HOLDS


VAE_AU = claim("Vanilla VAE's AU is near 0 on Yahoo (posterior collapse; AU <= 1)")


@pytest.mark.parametrize("values, verdict, direction", [
    ([0.0, 0.1, 0.2], claims.HOLDS, claims.PAPERS_WAY),
    ([3.0, 3.2, 2.9], claims.CONTRADICTED, claims.OTHER_WAY),
    ([1.0, 2.0, 1.0], claims.NOT_SHOWN, claims.OTHER_WAY),  # the audit's VAE: mean 1.33 against the bound 1
    ([0.0, 2.0, 0.5], claims.NOT_SHOWN, claims.PAPERS_WAY),
    ([1.0, 1.0, 1.0], claims.HOLDS, claims.NO_DIFFERENCE),  # no spread: the mean decides, and AU <= 1 takes 1
    ([2.0, 2.0], claims.CONTRADICTED, claims.OTHER_WAY),
    ([0.5], claims.ONE_SEED, claims.PAPERS_WAY),
])
def test_bound_claims_by_a_one_sample_t_test(values, verdict, direction):
    result = claims.check(VAE_AU, table_of("yahoo_au", {"vae": values}))
    assert (result.verdict, result.direction) == (verdict, direction)
    if len(values) > 1 and np.std(values) > 0:
        assert f"one-sample t-test p={stats.ttest_1samp(values, 1).pvalue:.3g}" in result.evidence
    assert ("one seed, no test" in result.evidence) == (len(values) == 1) and "nan" not in result.evidence
    assert "bound 1 (ours; the paper reports AU 0.8)" in result.evidence


def test_a_claim_that_holds_by_construction_is_marked_so():
    no_units = claim("BN-VAE(0.0, 0.7) has no active unit on Yahoo (AU <= 1)")
    marked = claims.check(no_units, table_of("yahoo_au", {"bn_vae(0.0,0.7)": [0.0, 0.0, 0.0]}))
    assert marked.verdict == claims.BY_CONSTRUCTION and "same posterior mean" in marked.evidence
    assert claims.MARKS[claims.BY_CONSTRUCTION].startswith("🔧")
    broken = claims.check(no_units, table_of("yahoo_au", {"bn_vae(0.0,0.7)": [5.0, 6.0, 7.0]}))
    assert broken.verdict == claims.CONTRADICTED and "check the implementation" in broken.evidence
    # a finding is not marked, however its numbers fall
    assert claims.check(VAE_AU, table_of("yahoo_au", {"vae": [0.0, 0.0, 0.0]})).verdict == claims.HOLDS


def test_labels_marks_and_the_old_names():
    assert claims.FAILS == claims.CONTRADICTED and claims.HOLDS == "holds" and claims.NOT_RUN == "not run"
    assert claims.AT_CEILING.startswith("no verdict") and claims.ONE_SEED == "no verdict: one seed"
    labels = {claims.HOLDS, claims.CONTRADICTED, claims.NOT_SHOWN, claims.AT_CEILING, claims.ONE_SEED, claims.NOT_RUN,
              claims.BY_CONSTRUCTION}
    assert set(claims.MARKS) == labels and all(claims.MARKS[k].endswith(k.split(": ")[-1]) for k in labels)
    assert claims.check(LOWER_NLL, None).verdict == claims.NOT_RUN


# ------------------------------------------------------------------ both conventions, from a store


def write_run(results, planned, **metrics):
    run_dir = results / "runs" / planned.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(planned.config.to_json()))
    values = {"model": planned.config.model, "dataset": planned.dataset, "profile": "smoke", "seed": planned.seed,
              "run_id": planned.run_id, "kl": 1.0, "au": 3, "train_seconds": 3600.0, "eval_seconds": 1.0,
              "metrics_version": METRICS_VERSION}
    (run_dir / "metrics.json").write_text(json.dumps({**values, **metrics}))


@pytest.fixture
def runs(tmp_path):
    """Smoke table1 runs: Scale-VAE beats VAE and BN-VAE(0.6) under the tables' conventions, loses under
    the other (N(0, I) prior, unscaled posterior)."""
    planned = {(p.row, p.seed): p for p in plan.expand("table1", "smoke")}
    seeds = sorted({seed for _, seed in planned})
    for seed in seeds:
        write_run(tmp_path, planned[("vae", seed)], nll=100.0 + seed, nll_unit_prior=100.0 + seed, mi=0.1, mi_unscaled=0.1,
                  train_seconds=3600.0 + seed)
        write_run(tmp_path, planned[("bn_vae(0.6)", seed)], nll=101.0 + seed, nll_unit_prior=101.0 + seed,
                  mi=2.8 + seed / 10, mi_unscaled=2.8 + seed / 10, concurrent_runs=2)
        write_run(tmp_path, planned[(SCALE, seed)], nll=90.0 + seed / 2, nll_unit_prior=110.0 + seed, mi=5.0 + seed / 10,
                  mi_unscaled=1.0 + seed / 10, train_seconds=1800.0 + seed, concurrent_runs=1)
    return collect.collect(tmp_path, "smoke")


def test_a_two_convention_claim_gets_a_verdict_under_each(runs):
    built = {"table1": tables.table1(runs, "smoke"), "table2": tables.table2(runs, "smoke")}
    verdicts = {v.claim.text: v for v in claims.check_all(built, runs)}
    nll = verdicts["Scale-VAE(1.1, 1) has a lower NLL than VAE on Yahoo"]
    assert nll.verdict == claims.HOLDS and nll.convention == "model's prior"
    assert {k: v.verdict for k, v in nll.conventions.items()} == {"model's prior": claims.HOLDS,
                                                                   "N(0, I) prior": claims.CONTRADICTED}
    assert "112 vs 102" in nll.conventions["N(0, I) prior"].evidence
    mi = verdicts["Scale-VAE has a higher MI than BN-VAE(0.6) on Yahoo"]
    assert (mi.convention, mi.verdict) == ("scaled posterior", claims.HOLDS)
    assert [(o.convention, o.verdict) for o in mi.others] == [("unscaled posterior", claims.CONTRADICTED)]
    vae_au = verdicts["Vanilla VAE's AU is near 0 on Yahoo (posterior collapse; AU <= 1)"]
    assert [o.convention for o in vae_au.others] == ["scaled means"]
    probe = verdicts["Scale-VAE beats VAE in the linear probe with 100 labels"]
    assert probe.convention == "" and probe.others == ()
    # without the runs: the tables' convention alone, named
    alone = {v.claim.text: v for v in claims.check_all(built)}["Scale-VAE(1.1, 1) has a lower NLL than VAE on Yahoo"]
    assert alone.verdict == claims.HOLDS and alone.others == () and alone.convention == "model's prior"


def test_table2_claims_say_whether_the_timed_runs_had_the_machine_to_themselves(runs):
    built = {"table2": tables.table2(runs, "smoke")}
    verdicts = {v.claim.text: v for v in claims.check_all(built, runs)}
    mixed = verdicts["Scale-VAE trains faster than VAE on Yahoo (Table 2)"].evidence
    assert "had the machine to themselves" in mixed and "not recorded" in mixed  # Scale-VAE 1 at a time, VAE unknown
    shared = verdicts["Scale-VAE trains faster than BN-VAE on Yahoo (Table 2)"].evidence
    assert "timed runs shared the machine (up to 2 runs at once)" in shared
    vae_only = runs[runs["row"] != SCALE]
    from analysis.claim_readings import machine_sharing
    assert machine_sharing(vae_only[(vae_only["row"] == "vae") & (vae_only["status"] == "done")]) == \
        "not recorded whether the timed runs shared the machine"


def test_training_records_how_many_runs_shared_the_machine(monkeypatch):
    monkeypatch.delenv(train.CONCURRENT_RUNS_VARIABLE, raising=False)
    assert train.concurrent_runs() == {}
    monkeypatch.setenv(train.CONCURRENT_RUNS_VARIABLE, "2")
    assert train.concurrent_runs() == {"concurrent_runs": 2}
    monkeypatch.setenv(train.CONCURRENT_RUNS_VARIABLE, "many")
    assert train.concurrent_runs() == {}
    assert "concurrent_runs" in train.TIMING_KEYS  # it differs between identical runs, like their times


def test_a_trained_run_records_the_runners_concurrency_in_its_metrics(tmp_path, data_dir):
    command = [sys.executable, "-m", "benchmarks.train", "--model", "vae", "--dataset", "yahoo_small", "--profile",
               "smoke", "--seed", "0", "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"), "--offline"]
    for results, environment in (("shared", {train.CONCURRENT_RUNS_VARIABLE: "3"}), ("unsaid", {})):
        env = {k: v for k, v in os.environ.items() if k != train.CONCURRENT_RUNS_VARIABLE} | environment
        done = subprocess.run([*command, "--results", str(tmp_path / results)], capture_output=True, text=True,
                              env=env, cwd=Path(__file__).resolve().parents[1], timeout=300)
        assert done.returncode == 0, done.stderr
        metrics = read_json(tmp_path / results / "runs" / done.stdout.strip().splitlines()[-1].split("/")[-1]
                            / "metrics.json")
        assert metrics.get("concurrent_runs") == (3 if environment else None)
        assert metrics["metrics_version"] == METRICS_VERSION


# ------------------------------------------------------------------ Table 5 on uncapped samples


def write_sample(run_dir, lines: list[str]):
    run_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(line + "\n" for line in lines).encode()
    sampling.write_record(run_dir, {"samples_sha256": hashlib.sha256(text).hexdigest(), "protocol": sampling.PROTOCOL,
                                    "token_budget": sampling.DEFAULT_TOKENS}, text)
    return run_dir


def test_uncapped_statistics_over_a_common_word_budget(tmp_path):
    first = write_sample(tmp_path / "a", ["a b a </s>", "c c c c", "b d </s>"])  # one capped; 5 uncapped words
    second = write_sample(tmp_path / "b", ["e f e </s>"])  # 3 uncapped words: the common budget
    alone = generation.uncapped_statistics({"a": first})
    assert alone["a"]["dist1"] == pytest.approx(3 / 5)  # a b a | b d: {a, b, d} of 5 words, the capped line left out
    assert alone["a"]["entropy"] == pytest.approx(-2 * 0.4 * math.log(0.4) - 0.2 * math.log(0.2))
    assert (alone["a"]["capped"], alone["a"]["sentences"], alone["a"]["tokens"]) == (1, 3, 5)
    both = generation.uncapped_statistics({"a": first, "b": second, "missing": tmp_path / "none"})
    assert set(both) == {"a", "b"} and both["a"]["tokens"] == both["b"]["tokens"] == 3
    assert both["a"]["dist1"] == pytest.approx(2 / 3) and both["a"]["dist2"] == pytest.approx(2 / 2)


def test_generation_claims_count_capped_samples_and_are_scored_on_uncapped_ones(tmp_path):
    bn, records = "bn_vae(0.6)", []
    for row in ("scale_vae(1.1,1)", bn):
        for seed in range(3):
            # Scale-VAE: diverse capped samples, repetitive finished ones; BN-VAE: diverse finished ones
            lines = ["x y z w v u", "a a </s>", "a a </s>"] if row != bn else ["a b </s>", "c d </s>"]
            run_dir = write_sample(tmp_path / f"{row}-{seed}", lines)
            records.append({"experiment": "table5", "row": row, "method": row.split("(")[0], "dataset": "yahoo_small",
                            "family": "yahoo", "corpus": "", "seed": seed, "run_id": f"{row}-{seed}",
                            "status": "done", "run_dir": str(run_dir), "capped": math.nan})
    runs = pd.DataFrame(records)
    table = tables.Table("table5", "", ["scale_vae(1.1,1)", bn],
                         [tables.Column(k, k, metric=k, family="yahoo") for k in ("dist1", "ppl")])
    table.values = {("scale_vae(1.1,1)", "dist1"): np.array([0.9, 0.91, 0.92]), (bn, "dist1"): np.array([0.5, 0.52, 0.51]),
                    ("scale_vae(1.1,1)", "ppl"): np.array([60.0, 61, 62]), (bn, "ppl"): np.array([40.0, 41, 42])}
    verdicts = {v.claim.text: v for v in claims.check_all({"table5": table}, runs)}
    dist = verdicts["Scale-VAE's generations are more diverse than BN-VAE's (Dist-1)"]
    assert (dist.convention, dist.verdict) == ("all samples", claims.HOLDS)
    assert "length cap (all seeds): scale_vae(1.1,1) 3 of 9; bn_vae(0.6) 0 of 6" in dist.evidence
    uncapped = dist.conventions["uncapped samples"]
    assert uncapped.verdict == claims.CONTRADICTED and "0.25 vs 1" in uncapped.evidence  # a a a a: 1 of 4 words
    assert "first 4 words of the uncapped samples" in uncapped.evidence
    ppl = verdicts["BN-VAE's generations have a lower PPL than Scale-VAE's (the paper's one concession)"]
    assert ppl.verdict == claims.HOLDS and ppl.conventions["uncapped samples"].verdict == claims.NOT_RUN
    assert "LSTM-LM" in ppl.conventions["uncapped samples"].evidence
