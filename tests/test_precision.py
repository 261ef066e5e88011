"""The ``precision`` profile value: bfloat16 where the device gains, float32 everywhere it matters
(weights, gradients, optimiser state, log-likelihoods), metrics within tolerance of float32."""
import dataclasses
import json

import pytest
import torch

import models
from benchmarks import precision
from benchmarks.config import RunConfig, resolve
from benchmarks.errors import UserError
from benchmarks.protocol import Trainer
from benchmarks.train import load_data, loader, seed_everything

from .test_train_cli import results_of, train

ENGAGED = models.bf16_parts("cpu") == frozenset(models.networks.PARTS)
needs_bf16 = pytest.mark.skipif(not ENGAGED, reason="this CPU has no AMX: bfloat16 runs no part here (bf16_parts)")


@pytest.fixture
def smoke(data_dir):
    """A smoke-size VAE trained for a few steps in float32, its batches and its profile."""
    config = resolve("vae", "yahoo_small", "smoke", 0)
    corpus = load_data(config, data_dir, download=False)
    seed_everything(0)
    model = models.build("vae", config.profile.architecture(len(corpus.vocab)))
    trainer = Trainer(model, config.profile, loader(corpus, "train", config, "cpu", True),
                      loader(corpus, "valid", config, "cpu", False), log=lambda line: None)
    for batch in list(trainer.train_batches)[:10]:
        model.training_step(batch, trainer)
    return model, list(loader(corpus, "test", config, "cpu", False)), config.profile


@needs_bf16
def test_bf16_runs_the_matmuls_in_bfloat16_and_hands_float32_on(smoke):
    model, batches, _ = smoke
    model.eval()
    low = precision.with_precision(model, "bf16")
    batch = batches[0]
    z = torch.randn(batch.size, 3, model.arch.nz)
    with torch.no_grad():
        hidden, state = low.decoder.hidden_states(batch.tokens[:, :-1], z[:, 0])
        logits = low.decoder.logits(batch.tokens[:, :-1], z[:, 0])
        q = low.encoder(batch.tokens, batch.lengths)
        exact = model.decoder.log_likelihood(batch.tokens, batch.lengths, z)
        approx = low.decoder.log_likelihood(batch.tokens, batch.lengths, z)
    assert hidden.dtype == logits.dtype == q.mu.dtype == approx.dtype == torch.float32
    assert all(s.dtype == torch.float32 for s in state)
    assert not torch.equal(approx, exact)  # bfloat16 did run
    assert (approx - exact).abs().max() < 0.2  # log p(x|z) of a whole document, nats


@needs_bf16
def test_bf16_training_keeps_float32_weights_gradients_and_optimiser_state(smoke, data_dir):
    model, _, profile = smoke
    low = precision.with_precision(model, "bf16").train()
    config = resolve("vae", "yahoo_small", "smoke", 0, ["precision=bf16"])
    corpus = load_data(config, data_dir, download=False)
    trainer = Trainer(low, dataclasses.replace(profile, precision="bf16"), loader(corpus, "train", config, "cpu", True),
                      loader(corpus, "valid", config, "cpu", False), log=lambda line: None)
    before = {k: v.clone() for k, v in low.state_dict().items()}
    batch = next(iter(trainer.train_batches))
    terms = low.loss(batch, 1.0)
    terms.loss.backward()
    assert all(p.grad.dtype == torch.float32 for p in low.parameters() if p.grad is not None)
    low.zero_grad()
    low.training_step(batch, trainer)
    assert all(v.dtype == torch.float32 for v in low.state_dict().values() if v.is_floating_point())
    states = [s for o in trainer.optimizers.values() for s in o.state.values()]
    assert states and all(t.dtype == torch.float32 for s in states for t in s.values() if torch.is_tensor(t)
                          and t.is_floating_point())
    assert any(not torch.equal(before[k], v) for k, v in low.state_dict().items())  # it did train


@needs_bf16
def test_same_weights_score_alike_in_both_precisions(smoke):
    """The issue's tolerance: IW-NLL within 0.1 nat per document on average; KL and MI within
    Monte-Carlo noise (the same draws: differences far below it); AU equal."""
    model, batches, profile = smoke
    checked = precision.same_weights(model, batches, profile)
    difference, noise = checked["difference"], checked["noise"]
    assert abs(difference["nll"]) < 0.1 and abs(difference["nll_unit_prior"]) < 0.1
    assert abs(difference["kl"]) < 0.01 and abs(difference["mi"]) < max(0.05, noise["mi"])
    assert difference["au"] == 0
    assert checked["scores"]["fp32"][0]["nll"] != checked["scores"]["bf16"][0]["nll"]  # two computations


def test_precision_is_part_of_a_runs_identity_and_float32_ids_stand():
    low = resolve("vae", "yahoo_small", "smoke", 0, ["precision=bf16"])
    high = resolve("vae", "yahoo_small", "smoke", 0, ["precision=fp32"])
    assert low.run_id != high.run_id
    legacy = high.to_json()
    del legacy["profile"]["precision"]  # a configuration written before the field existed
    restored = RunConfig.from_json(legacy)
    assert restored.profile.precision == "fp32" and restored.run_id == high.run_id
    assert RunConfig.from_json(low.to_json()).run_id == low.run_id
    with pytest.raises(UserError, match="precision must be one of fp32, bf16"):
        resolve("vae", "yahoo_small", "smoke", 0, ["precision=fp16"])


