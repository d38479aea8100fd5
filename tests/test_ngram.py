"""llm_course.ngram against hand-computed tiny corpora and properties every correct model has.

No peer n-gram library is installed (nltk is not), so the references are counts worked out
by hand in the comments, closed forms (perplexity of a uniform model = V), and an
independent recomputation of perplexity with plain Python sums.
"""

import math
from collections import Counter

import pytest
import torch

from llm_course.ngram import (
    BOS, EOS, UNK, NGramLM, add_k_prob, apply_temperature, build_vocab, context_counts, count_ngrams,
    pad, perplexity, replace_unknown, sample_next, sentences_from_text, tokenize,
)

# "the cat sat" / "the dog" / "a cat sat down"
CORPUS = [["the", "cat", "sat"], ["the", "dog"], ["a", "cat", "sat", "down"]]


def test_tokenize_words_apostrophes_and_punctuation():
    assert tokenize("O'er the hill, my Lord's  dog!") == ["o'er", "the", "hill", ",", "my", "lord's", "dog", "!"]
    assert sentences_from_text("To be.\n\n  \nOr not") == [["to", "be", "."], ["or", "not"]]


def test_pad():
    assert pad(["to", "be"], 3) == [BOS, BOS, "to", "be", EOS]
    assert pad([], 1) == [EOS]
    s = ["x"]
    assert pad(s, 2) is not s and s == ["x"]


def test_bigram_counts_by_hand():
    c = count_ngrams(CORPUS, 2)
    # <s> is followed by the, the, a; "cat sat" twice; every sentence has one </s> bigram
    assert c[(BOS, "the")] == 2 and c[(BOS, "a")] == 1
    assert c[("cat", "sat")] == 2 and c[("sat", EOS)] == 1 and c[("down", EOS)] == 1
    assert sum(c.values()) == 3 + 2 + 4 + 3          # one n-gram per token plus one </s> per sentence
    assert ("sat", "the") not in c                   # nothing spans two sentences


def test_trigram_padding_and_unigrams():
    c3 = count_ngrams([["hi"]], 3)
    assert c3 == Counter({(BOS, BOS, "hi"): 1, (BOS, "hi", EOS): 1})
    c1 = count_ngrams(CORPUS, 1)
    assert c1[(EOS,)] == 3 and (BOS,) not in c1 and c1[("cat",)] == 2


def test_context_counts_are_the_mle_denominators():
    totals = context_counts(count_ngrams(CORPUS, 2))
    assert totals[(BOS,)] == 3 and totals[("cat",)] == 2 and totals[("the",)] == 2
    assert (EOS,) not in totals                      # </s> is never a context
    assert context_counts(count_ngrams(CORPUS, 1))[()] == 12


def test_mle_equals_count_ratio_and_add_k_by_hand():
    c = count_ngrams(CORPUS, 2)
    t = context_counts(c)
    V = len(build_vocab(CORPUS))                     # 6 words + </s> + <unk> = 8
    assert V == 8
    assert add_k_prob(c, t, ("the",), "cat", 0, V) == 1 / 2
    assert add_k_prob(c, t, ("cat",), "sat", 0, V) == 1.0
    assert add_k_prob(c, t, ("cat",), "sat", 1, V) == pytest.approx((2 + 1) / (2 + 8))
    assert add_k_prob(c, t, ("cat",), "dog", 0.5, V) == pytest.approx(0.5 / (2 + 4))
    assert add_k_prob(c, t, ("down",), "the", 0, V) == 0.0          # seen context ("down </s>"), unseen bigram
    assert add_k_prob(c, t, ("zebra",), "the", 0, V) == pytest.approx(1 / 8)  # unseen context: uniform


@pytest.mark.parametrize("n,k,lambdas", [(1, 0, None), (2, 0, None), (2, 0.5, None), (3, 0.1, None),
                                          (3, 0, [0.2, 0.3, 0.5]), (3, 0.01, [0.1, 0.0, 0.9])])
