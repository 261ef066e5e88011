"""Speed of training and evaluation against the machine's own limit (a benchmark, not a test).

    python -m benchmarks.perf [--profile quick|paper] [--device cpu|cuda] [--data-dir DIR] [--json FILE]
                              [--steps N] [--eval-docs N] [--methods vae,agg_vae,...] [--precisions fp32,bf16]

On real batches of ``yahoo_small`` at the profile's model sizes, for each
precision side by side (``--precisions``, default both; the profile's
``precision`` field: models/networks.py), taking turns on the same batches, it prints:

- training throughput (predicted tokens/s) of one optimisation step of VAE,
  Scale-VAE, BN-VAE, Agg-VAE (in its aggressive phase) and SA-VAE, and each as
  a ratio to VAE (the analogue of the paper's Table 2);
- IW-NLL throughput (documents/s) at the profile's sample count, batched over
  documents x samples, and the speed-up over evaluating one document at a time
  in chunks of 100 samples (how He et al.'s reference code does it);
- the VAE step's achieved FLOP/s (analytic count of its matmuls, backward = 2x
  forward) against dense float32 and bfloat16 matmuls measured in the same process
  (MFU, ``vae_step[precision]``): against the best peaks of the start (``mfu_fp32_peak``,
  ``mfu_bf16_peak``) and, pass by pass, against the float32 peak measured right after each
  pass (``mfu_fp32_peak_paired``, the median), which a shared machine's drift over minutes
  leaves alone;
- with both precisions: forward and backward time of each part bfloat16 can run
  (``benchmarks/precision.py``), the speed-ups, and the same weights' metrics in
  both precisions under the same draws (with float32 under other draws as the
  Monte-Carlo yardstick);
- padding waste of the length-bucketed batches and the peak memory.

A step's time is the mean over ``--steps`` training batches spread over the
lengths (median of 5 passes, after an untimed warm-up). Agg-VAE and SA-VAE at
the paper's sizes cost 20-100 VAE steps each: they get one median-length batch,
timed once.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
from pathlib import Path

import torch

import models

from . import metrics, precision as bf16
from .config import resolve
from .data import Batch
from .errors import UserError
from .plan import split_list
from .timers import TrainingStep, first_documents, median, timed
from .train import load_data, loader, resolve_device, seed_everything

METHODS = ["vae", "scale_vae(0.7,1)", "bn_vae(0.6)", "agg_vae", "sa_vae"]
DATASET = "yahoo_small"
REFERENCE_CHUNK = 100  # samples per forward pass in He et al.'s calc_iwnll (one document per batch)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_peak(device: torch.device, precision: str = "fp32", sizes=(2048, 4096), repeats: int = 5) -> float:
    """The machine's practical peak: the best FLOP/s of any of ``repeats`` dense n x n matmuls
    per size in ``precision`` (the best, not the median: a shared machine's noise only ever slows it)."""
    best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=DTYPES[precision]) for _ in range(2))
        for _ in range(repeats):
            best = max(best, 2 * n**3 / timed(lambda: a @ b, device, 1))
    return best


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB on Linux)


