"""Issue 14's machinery: runs end by the protocol's stopping rule and say why, the shen2021 lineage
applies each of DU-VAE's protocol differences, and Scale-VAE writes its factor of every batch."""
import csv

import numpy as np
import pytest
import torch

import models
from benchmarks.config import load_profile, resolve
from benchmarks.data import BatchLoader
from benchmarks.protocol import Trainer
from benchmarks.train import load_data, loader, seed_everything

from .test_train_cli import results_of


def smoke_trainer(data_dir, model="vae", settings=()):
    config = resolve(model, "yahoo_small", "smoke", 0, list(settings))
    corpus = load_data(config, data_dir, download=False)
    seed_everything(0)
    built = models.build(config.model, config.profile.architecture(len(corpus.vocab)), **config.hyperparameters)
    return Trainer(built, config.profile, loader(corpus, "train", config, "cpu", True),
                   loader(corpus, "valid", config, "cpu", False), log=lambda line: None)


def test_a_run_stops_by_the_decay_rule_before_its_cap_and_says_so(data_dir, monkeypatch):
    """Validation that never improves after the first epoch: patience 1 and 2 decays end the run at
    epoch 3 of a cap of 20, by the rule, not the cap."""
    trainer = smoke_trainer(data_dir, settings=["max_epochs=20", "decay_patience=1", "max_decays=2",
                                                "decay_min_epoch=0"])
    losses = iter([100.0, 101.0, 102.0, 103.0, 104.0])
    original = trainer.validate
    monkeypatch.setattr(trainer, "validate", lambda: {**original(), "valid_loss": next(losses)})
    history = trainer.fit()
    assert len(history) == 3 and trainer.decays == 2 and trainer.stop_reason == "max_decays"
    assert [round(r["lr"], 6) for r in history] == [trainer.profile.lr, trainer.profile.lr, trainer.profile.lr / 2]


def test_a_capped_run_records_that_the_cap_ended_it(tmp_path, data_dir):
    _, metrics = results_of(tmp_path, data_dir, "vae")  # smoke: 2 epochs, no decay can finish it
    assert metrics["stopped_by"] == "max_epochs" and metrics["capped"] is True


def test_the_shen2021_lineage_sets_patience_kl_start_batching_and_skipping():
    he, shen = load_profile("quick"), load_profile("quick", {"lineage": "shen2021"})
    assert (he.decay_patience, shen.decay_patience) == (2, 5)
    assert (he.kl_start, shen.kl_start) == (0.1, 0.0)
    assert (he.min_train_batch, shen.min_train_batch) == (0, 16)
    assert (he.batching, shen.batching) == ("length", "equal_length")
    assert load_profile("quick", {"lineage": "shen2021", "decay_patience": 3}).decay_patience == 3  # --set wins
    # a configuration at he2019's values keeps the run id it had before the fields existed
    config = resolve("vae", "yahoo_small", "quick", 0)
    assert config.run_id == resolve(
        "vae", "yahoo_small", "quick", 0, ["lineage=he2019", "min_train_batch=0"]).run_id
    assert config.run_id != resolve("vae", "yahoo_small", "quick", 0, ["lineage=shen2021"]).run_id


@pytest.mark.parametrize("method, default_encoder", [("bn_vae", True), ("du_vae", True), ("scale_vae", True),
                                                     ("vae", False)])
def test_the_shen2021_lineage_leaves_batch_normalised_encoders_at_pytorch_init(method, default_encoder):
    """DU-VAE's GaussianLSTMEncoder keeps PyTorch's init (U(+-1/sqrt(H)) for the LSTM, N(0, 1) for the
    embedding); every other module gets the profile's U(-0.01, 0.01) / U(-0.1, 0.1)."""
    profile = load_profile("paper", {"lineage": "shen2021", "enc_hidden": 64, "dec_hidden": 64, "emb_dim": 32})
    torch.manual_seed(0)
    model = models.build(method, profile.architecture(50))
    encoder_lstm = model.encoder.lstm.weight_hh_l0.abs().max().item()
    encoder_embedding = model.encoder.embed.weight.abs().max().item()
    assert model.decoder.lstm.weight_hh_l0.abs().max() <= 0.01 and model.decoder.embed.weight.abs().max() <= 0.1
    if default_encoder:
        assert 0.05 < encoder_lstm <= 1 / 64**0.5 and encoder_embedding > 1.0
    else:
        assert encoder_lstm <= 0.01 and encoder_embedding <= 0.1
    he = models.build(method, load_profile("paper", {"enc_hidden": 64, "dec_hidden": 64, "emb_dim": 32})
                      .architecture(50))
    assert he.encoder.lstm.weight_hh_l0.abs().max() <= 0.01  # he2019: uniform everywhere


