"""Precision and device placement on the GPU path (issue 23), checked on the CPU: LSTM outputs in
float16 or bfloat16 are widened, CUDA's explicit bfloat16 LSTM, tensors kept on the model's device
(the meta device), IEEE float32 on CUDA, SA-VAE's evaluation on cuDNN; and, where a GPU is lent
(``needs_cuda``), a few training steps of every method in both precisions."""
import dataclasses
import math

import pytest
import torch
from torch import nn

import models
from benchmarks import metrics
from benchmarks.config import load_profile
from benchmarks.data import BatchLoader
from benchmarks.protocol import Trainer
from models import networks, sa_vae
from models.base import TrainingProgress

from .helpers import random_batch, tiny_arch

METHODS = sorted(models.METHODS)
QUICK_SETTINGS = {"sa_vae": {"steps": 2}, "sa_vae_fd": {"steps": 2},
                  "agg_vae": {"check_every": 1, "max_inner_steps": 2}}
LATE = TrainingProgress(epoch=3, step=1000, steps_per_epoch=10, kl_start=0.1, warmup_epochs=2.0, max_epochs=100)


def build(name, arch=None):
    torch.manual_seed(0)
    return models.build(name, arch or tiny_arch(), **QUICK_SETTINGS.get(name, {}))


def documents(n=12, vocab=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [[1, *torch.randint(4, vocab, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist(), 2]
            for _ in range(n)]


def batches_on(device, n=12, seed=0):
    """The protocol's batches (``BatchLoader``, word counts cached on the host) on ``device``."""
    return list(BatchLoader(documents(n, seed=seed), 4, pad_id=0, shuffle=False, device=device))


def finite_python_numbers(scores: dict) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in scores.values() if v is not None)


# ------------------------------------------------------- reduced-precision LSTM outputs


@pytest.fixture(params=[torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def lstm_hands_on(request, monkeypatch):
    """Every nn.LSTM returns outputs and states in the given dtype, as autocast's cuDNN RNN does (float16)."""
    original = nn.LSTM.forward

    def reduced(self, inputs, state=None):
        outputs, (h, c) = original(self, inputs, state)
        return outputs.to(request.param), (h.to(request.param), c.to(request.param))

    monkeypatch.setattr(nn.LSTM, "forward", reduced)
    return request.param


@pytest.mark.parametrize("name", METHODS)
def test_reduced_precision_lstm_outputs_reach_every_method_as_float32(name, lstm_hands_on):
    model = build(name).train()
    batch = random_batch()
    terms = model.loss(batch, model.kl_weight(LATE))
    assert all(t.dtype == torch.float32 for t in terms) and torch.isfinite(terms.loss)
    terms.loss.backward()
    model.eval()
    if model.has_latent:
        q = model.posterior(batch)
        assert q.mu.dtype == q.logvar.dtype == torch.float32
    scores = metrics.evaluate(model, [batch, random_batch(seed=1)], samples=3, memory_mb=1)
    assert finite_python_numbers(scores)


# ------------------------------------------------------------- CUDA's explicit cast


class RecordingVF:
    """torch's ``_VF`` with ``lstm`` recording the dtypes it computes with and whether autocast is on."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def lstm(self, inputs, state, weights, *rest):
        self.calls.append({"input": inputs.dtype, "state": {s.dtype for s in state},
                           "weights": {w.dtype for w in weights}, "autocast": torch.is_autocast_enabled("cpu")})
        return self.real.lstm(inputs, state, weights, *rest)


@pytest.fixture
def recorded_lstms(monkeypatch):
    recording = RecordingVF(torch.nn.modules.rnn._VF)
    monkeypatch.setattr(torch.nn.modules.rnn, "_VF", recording)
    return recording.calls


BFLOAT16_RUN = {"input": torch.bfloat16, "state": {torch.bfloat16}, "weights": {torch.bfloat16}, "autocast": False}


def test_the_explicit_bfloat16_lstm_computes_in_bfloat16_outside_autocast(recorded_lstms):
    lstm = nn.LSTM(5, 4, batch_first=True)
    inputs = torch.randn(3, 6, 5, requires_grad=True)
    state = (torch.randn(1, 3, 4), torch.randn(1, 3, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as around the output layer: switched off for the LSTM
        outputs, (h, c) = networks.lstm_in_bfloat16(lstm, inputs, state)
    assert recorded_lstms == [BFLOAT16_RUN]
    assert outputs.dtype == h.dtype == c.dtype == torch.bfloat16
    outputs.float().pow(2).sum().backward()
    assert all(p.dtype == p.grad.dtype == torch.float32 and p.grad.abs().sum() > 0 for p in lstm.parameters())
    assert inputs.grad.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in lstm.parameters())  # the master weights stay float32


@pytest.fixture
def cpu_as_cuda(monkeypatch):
    """This CPU as a CUDA device with cuDNN >= 9.13: every part in bfloat16, the LSTMs by explicit cast."""
    monkeypatch.setattr(networks, "bf16_parts", lambda device_type: frozenset(networks.PARTS))
    monkeypatch.setattr(networks, "LSTM_CAST_DEVICES", frozenset({"cpu"}))


@pytest.mark.parametrize("name", METHODS)
def test_on_cuda_every_methods_lstms_run_by_explicit_cast_and_train_the_float32_weights(
        name, cpu_as_cuda, recorded_lstms):
    model = build(name, dataclasses.replace(tiny_arch(), precision="bf16")).train()
    batch = random_batch()
    terms = model.loss(batch, model.kl_weight(LATE))
    assert recorded_lstms and all(call == BFLOAT16_RUN for call in recorded_lstms)
    assert all(t.dtype == torch.float32 for t in terms) and torch.isfinite(terms.loss)
    terms.loss.backward()
    lstms = [model.decoder.lstm] + ([model.encoder.lstm] if model.has_latent else [])
    for p in (p for lstm in lstms for p in lstm.parameters()):
        assert p.dtype == p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    if model.has_latent:
        with torch.no_grad():
            q = model.eval().posterior(batch)
        assert q.mu.dtype == q.logvar.dtype == torch.float32 and torch.isfinite(q.mu).all()


# ------------------------------------------------------------------- the meta device


@pytest.mark.parametrize("name", METHODS)
def test_every_method_keeps_its_tensors_on_the_models_device_and_reads_nothing_back(name):
    """On the meta device a tensor made on the CPU meets meta ones and raises a device mismatch
    (as on CUDA, CPU index tensors and 0-dim CPU scalars are let through), and any read of a value
    on the host raises too (``.item()``, ``float()``, ``if tensor``, a boolean-mask index): in a
    training step each of those is a device sync on a GPU. Training and validation loss and the
    posterior, forward and backward."""
    model = build(name).to("meta").train()
    batch = batches_on("meta")[0]
    terms = model.loss(batch, model.kl_weight(LATE))
    assert all(t.device.type == "meta" for t in terms)
    terms.loss.backward()
    assert all(p.grad is None or p.grad.device.type == "meta" for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert all(t.device.type == "meta" for t in model.loss(batch, 1.0))
        if model.has_latent:
            q = model.decoder_posterior(model.posterior(batch))
            assert q.mu.device.type == q.logvar.device.type == "meta"


@pytest.fixture
def host_reads_of_meta_tensors_give_zero(monkeypatch):
    """A meta tensor has no value: its ``.item()`` raises. The metrics end in host numbers, so here
    reading one gives 0; everything before that read still runs on meta."""
    for name, zero in (("item", 0), ("__float__", 0.0), ("__int__", 0), ("__index__", 0)):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, real=real, zero=zero: zero if self.is_meta else real(self))


@pytest.mark.parametrize("name", METHODS)
def test_the_metrics_keep_every_tensor_on_the_models_device(name, host_reads_of_meta_tensors_give_zero):
    """IW-NLL, KL, MI and AU on two batches, every tensor on meta; only the final host reads are faked."""
    model = build(name).to("meta")
    batches = batches_on("meta")[:2]
    scores = metrics.likelihood_statistics(model, batches, samples=3, memory_mb=1)
    assert scores["documents"] == 8 and scores["words"] > 0
    if model.has_latent:
        assert set(metrics.latent_statistics(model, batches)) >= {"kl", "mi", "au"}


# ------------------------------------------------------------------------------ TF32


FP32_SETTINGS = ((torch.backends.cuda.matmul, "fp32_precision"), (torch.backends.cudnn.conv, "fp32_precision"),
                 (torch.backends.cudnn.rnn, "fp32_precision"), (torch.backends.mkldnn.matmul, "fp32_precision"))


@pytest.fixture
def fp32_settings():
    """The process's float32 settings before the test; restored after it."""
    before = [getattr(owner, name) for owner, name in FP32_SETTINGS]
    yield before
    for (owner, name), value in zip(FP32_SETTINGS, before):
        setattr(owner, name, value)


def test_float32_is_ieee_on_cuda_and_nothing_is_set_on_cpu(fp32_settings):
    assert networks.float32_matmul_policy("cpu") == "ieee"
    assert networks.float32_matmul_policy(torch.device("cpu")) == "ieee"
    assert [getattr(owner, name) for owner, name in FP32_SETTINGS] == fp32_settings
    assert torch.backends.cudnn.rnn.fp32_precision == "tf32"  # PyTorch's default for cuDNN: TF32 on
    assert networks.float32_matmul_policy(torch.device("cuda")) == "ieee"  # only the device's type is read
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.rnn.fp32_precision == torch.backends.cudnn.conv.fp32_precision == "ieee"


# ------------------------------------------------------------ SA-VAE's refinement on cuDNN


def refinement_calls(model, monkeypatch, on_cudnn: bool) -> list[tuple[bool, bool]]:
    """(decoder LSTM in training mode, cuDNN enabled) at each of the decoder's LSTM calls of one loss."""
    monkeypatch.setattr(sa_vae, "runs_on_cudnn", lambda device: on_cudnn)
    calls = []
    model.decoder.lstm.register_forward_pre_hook(
        lambda module, args: calls.append((module.training, torch.backends.cudnn.enabled)))
    with torch.no_grad() if not model.training else torch.enable_grad():
        model.loss(random_batch(), 1.0)
    return calls


@pytest.mark.parametrize("name", ["sa_vae", "sa_vae_fd"])
def test_sa_evaluation_refines_on_cudnn_with_the_lstm_alone_in_training_mode(name, monkeypatch):
    model = build(name).eval()
    assert refinement_calls(model, monkeypatch, on_cudnn=True) == [(True, True)] * 2 + [(False, True)]
    assert not model.decoder.lstm.training and not model.decoder.dropout_in.training  # modes restored / kept
    assert refinement_calls(model, monkeypatch, on_cudnn=False) == [(False, True)] * 3  # CPU: as before


def test_sa_training_refines_with_cudnn_off_for_its_second_derivatives(monkeypatch):
    model = build("sa_vae").train()
    assert refinement_calls(model, monkeypatch, on_cudnn=True) == [(True, False)] * 2 + [(True, True)]


def test_bn_vaes_batch_norm_trains_as_torchs_cumulative_average_without_reading_its_count():
    from models.bn_vae import MeanBatchNorm
    torch.manual_seed(0)
    ours, torchs = MeanBatchNorm(3, 0.6, 0.1), nn.BatchNorm1d(3, eps=1e-24, momentum=None)
    torchs.load_state_dict(ours.state_dict())
    for _ in range(4):
        means = torch.randn(5, 3)
        assert torch.equal(ours(means), torchs(means))
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), torchs.state_dict().values()))
    reloaded = MeanBatchNorm(3, 0.6, 0.1)
    reloaded.load_state_dict(ours.state_dict())  # the host count follows the checkpoint
    assert reloaded.batches_counted == ours.batches_counted == 4
    ours.restart()
    assert ours.batches_counted == int(ours.num_batches_tracked) == 0


