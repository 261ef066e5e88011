"""Peak memory of a run on a GPU, for the runner's memory guard: one table, measured per method and size.

    python -m benchmarks.memory [--device cuda] [--profile paper] [--lengths 80,200]
                                [--methods vae,scale_vae(0.7,1),...] [--precision bf16] [--out FILE]

``benchmarks/memory.csv`` lists the peak memory (MiB) of one training step of a method at network
sizes, vocabulary, batch size, precision and padded document length, each row with how it was
measured (``source``). A run's peak is its method's rows at its sizes, linear in the width of its
widest batch (the widest batch sets the peak: the logits and the LSTMs' saved states grow with it);
methods without rows of their own take VAE's (their extra state is O(batch x nz)), except those in
``OWN_ROWS``, whose graphs are several times VAE's. A run with no row is "unknown": the scheduler
gives it a GPU of its own.

The command measures the rows: on CUDA ``torch.cuda.max_memory_allocated`` around one training step
after a warm-up step (the allocator's peak: weights, gradients, optimiser state and the step's
graph); on the CPU the peak resident memory of a fresh process (the same quantities, by another
allocator, plus the interpreter's few hundred MiB: an approximation of the GPU's figure). It prints
CSV rows to add to the table; a GPU's rows replace the CPU's at the same sizes.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import platform
import sys
import time
import csv
import io
from datetime import date
from pathlib import Path

TABLE = Path(__file__).with_name("memory.csv")
SIZE_KEYS = ("emb_dim", "enc_hidden", "dec_hidden", "nz", "batch_size")
OWN_ROWS = {"sa_vae", "sa_vae_fd", "agg_vae"}  # graphs of several decoder passes: never VAE's figure
VOCAB_TOLERANCE = 0.1  # rows apply to vocabularies within 10% of theirs (Yahoo's and Yelp's 20k)
DEFAULT_METHODS = ["vae", "scale_vae(0.7,1)", "bn_vae(0.6)", "agg_vae", "sa_vae"]


COLUMNS = ["method", "vocab", "length", *SIZE_KEYS, "precision", "peak_mb", "step_seconds", "source"]
NUMBERS = {"vocab", "length", *SIZE_KEYS, "peak_mb", "step_seconds"}


def load_table(path: Path = TABLE) -> list[dict]:
    """The table's rows, numbers as numbers; where a GPU row and a CPU row share their sizes, the GPU's."""
    with open(path, newline="") as fh:
        rows = [{k: float(v) if k in NUMBERS else v for k, v in row.items()} for row in csv.DictReader(fh)]
    key = lambda r: tuple(r[k] for k in COLUMNS[:-3])  # noqa: E731 - the sizes
    gpu = {key(r) for r in rows if r["source"].startswith("cuda")}
    return [r for r in rows if r["source"].startswith("cuda") or key(r) not in gpu]


def peak_mb(method: str, profile, vocab: int, width: int, table: list[dict] | None = None) -> float | None:
    """The estimated peak (MiB) of a run of ``method`` at ``profile``'s sizes whose widest batch is
    ``width`` tokens wide; None when the table has no row for it."""
    rows = load_table() if table is None else table
    precisions = dict.fromkeys([profile.precision, "fp32"])  # fp32 rows stand in for bf16 runs
    for name in (method,) if method in OWN_ROWS else (method, "vae"):
        for precision in precisions:
            points = sorted((r["length"], r["peak_mb"]) for r in rows if r["method"] == name
                            and r.get("precision") == precision
                            and all(r.get(k) == getattr(profile, k) for k in SIZE_KEYS)
                            and abs(r["vocab"] - vocab) <= VOCAB_TOLERANCE * vocab)
            if points:
                return interpolate(points, width)
    return None


def interpolate(points: list[tuple[int, float]], width: int) -> float:
    """Linear in the width through the two nearest measured lengths (proportional with one)."""
    if len(points) == 1:
        length, peak = points[0]
        return peak * width / length
    (x0, y0), (x1, y1) = (points[:2] if width <= points[0][0] else
                          points[-2:] if width >= points[-1][0] else
                          next((a, b) for a, b in zip(points, points[1:]) if a[0] <= width <= b[0]))
    return y0 + (y1 - y0) * (width - x0) / (x1 - x0) if x1 != x0 else max(y0, y1)


# ----------------------------------------------------------------------------- measuring


def synthetic_batches(vocab: int, batch_size: int, length: int, device, seed: int = 0):
    """A loader of one batch of ``batch_size`` random documents, each ``length`` tokens with <s> and </s>."""
    import numpy as np

    from . import data

    rng = np.random.default_rng(seed)
    specials = {name: i for i, name in enumerate(data.SPECIALS)}
    docs = [[specials[data.BOS], *rng.integers(len(data.SPECIALS), vocab, length - 2).tolist(), specials[data.EOS]]
            for _ in range(batch_size)]
    return data.BatchLoader(docs, batch_size, pad_id=specials[data.PAD], mode="length", shuffle=False,
                            seed=seed, device=device)


def measure_step(row: str, profile_name: str, precision: str, vocab: int, length: int, device: str) -> dict:
    """Peak memory (MiB) and seconds of one training step of ``row`` (after a warm-up step)."""
    import resource

    import torch

    import models

    from .config import load_profile
    from .protocol import Trainer
    from .timers import synchronize

    import gc

    gc.collect()  # the previous row's model and graph are gone before this row's peak is taken
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
    variant = models.variants.parse(row)
    profile = load_profile(profile_name, {"precision": precision})
    device = torch.device(device)
    torch.manual_seed(0)
    hp = variant.hyperparameters("yahoo")
    model = models.build(variant.method, profile.architecture(vocab), **hp).to(device)
    batches = synthetic_batches(vocab, profile.batch_size, length, device)
    trainer = Trainer(model, profile, batches, batches, log=lambda line: None)
    model.train()
    model.on_epoch_start(1)
    trainer.kl_weight = profile.kl_start
    batch = next(iter(batches))
    model.training_step(batch, trainer)  # warm-up: optimiser state and allocator caches exist from here
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    model.training_step(batch, trainer)
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"method": variant.method, "row": row, "vocab": vocab, "length": length, "peak_mb": round(peak),
            "step_seconds": round(seconds, 3), "precision": precision,
            **{k: getattr(profile, k) for k in SIZE_KEYS}}


def measure_in_fresh_process(*args) -> dict:
    """``measure_step`` in a new process: a process's peak memory is a high-water mark."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure_step, *args).result()


