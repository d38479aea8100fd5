"""The three challenges of deploying LLMs (chapter 16), each with a remedy you can run.

    data security   find_pii / redact       emails, phone numbers (incl. Chinese mobiles),
                                            Chinese resident ID numbers, bank cards — found by
                                            pattern, confirmed by checksum
    cost            training_cost,          6·N·D FLOPs → GPU-hours → money; the two bounds on
                    inference_cost          decoding speed (compute and memory bandwidth)
    trustworthiness check_grounding,        is each sentence of an answer supported by the
                    judge_claim             retrieved sources? similar enough (MiniLM) AND every
                                            number and name it states is in the cited source

A pattern alone over-detects: any 16 digits look like a card and any 18 like an ID number.
The checksums (Luhn for cards, ISO 7064 MOD 11-2 for Chinese IDs) reject ~90 % of random
look-alikes, which is what turns a regex into a usable detector.
"""

from __future__ import annotations

import datetime
import functools
import math
import re
from dataclasses import dataclass

from llm_course.attention import _describe
from llm_course.efficiency import A100_BF16_FLOPS, gpu_days

# Defaults of the cost calculator. The peak is NVIDIA's A100 datasheet figure (chapter 11's
# constant); the bandwidth is the A100 80 GB's HBM2e, 1,935 GB/s (PCIe) to 2,039 GB/s (SXM) on
# the same datasheet, rounded; 40 % utilisation is typical of large runs (PaLM reported 46.2 %
# model FLOPs utilisation, Chowdhery et al. 2022). The price is an ASSUMPTION, not a quote:
# rented A100-hours vary by provider, commitment and year — pass your own.
A100_BANDWIDTH = 2.0e12          # bytes/s
DEFAULT_UTILISATION = 0.4
DEFAULT_PRICE_PER_GPU_HOUR = 2.0  # USD, assumed

PII_KINDS = ("email", "phone", "cn_mobile", "cn_id", "bank_card")
PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "cn_mobile": "[PHONE]", "cn_id": "[ID]",
                "bank_card": "[CARD]"}

# Check digits of a Chinese resident ID (GB 11643-1999): weights 2^(17-i) mod 11, and the
# character for each remainder of the weighted sum mod 11.
CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CN_ID_CHECK = "10X98765432"


# --------------------------------------------------------------------------- checksums
def luhn_valid(number: str) -> bool:
    """The Luhn check used by payment cards: from the right, double every second digit
    (subtracting 9 when that gives two digits); the total must be a multiple of 10.
    Spaces and dashes are ignored.

    >>> luhn_valid("4111 1111 1111 1111"), luhn_valid("4111 1111 1111 1112")
    (True, False)
    """
    digits = _digits_only("number", number)
    if not digits:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def cn_id_valid(number: str) -> bool:
    """A Chinese resident ID number (居民身份证号码, 18 characters): 6-digit region, 8-digit
    birth date, 3-digit sequence, 1 check character (0-9 or X) that must match the weighted
    sum of the first 17 digits mod 11, and the birth date must be a real past date.

    >>> cn_id_valid("11010519491231002X")  # the standard's worked example
    True
    """
    if not isinstance(number, str):
        raise TypeError(f"number must be a str, got {_describe(number)}")
    if not re.fullmatch(r"\d{17}[\dXx]", number):
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], CN_ID_WEIGHTS))
    if CN_ID_CHECK[total % 11] != number[17].upper():
        return False
    try:
        born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= born <= datetime.date.today()


def _digits_only(name: str, number: object) -> str:
    if not isinstance(number, str):
        raise TypeError(f"{name} must be a str, got {_describe(number)}")
    digits = re.sub(r"[ \-]", "", number)
    return digits if digits.isdigit() else ""


# --------------------------------------------------------------------------- finding PII
@dataclass(frozen=True)
class PIISpan:
    start: int
    end: int
    kind: str
    text: str


