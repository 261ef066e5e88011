"""Train and evaluate one run.

    python -m benchmarks.train --model scale_vae --dataset yahoo_small --profile quick --seed 0 \
        [--set des_std=1.1 ...] [--data-dir DIR] [--results DIR] [--cache-dir DIR] [--device cpu|cuda]

Writes ``<results>/runs/<run-id>/`` atomically (the directory appears complete
or not at all; see benchmarks/store.py): ``config.json`` (fully resolved),
``metrics.json`` (test split), ``history.csv`` (per epoch), ``best.pt``
(best-validation model, with any method state such as Scale-VAE's f_bar),
``train.log`` and the derived records the tables need of the run
(``benchmarks/derived.py``: the probe, the generated text, the latent means).
A finished run is not trained again; an interrupted one resumes from its last
epoch; one that diverges or raises is stored with ``failed.json`` (exit code 1).
The last line printed is the run directory.

A fault of the machine (GPU out of memory, a CUDA error: ``errors.machine_fault_kind``)
is not the run's result and is not stored: the run is left unfinished with its last
checkpoint, one line says so (exit code 3, as for a run busy elsewhere), and the same
command resumes it from its last finished epoch, or only evaluates it again if the
fault struck the final evaluation.
"""
from __future__ import annotations

import argparse
import csv
import errno
import os
import pickle
import platform
import shutil
import random
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

import models

from . import data, files, metrics
from . import devices as machine
from .config import RunConfig, resolve
from .errors import MachineFault, UserError, machine_fault_kind
from .protocol import Trainer, TrainingDiverged, UnusableCheckpoint, describe
from .store import CORRUPT, DONE, FAILED, RunStore, read_json, write_json

DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}

METRIC_KEYS = ["nll", "nll_unit_prior", "kl", "mi", "au", "ppl", "rec", "elbo"]
# differ between identical runs: the times and how many runs shared the machine while they were taken
TIMING_KEYS = frozenset({"train_seconds", "statistics_seconds", "eval_seconds", "records_seconds", "concurrent_runs"})
CONCURRENT_RUNS_VARIABLE = "VAEBENCH_CONCURRENT_RUNS"  # set by the runner (benchmarks/execute.py): runs it trains at once


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def concurrent_runs() -> dict:
    """``{"concurrent_runs": N}``: how many runs the runner trains at once on this machine, as it says in
    ``VAEBENCH_CONCURRENT_RUNS`` (1: the run had the machine to itself, so Table 2 may compare its time);
    {} when nothing says (a run trained alone by hand, or on a Dask worker)."""
    value = os.environ.get(CONCURRENT_RUNS_VARIABLE, "").strip()
    return {"concurrent_runs": int(value)} if value.isdigit() and int(value) >= 1 else {}


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def load_data(config: RunConfig, data_dir=None, cache_dir=None, download=True) -> data.Corpus:
    p = config.profile
    return data.load_corpus(config.dataset, data_dir=data_dir, cache_dir=cache_dir, download=download,
                            max_len=p.limit("max_len"),
                            vocab_size=p.limit("vocab_size"), train_docs=p.limit("train_docs"),
                            valid_docs=p.limit("valid_docs"), test_docs=p.limit("test_docs"))


def loader(corpus: data.Corpus, split: str, config: RunConfig, device, train: bool) -> data.BatchLoader:
    docs = corpus.split(split)
    labels = [d.label for d in docs] if docs and docs[0].label is not None else None
    p = config.profile
    return data.BatchLoader(corpus.encoded(split), p.batch_size if train else p.eval_batch_size,
                            pad_id=corpus.vocab.pad_id, labels=labels, mode=p.batching if train else "length",
                            shuffle=train, seed=config.seed, device=device)


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}


def write_history(path: Path, history: list[dict]) -> None:
    columns = list(dict.fromkeys(k for record in history for k in record))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(history)


def write_records(workdir: Path, history: list[dict], traces: dict[str, list[dict]]) -> None:
    """``history.csv`` and the method's traces (Scale-VAE's ``factor_trace.csv``), where there are any."""
    for name, rows in {"history": history, **traces}.items():
        if rows:
            write_history(workdir / f"{name}.csv", rows)