def test_mae_takes_the_off_diagonal_pairs_without_a_mask_index():
    from models.mae import off_diagonal
    for batch in (2, 3, 7):
        square = torch.randn(batch, batch, 4)
        assert torch.equal(off_diagonal(square), square[~torch.eye(batch, dtype=torch.bool)])


# --------------------------------------------------------------------- on a real GPU

needs_cuda = pytest.mark.needs_cuda


@needs_cuda
def test_autocast_runs_cudnn_lstms_in_float16_the_reason_for_the_explicit_cast():
    """If this fails, torch's autocast honours bfloat16 for cuDNN RNNs now (AutocastRNN.cpp)."""
    lstm = nn.LSTM(8, 16, batch_first=True).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        outputs, _ = lstm(torch.randn(2, 5, 8, device="cuda"))
    assert outputs.dtype == torch.float16


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", METHODS)
def test_every_method_trains_and_scores_on_cuda(name, precision, fp32_settings):
    assert networks.float32_matmul_policy("cuda") == "ieee"
    model = build(name, dataclasses.replace(tiny_arch(), precision=precision)).cuda()
    profile = load_profile("smoke", {"precision": precision})
    train = BatchLoader(documents(), 4, pad_id=0, seed=0, device="cuda")
    valid = batches_on("cuda", n=8, seed=1)
    trainer = Trainer(model, profile, train, valid, log=lambda line: None)
    model.train()
    model.on_epoch_start(1)
    for batch in list(train)[:3]:
        trainer.kl_weight = model.kl_weight(trainer.progress())
        terms = model.training_step(batch, trainer)
        assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in terms)
        trainer.step_count += 1
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model.on_epoch_end()
    model.refresh_statistics()
    assert finite_python_numbers(trainer.validate())
    assert finite_python_numbers(metrics.evaluate(model, valid, samples=3, memory_mb=1))


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_cuda_run_is_stored_whole_and_resumes_after_an_interruption(tmp_path, data_dir, monkeypatch, precision):
    """The end-to-end path on a GPU: train_run on cuda, interrupted after epoch 1, then resumed."""
    from benchmarks import train
    from benchmarks.config import resolve
    from benchmarks.store import read_json

    config = resolve("scale_vae(0.7,1)", "yahoo_small", "smoke", 0, [f"precision={precision}", "max_epochs=2"])
    options = dict(results_dir=tmp_path / "r", data_dir=data_dir, cache_dir=tmp_path / "c", device="cuda",
                   download=False, log=lambda line: None)
    original, calls = Trainer.train_epoch, []

    def interrupted(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self)
    monkeypatch.setattr(Trainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.train_run(config, **options)
    monkeypatch.setattr(Trainer, "train_epoch", original)
    path, status = train.train_run(config, **options)
    result = read_json(path / "metrics.json")
    assert status == "done" and result["epochs"] == 2 and result["device"].startswith("cuda")
    assert result["float32_matmul"] == "ieee" and math.isfinite(result["nll"])
    assert "resumed from" in (path / "train.log").read_text()
