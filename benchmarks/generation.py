"""The generation metrics of the paper's Table 5 (protocol.md, "Metrics" and Table 5).

Sampling follows He et al.'s ``sample_decode`` (jxhe/vae-lagging-encoder, commit cdc4eb9,
``modules/decoders/dec_lstm.py:320-367``; DU-VAE's copy is the same): starting from ``<s>``, each
word is drawn from the full softmax (``torch.multinomial``, no temperature or top-k, line 356)
until ``</s>`` is drawn or ``length_c < 100`` stops the loop (line 342, ``length_c`` starts at 1
for ``<s>``): at most 99 sampled tokens, ``</s>`` counted among them when it is drawn (lines
361-365). Here z ~ N(0, I) times ``model.prior_std()`` (Scale-VAE's f_bar; 1 for every other
method), and the decoder samples at most ``max_tokens`` tokens per sentence, ``</s>`` included:

- profile without ``max_len`` (paper): 99, He et al.'s cap;
- profile with ``max_len`` (quick: 40, smoke: 20): ``max_len + 1``, since its documents were
  filtered to at most ``max_len`` words, so the longest has ``max_len`` words and its ``</s>``.

A sample that draws no ``</s>`` within ``max_tokens`` tokens is *capped*: it has ``max_tokens``
words and no end; the result counts them (``capped``) beside the cap (``max_tokens``).

Sentences are sampled (``CHUNK`` at a time, from one seeded random stream) until they hold
``tokens`` words (``DEFAULT_TOKENS`` = 20,000: at the quick profile's ~30-word sentences about 670
sentences, the same order as the earlier 1,000-sentence samples, in about a second; at the paper's
sizes some 200-300 sentences, under a minute on one CPU thread). Then:

- ``ppl``: perplexity under a separately trained LSTM-LM of the same dataset over the WHOLE sampled
  sentences (also the last one, cut below): exp of the summed -log p of the generated tokens
  (its words, and ``</s>`` only where the model drew it; never ``<s>``) divided by their count.
  A capped sample is scored without an end token it never produced.
- the n-gram statistics are over exactly ``tokens`` words for every model, so that models whose
  sentences differ in length are compared on samples of one size (Dist-n falls as a sample grows):
  the sentences are laid end to end and the stream is cut after its ``tokens``-th word; the last
  sentence keeps only its words before the cut. n-grams never cross a sentence boundary (nor the
  cut, which ends the sample), and ``<s>``/``</s>`` are not words:

  - ``gram2/3/4``: share of the generated n-grams (with multiplicity) that occur in the training
    split (both as vocabulary-mapped words, n-grams inside one sentence);
  - ``entropy``: entropy (natural log) of the generated unigram distribution;
  - ``dist1/2/3``: distinct n-grams / generated n-grams (plain ratios).

A share over no n-grams at all is ``None``. Should a model's sentences be so short that
``tokens`` sentences hold fewer than ``tokens`` words, sampling stops there and ``tokens`` in the
result says how many words the statistics used.

What needs one run is part of its record, written when the run is scored (``benchmarks.derived``),
for runs on the datasets Table 5 uses (``GENERATING_DATASETS``, and any user corpus):

- ``samples.txt``: every sampled sentence, one a line, words separated by spaces, ending in
  ``</s>`` where the model drew it (a capped one ends without): what PPL scores;
- ``generation.json``: everything above but PPL, with the sample's sha256 (``samples_sha256``),
  the vocabulary's (``vocabulary``), the budget and ``PROTOCOL`` (a result of another protocol,
  e.g. of the old 1,000-sentence, 40-token one, is not taken for this one).

PPL needs a second run, the LSTM-LM of the same data, profile and seed: it is written to
``generation_ppl.json`` in the generating run's directory, naming the LM's run id and the sample's
sha256, by whichever comes first of the LM's scoring (it scores the samples of the finished runs of
its data and seed in the same store), the generating run's scoring (when the LM had finished first)
and ``analysis/make_tables.py`` (when the LM's ``best.pt`` is there).
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import torch

from . import data, files, metrics, plan
from .probe import cached
from .store import write_json

PROTOCOL = "budget-v2"  # sampling capped as above, n-grams over a word budget, no unsampled </s> scored
RECORD, SAMPLES, PPL_RECORD = "generation.json", "samples.txt", "generation_ppl.json"  # in the run's directory
PAPER_MAX_TOKENS = 99  # He et al.'s sample_decode: `length_c < 100` with length_c = 1 for <s>
DEFAULT_TOKENS = 20_000  # words the n-gram statistics are computed over
CHUNK = 200  # sentences sampled per decoder call


def max_tokens_for(max_len: int | None) -> int:
    """Most tokens sampled per sentence (``</s>`` included) for a profile's ``max_len`` (0/None: none)."""
    return max_len + 1 if max_len else PAPER_MAX_TOKENS


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