def train_run(config: RunConfig, *, results_dir="results", data_dir=None, cache_dir=None, device=None,
              download=True, retry_failed=False, log=print, eval_memory_mb: int | None = None) -> tuple[Path, str]:
    """Train, evaluate and store one run; returns (its directory, its status).

    A finished run is reused; a failed one is reused unless ``retry_failed``; a run
    another live process is training is left alone (status "busy"); an interrupted
    run resumes from its last epoch. A run that diverges or raises is published
    with ``failed.json`` (status "failed"). Bad user input raises UserError.

    A fault of the machine (``errors.machine_fault_kind``: GPU out of memory, a CUDA
    error) raises MachineFault and records nothing, since it says nothing of the run:
    the run keeps its checkpoint (partial; pending if no epoch finished) and the next
    call resumes it, re-evaluating without retraining if training had ended.

    ``eval_memory_mb`` is the IW-NLL's memory budget (None: the device's default,
    ``devices.eval_memory_mb``); the device's, not the run's, so no part of its identity.
    """
    store = RunStore(results_dir)
    status = store.status(config.run_id)
    if status == DONE or (status == FAILED and not retry_failed):
        log(f"{config.run_id}: already {status}")
        return store.final(config.run_id), status
    store.prepare()
    device = resolve_device(device)
    try:
        return _train_locked(config, store, data_dir, cache_dir, device, download, log, eval_memory_mb)
    except OSError as error:
        if error.errno not in DISK_ERRORS:
            raise
        raise UserError(f"cannot write {error.filename or store.root}: {error.strerror}; free space or pass a "
                        "writable --results DIR (the run resumes from its last checkpoint)") from None


def _train_locked(config: RunConfig, store: RunStore, data_dir, cache_dir, device, download, log,
                  eval_memory_mb: int | None = None) -> tuple[Path, str]:
    with store.lock(config.run_id) as acquired:
        if not acquired:
            log(f"{config.run_id}: being trained by another process; skipped")
            return store.final(config.run_id), "busy"
        status = store.status(config.run_id)
        if status == DONE:  # finished by another process meanwhile
            return store.final(config.run_id), DONE
        if status == CORRUPT:
            log(f"{config.run_id}: its result files are corrupt; training it again")
            shutil.rmtree(store.final(config.run_id))
        workdir = store.start(config.run_id)
        with open(workdir / "train.log", "a") as logfile:
            def both(line: str) -> None:
                log(line)
                logfile.write(line + "\n")
                logfile.flush()
            try:
                corpus = load_data(config, data_dir, cache_dir, download)
            except UserError:
                if not (workdir / "last.pt").exists():  # keep an interrupted run's checkpoint
                    store.discard(config.run_id)
                raise
            write_json(workdir / "config.json", config.to_json())
            try:
                result, history, traces = fit_and_evaluate(config, corpus, device, workdir, both, eval_memory_mb,
                                                           runs_dir=store.root)
            except (KeyboardInterrupt, SystemExit, UnusableCheckpoint):
                raise  # keep the partial directory: the next attempt resumes from last.pt
            except Exception as error:  # noqa: BLE001 - a failed run is recorded and the sweep goes on
                if isinstance(error, OSError) and error.errno in DISK_ERRORS:
                    raise  # the machine's fault, not the run's: keep the checkpoint, say so in one line
                if (kind := machine_fault_kind(error)) is not None:  # likewise: last.pt stays, nothing recorded
                    both(f"machine fault ({kind}): {describe(error)}; left unfinished, it resumes on the next "
                         "invocation")
                    release_device_memory(error)
                    raise MachineFault(kind, config.run_id, describe(error)) from error
                both(f"FAILED: {type(error).__name__}: {error}")
                write_records(workdir, *getattr(error, "records", ([], {})))  # how far it got, and why
                write_json(workdir / "failed.json", {"reason": f"{type(error).__name__}: {error}",
                                                     "epoch": getattr(error, "epoch", None),
                                                     "run_id": config.run_id})
                return store.publish(config.run_id), FAILED
            write_records(workdir, history, traces)
            write_json(workdir / "metrics.json", result)
            both("test: " + " ".join(f"{k}={result[k]:.4g}" for k in METRIC_KEYS if result.get(k) is not None)
                 + f" train {result['train_seconds']:.0f}s eval {result['eval_seconds']:.0f}s")
        return store.publish(config.run_id), DONE