def test_a_bf16_run_records_the_parts_it_ran_in_bfloat16(tmp_path, data_dir):
    run_dir, metrics = results_of(tmp_path, data_dir, "vae", "--set", "precision=bf16")
    assert metrics["bf16_parts"] == sorted(models.bf16_parts("cpu"))
    assert json.loads((run_dir / "config.json").read_text())["profile"]["precision"] == "bf16"
    assert metrics["nll"] > 0 and metrics["kl"] >= 0
    done = train(tmp_path, data_dir, "--model", "vae", "--set", "precision=half")
    assert done.returncode == 2 and "precision must be one of fp32, bf16" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_trained_comparison_is_a_welch_test_per_row_and_metric():
    import pandas as pd
    from scipy import stats

    from analysis import precision as check
    nll = {"fp32": [100.0, 101.0, 99.5, 100.5, 100.2], "bf16": [100.1, 100.9, 99.7, 100.4, 100.0]}
    kl = {"fp32": [1.0, 1.1, 0.9, 1.0, 1.05], "bf16": [3.0, 3.1, 2.9, 3.2, 3.05]}  # a planted difference
    runs = pd.DataFrame([{"experiment": "precision", "status": "done", "run_id": f"{p}{i}", "dataset": "d", "row": "vae",
                          "setting": f"precision={p}", "seed": i, "nll": nll[p][i], "nll_unit_prior": nll[p][i],
                          "kl": kl[p][i], "mi": 0.5, "mi_unscaled": 0.5, "au": 3, "train_seconds": 10.0}
                         for p in nll for i in range(5)])
    table = check.trained(runs).set_index("metric")
    expected = stats.ttest_ind(nll["bf16"], nll["fp32"], equal_var=False).pvalue
    assert table.loc["nll", "p"] == pytest.approx(expected) and not table.loc["nll", "significant"]
    assert table.loc["kl", "significant"] and table.loc["kl", "difference"] == pytest.approx(2.04)
    assert pd.isna(table.loc["au", "p"])  # no spread: no test, no verdict
    text = check.markdown(table.reset_index(), pd.DataFrame())
    assert "Differences in a metric found at p < 0.05: 1 of 3 tested (3 not testable: fewer than 2 seeds" in text


def test_bf16_runs_that_ran_no_part_in_bfloat16_are_left_out_of_the_comparison(tmp_path):
    """On a CPU without AMX a bf16 run computes in float32: comparing it would hold by construction."""
    import pandas as pd

    from analysis import precision as check
    lines = []
    for p in ("fp32", "bf16"):
        for i in range(3):
            run_dir = tmp_path / f"{p}{i}"
            run_dir.mkdir()
            (run_dir / "metrics.json").write_text(json.dumps({"bf16_parts": []}))
            lines.append({"experiment": "precision", "status": "done", "run_id": f"{p}{i}", "dataset": "d",
                          "row": "vae", "setting": f"precision={p}", "seed": i, "run_dir": str(run_dir),
                          "nll": 100.0 + i, "nll_unit_prior": 100.0 + i, "kl": 1.0 + i / 10, "mi": 0.5,
                          "mi_unscaled": 0.5, "au": 3, "train_seconds": 10.0})
    table = check.trained(pd.DataFrame(lines))
    assert (table["n_bf16"] == 0).all() and (table["n_fp32"] == 3).all() and table["p"].isna().all()
    assert not table["significant"].any()
    text = check.markdown(table, pd.DataFrame())
    assert "**3 bf16 run(s) ran no part in bfloat16**" in text and "0 of 0 tested" in text
    for i in range(3):  # the same runs where bfloat16 did run: compared as before
        (tmp_path / f"bf16{i}" / "metrics.json").write_text(json.dumps({"bf16_parts": ["decoder_lstm"]}))
    table = check.trained(pd.DataFrame(lines))
    assert (table["n_bf16"] == 3).all() and "ran no part" not in check.markdown(table, pd.DataFrame())


def test_the_same_weights_check_is_not_run_where_bfloat16_runs_nowhere(monkeypatch):
    """Without AMX both scorings are float32's: the check would find 0 by construction."""
    import pandas as pd

    from analysis import precision as check
    monkeypatch.setattr(check, "bf16_parts", lambda device_type: frozenset())
    monkeypatch.setattr(check, "same_weights_of_run", lambda *args: {"difference": {"nll": 0.0}})  # would score
    runs = pd.DataFrame([{"experiment": "precision", "status": "done", "run_id": "r", "dataset": "d", "row": "vae",
                          "setting": "precision=fp32", "seed": 0, "run_dir": "/nonexistent"}])
    assert check.same_weights(runs).empty  # nothing loaded, nothing scored
    assert "same-weights check was not run" in check.markdown(
        pd.DataFrame([{"dataset": "d", "row": "vae", "metric": "nll", "n_fp32": 1, "n_bf16": 0, "fp32_mean": 1.0,
                       "fp32_std": 0.0, "bf16_mean": float("nan"), "bf16_std": float("nan"), "difference": float("nan"),
                       "t": float("nan"), "p": float("nan"), "significant": False, "bf16_left_out": 0}]), pd.DataFrame())