def cut_at_budget(sentences: list[list[str]], tokens: int) -> list[list[str]]:
    """The first ``tokens`` words of ``sentences`` laid end to end, still split into sentences
    (the sentence the cut falls in keeps its words before the cut; later ones are dropped)."""
    kept, left = [], tokens
    for sentence in sentences:
        if left <= 0:
            break
        kept.append(sentence[:left])
        left -= len(kept[-1])
    return kept


@torch.no_grad()
def lm_perplexity(lm, vocab: data.Vocabulary, sentences: list[list[str]], ended: list[bool],
                  batch_size: int) -> float:
    """Perplexity of ``sentences`` (words) under a model without latent code (an LSTM-LM).

    Each sentence is scored as ``<s> words`` plus ``</s>`` where ``ended`` says the generator drew
    it: the predicted tokens are the words and that ``</s>``, never an end the sample did not have
    (``vocab.encode`` / ``BatchLoader`` would append one to every sentence)."""
    if len(sentences) != len(ended):
        raise ValueError(f"{len(sentences)} sentences but {len(ended)} end flags")
    sequences = sorted((vocab.encode(s)[:None if end else -1] for s, end in zip(sentences, ended)), key=len)
    nll = predicted = 0
    device = lm.decoder.output.weight.device
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        lengths = torch.tensor([len(s) for s in chunk], device=device)
        tokens = torch.full((len(chunk), int(lengths.max())), vocab.pad_id, dtype=torch.long, device=device)
        for row, sequence in enumerate(chunk):
            tokens[row, :len(sequence)] = torch.tensor(sequence)
        # log_likelihood scores the targets tokens[:, 1:lengths] of each row: exactly the words and the drawn </s>
        nll -= lm.decoder.log_likelihood(tokens, lengths, None)[:, 0].sum().item()
        predicted += int((lengths - 1).sum())
    return metrics.perplexity(nll, predicted)


@torch.no_grad()
def sample_sentences(model, vocab: data.Vocabulary, tokens: int, max_tokens: int, seed: int,
                     chunk: int = CHUNK) -> tuple[list[list[str]], list[bool]]:
    """Sentences (words) sampled from the model's generative rule, z ~ N(0, prior_std^2), until they
    hold ``tokens`` words (or ``tokens`` sentences were drawn), each of at most ``max_tokens`` tokens
    with ``</s>``; returns them with, per sentence, whether it drew ``</s>`` (False: capped)."""
    sentences, ended, words = [], [], 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        while words < tokens and len(sentences) < tokens:
            z = model.sample_prior(chunk) if model.has_latent else None
            # generate returns the ids before </s>: a sentence without </s> has all max_tokens ids
            for ids in model.decoder.generate(z, vocab.bos_id, vocab.eos_id, max_tokens, greedy=False, n=chunk):
                sentences.append(vocab.decode(ids))
                ended.append(len(ids) < max_tokens)
                words += len(sentences[-1])
                if words >= tokens or len(sentences) >= tokens:
                    break
    return sentences, ended


def describe_sample(generated: list[list[str]], ended: list[bool], reference: list[list[str]], *, tokens: int,
                    max_tokens: int) -> dict:
    """Everything of the module docstring but PPL, for sampled sentences and their end flags."""
    sample = cut_at_budget(generated, tokens)
    return {**ngram_statistics(sample, reference),
            "tokens": sum(map(len, sample)), "token_budget": tokens, "sentences": len(generated),
            "words": sum(map(len, generated)), "capped": ended.count(False), "max_tokens": max_tokens,
            "protocol": PROTOCOL}


def generate_and_score(model, lm, vocab: data.Vocabulary, reference: list[list[str]], *, tokens: int,
                       max_tokens: int, seed: int, batch_size: int) -> tuple[dict, list[list[str]]]:
    """The metrics (see the module docstring) and the sampled sentences."""
    generated, ended = sample_sentences(model, vocab, tokens, max_tokens, seed)
    result = {"ppl": lm_perplexity(lm, vocab, generated, ended, batch_size),
              **describe_sample(generated, ended, reference, tokens=tokens, max_tokens=max_tokens)}
    return result, generated


# --------------------------------------------------------------------------- the run's record


def generating_datasets() -> set[str]:
    """The datasets of Table 5 under any profile (benchmarks/experiments/table5.toml)."""
    return {name for names in plan.load("table5")["datasets"].values() for name in names}


def generates(config) -> bool:
    """Whether a run's record holds generated text: a run on a dataset of Table 5, or on a user corpus
    that Table 5 runs on."""
    if config.dataset in generating_datasets():
        return True
    return data.is_corpus(config.dataset) and plan.corpus_skip("table5", config.dataset) is None