def test_small_training_batches_are_skipped_and_count_no_step(data_dir):
    trainer = smoke_trainer(data_dir, settings=["min_train_batch=16", "batching=equal_length", "max_epochs=1"])
    sizes = [b.size for b in trainer.train_batches]
    assert min(sizes) < 16 <= max(sizes)  # the case exists
    seen = []
    step = trainer.model.training_step
    trainer.model.training_step = lambda batch, t: (seen.append(batch.size), step(batch, t))[1]
    trainer.fit()
    assert sorted(seen) == sorted(s for s in sizes if s >= 16) and trainer.step_count == len(seen)


def test_equal_length_batches_hold_one_length_each_like_he_et_al():
    rng = np.random.default_rng(0)
    docs = [[1] * int(n) for n in rng.integers(3, 9, size=100)]
    batches = list(BatchLoader(docs, 8, pad_id=0, mode="equal_length", shuffle=False))
    assert sum(b.size for b in batches) == 100
    for b in batches:
        assert len(set(b.lengths.tolist())) == 1 and b.size <= 8
    per_length = np.bincount([len(d) for d in docs])
    assert len(batches) == sum(-(-int(n) // 8) for n in per_length if n)  # ceil(count / 8) per length


@pytest.mark.parametrize("average", ["mean", "harmonic"])
def test_scale_vae_writes_the_factor_of_every_batch_and_f_bar_per_epoch(tmp_path, data_dir, average):
    run_dir, _ = results_of(tmp_path, data_dir, "scale_vae", "--set", "des_std=0.7", "f_epo=1",
                                  f"f_average={average}")
    with open(run_dir / "factor_trace.csv") as fh:
        rows = list(csv.DictReader(fh))
    batches = [r for r in rows if r["kind"] == "batch"]
    f_bars = [r for r in rows if r["kind"] == "f_bar"]
    with open(run_dir / "history.csv") as fh:
        epochs = list(csv.DictReader(fh))
    config = resolve("scale_vae", "yahoo_small", "smoke", 0)
    corpus = load_data(config, data_dir, download=False)
    assert len(batches) == len(loader(corpus, "train", config, "cpu", True))  # every batch of epoch 1 (f_epo 1)
    assert {r["epoch"] for r in batches} == {"1"} and [r["epoch"] for r in f_bars] == ["1", "2"]
    nz = config.profile.nz
    means = np.array([float(r["f_mean"]) for r in batches])
    assert all(float(r["f_min"]) <= float(r["f_mean"]) <= float(r["f_max"]) and not r.get("f_0") for r in batches)
    first = np.array([float(f_bars[0][f"f_{d}"]) for d in range(nz)])  # f_bar: every dimension
    np.testing.assert_allclose(float(f_bars[0]["f_mean"]), first.mean(), rtol=1e-6)
    if average == "mean":  # f_bar per dimension is the batches' mean, so its mean is the mean of theirs
        np.testing.assert_allclose(first.mean(), means.mean(), rtol=1e-5)
    else:  # a harmonic mean is at most the arithmetic one (per dimension: tests/test_models.py)
        assert first.mean() <= means.mean() * (1 + 1e-6)
    assert float(epochs[-1]["f_mean"]) == pytest.approx(float(f_bars[-1]["f_mean"]), rel=1e-5)


def test_a_diverged_run_keeps_its_epochs_and_factor_trace(tmp_path, data_dir, monkeypatch):
    from benchmarks import protocol
    from benchmarks.store import read_json
    from benchmarks.train import train_run
    original = protocol.Trainer.validate

    def diverging(self):
        record = original(self)
        return {**record, "valid_loss": float("nan")} if self.epoch == 1 else record  # epoch 2 diverges

    monkeypatch.setattr(protocol.Trainer, "validate", diverging)
    config = resolve("scale_vae(0.7,1)", "yahoo_small", "smoke", 0)
    run_dir, status = train_run(config, results_dir=tmp_path, data_dir=data_dir, download=False, log=lambda line: None)
    assert status == "failed" and read_json(run_dir / "failed.json")["epoch"] == 2
    with open(run_dir / "history.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1"]
    with open(run_dir / "factor_trace.csv") as fh:
        kinds = [r["kind"] for r in csv.DictReader(fh)]
    assert kinds.count("f_bar") == 2 and kinds.count("batch") > 0  # epoch 2's f_bar was set before validation


def test_skipping_every_batch_is_one_clear_error(data_dir):
    from benchmarks.errors import UserError
    trainer = smoke_trainer(data_dir, settings=["min_train_batch=16", "batch_size=16", "batching=equal_length",
                                                "max_epochs=1"])
    if all(b.size >= 16 for b in trainer.train_batches):
        pytest.fail("the smoke split should have one-length batches under 16 documents")
    trainer.train_batches = [b for b in trainer.train_batches if b.size < 16]
    with pytest.raises(UserError, match="lower min_train_batch"):
        trainer.train_epoch()


def planted_study_run(tmp_path, seed, setting, f_first, f_bar_1, f_final, capped=0, experiment="scale_regime"):
    """One finished Scale-VAE run of the study as ``analysis.collect`` would list it, with its trace."""
    run_dir = tmp_path / f"run-{setting or 'own'}-{seed}"
    run_dir.mkdir()
    trace = [{"epoch": 1, "batch": 1, "kind": "batch", "f_mean": f_first},
             {"epoch": 1, "batch": 2, "kind": "batch", "f_mean": f_first / 10},
             {"epoch": 1, "batch": "", "kind": "f_bar", "f_mean": f_bar_1},
             {"epoch": 2, "batch": "", "kind": "f_bar", "f_mean": f_final}]
    with open(run_dir / "factor_trace.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(trace[0]))
        writer.writeheader()
        writer.writerows(trace)
    with open(run_dir / "history.csv", "w", newline="") as handle:
        handle.write("epoch,f_mean,valid_kl,valid_mi,valid_nll\n")
        handle.write(f"1,{f_bar_1},0.5,-300,140\n2,{f_final},1.0,2.0,130\n")
    return {"experiment": experiment, "run_id": run_dir.name, "setting": setting, "row": "scale_vae(0.7,1)",
            "seed": seed, "status": "done", "run_dir": str(run_dir), "capped": capped, "f_mean": f_final,
            "kl": 1.0, "mi": 2.0, "mi_unscaled": 1.0, "au": 32, "nll": 130.0, "nll_unit_prior": 129.0, "epochs": 2}


def test_the_study_table_reads_where_each_run_s_factors_start_and_shows_every_seed(tmp_path):
    import pandas as pd

    from analysis import steady_state
    runs = pd.DataFrame([planted_study_run(tmp_path, 1, "", 30.0, 20.0, 2.5, capped=1),
                         planted_study_run(tmp_path, 0, "", 40.0, 30.0, 2.0),
                         planted_study_run(tmp_path, 0, "lr=1.0", 5e4, 3000.0, 7e11)])
    table = steady_state.study_table(runs).set_index("protocol")
    own = table.loc["profile's own"]
    assert own["f_first_batch_mean"] == pytest.approx(35.0) and own["f_bar_epoch1_mean"] == pytest.approx(25.0)
    assert own["f_bar_per_seed"] == "2, 2.5" and own["capped"] == 1 and own["finished"] == 2
    text = steady_state.markdown(steady_state.study_table(runs))
    assert "| lr=1.0 | scale_vae(0.7,1) | 1 / 1 | 0 | 0 | 50000 | 3000.0 | 7e+11 |" in text
    assert len(steady_state.first_factors(runs)) == 6  # two traced batches per run
    assert [p.suffix for p in steady_state.curves_figure(runs, tmp_path / "figures")] == [".png", ".pdf"]


def test_the_other_f_average_reading_joins_the_study_table_beside_its_row(tmp_path):
    """scale_regime_f_average runs protocols (b) and (c) of scale_regime with the harmonic f_bar; its
    runs are lines of the same table, under the row they vary, named by their protocol."""
    import pandas as pd

    from analysis import steady_state
    from benchmarks import plan
    study, other = plan.load("scale_regime"), plan.load("scale_regime_f_average")
    assert [{k: v for k, v in entry.items() if k != "f_average"} for entry in other["grid"]] == study["grid"][1:]
    assert all(entry["f_average"] == "harmonic" for entry in other["grid"])
    assert other["settings"]["quick"] == study["settings"]["quick"]
    vae = {**planted_study_run(tmp_path, 0, "lr=1.0", 1.0, 1.0, 1.0), "row": "vae", "run_id": "vae"}
    runs = pd.DataFrame([planted_study_run(tmp_path, 0, "", 40.0, 30.0, 2.0), vae,
                         planted_study_run(tmp_path, 0, "lr=1.0,f_average=harmonic", 5e4, 900.0, 300.0,
                                           experiment="scale_regime_f_average"),
                         {**vae, "experiment": "table1", "run_id": "elsewhere"}])
    table = steady_state.study_table(runs)
    assert list(zip(table["row"], table["protocol"])) == [
        ("scale_vae(0.7,1)", "profile's own"), ("scale_vae(0.7,1)", "lr=1.0,f_average=harmonic"), ("vae", "lr=1.0")]
    assert table.loc[1, "f_bar_per_seed"] == "300"
