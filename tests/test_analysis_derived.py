"""Table 4's linear probe and Table 5's generation metrics as the analysis reads them (analysis/probe.py,
analysis/generation.py), from a run's record or, for a run without it, from its checkpoint
(benchmarks/probe.py, benchmarks/generation.py compute them)."""
import math
import shutil

import numpy as np
import pytest
import torch

from analysis import generation, probe
from benchmarks import derived
from benchmarks import generation as sampling
from benchmarks import probe as probing
from benchmarks.config import resolve
from benchmarks.errors import UserError
from benchmarks.store import read_json, write_json
from benchmarks.train import train_run
from models.networks import LSTMDecoder

from .conftest import DATA_DIR


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir):
    """trained(model, dataset, seed) -> a finished smoke run, trained once per module."""
    results = tmp_path_factory.mktemp("results")

    def train(model, dataset, seed=0):
        config = resolve(model, dataset, "smoke", seed)
        path, status = train_run(config, results_dir=results, data_dir=DATA_DIR, cache_dir=cache_dir,
                                 device="cpu", download=False, log=lambda line: None)
        assert status == "done"
        return path
    return train


@pytest.fixture
def fresh(tmp_path):
    """A private copy of a run directory without its derived records, as an older store has it."""
    def copy(run_dir):
        target = tmp_path / run_dir.name
        shutil.copytree(run_dir, target)
        for name in (probing.RECORD, sampling.RECORD, sampling.SAMPLES, sampling.PPL_RECORD, derived.LATENT):
            (target / name).unlink(missing_ok=True)
        return target
    return copy


