"""The performance benchmark runs and reports its figures; the batched evaluation it measures
computes the same numbers as one document at a time (timings are printed, never asserted)."""
import json

import pytest
import torch

import models
from models.networks import logits_block_rows
from benchmarks.train import TIMING_KEYS
from benchmarks import metrics, perf
from benchmarks import precision as bf16
from benchmarks.config import resolve
from benchmarks.store import read_json
from benchmarks.train import load_data, loader, train_run


def test_perf_benchmark_writes_every_figure_for_both_precisions(tmp_path, data_dir):
    out = tmp_path / "perf.json"
    assert perf.main(["--profile", "smoke", "--data-dir", str(data_dir), "--steps", "1", "--eval-docs", "8",
                      "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["precisions"] == ["fp32", "bf16"] and set(result["train"]) == {"fp32", "bf16"}
    for precision, entries in result["train"].items():
        assert set(entries) == set(perf.METHODS)
        assert all(e["tokens_per_s"] > 0 and e["time_ratio_to_vae"] > 0 for e in entries.values())
        assert entries["vae"]["time_ratio_to_vae"] == 1.0
        step = result["vae_step"][precision]
        # no step beats a matmul peak
        assert 0 < step["mfu_bf16_peak"] and 0 < step["mfu_fp32_peak"] < 1 and 0 < step["mfu_fp32_peak_paired"] < 1
        assert result["eval"][precision]["iw_speedup"] > 0
    assert all(result["matmul_peak_gflops"][p] > 0 for p in ("fp32", "bf16"))
    assert len(result["matmul_peak_gflops_per_pass"]) == len(result["train"]["fp32"]["vae"]["pass_step_ms"]) == 5
    assert 0 <= result["padding_waste_train"] < 1
    for precision in ("fp32", "bf16"):
        assert set(result["parts"][precision]) == set(bf16.TIMED_PARTS)
        assert all(t["forward_ms"] > 0 and t["backward_ms"] > 0 for t in result["parts"][precision].values())
    assert set(result["speedup_bf16"]["train"]) == set(perf.METHODS) and result["speedup_bf16"]["iw_nll_batched"] > 0
    same = result["same_weights"]
    assert set(same["difference"]) >= {"nll", "kl", "mi", "au"} and same["documents"] == 8
    assert abs(same["difference"]["nll"]) < 0.1 and same["difference"]["au"] == 0


def test_perf_times_the_named_methods_and_precisions_only(tmp_path, data_dir, capsys):
    out = tmp_path / "perf.json"
    assert perf.main(["--profile", "smoke", "--data-dir", str(data_dir), "--steps", "1", "--eval-docs", "4",
                      "--methods", "vae,scale_vae(0.7,1)", "--precisions", "fp32", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["train"]) == {"fp32"} and set(result["train"]["fp32"]) == {"vae", "scale_vae(0.7,1)"}
    assert "speedup_bf16" not in result and "difference" not in result["same_weights"]
    assert perf.main(["--profile", "smoke", "--data-dir", str(data_dir), "--methods", "bn_vae(0.6)"]) == 2
    assert "must include vae" in capsys.readouterr().err
    assert perf.main(["--profile", "smoke", "--data-dir", str(data_dir), "--precisions", "fp16"]) == 2
    assert "--precisions" in capsys.readouterr().err


@pytest.fixture
def model_and_batch(data_dir):
    """An untrained smoke-size VAE and a test batch of yahoo_small."""
    config = resolve("vae", "yahoo_small", "smoke", 0)
    corpus = load_data(config, data_dir, download=False)
    torch.manual_seed(0)
    model = models.build("vae", config.profile.architecture(len(corpus.vocab))).eval()
    return model, next(iter(loader(corpus, "test", config, "cpu", False)))


def test_batched_likelihood_equals_one_document_at_a_time(model_and_batch):
    model, batch = model_and_batch
    z = torch.randn(batch.size, 7, model.arch.nz)
    with torch.no_grad():
        together = model.decoder.log_likelihood(batch.tokens, batch.lengths, z)
        alone = torch.cat([model.decoder.log_likelihood(doc.tokens, doc.lengths, z[i:i + 1])
                           for i, doc in enumerate(perf.split_documents(batch))])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["vae", "skip_vae", "lstm_lm"])
def test_blocked_evaluation_likelihood_equals_the_one_shot_logits(model_and_batch, name):
    """Without gradients on CPU the output layer runs in cache-sized blocks over the unpadded
    positions only; it must give what the training path's [N, T, V] logits give."""
    _, batch = model_and_batch
    torch.manual_seed(0)
    model = models.build(name, model_and_batch[0].arch).eval()
    z = torch.randn(batch.size, 20, model.arch.nz) if model.has_latent else None
    lengths = torch.randint(3, batch.tokens.shape[1] + 1, (batch.size,))  # positions past a length: padding
    with torch.no_grad():
        blocked = model.decoder.log_likelihood(batch.tokens, lengths, z)
    rows = int((lengths - 1).sum()) * (20 if z is not None else 1)
    block = logits_block_rows(model.arch.dec_hidden, model.arch.vocab_size)
    assert block and (z is None or rows > 3 * block)  # the blocked path, over several blocks
    one_shot = model.decoder.log_likelihood(batch.tokens, lengths, z).detach()
    torch.testing.assert_close(blocked, one_shot, rtol=1e-5, atol=1e-4)


def test_evaluation_logits_are_blocked_only_where_blocks_pay():
    assert logits_block_rows(128, 2000) == 131  # quick: 1 MB blocks
    assert logits_block_rows(24, 400) == 655  # smoke
    assert logits_block_rows(1024, 20000) is None  # paper: one-shot logits are faster


def test_iw_estimate_does_not_depend_on_the_chunk_size(model_and_batch):
    model, batch = model_and_batch
    estimates = []
    for chunk in (1, 5, 20):
        torch.manual_seed(1)
        q = model.posterior(batch)
        z = q.rsample(20)  # the same samples for every chunking
        with torch.no_grad():
            (log_px,), _ = metrics.importance_weighted_log_likelihood(
                lambda zs: model.decoder.log_likelihood(batch.tokens, batch.lengths, zs),
                FixedSamples(q, z), [1.0], 20, chunk)
        estimates.append(log_px)
    torch.testing.assert_close(estimates[0], estimates[1])
    torch.testing.assert_close(estimates[0], estimates[2])


class FixedSamples:
    """A proposal that hands out pre-drawn samples in order (so chunkings see the same z)."""

    def __init__(self, q, z):
        self.q, self.z, self.used = q, z, 0

    def rsample(self, k):
        z = self.z[:, self.used:self.used + k]
        self.used += k
        return z

    def log_prob(self, z):
        return self.q.log_prob(z)


@pytest.mark.parametrize("model", ["vae", "agg_vae"])
def test_speed_settings_leave_a_runs_numbers_unchanged(tmp_path, data_dir, monkeypatch, model):
    """Every run flushes denormals to zero, steps its optimisers with multi-tensor (foreach)
    updates, and Agg-VAE sums its window loss on the device: a smoke run gives the same
    metrics as one that keeps denormals and loops over the parameters."""
    config = resolve(model, "yahoo_small", "smoke", 0)
    fast, _ = train_run(config, results_dir=tmp_path / "fast", data_dir=data_dir, log=lambda line: None)
    real = torch.set_flush_denormal
    real(False)
    monkeypatch.setattr(torch, "set_flush_denormal", lambda on: True)  # the run cannot turn it back on
    adam = torch.optim.Adam
    monkeypatch.setattr(torch.optim, "Adam", lambda params, **kw: adam(params, **{**kw, "foreach": False}))
    try:
        slow, _ = train_run(config, results_dir=tmp_path / "slow", data_dir=data_dir, log=lambda line: None)
    finally:
        real(True)
    a, b = (read_json(d / "metrics.json") for d in (fast, slow))
    numbers = [k for k, v in a.items() if isinstance(v, float) and k not in TIMING_KEYS]
    assert "nll" in numbers and "kl" in numbers
    assert {k: a[k] for k in numbers} == pytest.approx({k: b[k] for k in numbers}, rel=1e-6)