@functools.cache
def pii_patterns() -> dict[str, re.Pattern]:
    """One compiled pattern per kind, in priority order: when two candidates overlap, the
    earlier kind wins (a valid 18-character ID beats a card-shaped reading of its digits).

    Every pattern is bounded so that it never starts or ends inside a longer run of digits or
    letters. The lookarounds use ASCII classes, not \\w: in Python \\w also matches Chinese
    characters, and a number right after "电话" or "邮箱" must still be found.
    """
    return {
        "email": re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                            r"\.[A-Za-z]{2,}(?![A-Za-z0-9-])"),
        "cn_id": re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])"),
        # 13-19 digits, in one run or in groups as printed on cards (4-4-4-4, 4-6-5, ...) with one
        # kind of separator; a leading + or - means a phone number or a code, a trailing X an ID.
        # The first digit (ISO/IEC 7812's major industry identifier) is never 0 on a payment card;
        # 00 starts an international call (0086 138...).
        "bank_card": re.compile(r"(?<![0-9A-Za-z+-])(?:[1-9]\d{12,18}|[1-9]\d{3}([ -])\d{4,6}(?:\1\d{1,6}){1,3})"
                                r"(?![0-9A-Za-z-])"),
        # +86 / 0086 optional; 1, then 3-9, then 9 digits, optionally grouped 3-4-4
        "cn_mobile": re.compile(r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"),
        # North American numbers — (415) 555-0132, 415.555.0132, 4155550132, +1 415 555 0132,
        # 001-415-555-0132, with an optional extension; area code and exchange never start with
        # 0 or 1 (the North American Numbering Plan) — and other international numbers
        # written with + and a country code (E.164 allows at most 15 digits in all).
        "phone": re.compile(r"(?<![A-Za-z0-9+])(?:(?:\+?1|001)[ .-]?)?(?:\([2-9]\d{2}\)\s?|[2-9]\d{2}[ .-]?)"
                            r"[2-9]\d{2}[ .-]?\d{4}"
                            r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?!\d)"
                            r"|(?<![A-Za-z0-9+])\+(?!86)[1-9]\d{0,2}(?:[ .-]?\d{2,4}){2,4}(?!\d)"),
    }


# Words that say "the number after me is an identity document, not a card". A Luhn-valid run of
# digits right after one of them is not reported as a card: one 18-digit run in ten passes Luhn
# by chance, so a mistyped ID number (wrong check character) would otherwise come out as a card.
_ID_CONTEXT = re.compile(r"身份证|证件|\bID\b|(?i:\bidentity)")
_CARD_CONTEXT = re.compile(r"卡|card", re.IGNORECASE)


def _valid(kind: str, text: str, match: re.Match) -> bool:
    """Confirm a pattern's candidate: checksums for IDs and cards, context for cards."""
    if kind == "cn_id":
        return cn_id_valid(match.group())
    if kind == "bank_card":
        if not (13 <= sum(c.isdigit() for c in match.group()) <= 19 and luhn_valid(match.group())):
            return False
        # the words between the previous number (at most 12 characters back) and this one
        before = re.split(r"\d", text[max(0, match.start() - 12):match.start()])[-1]
        return not (_ID_CONTEXT.search(before) and not _CARD_CONTEXT.search(before))
    return True


def find_pii(text: str, kinds: tuple[str, ...] | list[str] = PII_KINDS) -> list[PIISpan]:
    """The personal data in ``text``: non-overlapping spans sorted by start.

    kinds: which of ``PII_KINDS`` to look for.
    """
    _check_text(text)
    _check_kinds(kinds)
    found: list[PIISpan] = []
    taken = [False] * len(text)
    for kind, pattern in pii_patterns().items():
        if kind not in kinds:
            continue
        for m in pattern.finditer(text):
            if _valid(kind, text, m) and not any(taken[m.start():m.end()]):
                found.append(PIISpan(m.start(), m.end(), kind, m.group()))
                taken[m.start():m.end()] = [True] * (m.end() - m.start())
    return sorted(found, key=lambda s: s.start)


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {_describe(text)}")


def _check_kinds(kinds: object) -> None:
    if isinstance(kinds, str) or not isinstance(kinds, (list, tuple)):
        raise TypeError(f"kinds must be a list or tuple of {PII_KINDS}, got {_describe(kinds)}")
    unknown = [k for k in kinds if k not in PII_KINDS]
    if unknown:
        raise ValueError(f"kinds must be a list of {PII_KINDS}, got unknown {unknown!r}")


def redact(text: str, kinds: tuple[str, ...] | list[str] = PII_KINDS) -> str:
    """``text`` with every PII span replaced by a placeholder such as ``[EMAIL]``."""
    out, last = [], 0
    for span in find_pii(text, kinds):
        out += [text[last:span.start], PLACEHOLDERS[span.kind]]
        last = span.end
    return "".join(out) + text[last:]


