"""Speed of training and evaluation against the machine's own limit (a benchmark, not a test).

    python -m benchmarks.perf [--profile quick|paper] [--device cpu|cuda] [--data-dir DIR] [--json FILE]

On real batches of ``yahoo_small`` at the profile's model sizes it prints:

- training throughput (predicted tokens/s) of one optimisation step of VAE,
  Scale-VAE, BN-VAE, Agg-VAE (in its aggressive phase) and SA-VAE, and each as
  a ratio to VAE (the analogue of the paper's Table 2);
- IW-NLL throughput (documents/s) at the profile's sample count, batched over
  documents x samples, and the speed-up over evaluating one document at a time
  in chunks of 100 samples (how He et al.'s reference code does it);
- the VAE step's achieved FLOP/s (analytic count of its matmuls, backward = 2x
  forward) against a dense float32 matmul measured in the same process (MFU);
- padding waste of the length-bucketed batches and the peak memory.
"""
from __future__ import annotations

import argparse
import itertools
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch

import models

from . import metrics
from .config import resolve
from .errors import UserError
from .protocol import Trainer
from .train import load_data, loader, resolve_device, seed_everything

METHODS = ["vae", "scale_vae(0.7,1)", "bn_vae(0.6)", "agg_vae", "sa_vae"]
DATASET = "yahoo_small"
REFERENCE_CHUNK = 100  # samples per forward pass in He et al.'s calc_iwnll (one document per batch)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int) -> float:
    """Seconds per call (the median of ``repeats`` calls after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_peak(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Achieved FLOP/s of a dense float32 size x size matmul: the machine's practical peak."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    return 2 * size**3 / timed(lambda: a @ b, device, repeats)


def vae_step_flops(arch: models.Architecture, tokens: int, documents: int) -> float:
    """Matmul FLOPs of one VAE training step: encoder LSTM, decoder LSTM (input [emb; z]) and the
    output layer per token, the posterior projection per document; backward counted as 2x forward."""
    per_token = 2 * (4 * arch.enc_hidden * (arch.emb_dim + arch.enc_hidden)
                     + 4 * arch.dec_hidden * (arch.emb_dim + arch.nz + arch.dec_hidden)
                     + arch.dec_hidden * arch.vocab_size)
    return 3 * (per_token * tokens + 2 * arch.enc_hidden * 2 * arch.nz * documents)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB on Linux)


def training_throughput(row: str, profile: str, batches: list, corpus, device, repeats: int) -> dict:
    config = resolve(row, DATASET, profile, 0)
    seed_everything(0)
    model = models.build(config.model, config.profile.architecture(len(corpus.vocab)), **config.hyperparameters).to(device)
    trainer = Trainer(model, config.profile, loader(corpus, "train", config, device, True),
                      loader(corpus, "valid", config, device, False), log=lambda line: None)
    model.train()
    model.on_epoch_start(1)  # Agg-VAE: the aggressive phase; Scale-VAE: per-batch factors
    trainer.kl_weight = config.profile.kl_start
    cycle = itertools.cycle(batches)

    def step():
        model.training_step(next(cycle), trainer)

    seconds = timed(step, device, repeats)
    tokens = sum(int(b.lengths.sum()) - b.size for b in batches) / len(batches)  # predicted tokens per batch
    documents = sum(b.size for b in batches) / len(batches)
    return {"row": row, "step_ms": 1000 * seconds, "tokens_per_s": tokens / seconds,
            "flops_per_step_vae_count": vae_step_flops(model.arch, tokens, documents),
            "hyperparameters": config.hyperparameters}


def iw_throughput(model, batches: list, profile, device) -> dict:
    """Documents/s of the IW-NLL: batched over documents x samples vs one document at a time."""
    samples, memory = profile.iw_samples, profile.eval_memory_mb
    documents = sum(b.size for b in batches)
    batched = timed(lambda: metrics.likelihood_statistics(model, batches, samples, memory), device, 1)
    singles = [single for b in batches[:2] for single in split_documents(b)]

    def one_at_a_time():
        with torch.no_grad():
            for doc in singles:
                q = model.decoder_posterior(model.posterior(doc))
                metrics.importance_weighted_log_likelihood(
                    lambda z: model.decoder.log_likelihood(doc.tokens, doc.lengths, z), q,
                    [model.prior_std(), 1.0], samples, REFERENCE_CHUNK)

    reference = timed(one_at_a_time, device, 1)
    return {"iw_samples": samples, "docs_per_s_batched": documents / batched,
            "docs_per_s_one_document": len(singles) / reference,
            "iw_speedup": (documents / batched) / (len(singles) / reference),
            "documents_batched": documents, "documents_one_at_a_time": len(singles)}


def split_documents(batch) -> list:
    """A batch as single-document batches (trimmed to each document's length)."""
    from .data import Batch
    return [Batch(batch.tokens[i:i + 1, :int(batch.lengths[i])], batch.lengths[i:i + 1],
                  None if batch.labels is None else batch.labels[i:i + 1], batch.index[i:i + 1])
            for i in range(batch.size)]


def padding_waste(batches: list) -> float:
    real = sum(int(b.lengths.sum()) for b in batches)
    padded = sum(b.tokens.numel() for b in batches)
    return 1 - real / padded


def measure(profile: str, device_name: str, data_dir=None, cache_dir=None, steps: int | None = None,
            eval_docs: int | None = None) -> dict:
    device = resolve_device(device_name)
    config = resolve("vae", DATASET, profile, 0)
    corpus = load_data(config, data_dir, cache_dir, download=False)
    small = config.profile.emb_dim <= 128
    steps = steps or (10 if small else 3)
    train = list(loader(corpus, "train", config, device, True))
    batches = train[:: max(1, len(train) // (2 * steps))][: 2 * steps]  # spread over the lengths
    result = {"profile": profile, "device": str(device), "dataset": DATASET, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "padding_waste_train": padding_waste(train)}
    result["matmul_peak_gflops"] = matmul_peak(device) / 1e9
    result["train"] = {}
    for row in METHODS:
        repeats = 1 if row.startswith("sa_vae") and not small else steps
        entry = training_throughput(row, profile, batches, corpus, device, repeats)
        entry["peak_memory_mb"] = peak_memory_mb(device)
        result["train"][row] = entry
        print(f"  {row:<18} {entry['tokens_per_s']:>10.0f} tokens/s  ({entry['step_ms']:.1f} ms/step)", flush=True)
    vae = result["train"]["vae"]
    for entry in result["train"].values():
        entry["time_ratio_to_vae"] = vae["tokens_per_s"] / entry["tokens_per_s"]
    achieved = vae["flops_per_step_vae_count"] / (vae["step_ms"] / 1000)
    result["vae_step_gflops"] = achieved / 1e9
    result["vae_step_mfu"] = achieved / (result["matmul_peak_gflops"] * 1e9)

    seed_everything(0)
    model = models.build("vae", config.profile.architecture(len(corpus.vocab))).to(device).eval()
    test = list(loader(corpus, "test", config, device, False))
    wanted = eval_docs or (128 if small else 32)
    chosen, count = [], 0
    for b in test[:: max(1, len(test) // 8)]:
        if count >= wanted:
            break
        chosen.append(b)
        count += b.size
    result["eval"] = iw_throughput(model, chosen, config.profile, device)
    result["peak_memory_mb"] = peak_memory_mb(device)
    return result


def report(result: dict) -> str:
    lines = [f"profile {result['profile']} on {result['device']} ({result['cuda_device'] or result['machine']}, "
             f"{result['threads']} threads, torch {result['torch']})",
             f"dense matmul peak: {result['matmul_peak_gflops']:.1f} GFLOP/s",
             "", "training step        tokens/s   ms/step   time ratio to VAE"]
    for row, e in result["train"].items():
        lines.append(f"  {row:<18} {e['tokens_per_s']:>9.0f} {e['step_ms']:>9.1f} {e['time_ratio_to_vae']:>10.2f}")
    ev = result["eval"]
    lines += ["", f"VAE step: {result['vae_step_gflops']:.1f} GFLOP/s achieved = MFU {100 * result['vae_step_mfu']:.1f}% "
                  f"of the measured matmul peak",
              f"padding waste of the training batches: {100 * result['padding_waste_train']:.1f}%",
              f"IW-NLL ({ev['iw_samples']} samples): {ev['docs_per_s_batched']:.1f} docs/s batched vs "
              f"{ev['docs_per_s_one_document']:.2f} docs/s one document at a time in chunks of {REFERENCE_CHUNK} "
              f"-> speed-up {ev['iw_speedup']:.1f}x",
              f"peak memory: {result['peak_memory_mb']:.0f} MB"]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", help="quick, paper or smoke: the model sizes to measure")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per method (default 10, paper 3)")
    parser.add_argument("--eval-docs", type=int, default=None, help="documents of the batched IW timing")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = measure(args.profile, args.device, args.data_dir, args.cache_dir, args.steps, args.eval_docs)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
