"""Table 5's generation metrics, read from each run's record.

Sampling and the statistics are ``benchmarks/generation.py`` (its docstring has the protocol); they
run when a run is scored, which writes the run's ``samples.txt`` and ``generation.json``. The PPL of
the sample under the LSTM-LM of the same data and seed is the run's ``generation_ppl.json`` when the
LM was scored in the same store (``benchmarks/derived.py``); otherwise it is computed here from the
LM's ``best.pt`` and written there, so that a later analysis without checkpoints reads it. A run of
an older store whose record lacks the sample is sampled here from its own ``best.pt``.

``uncapped_statistics`` scores the diversity (Dist-1/2/3, unigram entropy) on the samples that drew
the end token alone, for the claims (the issue: a claim about generation "is scored on uncapped
samples too"), with ``benchmarks/generation.py``'s formulas.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from benchmarks import generation
from benchmarks.config import RunConfig
from benchmarks.derived import load_checkpoint
from benchmarks.errors import UserError
from benchmarks.generation import DEFAULT_TOKENS, PPL_RECORD, PROTOCOL, RECORD
from benchmarks.probe import cached
from benchmarks.store import read_json

BOOKKEEPING = ("samples_sha256", "vocabulary", "run_id")  # in generation.json, not metrics


class UncappedSample(NamedTuple):
    sentences: list[list[str]]  # the words of the samples that drew the end token
    capped: int  # samples that reached the length cap without it
    budget: int  # the word budget of the run's Table 5 statistics


def uncapped_sample(run_dir, tokens: int = DEFAULT_TOKENS) -> UncappedSample | None:
    """A run's samples that finished (``</s>`` ends their line of ``samples.txt``), or None when the
    run has no sample of this protocol and budget, or its ``samples.txt`` is not the one recorded."""
    record = generation.read_record(run_dir, tokens)
    samples = generation.read_samples(run_dir, record) if record is not None else None
    if samples is None:
        return None
    sentences, ended = samples
    return UncappedSample([s for s, end in zip(sentences, ended) if end], ended.count(False), record["token_budget"])


def diversity(sentences: list[list[str]], tokens: int) -> dict:
    """Table 5's Dist-1/2/3 and unigram entropy over the first ``tokens`` words of ``sentences`` (laid end
    to end, as ``benchmarks.generation.describe_sample`` cuts them), with ``tokens``: the words used."""
    sample = generation.cut_at_budget(sentences, tokens)
    return {"entropy": generation.unigram_entropy(sample), **{f"dist{n}": generation.distinct(sample, n) for n in (1, 2, 3)},
            "tokens": sum(map(len, sample))}


def uncapped_statistics(run_dirs: dict[str, Path]) -> dict[str, dict]:
    """run_id -> ``diversity`` of the run's uncapped samples, with ``capped`` and ``sentences`` (all its
    samples), for runs of one dataset. Dist-n falls as a sample grows, so every run is cut at one word
    budget: the fewest uncapped words any of them has (at most the runs' own budget). A run whose every
    sample hit the cap has no statistics (None) and sets no budget; a run without a sample is left out."""
    samples = {run_id: s for run_id, run_dir in run_dirs.items() if (s := uncapped_sample(run_dir)) is not None}
    words = [sum(map(len, s.sentences)) for s in samples.values()]
    budget = min([w for w in words if w] + [s.budget for s in samples.values()], default=0)
    return {run_id: {**diversity(s.sentences, budget), "capped": s.capped, "sentences": len(s.sentences) + s.capped}
            for run_id, s in samples.items()}


class NoPerplexity(UserError):
    """A run's generation metrics without PPL (no stored PPL under the LM, and no LM checkpoint to
    compute it): ``metrics`` holds the others."""

    def __init__(self, message: str, metrics: dict):
        super().__init__(message)
        self.metrics = metrics


def generation_metrics(run_dir, lm_run_dir, *, tokens: int = DEFAULT_TOKENS, data_dir=None, cache_dir=None) -> dict:
    """Table 5 for one run: ``gram2/3/4``, ``entropy``, ``dist1/2/3``, ``tokens`` (words the n-gram
    statistics used: the budget), ``token_budget``, ``sentences`` and ``words`` (whole sampled sentences
    and their words, what PPL scores), ``capped`` (samples cut at ``max_tokens`` without ``</s>``),
    ``max_tokens``, ``protocol``, and ``ppl`` under the LM run ``lm_run_dir`` with ``lm_run`` (its
    directory's name). Raises NoPerplexity, carrying the rest, when ``lm_run_dir`` is None or the PPL
    is neither stored nor computable (the LM's ``best.pt`` is not there)."""
    run_dir = Path(run_dir)
    lm_name = Path(lm_run_dir).name if lm_run_dir is not None else None
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise UserError(f"tokens must be a positive integer, got {tokens!r}")
    old = cached(run_dir / RECORD, lm_run=lm_name, token_budget=tokens, protocol=PROTOCOL) if lm_name else None
    if old is not None and "ppl" in old:  # an older store's cache: the metrics and one LM's PPL
        return old
    record, samples = generation.read_record(run_dir, tokens), None
    if record is None:  # an older store, or another budget: sampled from the run's best.pt
        record, text = generation.generate_run(run_dir, tokens, data_dir=data_dir, cache_dir=cache_dir)
        samples = generation.parse_samples(text)
    metrics = {k: v for k, v in record.items() if k not in BOOKKEEPING}
    if lm_run_dir is None:
        raise NoPerplexity("no LSTM-LM run to score the generated text", metrics)
    ppl = generation.stored_perplexity(run_dir, record, lm_name)
    if ppl is None:
        ppl = perplexity(run_dir, record, samples, Path(lm_run_dir), metrics, tokens == DEFAULT_TOKENS,
                         data_dir=data_dir, cache_dir=cache_dir)
    return {**metrics, "ppl": ppl, "lm_run": lm_name}


def perplexity(run_dir: Path, record: dict, samples, lm_dir: Path, metrics: dict, write: bool, *, data_dir=None,
               cache_dir=None) -> float:
    """The PPL of the run's sample under the LM run's ``best.pt``, written to the run's ``generation_ppl.json``
    when ``write``; NoPerplexity when the LM has no ``best.pt``."""
    if not (lm_dir / "best.pt").exists():
        raise NoPerplexity(f"no {PPL_RECORD} under {lm_dir.name} and no best.pt of that LSTM-LM to score the generated "
                           "text with", metrics)
    lm, lm_corpus, lm_config = load_checkpoint(lm_dir, PPL_RECORD, data_dir=data_dir, cache_dir=cache_dir)
    if lm.has_latent:
        raise UserError(f"{lm_dir.name} is a {lm_config.model} run; pass an lstm_lm run as the language model")
    value = read_json(run_dir / "config.json", warn=False)
    if value is None:
        raise UserError(f"run {run_dir.name} has no readable config.json")
    config = RunConfig.from_json(value)
    ppl = None
    if lm_config.dataset == config.dataset:
        ppl = generation.score_samples(run_dir, record, lm, lm_corpus.vocab, lm_dir.name,
                                       config.profile.eval_batch_size, samples=samples, write=write)
    if ppl is None:
        raise UserError(f"{lm_dir.name} ({lm_config.dataset}, {lm_config.profile.name}) does not share the data and "
                        f"vocabulary of {run_dir.name} (or its {generation.SAMPLES} is not the sample its {RECORD} "
                        f"names); train lstm_lm on {config.dataset} with the same profile")
    return ppl