def training_throughput(rows: list[str], profile: str, batches: list, corpus, device, passes: int,
                        costly: tuple[str, ...] = (), after_each_pass=None,
                        precisions=("fp32",)) -> tuple[dict[str, dict[str, dict]], dict]:
    """(precision -> row -> its optimisation step's time averaged over ``batches``,
    (precision, row) -> the model those steps trained).

    The (row, precision) pairs take turns, pass after pass (after one untimed warm-up pass each),
    and each keeps its median pass: drift in the machine's speed then hits every one alike.
    ``after_each_pass()`` is called after each timed round (the matmul peak beside it). Rows
    starting with a name in ``costly`` are timed once, on one median-length batch, with no warm-up.
    """
    steps = {(p, row): TrainingStep(resolve(row, DATASET, profile, 0, [f"precision={p}"]), corpus, device, row)
             for p in precisions for row in rows}
    cheap = [key for key in steps if not key[1].startswith(costly)]
    times = {key: [] for key in cheap}
    for round_ in range(passes + 1):
        for key in cheap:
            seconds = steps[key].seconds_per_step(batches)
            if round_:
                times[key].append(seconds)
        if round_ and after_each_pass:
            after_each_pass()
    result = {key: steps[key].entry(batches, t) for key, t in times.items()}
    one = batches[len(batches) // 2:][:1]
    for key in steps:
        if key not in result:
            result[key] = steps[key].entry(one, [steps[key].seconds_per_step(one)])
    return ({p: {row: result[(p, row)] for row in rows} for p in precisions},
            {key: step.model for key, step in steps.items()})


def iw_throughput(twins: dict, batches: list, profile, device, rounds: int) -> dict[str, dict]:
    """precision -> documents/s of the IW-NLL: batched over documents x samples vs one document
    at a time (He et al.'s way), the precisions taking turns for ``rounds`` timed rounds (medians)."""
    samples, memory = profile.iw_samples, profile.eval_memory_mb
    documents = sum(b.size for b in batches)
    singles = [single for b in batches for single in split_documents(b)]  # the same documents

    def batched(model):
        metrics.likelihood_statistics(model, batches, samples, memory)

    def one_at_a_time(model):
        with torch.no_grad():
            for doc in singles:
                q = model.decoder_posterior(model.posterior(doc))
                metrics.importance_weighted_log_likelihood(
                    lambda z: model.decoder.log_likelihood(doc.tokens, doc.lengths, z), q,
                    [model.prior_std(), 1.0], samples, REFERENCE_CHUNK)

    for model in twins.values():  # warm-up on one document
        metrics.likelihood_statistics(model, [first_documents(batches[0], 1)], samples, memory)
    times = {p: ([], []) for p in twins}
    for _ in range(rounds):
        for p, model in twins.items():
            times[p][0].append(timed(lambda: batched(model), device, 1, warm_up=False))
            times[p][1].append(timed(lambda: one_at_a_time(model), device, 1, warm_up=False))
    result = {}
    for p, (together, alone) in times.items():
        together, alone = median(together), median(alone)
        result[p] = {"iw_samples": samples, "docs_per_s_batched": documents / together,
                     "docs_per_s_one_document": len(singles) / alone, "iw_speedup": alone / together,
                     "documents_batched": documents, "documents_one_at_a_time": len(singles)}
    return result


def split_documents(batch) -> list:
    """A batch as single-document batches (trimmed to each document's length)."""
    return [Batch(batch.tokens[i:i + 1, :int(batch.lengths[i])], batch.lengths[i:i + 1],
                  None if batch.labels is None else batch.labels[i:i + 1], batch.index[i:i + 1])
            for i in range(batch.size)]


def padding_waste(batches: list) -> float:
    real = sum(int(b.lengths.sum()) for b in batches)
    padded = sum(b.tokens.numel() for b in batches)
    return 1 - real / padded


def measure(profile: str, device_name: str, data_dir=None, cache_dir=None, steps: int | None = None,
            eval_docs: int | None = None, methods: list[str] | None = None,
            precisions: tuple[str, ...] = ("fp32", "bf16")) -> dict:
    device = resolve_device(device_name)
    torch.set_flush_denormal(True)  # as every run does (benchmarks.train)
    float32_matmul = models.networks.float32_matmul_policy(device)  # as every run does: no TF32 on CUDA
    config = resolve("vae", DATASET, profile, 0)
    corpus = load_data(config, data_dir, cache_dir, download=False)
    small = config.profile.emb_dim <= 128
    steps = steps or (10 if small else 3)
    train = list(loader(corpus, "train", config, device, True))
    batches = train[:: max(1, len(train) // steps)][:steps]  # spread over the lengths
    result = {"profile": profile, "device": str(device), "dataset": DATASET, "torch": torch.__version__,
              "float32_matmul": float32_matmul,
              "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "precisions": list(precisions), "padding_waste_train": padding_waste(train)}
    result["matmul_peak_gflops"] = {p: matmul_peak(device, p) / 1e9 for p in ("fp32", "bf16")}
    rows = methods or METHODS
    costly = () if small else ("sa_vae", "agg_vae")  # 20-100 VAE steps each at the paper's sizes
    pass_peaks = []  # the float32 peak again after every round: MFU per round against the peak of its moment
    result["train"], trained = training_throughput(rows, profile, batches, corpus, device, 5, costly,
                                          lambda: pass_peaks.append(matmul_peak(device, repeats=2) / 1e9),
                                          precisions)
    result["matmul_peak_gflops_per_pass"] = pass_peaks
    result["peak_memory_mb_training"] = peak_memory_mb(device)
    result["vae_step"] = {}
    for p, entries in result["train"].items():
        vae = entries["vae"]
        for entry in entries.values():
            entry["time_ratio_to_vae"] = vae["tokens_per_s"] / entry["tokens_per_s"]
        achieved = vae["flops_per_step_vae_count"] / (vae["step_ms"] / 1000)
        # pass by pass against the peak measured right after that pass, then the median: a shared
        # machine's speed drifts over minutes, and this ratio is what drift leaves alone
        paired = sorted(vae["flops_per_step_vae_count"] / (ms / 1000) / (peak * 1e9)
                        for ms, peak in zip(vae["pass_step_ms"], pass_peaks))
        result["vae_step"][p] = {"gflops": achieved / 1e9,
                                 **{f"mfu_{d}_peak": achieved / (peak * 1e9)
                                    for d, peak in result["matmul_peak_gflops"].items()},
                                 "mfu_fp32_peak_paired": paired[len(paired) // 2] if paired else None}
        for row, entry in entries.items():
            print(f"  {p} {row:<18} {entry['tokens_per_s']:>10.0f} tokens/s  ({entry['step_ms']:.1f} ms/step)",
                  flush=True)

    seed_everything(0)
    model = models.build("vae", config.profile.architecture(len(corpus.vocab))).to(device)
    result["parts"] = bf16.part_timings(model, batches[len(batches) // 2], device, precisions)
    trained = trained[(precisions[0], "vae")]  # the VAE after the timed steps (dozens): not at initialisation
    test = list(loader(corpus, "test", config, device, False))
    wanted = eval_docs or (128 if small else 32)
    chosen, count = [], 0
    for b in test[:: max(1, len(test) // 8)]:
        if count >= wanted:
            break
        chosen.append(first_documents(b, wanted - count))
        count += chosen[-1].size
    twins = {p: bf16.with_precision(trained, p).eval() for p in precisions}
    result["eval"] = iw_throughput(twins, chosen, config.profile, device, rounds=3 if small else 1)
    result["same_weights"] = bf16.same_weights(trained, chosen, config.profile, precisions)
    if {"fp32", "bf16"} <= set(precisions):
        result["speedup_bf16"] = {
            "train": {row: e["step_ms"] / result["train"]["bf16"][row]["step_ms"]
                      for row, e in result["train"]["fp32"].items()},
            "iw_nll_batched": result["eval"]["bf16"]["docs_per_s_batched"] / result["eval"]["fp32"]["docs_per_s_batched"],
            "parts": {part: {d: t[f"{d}_ms"] / result["parts"]["bf16"][part][f"{d}_ms"] for d in ("forward", "backward")}
                      for part, t in result["parts"]["fp32"].items()}}
    result["peak_memory_mb"] = peak_memory_mb(device)
    return result


def report(result: dict) -> str:
    peaks = result["matmul_peak_gflops"]
    lines = [f"profile {result['profile']} on {result['device']} ({result['cuda_device'] or result['machine']}, "
             f"{result['threads']} threads, torch {result['torch']})",
             "dense matmul peak: " + ", ".join(f"{p} {g:.1f} GFLOP/s" for p, g in peaks.items())]
    for p, entries in result["train"].items():
        lines += ["", f"training step ({p})   tokens/s   ms/step   time ratio to VAE"]
        for row, e in entries.items():
            lines.append(f"  {row:<18} {e['tokens_per_s']:>9.0f} {e['step_ms']:>9.1f} {e['time_ratio_to_vae']:>10.2f}")
        v = result["vae_step"][p]
        paired = v["mfu_fp32_peak_paired"]
        lines.append(f"  VAE step: {v['gflops']:.1f} GFLOP/s = MFU {100 * v['mfu_fp32_peak']:.1f}% of the fp32 peak, "
                     f"{100 * v['mfu_bf16_peak']:.1f}% of the bf16 peak"
                     + (f" ({100 * paired:.1f}% against the fp32 peak measured beside each pass, median)" if paired else ""))
    lines += ["", f"padding waste of the training batches: {100 * result['padding_waste_train']:.1f}%"]
    for p, ev in result["eval"].items():
        lines.append(f"IW-NLL {p} ({ev['iw_samples']} samples): {ev['docs_per_s_batched']:.2f} docs/s batched vs "
                     f"{ev['docs_per_s_one_document']:.2f} docs/s one document at a time in chunks of "
                     f"{REFERENCE_CHUNK} -> speed-up {ev['iw_speedup']:.1f}x")
    lines += ["", "part (forward / backward ms)" + "".join(f"   {p:>17}" for p in result["parts"])]
    for part in bf16.TIMED_PARTS:
        lines.append(f"  {part:<30}" + "".join(f"   {t[part]['forward_ms']:>7.2f} / {t[part]['backward_ms']:>7.2f}"
                                              for t in result["parts"].values()))
    if "speedup_bf16" in result:
        speed = result["speedup_bf16"]
        lines += ["", "bf16 speed-up: " + ", ".join(f"{row} step {x:.2f}x" for row, x in speed["train"].items())
                  + f"; IW-NLL batched {speed['iw_nll_batched']:.2f}x"]
    same = result["same_weights"]
    if "difference" in same:
        lines += ["", f"same weights, bf16 - fp32 under the same draws ({same['documents']} documents; "
                      "|fp32 - fp32| under other draws in brackets):"]
        lines += [f"  {k:<15} {d:+.4f}  [{same.get('noise', {}).get(k, float('nan')):.4f}]"
                  for k, d in same["difference"].items()]
    lines.append(f"peak memory: {result['peak_memory_mb']:.0f} MB")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", help="quick, paper or smoke: the model sizes to measure")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--steps", type=int, default=None, help="training batches per timed pass, spread over the lengths (default 10, paper 3)")
    parser.add_argument("--eval-docs", type=int, default=None, help="documents of the batched IW timing")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated rows to time (default {','.join(METHODS)}); must include vae")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="comma-separated precisions to compare, side by side (default fp32,bf16)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        methods = split_list(args.methods)
        if methods and "vae" not in methods:
            raise UserError("--methods must include vae (every time ratio is relative to it)")
        precisions = tuple(split_list(args.precisions) or ())
        if not precisions or not set(precisions) <= set(models.PRECISIONS):
            raise UserError(f"--precisions takes a comma-separated list of {', '.join(models.PRECISIONS)}")
        result = measure(args.profile, args.device, args.data_dir, args.cache_dir, args.steps, args.eval_docs,
                         methods, precisions)
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
