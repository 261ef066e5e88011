"""bfloat16 against float32 on the same weights and batches (``python -m benchmarks.perf``; issue 15).

- ``part_timings``: forward and backward milliseconds of each part that
  ``models/networks.py`` can run in bfloat16 (``PARTS``), plus the decoder LSTM's
  input projection alone (a matmul inside ``nn.LSTM``, timed to show its share:
  it cannot be given its own precision without replacing torch's LSTM kernel).
  This table is what ``models.networks.bf16_parts`` is chosen from.
- ``same_weights``: one set of weights evaluated in each precision under the same
  random draws (IW-NLL, KL, MI, AU), with float32 evaluated again under other
  draws as the yardstick of Monte-Carlo noise.

Every comparison takes turns between the precisions, pass after pass, so that a
shared machine's drift hits both alike.
"""
from __future__ import annotations

import copy
import dataclasses
import time

import torch
import torch.nn.functional as F

from models import networks

from . import metrics
from .timers import median, synchronize

TIMED_PARTS = ("encoder_lstm", "decoder_lstm", "decoder_lstm_input_projection", "output_and_log_softmax")


def with_precision(model, precision: str):
    """A copy of ``model`` (same weights) whose networks run in ``precision``."""
    twin = copy.deepcopy(model)
    arch = dataclasses.replace(twin.arch, precision=precision)
    for module in (twin, twin.encoder, twin.decoder):
        if module is not None:
            module.arch = arch
    return twin


def part_inputs(model, batch) -> dict:
    """Real-size inputs of each timed part: the batch's embeddings, [emb; z] and hidden states."""
    arch = model.arch
    tokens = batch.tokens
    z = torch.randn(batch.size, arch.nz, device=tokens.device)
    emb = model.decoder.embed(tokens[:, :-1]).detach()
    decoder_input = torch.cat([emb, z.unsqueeze(1).expand(-1, emb.shape[1], -1)], -1)
    return {"encoder": model.encoder.embed(tokens).detach(), "decoder": decoder_input,
            "hidden": torch.randn(batch.size, tokens.shape[1] - 1, arch.dec_hidden, device=tokens.device),
            "targets": tokens[:, 1:].reshape(-1)}


def part_forwards(model, inputs: dict) -> dict:
    """part -> a function whose output (a scalar) is timed forward, then backward."""
    encoder, decoder = model.encoder.lstm, model.decoder.lstm

    def lstm(module, x):
        def forward():
            if torch.is_autocast_enabled(x.device.type) and x.device.type in networks.LSTM_CAST_DEVICES:
                return networks.lstm_in_bfloat16(module, x.requires_grad_())[0].float().sum()  # as the models do
            return module(x.requires_grad_())[0].float().sum()
        return forward

    def input_projection():
        return F.linear(inputs["decoder"].requires_grad_(), decoder.weight_ih_l0, decoder.bias_ih_l0).float().sum()

    def output():
        logits = model.decoder.output(inputs["hidden"].requires_grad_())
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), inputs["targets"], reduction="sum")

    return {"encoder_lstm": lstm(encoder, inputs["encoder"]), "decoder_lstm": lstm(decoder, inputs["decoder"]),
            "decoder_lstm_input_projection": input_projection, "output_and_log_softmax": output}


def part_timings(model, batch, device: torch.device, precisions=("fp32", "bf16"), repeats: int = 5) -> dict:
    """{precision: {part: {"forward_ms", "backward_ms"}}}: medians of ``repeats`` interleaved passes.

    bfloat16 is forced on every part here (``torch.autocast``; the LSTMs on CUDA by the models'
    explicit cast, ``networks.lstm_in_bfloat16``, as autocast would run them in float16 there),
    whatever ``bf16_parts`` says: this is the measurement that list is chosen from. The
    log-softmax stays float32.
    """
    model.train()
    forwards = part_forwards(model, part_inputs(model, batch))
    times = {p: {part: ([], []) for part in forwards} for p in precisions}
    for round_ in range(repeats + 1):  # round 0 warms up
        for precision in precisions:
            for part, forward in forwards.items():
                model.zero_grad(set_to_none=True)
                synchronize(device)
                start = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    out = forward()
                synchronize(device)
                middle = time.perf_counter()
                out.backward()
                synchronize(device)
                if round_:
                    times[precision][part][0].append(middle - start)
                    times[precision][part][1].append(time.perf_counter() - middle)
    model.zero_grad(set_to_none=True)
    return {p: {part: {"forward_ms": 1000 * median(f), "backward_ms": 1000 * median(b)}
                for part, (f, b) in parts.items()} for p, parts in times.items()}


def evaluate(model, batches, profile, seed: int) -> tuple[dict, float]:
    """Test metrics of ``model`` under the draws of ``seed``, and the seconds they took."""
    torch.manual_seed(seed)
    device = next(model.parameters()).device
    synchronize(device)
    start = time.perf_counter()
    scores = metrics.evaluate(model, batches, profile.iw_samples, profile.eval_memory_mb)
    synchronize(device)
    return scores, time.perf_counter() - start


COMPARED = ("nll", "nll_unit_prior", "rec", "kl", "mi", "mi_batch", "au")


def same_weights(model, batches, profile, precisions=("fp32", "bf16"), seeds=(1, 2)) -> dict:
    """One set of weights scored in each precision, seed after seed.

    Returns, per precision, the scores and seconds of each seed; ``difference``: each
    metric's bf16 - fp32 under the same seed (mean over seeds); ``noise``: fp32 under the
    second seed - fp32 under the first, the Monte-Carlo yardstick (absolute values).
    """
    twins = {p: with_precision(model, p).eval() for p in precisions}
    runs = {p: [] for p in precisions}
    for seed in seeds:
        for precision, twin in twins.items():
            runs[precision].append(evaluate(twin, batches, profile, seed))
    result = {"seeds": list(seeds), "documents": runs[precisions[0]][0][0]["documents"],
              "scores": {p: [s for s, _ in r] for p, r in runs.items()},
              "seconds": {p: [t for _, t in r] for p, r in runs.items()}}
    if len(precisions) == 2:
        low, high = (runs[p] for p in precisions)
        keys = [k for k in COMPARED if low[0][0].get(k) is not None]
        result["difference"] = {k: sum(h[0][k] - l[0][k] for l, h in zip(low, high)) / len(seeds) for k in keys}
        if len(seeds) > 1:
            result["noise"] = {k: abs(low[1][0][k] - low[0][0][k]) for k in keys}
    return result
