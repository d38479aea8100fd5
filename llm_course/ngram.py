"""n-gram language models: counting, smoothing, perplexity, sampling (chapter 02).

A language model gives P(next token | the tokens before it). An n-gram model assumes the
next token depends only on the previous n - 1 tokens and estimates that from counts:

    P(w | h) = count(h + w) / count(h · anything)          (maximum likelihood, MLE)

Vocabulary of names used throughout:

    sentence:  a list of tokens (str), e.g. ["to", "be", "or", "not"]; here one line of text
    context:   a tuple of the n - 1 tokens before the predicted one, e.g. ("or", "not")
    n-gram:    a tuple of n tokens, the context followed by the predicted token
    <s>, </s>: padding. Each sentence gets n - 1 ``<s>`` in front, so its first word has a
               full context, and one ``</s>`` at the end, so the model learns where
               sentences stop (and its probabilities over "all sentences" sum to 1).
    <unk>:     stands in for every word outside the vocabulary.

The vocabulary the model predicts over is the training words plus ``</s>`` and ``<unk>``
(never ``<s>``: it is only ever a context). ``NGramLM`` puts the pieces together; the
functions are the pieces the lab asks for.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

BOS, EOS, UNK = "<s>", "</s>", "<unk>"

# A word is letters with inner apostrophes ("o'er", "father's"); a number is digits;
# every other non-space character (punctuation) is a token of its own. Text is lowercased
# first, so "The" and "the" share one count.
WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*|[0-9]+|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lowercased words and punctuation: ``tokenize("O'er the hill!") == ["o'er", "the", "hill", "!"]``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return WORD_RE.findall(text.lower())


def sentences_from_text(text: str) -> list[list[str]]:
    """One tokenized sentence per non-empty line (verse lines, in Shakespeare)."""
    return [toks for line in text.splitlines() if (toks := tokenize(line))]


def _check_n(n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int ≥ 1 (1 = unigram, 2 = bigram, ...), got {n!r}")


def _check_sentences(sentences: object) -> None:
    if isinstance(sentences, str) or not isinstance(sentences, Sequence):
        raise TypeError("sentences must be a list of token lists, e.g. [['to', 'be'], ['or', 'not']], "
                        f"got {type(sentences).__name__}")
    if not sentences:
        raise ValueError("sentences is empty: an n-gram model needs at least one sentence")


def _check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not k >= 0:
        raise ValueError(f"k (the add-k pseudo-count) must be a number ≥ 0, got {k!r}")


def _check_temperature(temperature: object) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0 (1 = the model's own distribution), got {temperature!r}")


def pad(sentence: Sequence[str], n: int) -> list[str]:
    """A new list ``[<s>] * (n - 1) + sentence + [</s>]``; ``pad(["hi"], 3) == ["<s>", "<s>", "hi", "</s>"]``.

    n − 1 ``<s>`` give the first token a full context of n − 1 tokens; one ``</s>`` is
    enough to predict the end (nothing is predicted after it).
    """
    _check_n(n)
    return [BOS] * (n - 1) + list(sentence) + [EOS]


def build_vocab(sentences: Sequence[Sequence[str]], min_count: int = 1) -> list[str]:
    """The tokens a model predicts: words seen ≥ ``min_count`` times (sorted), then ``</s>``, ``<unk>``."""
    _check_sentences(sentences)
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be an int ≥ 1, got {min_count!r}")
    words = Counter(w for s in sentences for w in s)
    return sorted(w for w, c in words.items() if c >= min_count and w not in (BOS, EOS, UNK)) + [EOS, UNK]


def replace_unknown(sentences: Sequence[Sequence[str]], vocab: Iterable[str]) -> list[list[str]]:
    """The sentences with every word outside ``vocab`` replaced by ``<unk>``."""
    known = set(vocab)
    return [[w if w in known else UNK for w in s] for s in sentences]


def count_ngrams(sentences: Sequence[Sequence[str]], n: int) -> Counter:
    """Counter of every n-gram (a tuple of n tokens) in the padded sentences.

    Each sentence is padded on its own, so no n-gram spans two sentences. A sentence of
    L tokens contributes L + 1 n-grams (one per real token, one for ``</s>``), whatever n.

    >>> count_ngrams([["a", "b"]], 2) == Counter({("<s>", "a"): 1, ("a", "b"): 1, ("b", "</s>"): 1})
    True
    """
    _check_n(n)
    _check_sentences(sentences)
    counts: Counter = Counter()
    for sentence in sentences:
        padded = pad(sentence, n)
        # n staggered copies of the padded sentence, zipped, are its n-grams
        counts.update(zip(*(padded[i:] for i in range(n))))
    return counts


def context_counts(ngram_counts: Counter) -> Counter:
    """How often each context (the first n - 1 tokens of an n-gram) is followed by anything.

    This, not the context's count as an (n-1)-gram, is the MLE denominator: a context such
    as ("king", "</s>") occurs as a bigram but is never followed by a token.
    """
    totals: Counter = Counter()
    for gram, c in ngram_counts.items():
        totals[gram[:-1]] += c
    return totals


def add_k_prob(ngram_counts: Counter, context_totals: Counter, context: tuple[str, ...], token: str,
               k: float, vocab_size: int) -> float:
    """Add-k smoothed P(token | context) = (c(context + token) + k) / (c(context) + k·V).

    Every one of the V tokens of the vocabulary gets k pseudo-counts, so the denominator
    grows by k·V and the V probabilities still sum to 1. k = 0 is the MLE (count ratio);
    k = 1 is Laplace smoothing. A context never seen with k = 0 has no data (0 / 0): it
    gets the uniform distribution 1 / V.
    """
    _check_k(k)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int, got {vocab_size!r}")
    denominator = context_totals[context] + k * vocab_size
    if denominator == 0:
        return 1.0 / vocab_size
    return (ngram_counts[context + (token,)] + k) / denominator


def perplexity(prob: Callable[[str, tuple[str, ...]], float], sentences: Sequence[Sequence[str]], n: int) -> float:
    """exp(−(1/N) Σ ln P(token | its n − 1 previous tokens)) over the padded sentences.

    N counts every predicted token, ``</s>`` included, ``<s>`` never (it is not predicted).
    ``prob(token, context)`` is the model; ``context`` is a tuple of n - 1 tokens. One
    zero probability makes the perplexity infinite: the model calls that text impossible.
    """
    _check_n(n)
    _check_sentences(sentences)
    total_log, count = 0.0, 0
    for sentence in sentences:
        padded = pad(sentence, n)
        for i in range(n - 1, len(padded)):
            p = prob(padded[i], tuple(padded[i - n + 1:i]))
            if p <= 0.0:
                return math.inf
            total_log += math.log(p)
            count += 1
    return math.exp(-total_log / count)


def apply_temperature(probs: Tensor, temperature: float) -> Tensor:
    """p^(1/T), renormalised: the softmax of log p / T. T < 1 sharpens, T > 1 flattens.

    Temperature divides the log-probabilities (the logits) before they are normalised;
    dividing the probabilities themselves would change nothing once they are renormalised.
    Tokens of probability 0 stay at 0 (log 0 = −∞), at every temperature.
    """
    _check_temperature(temperature)
    if not isinstance(probs, Tensor) or probs.dim() != 1 or probs.numel() == 0:
        raise ValueError(f"probs must be a non-empty 1-D tensor, got {probs!r:.60}")
    return torch.softmax(probs.double().log() / temperature, dim=-1).to(probs.dtype)


def sample_next(probs: Tensor, temperature: float, generator: torch.Generator) -> int:
    """Draw the index of the next token from ``probs`` (shape (V,)) at the given temperature.

    Temper the distribution with ``apply_temperature``, then draw one index with
    ``torch.multinomial(..., generator=generator)``: the generator makes the draw
    repeatable (the same seed gives the same tokens).
    """
    _check_temperature(temperature)
    return int(torch.multinomial(apply_temperature(probs, temperature), 1, generator=generator))


class NGramLM:
    """An n-gram language model with add-k smoothing and optional linear interpolation.

    Args:
        n: the order (1 = unigram, 2 = bigram, 3 = trigram, ...).
        k: add-k pseudo-count for every order (0 = unsmoothed MLE).
        lambdas: interpolation weights for orders 1..n (length n, non-negative, sum 1):
            P(w | h) = Σ_m λ_m · P_m(w | last m − 1 tokens of h). None = order n only.
        min_count: training words seen fewer times become ``<unk>``, so that ``<unk>`` has
            real counts for the unknown words of new text.

    >>> lm = NGramLM(2, k=1).fit([["a", "b"], ["a"]])
    >>> lm.vocab, round(lm.prob("b", ("a",)), 3)
    (['a', 'b', '</s>', '<unk>'], 0.333)
    """

    def __init__(self, n: int, *, k: float = 0.0, lambdas: Sequence[float] | None = None, min_count: int = 1):
        _check_n(n)
        _check_k(k)
        if lambdas is not None:
            lambdas = [float(x) for x in lambdas]
            if len(lambdas) != n or min(lambdas) < 0 or not math.isclose(sum(lambdas), 1.0, abs_tol=1e-9):
                raise ValueError(f"lambdas must be {n} non-negative weights (orders 1..{n}) summing to 1, "
                                 f"got {lambdas}")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an int ≥ 1, got {min_count!r}")
        self.n, self.k, self.lambdas, self.min_count = n, float(k), lambdas, min_count
        self.vocab: list[str] = []
        self.index: dict[str, int] = {}

    def fit(self, sentences: Sequence[Sequence[str]]) -> NGramLM:
        """Count the n-grams of every order 1..n (each order padded with its own m − 1 ``<s>``)."""
        self.vocab = build_vocab(sentences, self.min_count)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        mapped = replace_unknown(sentences, self.index)
        orders = range(1, self.n + 1) if self.lambdas else [self.n]
        self.counts = {m: count_ngrams(mapped, m) for m in orders}
        self.totals = {m: context_counts(self.counts[m]) for m in orders}
        # context → {token: count}, for building a whole next-token distribution at once
        self._followers: dict[int, dict[tuple, dict[str, int]]] = {m: {} for m in orders}
        for m in orders:
            for gram, c in self.counts[m].items():
                self._followers[m].setdefault(gram[:-1], {})[gram[-1]] = c
        return self

    def _context(self, context: Sequence[str], m: int) -> tuple[str, ...]:
        """The last m − 1 tokens of ``context``, left-padded with ``<s>``, unknown words mapped."""
        ctx = [w if w == BOS else (w if w in self.index else UNK) for w in context][-(m - 1):] if m > 1 else []
        return tuple([BOS] * (m - 1 - len(ctx)) + ctx)

    def prob(self, token: str, context: Sequence[str] = ()) -> float:
        """P(token | context). Only the last n − 1 tokens of ``context`` matter; a shorter
        context is treated as the start of a sentence (left-padded with ``<s>``)."""
        if not self.vocab:
            raise RuntimeError("the model is not fitted yet: call fit(sentences) first")
        token = token if token in self.index else UNK
        V = len(self.vocab)
        if self.lambdas is None:
            return add_k_prob(self.counts[self.n], self.totals[self.n], self._context(context, self.n), token,
                              self.k, V)
        return sum(lam * add_k_prob(self.counts[m], self.totals[m], self._context(context, m), token, self.k, V)
                   for m, lam in zip(range(1, self.n + 1), self.lambdas) if lam)

    def distribution(self, context: Sequence[str] = ()) -> Tensor:
        """P(· | context) over ``self.vocab``: a float64 tensor of shape (V,) that sums to 1."""
        if not self.vocab:
            raise RuntimeError("the model is not fitted yet: call fit(sentences) first")
        V = len(self.vocab)
        out = torch.zeros(V, dtype=torch.float64)
        weights = zip(range(1, self.n + 1), self.lambdas) if self.lambdas else [(self.n, 1.0)]
        for m, lam in weights:
            if not lam:
                continue
            ctx = self._context(context, m)
            denominator = self.totals[m][ctx] + self.k * V
            if denominator == 0:  # unseen context, no smoothing: uniform, as in add_k_prob
                out += lam / V
                continue
            counts = torch.full((V,), self.k, dtype=torch.float64)
            followers = self._followers[m].get(ctx, {})
            counts[[self.index[w] for w in followers]] += torch.tensor(list(followers.values()), dtype=torch.float64)
            out += lam * counts / denominator
        return out

    def perplexity(self, sentences: Sequence[Sequence[str]]) -> float:
        """Perplexity on held-out sentences (unknown words count as ``<unk>``)."""
        return perplexity(self.prob, sentences, self.n)

    def generate(self, *, temperature: float = 1.0, seed: int = 0, max_tokens: int = 30,
                 prompt: Iterable[str] = ()) -> list[str]:
        """Sample one sentence, token by token, until ``</s>`` or ``max_tokens`` new tokens."""
        _check_temperature(temperature)
        generator = torch.Generator().manual_seed(seed)
        out = list(prompt)
        for _ in range(max_tokens):
            token = self.vocab[sample_next(self.distribution(out), temperature, generator)]
            if token == EOS:
                break
            out.append(token)
        return out