def release_device_memory(error: BaseException) -> None:
    """After a machine fault, free what the failed run held on the GPU, so that the next run of
    this worker process does not start out of memory too: the traceback's frames keep the model
    and its batches alive (their locals are dropped; the lines stay), and the caching allocator
    keeps freed blocks until ``empty_cache``."""
    traceback.clear_frames(error.__traceback__)
    if torch.cuda.is_initialized():
        try:
            torch.cuda.empty_cache()
        except RuntimeError:  # after a sticky device error every CUDA call fails; a new process recovers
            pass


def fit_and_evaluate(config: RunConfig, corpus, device, workdir: Path, log,
                     eval_memory_mb: int | None = None, runs_dir: Path | None = None) -> tuple[dict, list[dict], dict]:
    """The run itself: train under the protocol (resuming from workdir/last.pt), then evaluate and
    write the run's derived records into ``workdir`` (``derived.write_records``; ``runs_dir``, the
    store's runs, is where it looks for the LSTM-LM that scores its generated text, or for the runs
    whose text it scores). Returns the metrics, the per-epoch history and the method's traces ({name: rows})."""
    from . import derived  # derived imports this module (load_trained)

    log(f"{config.run_id}: {corpus.description}; vocabulary {len(corpus.vocab)}, "
        f"{len(corpus.train)}/{len(corpus.valid)}/{len(corpus.test)} documents, device {device}")
    # Denormal floats (a collapsing posterior's gradients hold them) are slow on CPUs: VAE's
    # quick-size step fell from 48 to 39 ms with them flushed to zero. Metrics stayed bitwise equal.
    torch.set_flush_denormal(True)
    float32_matmul = models.networks.float32_matmul_policy(device)  # fp32 is IEEE float32: no TF32 on CUDA
    seed_everything(config.seed)
    model = models.build(config.model, config.profile.architecture(len(corpus.vocab)),
                         **config.hyperparameters).to(device)
    budget = machine.eval_memory_mb(config.profile.eval_memory_mb, device, eval_memory_mb)
    trainer = Trainer(model, config.profile, loader(corpus, "train", config, device, True),
                      loader(corpus, "valid", config, device, False), log=log, eval_memory_mb=budget)
    try:
        history = trainer.fit(checkpoint=workdir / "last.pt",
                              on_epoch=lambda epochs: write_history(workdir / "history.csv", epochs))
    except TrainingDiverged as error:
        error.records = (trainer.history, model.traces())  # a diverged run keeps its epochs and traces
        raise
    train_seconds = sum(record["seconds"] for record in history)  # without our statistics passes
    statistics_seconds = sum(record.get("statistics_seconds", 0.0) for record in history)
    files.atomic_torch_save(workdir / "best.pt", {"model": model.state_dict(), "config": config.to_json(),
                                                 "vocab": corpus.vocab.to_json()})

    result = {**score(model, corpus, config, device, budget), **model.state_summary(), "train_seconds": train_seconds,
              "statistics_seconds": statistics_seconds, **concurrent_runs(), "epochs": trainer.epoch,
              "best_epoch": trainer.best_epoch, "stopped_by": trainer.stop_reason,
              "capped": trainer.stop_reason == "max_epochs", "device": str(device), "versions": library_versions(),
              "bf16_parts": bf16_parts_run(config, device), "float32_matmul": float32_matmul,
              "eval_memory_mb": budget,
              "run_id": config.run_id, "model": config.model, "dataset": config.dataset,
              "profile": config.profile.name, "seed": config.seed}
    result["records_seconds"] = derived.write_records(workdir, model, corpus, config, device=device, runs_dir=runs_dir,
                                                      log=log)
    return result, history, model.traces()


def bf16_parts_run(config: RunConfig, device) -> list[str]:
    """The parts of the networks that ran in bfloat16 (models/networks.py ``bf16_parts``)."""
    if config.profile.precision != "bf16":
        return []
    return sorted(models.bf16_parts(torch.device(device).type))


