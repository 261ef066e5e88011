"""The generation metrics of the paper's Table 5 (protocol.md, "Metrics" and Table 5).

Sentences are sampled (not greedily decoded) from the model's own generative rule:
z ~ N(0, I) times ``model.prior_std()`` (Scale-VAE's f_bar; 1 for every other method),
then the decoder samples word by word until ``</s>`` or the profile's max_len (40 when
the profile has none). On the generated sentences:

- ``ppl``: perplexity under a separately trained LSTM-LM of the same dataset: exp of the
  summed -log p over predicted tokens (the words and ``</s>``, not ``<s>``) divided by their
  count, as ``benchmarks.metrics.perplexity``;
- ``gram2/3/4``: share of the generated n-grams (with multiplicity) that occur in the
  training split (both as vocabulary-mapped words, n-grams inside one sentence, no
  ``<s>``/``</s>``);
- ``entropy``: entropy (natural log) of the generated unigram distribution;
- ``dist1/2/3``: distinct n-grams / generated n-grams.

A share over no n-grams at all is ``None``. The result is cached as ``generation.json``
in the VAE's run directory (keyed by the LM run's directory name and the number of
sentences); the first 50 sentences go to ``generated.txt`` beside it.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import torch

from benchmarks import data, metrics
from benchmarks.errors import UserError
from benchmarks.store import write_json
from benchmarks.train import load_trained

from .probe import cached

SHOWN = 50  # sentences written to generated.txt
DEFAULT_MAX_LEN = 40  # generation length limit when the profile has none


def ngrams(sentence: list[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(sentence[i:] for i in range(n))))


def ngram_counts(sentences: list[list[str]], n: int) -> Counter:
    return Counter(g for sentence in sentences for g in ngrams(sentence, n))


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def unigram_entropy(sentences: list[list[str]]) -> float | None:
    """Entropy (nats) of the unigram distribution of ``sentences``."""
    counts = ngram_counts(sentences, 1)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else None


def distinct(sentences: list[list[str]], n: int) -> float | None:
    """Dist-n: distinct n-grams / n-grams."""
    counts = ngram_counts(sentences, n)
    return ratio(len(counts), sum(counts.values()))


def seen_share(generated: list[list[str]], reference: list[list[str]], n: int) -> float | None:
    """Gram-n: share of the generated n-grams that occur anywhere in ``reference``."""
    counts = ngram_counts(generated, n)
    seen = {g for sentence in reference for g in ngrams(sentence, n) if g in counts}  # only what is generated
    return ratio(sum(counts[g] for g in seen), sum(counts.values()))


def ngram_statistics(generated: list[list[str]], reference: list[list[str]]) -> dict:
    """Gram-2/3/4, entropy and Dist-1/2/3 of ``generated`` (lists of words) against ``reference``."""
    return {**{f"gram{n}": seen_share(generated, reference, n) for n in (2, 3, 4)},
            "entropy": unigram_entropy(generated),
            **{f"dist{n}": distinct(generated, n) for n in (1, 2, 3)}}


@torch.no_grad()
def lm_perplexity(lm, vocab: data.Vocabulary, sentences: list[list[str]], batch_size: int) -> float:
    """Perplexity of ``sentences`` (words) under a model without latent code (an LSTM-LM)."""
    batches = data.BatchLoader([vocab.encode(s) for s in sentences], batch_size, pad_id=vocab.pad_id,
                               shuffle=False)
    nll = words = 0
    for batch in batches:
        nll -= lm.decoder.log_likelihood(batch.tokens, batch.lengths, None)[:, 0].sum().item()
        words += batch.num_words
    return metrics.perplexity(nll, words)


@torch.no_grad()
def sample_sentences(model, vocab: data.Vocabulary, count: int, max_len: int, seed: int) -> list[list[str]]:
    """``count`` sentences (words) sampled from the model's generative rule, z ~ N(0, prior_std^2)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        z = model.sample_prior(count) if model.has_latent else None
        ids = model.decoder.generate(z, vocab.bos_id, vocab.eos_id, max_len, greedy=False, n=count)
    return [vocab.decode(seq) for seq in ids]


def generation_metrics(run_dir, lm_run_dir, *, sentences: int = 1000, data_dir=None, cache_dir=None) -> dict:
    """Table 5 for one run: the metrics above plus ``sentences`` (how many), ``tokens`` (generated
    words) and ``lm_run`` (the LM run's directory name)."""
    run_dir, lm_name = Path(run_dir), Path(lm_run_dir).name
    if isinstance(sentences, bool) or not isinstance(sentences, int) or sentences < 1:
        raise UserError(f"sentences must be a positive integer, got {sentences!r}")
    result = cached(run_dir / "generation.json", lm_run=lm_name, sentences=sentences)
    if result is not None:
        return result

    model, corpus, config = load_trained(run_dir, data_dir=data_dir, cache_dir=cache_dir)
    lm, lm_corpus, lm_config = load_trained(lm_run_dir, data_dir=data_dir, cache_dir=cache_dir)
    if lm.has_latent:
        raise UserError(f"{lm_name} is a {lm_config.model} run; pass an lstm_lm run as the language model")
    if lm_config.dataset != config.dataset or lm_corpus.vocab != corpus.vocab:
        raise UserError(f"{lm_name} ({lm_config.dataset}, {lm_config.profile.name}) does not share the data and "
                        f"vocabulary of {run_dir.name}; train lstm_lm on {config.dataset} with the same profile")
    generated = sample_sentences(model, corpus.vocab, sentences, config.profile.max_len or DEFAULT_MAX_LEN,
                                 config.seed)
    reference = [corpus.vocab.decode(ids) for ids in corpus.encoded("train")]
    result = {"ppl": lm_perplexity(lm, corpus.vocab, generated, config.profile.eval_batch_size),
              **ngram_statistics(generated, reference), "sentences": sentences,
              "tokens": sum(map(len, generated)), "lm_run": lm_name}
    data.atomic_write(run_dir / "generated.txt", "".join(" ".join(s) + "\n" for s in generated[:SHOWN]).encode())
    write_json(run_dir / "generation.json", result)
    return result