def pii_scores(predicted: list[list[tuple[int, int, str]]], gold: list[list[tuple[int, int, str]]]
               ) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per kind (and "all"), counting a predicted span as correct only
    if a gold span has exactly the same start, end and kind.

    predicted, gold: per sentence, a list of (start, end, kind).
    """
    if len(predicted) != len(gold):
        raise ValueError(f"predicted and gold must have one list per sentence: {len(predicted)} vs {len(gold)}")
    scores = {}
    for kind in (*sorted({k for g in gold for *_, k in g} | {k for p in predicted for *_, k in p}), "all"):
        tp = fp = fn = 0
        for p, g in zip(predicted, gold):
            p = {s for s in p if kind in ("all", s[2])}
            g = {s for s in g if kind in ("all", s[2])}
            tp, fp, fn = tp + len(p & g), fp + len(p - g), fn + len(g - p)
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[kind] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    return scores


# --------------------------------------------------------------------------- cost
def training_cost(n_params: float, n_tokens: float, peak_flops: float = A100_BF16_FLOPS,
                  utilisation: float = DEFAULT_UTILISATION,
                  price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR) -> dict[str, float]:
    """What training a dense transformer costs: ≈ 6 FLOPs per parameter per token (2 in the
    forward pass, 4 in the backward), divided by what the hardware really delivers.

    Returns {"flops", "gpu_hours", "cost"}; ``cost`` is in the currency of ``price_per_gpu_hour``.
    """
    _check_positive("n_params", n_params)
    _check_positive("n_tokens", n_tokens)
    _check_positive("peak_flops", peak_flops)
    _check_positive("price_per_gpu_hour", price_per_gpu_hour, allow_zero=True)
    flops = 6.0 * n_params * n_tokens
    hours = gpu_days(flops, peak_flops, utilisation) * 24
    return {"flops": flops, "gpu_hours": hours, "cost": hours * price_per_gpu_hour}


def inference_cost(n_params: float, n_tokens: float, batch: int = 1, bytes_per_param: float = 2.0,
                   peak_flops: float = A100_BF16_FLOPS, bandwidth: float = A100_BANDWIDTH,
                   utilisation: float = DEFAULT_UTILISATION,
                   price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR) -> dict[str, float]:
    """What generating ``n_tokens`` tokens costs on one accelerator, decoding ``batch`` sequences
    at a time.

    Each decoding step does 2·N FLOPs per sequence (compute bound) AND reads every weight once
    from memory, whatever the batch (memory bound: N·bytes_per_param / bandwidth seconds). The
    slower of the two sets the speed; at small batches it is memory — why batching requests is
    the main lever on serving cost. KV-cache reads and attention are ignored (short contexts).

    Returns {"tokens_per_second", "bound" ("compute" or "memory"), "gpu_hours", "cost",
    "cost_per_million_tokens"}.
    """
    _check_positive("n_params", n_params)
    _check_positive("n_tokens", n_tokens)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {_describe(batch)}")
    _check_positive("bytes_per_param", bytes_per_param)
    _check_positive("peak_flops", peak_flops)
    _check_positive("bandwidth", bandwidth)
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1], got {_describe(utilisation)}")
    _check_positive("price_per_gpu_hour", price_per_gpu_hour, allow_zero=True)
    compute_step = batch * 2.0 * n_params / (peak_flops * utilisation)
    memory_step = n_params * bytes_per_param / bandwidth
    step = max(compute_step, memory_step)
    rate = batch / step
    hours = n_tokens / rate / 3600
    cost = hours * price_per_gpu_hour
    return {"tokens_per_second": rate, "bound": "compute" if compute_step >= memory_step else "memory",
            "gpu_hours": hours, "cost": cost, "cost_per_million_tokens": cost / n_tokens * 1e6}


def _check_positive(name: str, value: object, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, "
                         f"got {_describe(value)}")


# --------------------------------------------------------------------------- grounding
@dataclass(frozen=True)
class ClaimCheck:
    claim: str
    supported: bool
    source: int | None          # index of the best-matching source (the citation), None if none
    similarity: float           # cosine similarity of the claim with that source (MiniLM)
    missing: tuple[str, ...]    # numbers and names in the claim that the cited source does not contain


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")
# 1,234 / 3.14 / 3.14e23 / 6B: digits with thousands separators, a decimal part, an exponent
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][+-]?\d+)?")
# a name: a Latin word with a capital letter or a digit after its first character (GPT-3,
# LLaMA, OpenAI, ChatGLM, iPhone) or a capitalised word that does not start the sentence
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*")


def split_claims(answer: str) -> list[str]:
    """The sentences of an answer (English or Chinese punctuation), each one claim."""
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a str, got {_describe(answer)}")
    return [s.strip() for s in _SENTENCE_END.split(answer) if s.strip()]


def numbers_in(text: str) -> set[str]:
    """The numbers a text states, normalised so that "130,528" and "130528" are the same."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {_describe(text)}")
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def names_in(text: str) -> set[str]:
    """The names a text mentions (lower-cased): words with an inner capital or digit (GPT-3,
    OpenAI, LLaMA) anywhere, and capitalised words (Meta, Baichuan) that do not start a
    sentence (where every word is capitalised)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {_describe(text)}")
    names = set()
    for m in _WORD.finditer(text):
        word, before = m.group(), text[:m.start()].rstrip()
        starts_sentence = not before or before[-1] in ".!?。！？:：\"“"
        inner = any(c.isupper() or c.isdigit() for c in word[1:])
        if inner or (word[0].isupper() and len(word) > 1 and not starts_sentence):
            names.add(word.lower())
    return names


def words_in(text: str) -> set[str]:
    """Every Latin word of a text, lower-cased: what a claim's names are looked up in."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {_describe(text)}")
    return {w.lower() for w in _WORD.findall(text)}


