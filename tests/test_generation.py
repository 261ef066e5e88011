"""Table 5's generation protocol (benchmarks/generation.py) on tiny hand-made models, no data files:
the sampling cap, scoring without an end token that was never drawn, and the word budget."""
import math

import pytest
import torch
import torch.nn.functional as F

import models
from benchmarks import data, generation
from benchmarks.config import resolve

from .helpers import tiny_arch

VOCAB = data.Vocabulary([*data.SPECIALS, *(f"w{i}" for i in range(8))])  # 12 ids: 4 specials, 8 words
REFERENCE = [["w0", "w1", "w2", "w3"], ["w4", "w5"]]


def tiny(name: str, seed: int):
    torch.manual_seed(seed)
    return models.build(name, tiny_arch(len(VOCAB))).eval()


def banning(model, *ids):
    """``model`` with its decoder unable to draw ``ids`` (their logits forced to -inf) nor <pad>/<s>
    (which the words would drop): every draw is a word or whatever of </s> is not banned."""
    project = model.decoder.project
    banned = torch.tensor([VOCAB.pad_id, VOCAB.bos_id, *ids])
    model.decoder.project = lambda hidden, z: project(hidden, z).index_fill(-1, banned, -math.inf)
    return model


@torch.no_grad()
def hand_log_likelihood(lm, ids: list[int]) -> float:
    """log p(ids | <s>) under the LM, one token at a time: exactly the tokens of ``ids``, nothing appended."""
    inputs = torch.tensor([[VOCAB.bos_id, *ids[:-1]]])
    log_probs = F.log_softmax(lm.decoder.logits(inputs, None)[0], dim=-1)
    return float(log_probs[torch.arange(len(ids)), torch.tensor(ids)].sum())


def test_the_cap_is_he_et_al_s_99_tokens_without_max_len_and_max_len_plus_end_with_it():
    assert generation.max_tokens_for(0) == generation.max_tokens_for(None) == 99
    assert generation.max_tokens_for(40) == 41 and generation.max_tokens_for(20) == 21
    caps = {p: generation.max_tokens_for(resolve("vae", "yahoo", p, 0).profile.max_len) for p in ("paper", "quick", "smoke")}
    assert caps == {"paper": 99, "quick": 41, "smoke": 21}


def test_a_model_that_never_ends_is_capped_and_scored_without_an_end_token():
    vae, lm = banning(tiny("vae", 0), VOCAB.eos_id), tiny("lstm_lm", 1)
    cap = generation.max_tokens_for(0)  # a profile without max_len: the paper's
    result, sentences = generation.generate_and_score(vae, lm, VOCAB, REFERENCE, tokens=500, max_tokens=cap,
                                                      seed=0, batch_size=4)
    assert result["max_tokens"] == 99 and all(len(s) == 99 for s in sentences)
    assert result["sentences"] == len(sentences) == 6 and result["capped"] == 6  # ceil(500 / 99) samples
    assert result["tokens"] == 500 and result["words"] == 6 * 99
    log_likelihood = sum(hand_log_likelihood(lm, VOCAB.encode(s)[1:-1]) for s in sentences)  # words only
    assert result["ppl"] == pytest.approx(math.exp(-log_likelihood / (6 * 99)), rel=1e-5)


def test_an_end_token_is_scored_exactly_where_it_was_drawn():
    vae, lm = banning(tiny("vae", 2)), tiny("lstm_lm", 3)  # untrained: </s> is one draw in ~10, most end
    result, sentences = generation.generate_and_score(vae, lm, VOCAB, REFERENCE, tokens=300, max_tokens=10,
                                                      seed=0, batch_size=7)
    again, ended_flags = generation.sample_sentences(vae, VOCAB, 300, 10, seed=0)  # the same seeded draw
    assert again == sentences
    assert 0 < result["capped"] == ended_flags.count(False) < len(sentences)  # both kinds occur
    assert all(len(s) == 10 for s, end in zip(sentences, ended_flags) if not end)
    scored = [VOCAB.encode(s)[1:] if end else VOCAB.encode(s)[1:-1] for s, end in zip(sentences, ended_flags)]
    log_likelihood = sum(hand_log_likelihood(lm, ids) for ids in scored)
    assert result["ppl"] == pytest.approx(math.exp(-log_likelihood / sum(map(len, scored))), rel=1e-5)


class FixedLength:
    """A model without latent code whose every sentence has ``length`` words (w0 w1 ... cycling)."""
    has_latent = False

    def __init__(self, length: int):
        self.decoder = self
        self.length = length

    def generate(self, z, bos, eos, max_len, greedy=False, n=None):
        return [[4 + (i + j) % 8 for j in range(self.length)] for i in range(n)]


def test_ngram_statistics_use_exactly_the_word_budget_for_every_model(monkeypatch):
    seen = []
    original = generation.ngram_statistics
    monkeypatch.setattr(generation, "ngram_statistics", lambda sample, reference: seen.append(sample) or original(sample, reference))
    lm = tiny("lstm_lm", 4)
    short, _ = generation.generate_and_score(FixedLength(7), lm, VOCAB, REFERENCE, tokens=1000, max_tokens=99,
                                             seed=0, batch_size=16)
    long, _ = generation.generate_and_score(FixedLength(23), lm, VOCAB, REFERENCE, tokens=1000, max_tokens=99,
                                            seed=0, batch_size=16)
    assert [sum(map(len, sample)) for sample in seen] == [1000, 1000]
    assert short["tokens"] == long["tokens"] == short["token_budget"] == 1000
    assert (short["sentences"], short["words"]) == (143, 1001) and (long["sentences"], long["words"]) == (44, 1012)
    assert [len(s) for s in seen[0][-2:]] == [7, 6] and [len(s) for s in seen[1][-2:]] == [23, 11]  # the cut
    assert short["capped"] == long["capped"] == 0


def test_the_cut_keeps_the_words_before_it_and_no_ngram_crosses_a_sentence():
    sentences = [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert generation.cut_at_budget(sentences, 4) == [["a", "b", "c"], ["d"]]
    assert generation.cut_at_budget(sentences, 3) == [["a", "b", "c"]]
    assert generation.cut_at_budget(sentences, 100) == sentences
    assert generation.ngram_counts(generation.cut_at_budget(sentences, 5), 2) == {
        ("a", "b"): 1, ("b", "c"): 1, ("d", "e"): 1}  # no ("c", "d")


def test_the_recorded_sample_reads_back_as_drawn_with_its_end_tokens():
    vae = banning(tiny("vae", 5))  # untrained: ended and capped sentences both occur
    sentences, ended = generation.sample_sentences(vae, VOCAB, 300, 10, seed=0)
    assert 0 < ended.count(False) < len(ended)
    sentences, ended = sentences + [[], []], ended + [True, False]  # an empty sentence, ended or not
    text = generation.samples_text(sentences, ended)
    assert text.decode().splitlines()[-2:] == ["</s>", ""]
    assert generation.parse_samples(text) == (sentences, ended)