def vocabulary_digest(vocab: data.Vocabulary) -> str:
    return hashlib.sha256(json.dumps(vocab.to_json(), sort_keys=True).encode()).hexdigest()


def samples_text(sentences: list[list[str]], ended: list[bool]) -> bytes:
    """``samples.txt``: a sentence a line, ``</s>`` at its end where the model drew it."""
    return "".join(" ".join([*words, data.EOS] if end else words) + "\n" for words, end in zip(sentences, ended)).encode()


def parse_samples(text: bytes) -> tuple[list[list[str]], list[bool]]:
    """The sentences and end flags of a ``samples.txt`` (``samples_text``'s inverse)."""
    sentences, ended = [], []
    for line in text.decode().split("\n")[:-1]:
        words = line.split()
        ended.append(words[-1:] == [data.EOS])
        sentences.append(words[:-1] if ended[-1] else words)
    return sentences, ended


def generation_record(model, corpus, config, tokens: int = DEFAULT_TOKENS) -> tuple[dict, bytes]:
    """What a trained model (eval mode, CPU) generates under the run's seed: ``generation.json``'s content
    (``describe_sample`` with the digests of the sample and of the vocabulary) and ``samples.txt``'s."""
    reference = [corpus.vocab.decode(ids) for ids in corpus.encoded("train")]
    max_tokens = max_tokens_for(config.profile.max_len)
    generated, ended = sample_sentences(model, corpus.vocab, tokens, max_tokens, config.seed)
    text = samples_text(generated, ended)
    record = {**describe_sample(generated, ended, reference, tokens=tokens, max_tokens=max_tokens),
              "samples_sha256": hashlib.sha256(text).hexdigest(), "vocabulary": vocabulary_digest(corpus.vocab),
              "run_id": config.run_id}
    return record, text


def write_record(run_dir, record: dict, text: bytes) -> None:
    """The sample first, then ``generation.json``, which names its digest."""
    files.atomic_write(Path(run_dir) / SAMPLES, text)
    write_json(Path(run_dir) / RECORD, record)


def read_record(run_dir, tokens: int = DEFAULT_TOKENS) -> dict | None:
    """A run's ``generation.json`` of this protocol and budget, or None (missing, corrupt, another one, or
    the cache of an older store, which holds one LM's PPL instead of the sample's digest)."""
    record = cached(Path(run_dir) / RECORD, token_budget=tokens, protocol=PROTOCOL)
    return record if record is not None and "samples_sha256" in record else None


def read_samples(run_dir, record: dict) -> tuple[list[list[str]], list[bool]] | None:
    """A run's ``samples.txt`` when it is the sample ``record`` names; else None."""
    try:
        text = (Path(run_dir) / SAMPLES).read_bytes()
    except OSError:
        return None
    return parse_samples(text) if hashlib.sha256(text).hexdigest() == record["samples_sha256"] else None


def stored_perplexity(run_dir, record: dict, lm_run: str) -> float | None:
    """The PPL of the sample ``record`` names under the LM run ``lm_run``, if ``generation_ppl.json`` holds it."""
    stored = cached(Path(run_dir) / PPL_RECORD, lm_run=lm_run, samples_sha256=record["samples_sha256"],
                    protocol=PROTOCOL)
    return stored["ppl"] if stored is not None else None


def score_samples(run_dir, record: dict, lm, vocab: data.Vocabulary, lm_run: str, batch_size: int, *,
                  samples=None, write: bool = True) -> float | None:
    """PPL of the run's sample (``samples``, else its ``samples.txt``) under ``lm``, written to its
    ``generation_ppl.json`` unless ``write`` is False; None, writing nothing, when the sample is not
    the one ``record`` names or ``vocab`` is not the one it was drawn with."""
    samples = samples or read_samples(run_dir, record)
    if samples is None or record.get("vocabulary") != vocabulary_digest(vocab):
        return None
    ppl = lm_perplexity(lm, vocab, *samples, batch_size)
    if write:
        write_json(Path(run_dir) / PPL_RECORD, {"ppl": ppl, "lm_run": lm_run, "samples_sha256": record["samples_sha256"],
                                               "protocol": PROTOCOL})
    return ppl


def generate_run(run_dir, tokens: int = DEFAULT_TOKENS, *, data_dir=None, cache_dir=None) -> tuple[dict, bytes]:
    """``generation_record`` of a finished run from its ``best.pt``: for runs scored before it was part of
    the record (metrics version 2 and older). Written as the run's record at the default budget only."""
    from .derived import load_checkpoint

    model, corpus, config = load_checkpoint(run_dir, RECORD, data_dir=data_dir, cache_dir=cache_dir)
    record, text = generation_record(model, corpus, config, tokens)
    if tokens == DEFAULT_TOKENS:
        write_record(run_dir, record, text)
    return record, text