def judge_claim(claim: str, sources: list[str], similarity: list[float], threshold: float = 0.5) -> ClaimCheck:
    """Decide whether one claim is supported, given its similarity to each source.

    The citation is the source that contains every number and name of the claim, the most
    similar one if several do (else simply the most similar). The claim is supported when the
    cited source is similar enough (≥ ``threshold``) AND contains all of them: similarity alone
    cannot see a wrong figure or a wrong name (a sentence with one digit changed is nearly
    identical to the original), the lexical rule alone cannot see a claim about something else.
    """
    _check_claim_inputs(claim, sources, similarity, threshold)
    needed = numbers_in(claim) | names_in(claim)
    lacking = [needed - numbers_in(s) - words_in(s) for s in sources]
    # rank: sources that lack nothing first, then by similarity
    best = max(range(len(sources)), key=lambda j: (not lacking[j], similarity[j]))
    supported = similarity[best] >= threshold and not lacking[best]
    return ClaimCheck(claim, supported, best, float(similarity[best]), tuple(sorted(lacking[best])))


def _check_claim_inputs(claim: object, sources: object, similarity: object, threshold: object) -> None:
    if not isinstance(claim, str):
        raise TypeError(f"claim must be a str, got {_describe(claim)}")
    if not isinstance(sources, (list, tuple)) or not sources or not all(isinstance(s, str) for s in sources):
        raise ValueError("sources must be a non-empty list of strings")
    if not isinstance(similarity, (list, tuple)) or len(similarity) != len(sources):
        raise ValueError(f"similarity must be a list of {len(sources)} floats, one per source, "
                         f"got {_describe(similarity)}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1 <= threshold <= 1:
        raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {_describe(threshold)}")


def check_grounding(answer: str, sources: list[str], threshold: float = 0.5) -> list[ClaimCheck]:
    """Is each claim (sentence) of ``answer`` backed by one of ``sources`` (e.g. retrieved
    passages)? Similarities are MiniLM cosines (``llm_course.vectordb.embed``); the decision
    is ``judge_claim``'s.
    """
    claims = split_claims(answer)
    _check_claim_inputs("", sources, [0.0] * len(sources) if isinstance(sources, (list, tuple)) else None,
                        threshold)
    if not claims:
        return []
    from llm_course.vectordb import embed

    vectors = embed(list(claims) + list(sources))
    similarity = vectors[:len(claims)] @ vectors[len(claims):].T   # (claims, sources), unit vectors
    return [judge_claim(c, list(sources), similarity[i].tolist(), threshold) for i, c in enumerate(claims)]
