"""Named variants: the paper's rows resolve to methods and hyperparameters."""
import subprocess
import sys

import pytest

import models
from benchmarks.config import resolve
from benchmarks.errors import UserError
from models import variants

from .conftest import REPO


def test_positional_values_star_and_per_dataset_values():
    v = variants.parse("scale_vae*(0.7,1|1.1,7)")
    assert v.method == "scale_vae"
    assert v.hyperparameters("yahoo") == {"anneal": False, "des_std": 0.7, "f_epo": 1}
    assert v.hyperparameters("yelp") == {"anneal": False, "des_std": 1.1, "f_epo": 7}
    assert variants.parse(" scale_vae( 1.1 , 1 ) ").hyperparameters(None) == {"des_std": 1.1, "f_epo": 1}
    assert variants.parse("vae").hyperparameters("yelp") == {}


def test_rows_resolve_against_the_datasets_family():
    yahoo = resolve("du_vae(0.6,0.8|0.5,0.8)", "yahoo_small", "smoke", 0)
    yelp = resolve("du_vae(0.6,0.8|0.5,0.8)", "yelp_small", "smoke", 0)
    assert (yahoo.hyperparameters["gamma"], yelp.hyperparameters["gamma"]) == (0.6, 0.5)
    with pytest.raises(UserError, match="name one side"):
        resolve("du_vae(0.6,0.8|0.5,0.8)", "synthetic", "smoke", 0)
    assert resolve("du_vae(0.6,0.8)", "synthetic", "smoke", 0).hyperparameters["gamma"] == 0.6


def test_the_same_configuration_under_two_names_is_one_run():
    a = resolve("scale_vae(0.7,1)", "yahoo_small", "quick", 3)
    b = resolve("scale_vae(0.7,1|0.7,7)", "yahoo_small", "quick", 3)
    c = resolve("scale_vae", "yahoo_small", "quick", 3, ["des_std=0.7"])
    assert a.run_id == b.run_id == c.run_id
    assert resolve("scale_vae(0.7,1|0.7,7)", "yelp_small", "quick", 3).hyperparameters["f_epo"] == 7
    assert a.run_id != resolve("scale_vae*(0.7,1)", "yahoo_small", "quick", 3).run_id


def test_a_profile_sets_method_defaults_that_rows_and_set_override():
    assert resolve("sa_vae", "yahoo_small", "quick", 0).hyperparameters["steps"] == 2  # [quick.methods.sa_vae]
    assert resolve("sa_vae", "yahoo_small", "paper", 0).hyperparameters["steps"] == 20  # the published K
    assert resolve("sa_vae", "yahoo_small", "quick", 0, ["steps=7"]).hyperparameters["steps"] == 7
    assert resolve("vae", "yahoo_small", "quick", 0).hyperparameters == resolve("vae", "yahoo_small", "paper", 0).hyperparameters


@pytest.mark.parametrize("spec, fragment", [
    ("scale_vae(1,2,3)", "at most 2 bracketed values"),
    ("scale_vae(fast)", "'fast' is not a number"),
    ("scale_vae(1|2|3)", "at most one '|'"),
    ("lstm_lm*", "no KL annealing"),
    ("scale_vae((1)", "is not a number"),
    ("Scale VAE", "cannot read model"),
    ("scale_vae(-1,1)", "des_std must be > 0"),
])
def test_malformed_rows_fail_with_one_line(spec, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace("|", r"\|")) as info:
        resolve(spec, "yahoo_small", "smoke", 0)
    assert "\n" not in str(info.value)


def test_every_row_of_every_table_resolves_on_both_families():
    rows = variants.table_rows()
    assert set(rows) == {"table1", "table2", "table3", "table4", "table5"}
    assert len(rows["table1"]) == 17 and len(rows["table3"]) == 9 and len(rows["table4"]) == 9
    for table, names in rows.items():
        for name in names:
            for dataset in ("yahoo_small", "yelp_small"):
                config = resolve(name, dataset, "paper", 0)
                assert config.model in models.METHODS, (table, name)


def test_listing_shows_every_method_and_row():
    out = subprocess.run([sys.executable, "-m", "models"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in models.METHODS:
        assert f"\n{name} " in out
    assert "scale_vae*(0.7,1|1.1,7)" in out and "yahoo: anneal=False, des_std=0.7" in out


def test_no_hyperparameter_shadows_a_profile_value():
    """--set routes a key to the model first: a method field named like a profile field would hide it."""
    from benchmarks.config import profile_fields
    from models.registry import field_types

    for name in models.METHODS:
        assert not set(field_types(name)) & set(profile_fields()), name


@pytest.mark.parametrize("row", variants.table_rows()["table1"])
def test_every_table1_row_trains_a_smoke_epoch_with_finite_metrics(row, tmp_path, data_dir):
    import json
    import math

    from benchmarks.train import train_run

    settings = ["max_epochs=1"] + (["steps=2"] if row.startswith("sa_vae") else [])
    config = resolve(row, "yahoo_small", "smoke", 0, settings)
    path, status = train_run(config, results_dir=tmp_path, data_dir=data_dir, cache_dir=tmp_path / "cache",
                             device="cpu", download=False, log=lambda line: None)
    assert status == "done"
    metrics = json.loads((path / "metrics.json").read_text())
    for key in ("nll", "nll_unit_prior", "rec", "ppl") + (() if row == "lstm_lm" else ("kl", "mi", "au")):
        assert math.isfinite(metrics[key]), (row, key)
