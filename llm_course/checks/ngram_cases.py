"""Cases for lab 02 (n-gram language models). Each piece compares the learner's code with
``llm_course.ngram`` on tiny corpora whose answers can be worked out by hand, and recognises
the classic mistakes by recomputing them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from llm_course import ngram as ref
from llm_course.checks.engine import Case, Reason, compare_tensor, piece
from llm_course.checks.remote import call_many

BOS, EOS = ref.BOS, ref.EOS

TINY = [["the", "cat", "sat"], ["the", "dog"], ["a", "cat", "sat", "down"]]
WORDS = ["the", "cat", "dog", "sat", "on", "a", "mat", "down", "and", "ran"]


def _random_corpus(gen: torch.Generator, n_sentences: int, max_len: int = 7) -> list[list[str]]:
    """Sentences of 0..max_len words drawn from WORDS (an empty sentence is allowed)."""
    out = []
    for _ in range(n_sentences):
        length = int(torch.randint(0, max_len + 1, (), generator=gen))
        out.append([WORDS[int(i)] for i in torch.randint(0, len(WORDS), (length,), generator=gen)])
    return out


def _compare_number(got, expected: float, what: str, known_mistakes: Sequence[tuple[str, float]] = ()) -> Reason:
    """compare_tensor for one number; infinities must match exactly."""
    if isinstance(got, Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return f"{what} should be a number (float), got {type(got).__name__}"
    if math.isinf(expected) or math.isinf(got):
        if got == expected:
            return None
        hints = [h for h, w in known_mistakes if w == got]
        return hints[0] if hints else (f"{what} should be infinite here: a token got probability 0, and one "
                                       "impossible token makes the whole text impossible (do not skip or clamp it)"
                                       if math.isinf(expected)
                                       else f"{what} is infinite, but it should be finite here")
    finite = [(h, torch.tensor([w], dtype=torch.float64)) for h, w in known_mistakes if math.isfinite(w)]
    return compare_tensor(torch.tensor([float(got)], dtype=torch.float64), torch.tensor([expected], dtype=torch.float64),
                          what, atol=1e-9, rtol=1e-6, known_mistakes=finite)


# --- 02.pad --------------------------------------------------------------------------------


@piece("02.pad", "pad a sentence with <s> and </s>")
def pad_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(sentence: list[str], n: int) -> Case:
        def run(fn) -> Reason:
            given = list(sentence)
            got = fn(given, n)
            if given != sentence:
                return "pad changed the sentence it was given (in place); build and return a new list"
            expected = ref.pad(sentence, n)
            if isinstance(got, tuple):
                got = list(got)
            if not isinstance(got, list):
                return f"pad should return a list of tokens, got {type(got).__name__}"
            if got == expected:
                return None
            mistakes = [
                ("no </s> at the end: the model must learn to predict the end of a sentence", [BOS] * (n - 1) + sentence),
                (f"one <s> regardless of n: an n-gram model needs n - 1 = {n - 1} of them", [BOS] + sentence + [EOS]),
                ("n <s> in front: an n-gram model needs n - 1 of them", [BOS] * n + sentence + [EOS]),
                ("n - 1 </s> at the end: one is enough, nothing is predicted after it",
                 [BOS] * (n - 1) + sentence + [EOS] * (n - 1)),
                ("<s> and </s> swapped: <s> goes in front, </s> at the end", [EOS] * (n - 1) + sentence + [BOS]),
            ]
            for hint, wrong in mistakes:
                if got == wrong:
                    return hint
            return f"pad(sentence of {len(sentence)} tokens, n={n}) gave {len(got)} tokens, expected {len(expected)}" \
                if len(got) != len(expected) else f"pad(sentence, n={n}) has the right length but wrong tokens"

        return Case(f"{len(sentence)}-token sentence, n = {n}", run)

    cases = [case(["to", "be"], 3), case(["hello"], 2), case(["a", "b", "c"], 1), case([], 3)]
    if extended:
        cases += [case(_random_corpus(gen, 1, 6)[0] or ["x"], n) for n in (2, 4, 5)]
    return cases


# --- 02.count_ngrams ----------------------------------------------------------------------


def _count_variant(sentences, n: int, mode: str) -> Counter:
    """The reference counts with one deliberate mistake."""
    counts: Counter = Counter()
    if mode == "joined":  # one long stream: n-grams run across sentence boundaries
        stream = [BOS] * (n - 1) + [w for s in sentences for w in s] + [EOS]
        return Counter(zip(*(stream[i:] for i in range(n))))
    for s in sentences:
        padded = {"no_eos": [BOS] * (n - 1) + list(s), "one_bos": [BOS] + list(s) + [EOS],
                  "no_bos": list(s) + [EOS], "n_bos": [BOS] * n + list(s) + [EOS]}[mode]
        counts.update(zip(*(padded[i:] for i in range(n))))
    return counts


COUNT_MISTAKES = {
    "no </s> n-grams: pad each sentence with </s> so the model learns where sentences end": "no_eos",
    "only one <s>: pad with n - 1 <s> so the first word has a full context": "one_bos",
    "no <s> n-grams: pad each sentence with n - 1 <s> in front": "no_bos",
    "n <s> in front: pad with n - 1 of them": "n_bos",
    "n-grams run across sentence boundaries: pad and count each sentence on its own": "joined",
}


def _count_case(name: str, sentences: list[list[str]], n: int) -> Case:
    def run(fn) -> Reason:
        copy = [list(s) for s in sentences]
        got = fn(copy, n)
        if copy != sentences:
            return "count_ngrams changed the sentences it was given"
        if not isinstance(got, dict):
            return f"count_ngrams should return a Counter, got {type(got).__name__}"
        expected = ref.count_ngrams(sentences, n)
        got = Counter({g: c for g, c in got.items() if c})
        if got == expected:
            return None
        bad_keys = [g for g in got if not (isinstance(g, tuple) and len(g) == n)]
        if bad_keys:
            return f"keys must be tuples of n = {n} tokens, got e.g. {type(bad_keys[0]).__name__} {bad_keys[0]!r:.40}"
        for hint, mode in COUNT_MISTAKES.items():
            if (mode != "n_bos" or n > 1) and got == _count_variant(sentences, n, mode):
                return hint
        diff = sum(1 for g in set(got) | set(expected) if got[g] != expected[g])
        return (f"{diff} n-gram counts are wrong (total {sum(got.values())}, expected one n-gram per token "
                f"plus one for </s> in every sentence)")

    return Case(name, run)


@piece("02.count_ngrams", "count n-grams of padded sentences")
def count_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _count_case("bigrams of a 3-sentence corpus", TINY, 2),
        _count_case("trigrams of a 3-sentence corpus", TINY, 3),
        _count_case("unigrams (n = 1: no <s>, but </s>)", TINY, 1),
        _count_case("a corpus with an empty sentence", [[], ["the", "cat"], []], 2),
        _count_case("random corpus, n = 3", _random_corpus(gen, 12), 3),
    ]
    if extended:
        cases += [_count_case(f"random corpus, n = {n}", _random_corpus(gen, 20), n) for n in (2, 4, 5)]
        cases.append(_count_case("one-word sentence, n = 4", [["hello"]], 4))
    return cases


# --- 02.prob -------------------------------------------------------------------------------

PROB_MISTAKES: dict[str, Callable[[int, int, float, int], float]] = {
    # (count of context+token, count of context, k, V) -> what the mistake computes
    "the denominator is missing k·V: every one of the V tokens gets k pseudo-counts, so add k·V below":
        lambda c, C, k, V: (c + k) / C,
    "k was added to the denominator only; add k to the count above as well": lambda c, C, k, V: c / (C + k * V),
    "k was added once to the denominator instead of k·V": lambda c, C, k, V: (c + k) / (C + k),
    "the denominator uses V + 1: the vocabulary already includes </s> and <unk>":
        lambda c, C, k, V: (c + k) / (C + k * (V + 1)),
}
UNSEEN_HINT = ("an unseen context with k = 0 has no data (0 / 0): return the uniform 1 / V, so the "
               "distribution still sums to 1")


def _prob_setup(sentences, n: int):
    counts = ref.count_ngrams(sentences, n)
    vocab = ref.build_vocab(sentences)
    return counts, ref.context_counts(counts), vocab


def _prob_case(name: str, sentences, n: int, context: tuple, token: str, k: float) -> Case:
    def run(fn) -> Reason:
        counts, totals, vocab = _prob_setup(sentences, n)
        V = len(vocab)
        got = fn(counts.copy(), totals.copy(), context, token, k, V)
        expected = ref.add_k_prob(counts, totals, context, token, k, V)
        c, C = counts[context + (token,)], totals[context]
        if C == 0 and k == 0 and isinstance(got, (int, float)) and got == 0:
            return UNSEEN_HINT
        mistakes = []
        for hint, mistake in PROB_MISTAKES.items():
            try:
                mistakes.append((hint, mistake(c, C, k, V)))
            except ZeroDivisionError:  # this mistake would have crashed, not returned a number
                pass
        mistakes = [(h, w) for h, w in mistakes if not math.isnan(w)]
        return _compare_number(got, expected, f"P({token!r} | {context!r})", mistakes)

    return Case(name, run)


def _sum_case(name: str, sentences, n: int, context: tuple, k: float) -> Case:
    def run(fn) -> Reason:
        counts, totals, vocab = _prob_setup(sentences, n)
        V = len(vocab)
        total = sum(fn(counts, totals, context, w, k, V) for w in vocab)
        if isinstance(total, (int, float)) and abs(total - 1) < 1e-9:
            return None
        if k == 0 and totals[context] == 0 and total == 0:
            return UNSEEN_HINT
        return (f"P(w | {context!r}) summed over the {V} vocabulary words (</s> and <unk> included) is "
                f"{total:.4g}, not 1")

    return Case(name, run)


@piece("02.prob", "add-k smoothed probability")
def prob_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _prob_case("MLE (k = 0) is the count ratio", TINY, 2, ("the",), "cat", 0),
        _prob_case("MLE of </s>", TINY, 2, ("sat",), EOS, 0),
        _prob_case("add-1, seen bigram", TINY, 2, ("cat",), "sat", 1),
        _prob_case("add-0.5, unseen bigram", TINY, 2, ("cat",), "dog", 0.5),
        _prob_case("add-0.1, unseen context", TINY, 3, ("dog", "sat"), "down", 0.1),
        _prob_case("MLE of an unseen bigram after a seen context", TINY, 2, ("down",), "the", 0),
        _prob_case("k = 0, unseen context", TINY, 2, ("mat",), "the", 0),
        _sum_case("sums to 1 over the vocabulary (seen context, k = 0.5)", TINY, 2, ("the",), 0.5),
        _sum_case("sums to 1 over the vocabulary (unseen context, k = 0)", TINY, 3, ("cat", "the"), 0),
    ]
    if extended:
        corpus = _random_corpus(gen, 25)
        k = round(float(torch.rand((), generator=gen)), 3) + 0.01
        cases += [
            _prob_case("random corpus, trigram, <s> context", corpus, 3, (BOS, BOS), "the", k),
            _prob_case("random corpus, trigram, MLE", corpus, 3, (BOS, "the"), "cat", 0),
            _prob_case("random corpus, 4-gram, unseen token", corpus, 4, ("the", "the", "the"), "<unk>", k),
            _sum_case("random corpus sums to 1 (seen context)", corpus, 3, (BOS, BOS), k),
            _sum_case("random corpus sums to 1 (MLE, seen context)", corpus, 2, ("cat",), 0),
        ]
    return cases


# --- 02.perplexity -------------------------------------------------------------------------


def _table_model(table: dict[tuple, dict[str, float]], n: int, floor: float):
    """A model from a table context → {token: p}; other tokens get ``floor``. Checks its inputs."""
    def prob(token, context):
        if not isinstance(context, tuple) or len(context) != n - 1:
            raise TypeError(f"the model's prob(token, context) wants context as a tuple of n - 1 = {n - 1} "
                            f"tokens, got {context!r:.60}")
        if token == BOS:
            raise ValueError("<s> is never predicted: start predicting at the first real token")
        return table.get(context, {}).get(token, floor)
    return prob


def _perplexity_variant(prob, sentences, n: int, mode: str) -> float:
    """The reference perplexity with one deliberate mistake."""
    logs, n_sent = [], len(sentences)
    for s in sentences:
        padded = [BOS] * (n - 1) + list(s) + ([] if mode == "no_eos" else [EOS])
        for i in range(n - 1, len(padded)):
            p = prob(padded[i], tuple(padded[i - n + 1:i]))
            if p <= 0:
                return math.inf
            logs.append(math.log(p))
    total, N = -sum(logs), len(logs)
    if N == 0:
        return math.nan
    return {"no_eos": math.exp(total / N), "no_exp": total / N, "bits_no_exp": total / N / math.log(2),
            "log2_exp": math.exp(total / N / math.log(2)), "log10_exp": math.exp(total / N / math.log(10)),
            "two_pow_nats": 2 ** (total / N), "sum": math.exp(total) if total < 700 else math.inf,
            "per_sentence": math.exp(total / n_sent) if total / n_sent < 700 else math.inf,
            "count_bos": math.exp(total / (N + (n - 1) * n_sent))}[mode]


PERPLEXITY_MISTAKES = {
    "</s> was not predicted: every sentence ends with a </s> the model must predict (and count)": "no_eos",
    "this is the cross-entropy, not the perplexity: exponentiate it": "no_exp",
    "this is the cross-entropy in bits, not the perplexity: compute 2 ** bits (or exp of nats)": "bits_no_exp",
    "log base mixed up: log2 with exp; use ln with exp (or log2 with 2 **)": "log2_exp",
    "log base mixed up: log10 with exp; use ln with exp": "log10_exp",
    "log base mixed up: natural log with 2 **; use ln with exp": "two_pow_nats",
    "not normalised: divide the total log-probability by the number of predicted tokens": "sum",
    "normalised by the number of sentences: divide by the number of predicted tokens": "per_sentence",
    "<s> was counted in N: only predicted tokens (the words and </s>) count": "count_bos",
}


def _perplexity_case(name: str, prob, sentences, n: int) -> Case:
    def run(fn) -> Reason:
        got = fn(prob, [list(s) for s in sentences], n)
        expected = ref.perplexity(prob, sentences, n)
        mistakes = [(h, _perplexity_variant(prob, sentences, n, mode)) for h, mode in PERPLEXITY_MISTAKES.items()]
        mistakes = [(h, w) for h, w in mistakes if not math.isnan(w) and w != expected]
        return _compare_number(got, expected, "perplexity", mistakes)

    return Case(name, run)


@piece("02.perplexity", "perplexity on held-out sentences")
def perplexity_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    vocab10 = _table_model({}, 2, 0.1)                         # uniform over 10 tokens: perplexity 10
    bigram = _table_model({(BOS,): {"to": 0.5, "be": 0.25}, ("to",): {"be": 0.8},
                           ("be",): {EOS: 0.5, "or": 0.25}, ("or",): {"not": 0.4}, ("not",): {"to": 0.3}}, 2, 0.01)
    trigram = _table_model({(BOS, BOS): {"to": 0.6}, (BOS, "to"): {"be": 0.9}, ("to", "be"): {EOS: 0.7}}, 3, 0.05)
    zero = _table_model({(BOS,): {"to": 1.0}, ("to",): {"be": 0.5, EOS: 0.5}, ("be",): {EOS: 1.0}}, 2, 0.0)
    cases = [
        _perplexity_case("uniform model over 10 tokens: perplexity = 10", vocab10, [["a", "b", "c"], ["d"]], 2),
        _perplexity_case("hand-made bigram model", bigram, [["to", "be"], ["to", "be", "or", "not", "to", "be"]], 2),
        _perplexity_case("hand-made trigram model", trigram, [["to", "be"], ["be", "to"]], 3),
        _perplexity_case("unigram model (n = 1, empty context)",
                         _table_model({(): {"a": 0.5, "b": 0.3, EOS: 0.2}}, 1, 0.0), [["a", "b", "a"], ["b"]], 1),
        _perplexity_case("a token of probability 0: infinite perplexity", zero, [["to", "be"], ["to", "not"]], 2),
    ]
    if extended:
        corpus = _random_corpus(gen, 15)
        lm = ref.NGramLM(3, k=0.3).fit(corpus)
        cases += [
            _perplexity_case("add-k trigram model on its own corpus", lm.prob, corpus, 3),
            _perplexity_case("add-k trigram model on new sentences", lm.prob, _random_corpus(gen, 8), 3),
            _perplexity_case("an empty sentence (only </s> is predicted)", bigram, [[]], 2),
            _perplexity_case("uniform model over 10 tokens, n = 4", _table_model({}, 4, 0.1), _random_corpus(gen, 5), 4),
        ]
    return cases


# --- 02.temperature and 02.sample --------------------------------------------------------


def _temperature_mistakes(p: Tensor, T: float) -> list[tuple[str, Tensor]]:
    p = p.double()
    return [
        ("temperature had no effect: it must divide the log-probabilities (logits) before normalising, "
         "not the probabilities after", p),
        ("multiplied by the temperature instead of dividing: p^T, but it should be p^(1/T)", p ** T / (p ** T).sum()),
        ("not renormalised: the result must sum to 1", p / T),
        ("not renormalised: the result must sum to 1", p ** (1 / T)),
        ("softmax of the probabilities themselves: take the log first (log-probabilities are the logits)",
         torch.softmax(p / T, -1)),
    ]


def _temperature_case(name: str, probs: Tensor, T: float) -> Case:
    def run(fn) -> Reason:
        got = fn(probs.clone(), T)
        expected = ref.apply_temperature(probs, T)
        reason = compare_tensor(got, expected, f"apply_temperature(probs, {T})", atol=1e-6,
                                known_mistakes=_temperature_mistakes(probs, T))
        if reason and isinstance(got, Tensor) and got.shape == expected.shape:
            got = got.detach().double()
            if torch.isnan(got).any() and not (probs > 0).all():
                return "NaN: tokens of probability 0 must stay at 0 (log 0 = -inf is fine inside a softmax)"
            if ((probs == 0) & (got.abs() > 1e-12)).any():
                return "a token of probability 0 got probability: it must stay at 0 at every temperature"
        return reason

    return Case(name, run)


def _probs(gen: torch.Generator, V: int, zeros: int = 0) -> Tensor:
    p = torch.rand(V, generator=gen, dtype=torch.float64) ** 2 + 0.01
    p[:zeros] = 0
    return p / p.sum()


@piece("02.temperature", "temperature")
def temperature_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    p = torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64)
    cases = [
        _temperature_case("T = 1 leaves the distribution unchanged", p, 1.0),
        _temperature_case("T = 0.5 sharpens", p, 0.5),
        _temperature_case("T = 2 flattens", p, 2.0),
        _temperature_case("zero-probability tokens, T = 0.7", torch.tensor([0.0, 0.6, 0.0, 0.4], dtype=torch.float64),
                          0.7),
    ]
    if extended:
        cases += [
            _temperature_case("20 tokens, T = 1.3", _probs(gen, 20), 1.3),
            _temperature_case("float32 input, T = 0.8", _probs(gen, 12).float(), 0.8),
            _temperature_case("tiny T = 0.05 (is it stable?)", _probs(gen, 30, zeros=3), 0.05),
            _temperature_case("large T = 50", _probs(gen, 8), 50.0),
        ]
    return cases


def _draws(fn, probs: Tensor, T: float, n: int, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    # n calls, each with its own copy of probs; one round trip when fn lives in another
    # process (see checks.remote)
    call = ((probs, T, g), {})
    return call_many(fn, [call] * n)


def _frequencies(draws: list[int], V: int) -> Tensor:
    return torch.bincount(torch.tensor(draws), minlength=V).double() / len(draws)


def _sample_case(name: str, probs: Tensor, T: float, n_draws: int, seed: int) -> Case:
    def run(fn) -> Reason:
        draws = _draws(fn, probs, T, n_draws, seed)
        bad = [d for d in draws if isinstance(d, bool) or not isinstance(d, int)]
        if bad:
            return f"sample_next should return a Python int (use int(...) or .item()), got {type(bad[0]).__name__}"
        V = probs.numel()
        if not all(0 <= d < V for d in draws):
            return f"sample_next returned an index outside 0..{V - 1}"
        freq = _frequencies(draws, V)
        expected = ref.apply_temperature(probs, T).double()
        tv = 0.5 * (freq - expected).abs().sum().item()  # total variation distance
        if tv < 0.04:
            return None
        p = probs.double()
        others = {
            "the draws follow the model's own distribution: the temperature was ignored (or applied to the "
            "probabilities after normalising, which changes nothing)": p,
            "the draws follow p^T: divide the log-probabilities by T, do not multiply": p ** T / (p ** T).sum(),
            "always the most likely token: that is greedy decoding, not sampling": torch.nn.functional.one_hot(
                p.argmax(), V).double(),
            "the draws are uniform: sample in proportion to the probabilities": torch.full((V,), 1.0 / V,
                                                                                          dtype=torch.float64),
        }
        dist = {hint: 0.5 * (freq - q).abs().sum().item() for hint, q in others.items()}
        hint = min(dist, key=dist.get)
        if dist[hint] < 0.04:
            return hint
        return f"over {n_draws} draws the frequencies are {tv:.2f} (total variation) away from the tempered distribution"

    return Case(name, run)


def _reproducible_case(probs: Tensor) -> Case:
    def run(fn) -> Reason:
        a, b = _draws(fn, probs, 1.0, 40, 123), _draws(fn, probs, 1.0, 40, 123)
        if a != b:
            return "two generators with the same seed gave different draws: pass generator=generator to the sampler"
        if a == _draws(fn, probs, 1.0, 40, 321):
            return "different seeds gave the same 40 draws: is the generator used?"
        return None

    return Case("same seed → same draws (the generator is used)", run)


@piece("02.sample", "sample the next token")
def sample_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    p = torch.tensor([0.5, 0.25, 0.15, 0.1], dtype=torch.float64)
    seed = int(torch.randint(0, 10_000, (), generator=gen))
    cases = [
        _sample_case("frequencies match probs at T = 1", p, 1.0, 3000, seed),
        _sample_case("T = 0.4 sharpens", p, 0.4, 3000, seed + 1),
        _sample_case("T = 3 flattens", p, 3.0, 3000, seed + 2),
        _reproducible_case(p),
    ]
    if extended:
        cases += [
            _sample_case("zero-probability tokens are never drawn", torch.tensor([0.0, 0.7, 0.0, 0.3],
                                                                                 dtype=torch.float64), 1.5, 2000, seed + 3),
            _sample_case("T = 0.01 is (almost) greedy", _probs(gen, 6), 0.01, 500, seed + 4),
            _sample_case("10 tokens, T = 1.7", _probs(gen, 10), 1.7, 6000, seed + 5),
        ]
    return cases