def score(model, corpus: data.Corpus, config: RunConfig, device, eval_memory_mb: int | None = None) -> dict:
    """The test metrics of a trained model (``metrics.evaluate``) and ``eval_seconds``.

    Seeded by the run's own seed, independently of training's random stream, so that
    scoring the same weights again (``benchmarks.evaluate``) gives the same numbers (with the
    same ``eval_memory_mb``, the IW budget: it sets how the samples are drawn in chunks).
    """
    torch.set_flush_denormal(True)  # as in training: flushed denormals change no metric, only speed
    seed_everything(config.seed + 1)
    start = time.perf_counter()
    test = metrics.evaluate(model, loader(corpus, "test", config, device, False),
                            config.profile.iw_samples, eval_memory_mb or config.profile.eval_memory_mb)
    return {**test, "eval_seconds": time.perf_counter() - start}


def load_trained(run_dir, *, data_dir=None, cache_dir=None, device="cpu"):
    """Reload a finished run: (model in eval mode with its best weights, corpus, config)."""
    run_dir = Path(run_dir)
    try:
        value = read_json(run_dir / "config.json", warn=False)
        if value is None:
            raise ValueError("config.json is unreadable or corrupt")
        config = RunConfig.from_json(value)
        checkpoint = torch.load(run_dir / "best.pt", map_location=device)
    except (OSError, KeyError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        if machine_fault_kind(error):
            raise  # best.pt is fine (torch.load to a GPU that is full or lost): not "delete the directory"
        reason = (str(error).splitlines() or [""])[0][:160]
        raise UserError(f"cannot read run {run_dir} ({type(error).__name__}: {reason}); "
                        "delete the directory to re-run it") from None
    corpus = load_data(config, data_dir, cache_dir, download=False)
    vocab = data.Vocabulary.from_json(checkpoint["vocab"])
    if vocab != corpus.vocab:
        raise UserError(f"run {run_dir.name} was trained on a different vocabulary than {config.dataset} gives now")
    return build_trained(config, vocab, checkpoint["model"], device), corpus, config


def build_trained(config: RunConfig, vocab: data.Vocabulary, state: dict, device="cpu"):
    """The run's model with the weights and method state of ``state`` (a ``state_dict``), in eval mode."""
    model = models.build(config.model, config.profile.architecture(len(vocab)), **config.hyperparameters)
    model.load_state_dict(state)
    return model.to(device).eval()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="a method or a paper row, e.g. 'scale_vae(1.1,1)' (python -m models lists them)")
    parser.add_argument("--dataset", required=True, help="a registered dataset, or a directory with train/valid/test.txt")
    parser.add_argument("--corpus-like", default=None, metavar="yahoo|yelp",
                        help="for a corpus directory: whose side of the paper's 'a | b' rows it takes (default: none, "
                             "a two-sided row then asks for one); the runner's --corpus-like")
    parser.add_argument("--profile", default="quick", help="paper, quick or smoke (benchmarks/profiles.toml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override a hyperparameter of the model or a profile value")
    parser.add_argument("--data-dir", default=None, help="data root (default: $VAEBENCH_DATA_DIR, else ./data)")
    parser.add_argument("--cache-dir", default=None, help="derived data (default: $VAEBENCH_CACHE_DIR, else ~/.cache/vaebench)")
    parser.add_argument("--results", default="results", help="results root (default: results/)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--eval-memory-mb", type=int, default=None,
                        help="memory for one IW-NLL chunk's logits (default: a quarter of a GPU's free memory, the "
                             "profile's eval_memory_mb on the CPU); not part of the run's identity")
    parser.add_argument("--offline", action="store_true", help="never download missing data; fail with the file's name")
    parser.add_argument("--retry-failed", action="store_true", help="train again a run recorded as failed")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        config = resolve(args.model, args.dataset, args.profile, args.seed, args.set, args.corpus_like)
        run_dir, status = train_run(config, results_dir=args.results, data_dir=args.data_dir,
                                    cache_dir=args.cache_dir, device=args.device, download=not args.offline,
                                    retry_failed=args.retry_failed, eval_memory_mb=args.eval_memory_mb)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MachineFault as fault:
        print(f"error: {fault}", file=sys.stderr)
        return 3
    print(run_dir)
    return {DONE: 0, FAILED: 1}.get(status, 3)


if __name__ == "__main__":
    sys.exit(main())