def csv_row(entry: dict, source: str) -> str:
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow([entry[k] for k in COLUMNS[:-1]] + [source])
    return line.getvalue()


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "CPU"


def main(argv=None) -> int:
    from .errors import UserError
    from .plan import split_list

    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--precision", default=None, help="fp32 or bf16 (default: the profile's)")
    parser.add_argument("--vocab", type=int, default=20001, help="vocabulary size (Yahoo's release: 20001)")
    parser.add_argument("--lengths", default="80,200", help="padded document lengths (Yahoo: mean 80, max 200)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--out", default=None, help="also write the CSV rows (with a header) to this file")
    args = parser.parse_args(argv)
    try:
        import torch

        from .config import load_profile

        precision = args.precision or load_profile(args.profile).precision
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: CUDA is not available; use --device cpu")
        lengths = [int(x) for x in args.lengths.split(",")]
    except (UserError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    where = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else cpu_name()
    source = f"{args.device} ({where}), torch {torch.__version__}, {date.today().isoformat()}"
    rows = [",".join(COLUMNS)]
    print(rows[0])
    for row in split_list(args.methods):
        for length in lengths:
            call = (row, args.profile, precision, args.vocab, length, args.device)
            try:
                entry = measure_step(*call) if args.device.startswith("cuda") else measure_in_fresh_process(*call)
            except Exception as error:  # noqa: BLE001 - an out-of-memory row is a finding, not a crash
                print(f"# {row} at length {length}: {type(error).__name__}: {str(error)[:200]}")
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
                continue
            rows.append(csv_row(entry, source))
            print(rows[-1], flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