@pytest.mark.parametrize("context", [(), ("the",), ("cat", "sat"), ("never", "seen"), (BOS, "dog")])
def test_distribution_sums_to_one_and_matches_prob(n, k, lambdas, context):
    lm = NGramLM(n, k=k, lambdas=lambdas).fit(CORPUS)
    dist = lm.distribution(context)
    assert dist.shape == (len(lm.vocab),) and dist.dtype == torch.float64
    assert dist.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert lm.vocab[-2:] == [EOS, UNK] and BOS not in lm.vocab
    probs = [lm.prob(w, context) for w in lm.vocab]
    assert torch.allclose(dist, torch.tensor(probs, dtype=torch.float64), atol=1e-12)


def test_interpolation_is_the_weighted_sum_of_orders():
    lams = [0.2, 0.3, 0.5]
    lm = NGramLM(3, k=0.1, lambdas=lams).fit(CORPUS)
    parts = [NGramLM(m, k=0.1).fit(CORPUS) for m in (1, 2, 3)]
    for token, ctx in [("sat", ("a", "cat")), ("down", ("the", "dog")), (EOS, ("cat", "sat")), ("zebra", ())]:
        expected = sum(lam * p.prob(token, ctx) for lam, p in zip(lams, parts))
        assert lm.prob(token, ctx) == pytest.approx(expected)


def test_unknown_words_and_min_count():
    lm = NGramLM(2, k=1, min_count=2).fit(CORPUS)
    assert lm.vocab == ["cat", "sat", "the", EOS, UNK]   # dog, a, down seen once → <unk>
    assert lm.prob("zebra", ("the",)) == lm.prob(UNK, ("the",)) == lm.prob("dog", ("the",))
    assert lm.counts[2][("the", UNK)] == 1


def test_short_context_is_left_padded():
    lm = NGramLM(3).fit(CORPUS)
    assert lm.prob("the", ()) == lm.prob("the", (BOS, BOS)) == pytest.approx(2 / 3)
    assert lm.prob("cat", ("the",)) == lm.prob("cat", (BOS, "the")) == pytest.approx(1 / 2)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    for V in (2, 7, 100):
        assert perplexity(lambda token, context: 1 / V, CORPUS, 3) == pytest.approx(V)
    # a model whose only parameters are k=∞-like smoothing is uniform too
    lm = NGramLM(2, k=1e9).fit(CORPUS)
    assert lm.perplexity([["cat", "dog", "zebra"]]) == pytest.approx(len(lm.vocab), rel=1e-6)


def test_perplexity_matches_an_independent_recomputation():
    lm = NGramLM(2, k=0.5).fit(CORPUS)
    test = [["the", "cat", "down"], ["a", "dog", "sat"]]
    # by hand: predict every token after <s>, including </s>; N = 3 + 1 + 3 + 1
    logs = []
    for s in test:
        seq = [BOS] + s + [EOS]
        logs += [math.log2(lm.prob(seq[i], (seq[i - 1],))) for i in range(1, len(seq))]
    bits = -sum(logs) / len(logs)                       # cross-entropy in bits per token
    assert len(logs) == 8
    assert lm.perplexity(test) == pytest.approx(2 ** bits)
    assert math.log(lm.perplexity(test)) == pytest.approx(bits * math.log(2))  # nats = bits · ln 2


def test_unsmoothed_model_gives_infinite_perplexity_on_unseen_ngrams():
    lm = NGramLM(2).fit(CORPUS)
    assert lm.perplexity([["the", "cat", "sat"]]) < math.inf
    assert lm.perplexity([["the", "sat"]]) == math.inf
    assert NGramLM(2, k=0.01).fit(CORPUS).perplexity([["the", "sat"]]) < math.inf


def test_temperature_by_hand():
    p = torch.tensor([0.5, 0.25, 0.25, 0.0], dtype=torch.float64)
    assert torch.allclose(apply_temperature(p, 1.0), p)
    # T = 0.5 squares the probabilities: 0.25, 0.0625, 0.0625 → / 0.375
    assert torch.allclose(apply_temperature(p, 0.5), torch.tensor([2 / 3, 1 / 6, 1 / 6, 0], dtype=torch.float64))
    assert apply_temperature(p, 1e4)[:3].sub(1 / 3).abs().max() < 1e-3   # → uniform over the possible tokens
    assert apply_temperature(p, 1e-3).argmax() == 0 and apply_temperature(p, 1e-3)[0] > 0.999
    assert apply_temperature(p, 0.3)[3] == 0


