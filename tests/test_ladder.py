"""The ladder study's table (analysis/ladder.py) on a hand-built store of the smoke plan."""
import math

import pytest
from scipy import stats

from analysis import collect, ladder
from benchmarks import plan
from benchmarks.metrics import METRICS_VERSION
from benchmarks.store import RunStore, write_json

NLL = {"lstm_lm": 100.0, "vae": 101.0, "bn_vae(0.6)": 102.0, "scale_vae(0.7,1)": 110.0, "scale_vae(1.1,1)": 120.0}


def hand_built_store(tmp_path):
    """Every smoke ladder run finished: NLL = the row's figure + seed + 5 x rung index (R1 worse by 5)."""
    store = RunStore(tmp_path)
    rungs = ladder.rungs()
    for p in plan.plan("smoke", ["ladder"]):
        folder = store.final(p.run_id)
        if folder.exists():
            continue
        folder.mkdir(parents=True)
        nll = NLL[p.row] + p.seed + 5 * rungs.index(p.setting)
        scale = p.config.model == "scale_vae"
        write_json(folder / "config.json", p.config.to_json())
        write_json(folder / "metrics.json", {
            "nll": nll, "nll_unit_prior": nll - (3 if scale else 0), "kl": 1.0, "mi": 2.0, "mi_ceiling": 3.69,
            "au": 32, "f_mean": 2.5 if scale else None, "epochs": 10, "capped": False, "train_seconds": 600,
            "metrics_version": METRICS_VERSION, "model": p.config.model})
    return store


def test_the_ladder_table_gives_each_rows_differences_with_welch_p(tmp_path):
    hand_built_store(tmp_path)
    table = ladder.ladder_table(collect.collect(tmp_path, "smoke"))
    assert list(dict.fromkeys(table["rung"])) == ["R0 quick", "R1 length"]
    line = table[(table["rung"] == "R1 length") & (table["row"] == "scale_vae(0.7,1)")].iloc[0]
    assert (line["finished"], line["planned"]) == (2, 2)
    assert line["d_nll_vae"] == pytest.approx(9.0) and line["d_nll_unit_prior_vae"] == pytest.approx(6.0)
    assert line["d_nll_lstm_lm"] == pytest.approx(10.0) and line["d_nll_unit_prior_lstm_lm"] == pytest.approx(7.0)
    expected = stats.ttest_ind([115.0, 116.0], [106.0, 107.0], equal_var=False).pvalue
    assert line["p_nll_vae"] == pytest.approx(expected) or (math.isnan(expected) and math.isnan(line["p_nll_vae"]))
    assert line["kl_at_f1"] == pytest.approx(32 / 2 * 0.7**2) and line["f_mean"] == pytest.approx(2.5)
    assert line["train_minutes"] == pytest.approx(10.0)
    vae = table[(table["rung"] == "R0 quick") & (table["row"] == "vae")].iloc[0]
    assert "d_nll_vae" not in vae or math.isnan(vae["d_nll_vae"])  # no difference to itself


def test_the_ladder_writes_its_table_and_figure(tmp_path):
    hand_built_store(tmp_path / "store")
    paths = ladder.write(collect.collect(tmp_path / "store", "smoke"), tmp_path / "out", tmp_path / "out")
    assert (tmp_path / "out" / "ladder.csv").exists() and (tmp_path / "out" / "ladder.png").exists()
    assert "ΔNLL vs VAE" in paths[0].read_text()
