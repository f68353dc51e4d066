"""word-lm: the Kneser-Ney trigram against a hand computation and summing to 1 over the vocabulary, the word
tokens, the tied head, and a quick run's contract keys."""

import math

import numpy as np
import pytest

from scratchlab.experiments._kneser_ney import KneserNeyTrigram
from scratchlab.experiments.word_lm import WordLM, WordLMConfig, words
from scratchlab.runner import run_experiment


def test_kneser_ney_by_hand():
    """Corpus a b a b a b c (ids 0 1 0 1 0 1 2), vocabulary of 4 (word 3 never seen), every D = 1/2.
    Trigrams: (a b a) x2, (b a b) x2, (a b c) x1. Continuation bigrams (from the trigram types): (b a), (a b),
    (b c), each after one distinct word. Continuation unigrams: N1+(. a) = N1+(. b) = N1+(. c) = 1, of 3 types.
      P1(a)       = (1 - 1/2)/3 + (1/2)(3/3)(1/4)            = 1/6 + 1/8 = 7/24;  P1(d) = 1/8
      P2(a | b)   = ((1 - 1/2) + (1/2) 2 P1(a)) / 2            (b is followed by a and c: N1+(. b .) = 2)
      P3(a | a b) = ((2 - 1/2) + (1/2) 2 P2(a | b)) / 3        (c(a b .) = 3, two types)"""
    kn = KneserNeyTrigram(np.array([0, 1, 0, 1, 0, 1, 2]), 4, discounts=(0.5, 0.5, 0.5))
    p1 = 7 / 24
    p2 = (0.5 + p1) / 2
    p3 = (1.5 + p2) / 3
    assert kn.prob(0, 1, 0) == pytest.approx(p3, rel=1e-12)
    assert kn.prob(3, 1, 0) == pytest.approx(p2, rel=1e-12)  # unseen context (d b): the bigram level
    assert kn.prob(3, 3, 0) == pytest.approx(p1, rel=1e-12)  # unseen (d d) and d: the unigram level
    assert kn.prob(3, 3, 3) == pytest.approx(1 / 8, rel=1e-12)


@pytest.mark.parametrize("discounts", [None, (0.5, 0.7, 0.9)])
def test_kneser_ney_sums_to_one_over_the_vocabulary(discounts):
    rng = np.random.default_rng(0)
    ids = rng.zipf(1.5, 3000) % 50  # a skewed stream over 50 words, some never seen (ids 50..59)
    kn = KneserNeyTrigram(ids, 60, discounts)
    w = np.arange(60)
    for u, v in [(ids[0], ids[1]), (ids[10], ids[11]), (1, 2), (55, 3), (59, 58)]:
        assert kn.prob(u, v, w).sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(kn.prob(u, v, w) > 0)
    assert 1 < kn.perplexity(ids[:500]) < 60


def test_words():
    assert words("Mr. Darcy\u2019s\n\nIt was 1811!") == ["mr", ".", "darcy's", "<eol>", "it", "was", "1811", "!"]
    assert words("one\ntwo") == ["one", "two"]  # a wrapped line is not a paragraph end


def test_tied_head_shares_the_embedding():
    model = WordLM(WordLMConfig(emb=8, hidden=8, layers=1), 20)
    assert model.head.weight is model.embed.weight
    with pytest.raises(ValueError, match="needs emb == hidden, got emb=8, hidden=6"):
        WordLM(WordLMConfig(emb=8, hidden=6), 20)


def test_quick_run_gives_the_contract_keys(tmp_path):
    text = " ".join(np.random.default_rng(0).choice(["the cat sat .", "a dog ran far .", "the dog sat ."], 1500))
    (tmp_path / "t.txt").write_text(text)
    run, s = run_experiment("word-lm", {"text_file": str(tmp_path / "t.txt"), "steps": 60, "lr": 2e-2}, quick=True,
                            out=tmp_path / "run", progress=False)
    for key in ("val_perplexity", "test_perplexity", "ngram_test_perplexity"):
        assert math.isfinite(s[key]) and s[key] >= 1
    # 7 words in 3 sentences drawn at random: only a sentence start is uncertain (uniform guessing: 8)
    assert s["ngram_test_perplexity"] < 1.6 and s["test_perplexity"] < 2.5
    assert (run / "perplexity.png").exists() and "contiguous blocks" in s["split"]
    lrs = [r["lr"] for r in run.metrics("train")]  # the cosine schedule: the peak at step 0, half-way at 30, ~0 at 59
    assert lrs[0] == 2e-2 and lrs[30] == pytest.approx(1e-2)
    assert lrs[-1] == pytest.approx(2e-2 * (1 - math.cos(math.pi / 60)) / 2)