def test_temperature_matches_softmax_of_logits():
    logits = torch.randn(50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = logits.softmax(-1)
    for T in (0.3, 1.0, 2.5):
        assert torch.allclose(apply_temperature(p, T), (logits / T).softmax(-1))


def test_sampling_is_seeded_and_follows_the_distribution():
    p = torch.tensor([0.6, 0.3, 0.1, 0.0], dtype=torch.float64)
    draws = lambda seed, T: [sample_next(p, T, g) for g in [torch.Generator().manual_seed(seed)] for _ in range(4000)]
    a = draws(0, 1.0)
    assert a == draws(0, 1.0) and a != draws(1, 1.0)
    assert all(isinstance(d, int) for d in a) and 3 not in a
    freq = torch.bincount(torch.tensor(a), minlength=4).double() / len(a)
    assert torch.allclose(freq, p, atol=0.03)
    assert torch.bincount(torch.tensor(draws(0, 0.5)), minlength=4)[0] / 4000 == pytest.approx(0.8, abs=0.03)


def test_generate_is_reproducible_and_stops_at_end_token():
    lm = NGramLM(2, k=0.01).fit(CORPUS)
    a = lm.generate(seed=3, temperature=0.8)
    assert a == lm.generate(seed=3, temperature=0.8)
    assert EOS not in a and len(a) <= 30
    assert NGramLM(2).fit([["only", "this"]]).generate(seed=0) == ["only", "this"]


def test_fit_on_shakespeare_is_fast_enough():
    import time

    from llm_course.data import shakespeare
    sents = sentences_from_text(shakespeare()[:500_000])
    t = time.perf_counter()
    lm = NGramLM(3, k=0.01).fit(sents)
    assert time.perf_counter() - t < 10
    assert lm.distribution(["to", "be"]).sum().item() == pytest.approx(1.0)


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, -1, 2.0, True, "3"])
def test_bad_n(n):
    with pytest.raises(ValueError, match="n must be an int ≥ 1"):
        NGramLM(n)
    with pytest.raises(ValueError, match="n must be"):
        count_ngrams(CORPUS, n)


def test_empty_corpus():
    with pytest.raises(ValueError, match="sentences is empty"):
        NGramLM(2).fit([])
    with pytest.raises(ValueError, match="sentences is empty"):
        count_ngrams([], 2)
    with pytest.raises(TypeError, match="sentences must be a list of token lists"):
        count_ngrams("the cat sat", 2)


@pytest.mark.parametrize("k", [-0.1, float("nan"), "1"])
def test_bad_k(k):
    with pytest.raises(ValueError, match=r"k \(the add-k pseudo-count\) must be a number ≥ 0"):
        NGramLM(2, k=k)
    c = count_ngrams(CORPUS, 2)
    with pytest.raises(ValueError, match="k "):
        add_k_prob(c, context_counts(c), ("the",), "cat", k, 8)


@pytest.mark.parametrize("T", [0, -1.0, float("nan")])
def test_bad_temperature(T):
    p = torch.tensor([0.5, 0.5])
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        apply_temperature(p, T)
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        sample_next(p, T, torch.Generator())
    with pytest.raises(ValueError, match="temperature"):
        NGramLM(2).fit(CORPUS).generate(temperature=T)


def test_other_bad_input():
    with pytest.raises(ValueError, match="lambdas must be 3 non-negative weights"):
        NGramLM(3, lambdas=[0.5, 0.5])
    with pytest.raises(ValueError, match="lambdas"):
        NGramLM(2, lambdas=[1.2, -0.2])
    with pytest.raises(ValueError, match="min_count"):
        NGramLM(2, min_count=0)
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        add_k_prob(Counter(), Counter(), (), "a", 1, 0)
    with pytest.raises(RuntimeError, match="not fitted"):
        NGramLM(2).prob("a", ("b",))
    with pytest.raises(TypeError, match="text must be a str"):
        tokenize(["a"])
    with pytest.raises(ValueError, match="probs must be a non-empty 1-D tensor"):
        apply_temperature(torch.ones(2, 2) / 4, 1.0)


def test_replace_unknown():
    assert replace_unknown([["a", "b"], ["c"]], ["a", EOS, UNK]) == [["a", UNK], [UNK]]