def no_recompute(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of reading the record")
    monkeypatch.setattr(derived, "load_trained", fail)


# --------------------------------------------------------------------------- n-gram statistics


def test_ngram_statistics_on_hand_made_sentences():
    generation = sampling
    assert generation.distinct([["a", "a", "b"]], 1) == pytest.approx(2 / 3)
    assert generation.distinct([["a", "a", "a"]], 2) == pytest.approx(1 / 2)
    assert generation.unigram_entropy([["a", "b"], ["b", "a"]]) == pytest.approx(math.log(2))
    assert generation.unigram_entropy([["a", "a"]]) == 0
    # bigrams (a b) seen, (b c) unseen; the trigram is unseen
    stats = generation.ngram_statistics([["a", "b", "c"]], [["x", "a", "b"], ["c"]])
    assert stats["gram2"] == pytest.approx(1 / 2) and stats["gram3"] == 0
    assert stats["gram4"] is None and stats["dist3"] == 1  # no 4-gram in a 3-word sentence
    # generated n-grams count with multiplicity; n-grams never cross sentence boundaries
    assert generation.seen_share([["a", "b"], ["a", "b"], ["b", "a"]], [["a", "b"]], 2) == pytest.approx(2 / 3)
    assert generation.seen_share([["b", "c"]], [["a", "b"], ["c", "d"]], 2) == 0
    assert generation.ngram_statistics([], [["a"]]) == dict.fromkeys(
        ["gram2", "gram3", "gram4", "entropy", "dist1", "dist2", "dist3"])


# --------------------------------------------------------------------------- the probe


def test_label_subsets_are_capped_distinct_and_seeded():
    probe = probing
    subsets = probe.draw_subsets(200, [100, 500, 1000], seed=0)
    assert list(subsets) == [100, 200]  # 500 and 1000 both capped at the 200 available
    assert all(len(set(idx)) == n and idx.max() < 200 for n, idx in subsets.items())
    again, other = probe.draw_subsets(200, [100], seed=0), probe.draw_subsets(200, [100], seed=1)
    assert np.array_equal(again[100], subsets[100]) and not np.array_equal(other[100], subsets[100])


def test_linear_probe_on_a_smoke_run_is_capped_seeded_and_recorded(trained, fresh, cache_dir, monkeypatch):
    scored = trained("vae", "yelp_small", seed=3)
    run_dir = fresh(scored)
    seeds, fits = [], []
    draw, fit_probe = probing.draw_subsets, probing.fit_probe
    monkeypatch.setattr(probing, "draw_subsets", lambda *args: seeds.append(args[2]) or draw(*args))
    monkeypatch.setattr(probing, "fit_probe", lambda *args, **kwargs: fits.append(kwargs) or fit_probe(*args, **kwargs))
    result = probe.linear_probe(run_dir, data_dir=DATA_DIR, cache_dir=cache_dir)  # no record: from best.pt
    assert seeds == [3] and [f["seed"] for f in fits] == [3, 3]  # the run's seed draws the subsets and seeds the probe
    assert [len(f["lengths"]) for f in fits] == [100, 200]  # batched by the labelled documents' lengths
    assert result == read_json(scored / "probe.json")  # what the run's scoring recorded
    assert result["probe"] == probing.PROTOCOL and result["features"] == "posterior mean"
    assert result["requested_counts"] == [100, 500, 1000, 2000, 10000]
    assert result["label_counts"] == [100, 200] and result["train_documents"] == 200  # smoke: 200 documents
    assert result["test_documents"] == 40 and result["valid_documents"] > 0
    assert set(result["accuracy"]) == set(result["best_epoch"]) == set(result["batched_documents"]) == {"100", "200"}
    assert all(0 <= a <= 1 for a in result["accuracy"].values())
    assert all(1 <= e <= probing.MAX_EPOCHS for e in result["best_epoch"].values())
    assert all(result["batched_documents"][n] <= int(n) for n in ("100", "200"))

    stamp = (run_dir / "probe.json").stat().st_mtime_ns
    with monkeypatch.context() as patch:
        no_recompute(patch)
        assert probe.linear_probe(run_dir, data_dir=DATA_DIR, cache_dir=cache_dir) == result
    assert (run_dir / "probe.json").stat().st_mtime_ns == stamp

    # a result without the protocol's name (the earlier standardised LBFGS probe) is recomputed, identically
    old = {k: v for k, v in result.items() if k != "probe"}
    write_json(run_dir / "probe.json", old)
    assert probing.cached(run_dir / "probe.json", requested_counts=result["requested_counts"]) == old
    assert probe.linear_probe(run_dir, data_dir=DATA_DIR, cache_dir=cache_dir) == result  # seeded: same numbers

    assert probe.linear_probe(run_dir, (50,), data_dir=DATA_DIR, cache_dir=cache_dir)["label_counts"] == [50]
    (run_dir / "probe.json").write_text("{not json")
    assert probe.linear_probe(run_dir, (50,), data_dir=DATA_DIR, cache_dir=cache_dir)["label_counts"] == [50]


def test_probe_of_an_unlabelled_dataset_is_a_user_error(trained, cache_dir):
    with pytest.raises(UserError, match="no labels.*labelled dataset"):
        probe.linear_probe(trained("vae", "yahoo_small"), data_dir=DATA_DIR, cache_dir=cache_dir)


# --------------------------------------------------------------------------- generation


def test_generation_metrics_on_a_smoke_run_are_valid_and_recorded(trained, fresh, cache_dir, monkeypatch):
    scored, lm_dir = trained("vae", "yahoo_small"), trained("lstm_lm", "yahoo_small")
    run_dir = fresh(scored)
    result = generation.generation_metrics(run_dir, lm_dir, data_dir=DATA_DIR, cache_dir=cache_dir)  # from best.pt
    assert result["lm_run"] == lm_dir.name and result["protocol"] == sampling.PROTOCOL
    assert result["tokens"] == result["token_budget"] == 20_000 <= result["words"]  # the statistics' words: the budget
    assert result["max_tokens"] == 21 and 0 <= result["capped"] <= result["sentences"]  # smoke: max_len 20, + </s>
    assert result["words"] - 20 <= 20_000 and result["sentences"] >= 20_000 / 21  # stops at the sentence crossing it
    assert math.isfinite(result["ppl"]) and result["ppl"] > 1
    assert 0 < result["entropy"] <= math.log(400)  # smoke vocabulary: 400 words
    assert all(0 <= result[k] <= 1 for k in ("gram2", "gram3", "gram4", "dist1", "dist2", "dist3"))
    lines = (run_dir / "samples.txt").read_text().splitlines()  # every sampled sentence, </s> where it was drawn
    assert len(lines) == result["sentences"] and sum(line.split()[-1:] != ["</s>"] for line in lines) == result["capped"]
    assert (run_dir / "samples.txt").read_bytes() == (scored / "samples.txt").read_bytes()  # the scoring's draws
    assert read_json(run_dir / "generation_ppl.json")["lm_run"] == lm_dir.name  # from the LM's best.pt, kept

    with monkeypatch.context() as patch:
        no_recompute(patch)
        assert generation.generation_metrics(run_dir, lm_dir, data_dir=DATA_DIR, cache_dir=cache_dir) == result
        recorded = read_json(run_dir / "generation.json")
        write_json(run_dir / "generation.json", {k: v for k, v in recorded.items() if k != "protocol"})  # another protocol's
        with pytest.raises(AssertionError, match="recomputed"):
            generation.generation_metrics(run_dir, lm_dir, data_dir=DATA_DIR, cache_dir=cache_dir)
        write_json(run_dir / "generation.json", result)  # an older store's cache: the metrics and one LM's PPL
        assert generation.generation_metrics(run_dir, lm_dir, data_dir=DATA_DIR, cache_dir=cache_dir) == result
    other = generation.generation_metrics(run_dir, lm_dir, tokens=600, data_dir=DATA_DIR, cache_dir=cache_dir)
    assert other["tokens"] == 600 and other["sentences"] < 50
    assert read_json(run_dir / "generation.json") == result  # another budget is computed, not recorded
    with pytest.raises(UserError, match="tokens must be a positive integer"):
        generation.generation_metrics(run_dir, lm_dir, tokens=0, data_dir=DATA_DIR, cache_dir=cache_dir)


def test_scale_vae_generates_from_f_bar_times_a_standard_normal(trained, cache_dir, monkeypatch):
    run_dir, lm_dir = trained("scale_vae", "yahoo_small"), trained("lstm_lm", "yahoo_small")
    f_bar = torch.load(run_dir / "best.pt")["model"]["f_bar"]
    assert not torch.allclose(f_bar, torch.ones_like(f_bar), rtol=0.2)  # else the check below shows nothing
    seen = []
    original = LSTMDecoder.generate
    monkeypatch.setattr(LSTMDecoder, "generate", lambda self, z, *a, **kw: seen.append(z) or original(self, z, *a, **kw))
    generation.generation_metrics(run_dir, lm_dir, tokens=30_000, data_dir=DATA_DIR, cache_dir=cache_dir)  # not recorded
    z = torch.cat(seen)
    assert z.shape[0] >= 1500 and z.shape[1] == f_bar.numel()
    assert z.std(0) == pytest.approx(f_bar, rel=0.1) and z.mean(0).abs().max() < 0.1 * f_bar.max()


def test_generation_needs_a_language_model_of_the_same_data(trained, cache_dir):
    vae, yelp_lm = trained("vae", "yahoo_small"), trained("lstm_lm", "yelp_small")
    with pytest.raises(UserError, match="pass an lstm_lm run"):
        generation.generation_metrics(vae, vae, data_dir=DATA_DIR, cache_dir=cache_dir)
    with pytest.raises(UserError, match="does not share the data"):
        generation.generation_metrics(vae, yelp_lm, data_dir=DATA_DIR, cache_dir=cache_dir)
