"""Cases for lab 16 (the landscape and its challenges): checksums, PII patterns and finder,
the cost calculator, and the grounded-answer judge.

Checksums are compared with python-stdnum (an independent implementation) as well as with the
reference; the PII finder is graded by precision and recall on freshly generated labelled
sentences (``llm_course.pii_data``, which shares no code with the detector); classic mistakes
are recognised by recomputing them."""

from __future__ import annotations

import datetime
import math
import random
from typing import Any, Callable

import torch

from llm_course import challenges as ref
from llm_course.checks.engine import Case, Reason, piece
from llm_course.efficiency import A100_BF16_FLOPS


def _rng(gen: torch.Generator) -> random.Random:
    return random.Random(int(torch.randint(0, 2**31, (), generator=gen)))


def _random_digits(rng: random.Random, n: int) -> str:
    return rng.choice("123456789") + "".join(rng.choice("0123456789") for _ in range(n - 1))


def _compare_verdicts(fn: Callable[[str], Any], inputs: list[str], what: str,
                      mistakes: list[tuple[str, Callable[[str], bool]]]) -> Reason:
    """None if fn agrees with the reference on every input; else a hint (a known mistake that
    gives exactly the learner's verdicts) or a count of disagreements."""
    got = []
    for x in inputs:
        v = fn(x)
        if not isinstance(v, bool):
            return f"{what} should return True or False (a bool), got {type(v).__name__} {v!r}"[:160]
        got.append(v)
    expected = [getattr(ref, what)(x) for x in inputs]
    if got == expected:
        return None
    for hint, wrong in mistakes:
        if [wrong(x) for x in inputs] == got:
            return hint
    wrong = [x for x, g, e in zip(inputs, got, expected) if g != e]
    return f"wrong verdict for {len(wrong)} of {len(inputs)} numbers, e.g. {wrong[0]!r}"


# --- 16.luhn ---------------------------------------------------------------------------------


def _luhn_variant(number: str, double_even_from_right: bool = False, subtract: bool = True,
                  from_left: bool = False) -> bool:
    digits = "".join(c for c in number if c.isdigit())
    if not digits or any(c not in "0123456789 -" for c in number):
        return False
    seq = digits if from_left else digits[::-1]
    doubled_parity = 0 if double_even_from_right else 1   # right: 1 (the correct rule)
    total = 0
    for i, ch in enumerate(seq):
        d = int(ch)
        if i % 2 == doubled_parity:
            d *= 2
            if subtract and d > 9:
                d -= 9
        total += d
    return total % 10 == 0


LUHN_MISTAKES = [
    ("doubled the wrong digits: counting from the RIGHT, the check digit (last) is not doubled, "
     "the one before it is", lambda s: _luhn_variant(s, double_even_from_right=True)),
    ("doubled every second digit counting from the LEFT; Luhn counts from the right (the check digit)",
     lambda s: _luhn_variant(s, from_left=True)),
    ("a doubled digit above 9 must become the sum of its digits (subtract 9)", lambda s: _luhn_variant(s, subtract=False)),
]


def _luhn_case(name: str, numbers: list[str]) -> Case:
    return Case(name, lambda fn: _compare_verdicts(fn, numbers, "luhn_valid", LUHN_MISTAKES))


def _with_check_digit(body: str) -> str:
    for c in "0123456789":
        if ref.luhn_valid(body + c):
            return body + c
    raise AssertionError("unreachable: one check digit always works")


@piece("16.luhn", "Luhn checksum (payment cards)")
def luhn_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)
    cards = ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "79927398713"]
    cases = [
        _luhn_case("published test card numbers (valid)", cards),
        _luhn_case("each with its last digit changed (invalid)",
                   [c[:-1] + str((int(c[-1]) + 3) % 10) for c in cards]),
        _luhn_case("spaces and dashes are ignored", ["4111 1111 1111 1111", "4111-1111-1111-1111", "3782 822463 10005"]),
        _luhn_case("random numbers of odd and even length",
                   [_random_digits(rng, n) for n in (13, 14, 15, 16, 16, 17, 18, 19) for _ in range(2)]
                   + [_with_check_digit(_random_digits(rng, n)) for n in (13, 15, 16, 18, 19)]),
    ]
    if extended:
        cases += [
            _luhn_case("many random valid and invalid numbers",
                       [_with_check_digit(_random_digits(rng, rng.randint(12, 18))) for _ in range(40)]
                       + [_random_digits(rng, rng.randint(13, 19)) for _ in range(40)]),
            _luhn_case("non-digits make a number invalid", ["4111 1111 abcd 1111", "", "4111_1111_1111_1111"]),
        ]
    return cases


# --- 16.cn_id --------------------------------------------------------------------------------


def _id_with(body17: str) -> str:
    total = sum(int(d) * w for d, w in zip(body17, ref.CN_ID_WEIGHTS))
    return body17 + ref.CN_ID_CHECK[total % 11]


def _id_variant(number: str, weights=ref.CN_ID_WEIGHTS, check=ref.CN_ID_CHECK, x_ok: bool = True,
                date: bool = True) -> bool:
    import re

    if not re.fullmatch(r"\d{17}[\dXx]", number) or (not x_ok and not number[17].isdigit()):
        return False
    if check[sum(int(d) * w for d, w in zip(number[:17], weights)) % 11] != number[17].upper():
        return False
    if not date:
        return True
    try:
        born = datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return datetime.date(1900, 1, 1) <= born <= datetime.date.today()


CN_ID_MISTAKES = [
    ("the check character X (remainder 2) is not accepted; it stands for 10",
     lambda s: _id_variant(s, x_ok=False)),
    ("wrong weights: the i-th digit (from the left, i = 1..17) weighs 2^(18−i) mod 11 → 7, 9, 10, 5, …",
     lambda s: _id_variant(s, weights=tuple(reversed(ref.CN_ID_WEIGHTS)))),
    ("wrong weights: the i-th digit (from the left, i = 1..17) weighs 2^(18−i) mod 11 → 7, 9, 10, 5, …",
     lambda s: _id_variant(s, weights=tuple(range(17, 0, -1)))),
    ("the remainder → check character table is wrong: remainders 0..10 map to 1 0 X 9 8 7 6 5 4 3 2",
     lambda s: _id_variant(s, check="0123456789X")),
    ("the birth date (characters 7–14, YYYYMMDD) must be a real date between 1900 and today",
     lambda s: _id_variant(s, date=False)),
    ("a lower-case x is a valid check character too (people type it)",
     lambda s: _id_variant(s) and s[17] != "x"),
]


def _random_id(rng: random.Random, valid_date: bool = True, year: int | None = None) -> str:
    year, month, day = year or rng.randint(1930, 2015), rng.randint(1, 12), rng.randint(1, 28)
    if not valid_date:
        month, day = rng.choice([(13, 1), (2, 30), (0, 10), (4, 31)])
    region = rng.choice(["110105", "310104", "440305", "510107", "610626", "320102"])
    return _id_with(f"{region}{year}{month:02d}{day:02d}{rng.randint(0, 999):03d}")


def _cn_id_case(name: str, numbers: list[str]) -> Case:
    return Case(name, lambda fn: _compare_verdicts(fn, numbers, "cn_id_valid", CN_ID_MISTAKES))


def _ids_ending_in(rng: random.Random, char: str, n: int) -> list[str]:
    out = []
    while len(out) < n:
        number = _random_id(rng)
        if number[17] == char:
            out.append(number)
    return out


@piece("16.cn_id", "Chinese resident ID checksum (GB 11643-1999)")
def cn_id_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)
    good = [_random_id(rng) for _ in range(6)]
    cases = [
        _cn_id_case("the standard's worked example 11010519491231002X", ["11010519491231002X"]),
        _cn_id_case("valid numbers, and each with a wrong check character",
                    good + [g[:17] + ("0" if g[17] != "0" else "1") for g in good]),
        _cn_id_case("check character X", _ids_ending_in(rng, "X", 3) + ["11010519491231002x"]),
        _cn_id_case("impossible birth dates (checksum correct)", [_random_id(rng, valid_date=False) for _ in range(4)]),
        _cn_id_case("born in the future or before 1900 (checksum correct)",
                    [_random_id(rng, year=datetime.date.today().year + 5), _random_id(rng, year=1850)]),
    ]
    if extended:
        cases += [
            _cn_id_case("many random numbers, valid and mistyped",
                        [_random_id(rng) for _ in range(30)]
                        + [n[:16] + str((int(n[16]) + 1) % 10) + n[17] for n in (_random_id(rng) for _ in range(30))]),
            _cn_id_case("wrong length or characters", ["1101051949123100", "11010519491231002XX", "1101051949123100AX",
                                                      "11010519491231002 "]),
        ]
    return cases


# --- 16.patterns -----------------------------------------------------------------------------

POSITIVE = {
    "email": ["bob@example.com", "a.b-c+tag@mail.example.co.uk", "zhang_san99@163.com"],
    "cn_id": ["11010519491231002X", "110105194912310021"],       # shape only: checksums come later
    "bank_card": ["4111111111111111", "4111 1111 1111 1111", "3782-822463-10005", "6222021234567890123"],
    "cn_mobile": ["13812345678", "+86 138 1234 5678", "138-1234-5678", "+8615912345678", "008613812345678"],
    "phone": ["(415) 555-0132", "415.555.0132", "+1 415 555 0132", "415-555-0132 ext. 12", "+44 20 7946 0958"],
}
NEGATIVE = {  # strings in which the kind's pattern must find NOTHING
    "email": ["user@localhost", "@example.com", "bob@", "a b@c d.com"],
    "cn_id": ["1101051949123100", "1101051949123100211", "A11010519491231002X"],
    "bank_card": ["411111111111", "41111111111111111111", "+4111111111111111", "0012345678901234"],
    "cn_mobile": ["12812345678", "1381234567", "138123456789", "23812345678"],
    "phone": ["415555013299", "555-0132", "2024-05-01", "41555501"],
}


def _patterns_case(name: str, kinds: list[str], extra_neg: dict[str, list[str]] | None = None) -> Case:
    def run(fn) -> Reason:
        patterns = fn()
        if not isinstance(patterns, dict) or set(patterns) != set(ref.PII_KINDS):
            return f"pii_patterns() should return a dict with the keys {ref.PII_KINDS}"
        if list(patterns) != list(ref.pii_patterns()):
            return f"the order of the dict is the priority order on overlaps: {tuple(ref.pii_patterns())}"
        for kind in kinds:
            p = patterns[kind]
            if not hasattr(p, "finditer"):
                return f"patterns[{kind!r}] should be a compiled regex (re.compile), got {type(p).__name__}"
            for s in POSITIVE[kind]:
                text = f"见 {s} 。"
                found = [m.group() for m in p.finditer(text)]
                if s not in found:
                    return f"the {kind} pattern does not find all of {s!r} in {text!r} (found {found})"
            for s in NEGATIVE[kind] + (extra_neg or {}).get(kind, []):
                found = [m.group() for m in p.finditer(f"见 {s} 。")]
                if found:
                    hint = " — a 12-digit number is not a phone number" if kind == "phone" and s.isdigit() else ""
                    return f"the {kind} pattern wrongly finds {found[0]!r} in {s!r}{hint}"
        return None

    return Case(name, run)


@piece("16.patterns", "PII patterns")
def patterns_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [_patterns_case(f"{kind}: finds the examples, not the look-alikes", [kind]) for kind in ref.PII_KINDS]
    if extended:
        rng = _rng(gen)
        cases.append(_patterns_case("more look-alikes", list(ref.PII_KINDS), {
            "phone": [_random_digits(rng, 12), _random_digits(rng, 13)],
            "cn_mobile": ["1" + rng.choice("012") + _random_digits(rng, 9)],
            "email": ["name@domain"],
        }))
    return cases


# --- 16.find_pii -----------------------------------------------------------------------------


def _spans(found: Any) -> list[tuple[int, int, str]] | str:
    if not isinstance(found, list):
        return f"find_pii should return a list of PIISpan, got {type(found).__name__}"
    out = []
    for s in found:
        if not isinstance(s, ref.PIISpan):
            return f"find_pii should return PIISpan(start, end, kind, text) objects, got {type(s).__name__}"
        out.append((s.start, s.end, s.kind))
    return out


def _find_hand_case(name: str, text: str, kinds: tuple[str, ...] = ref.PII_KINDS) -> Case:
    def run(fn) -> Reason:
        got = _spans(fn(text, kinds))
        if isinstance(got, str):
            return got
        expected = [(s.start, s.end, s.kind) for s in ref.find_pii(text, kinds)]
        if got == expected:
            return None
        if sorted(got) == expected:
            return "the spans are not sorted by start"
        if any(k not in kinds for *_, k in got):
            return "found kinds that were not asked for: look only for the kinds in `kinds`"
        if set(expected) < set(got):
            extra = sorted(set(got) - set(expected))[0]
            snippet = text[extra[0]:extra[1]]
            overlaps = any(a < extra[1] and extra[0] < b for a, b, _ in expected)
            if overlaps:
                return f"overlapping spans: {snippet!r} is also reported as {extra[2]}; once a character is taken, " \
                       "later (lower-priority) kinds must skip it"
            return f"{snippet!r} is reported as {extra[2]} although its checksum (or its context) rules it out"
        return f"expected {len(expected)} spans, found {len(got)}: " + (
            "some are missing" if set(got) < set(expected) else "some are wrong")

    return Case(name, run)


def _testset_case(name: str, n: int, seed: int, floor: float) -> Case:
    def run(fn) -> Reason:
        from llm_course.pii_data import pii_testset

        data = pii_testset(n, seed)
        predicted = []
        for text, _ in data:
            got = _spans(fn(text, ref.PII_KINDS))
            if isinstance(got, str):
                return got
            predicted.append(got)
        scores = ref.pii_scores(predicted, [list(g) for _, g in data])
        low = [f"{k}: precision {s['precision']:.2f}, recall {s['recall']:.2f}" for k, s in scores.items()
               if k != "all" and min(s["precision"], s["recall"]) < floor]
        return f"below {floor:.2f} on {n} labelled sentences — " + "; ".join(low) if low else None

    return Case(name, run)


@piece("16.find_pii", "find and redact PII")
def find_pii_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)
    cases = [
        _find_hand_case("an email, a card and a Chinese mobile", "Mail bob@example.com, card 4111 1111 1111 1111, 手机13812345678"),
        _find_hand_case("a valid ID is an ID, not also a card", "身份证11010519491231002X，卡号6222021234567890128"),
        _find_hand_case("a card-shaped number failing Luhn is no card", "order 4111 1111 1111 1112 shipped"),
        _find_hand_case("only the kinds asked for", "Mail bob@example.com or call +1 415 555 0132", ("phone",)),
        _find_hand_case("spans sorted by start", "call 13812345678 or bob@example.com, card 4111111111111111"),
        _testset_case("precision and recall per kind on 120 labelled sentences", 120, rng.randint(100, 10**6), 0.95),
    ]
    if extended:
        cases += [_testset_case("precision and recall per kind on 400 other labelled sentences", 400,
                                rng.randint(100, 10**6), 0.95)]
    return cases


# --- 16.training_cost ------------------------------------------------------------------------


def _close(got: Any, expected: float) -> bool:
    return isinstance(got, (int, float)) and not isinstance(got, bool) and math.isclose(got, expected, rel_tol=1e-6)


def _compare_cost(got: Any, expected: dict, keys: tuple[str, ...], mistakes: list[tuple[str, dict]]) -> Reason:
    if not isinstance(got, dict) or not set(keys) <= set(got):
        return f"should return a dict with the keys {keys}, got {type(got).__name__}"
    if all(_close(got[k], expected[k]) if isinstance(expected[k], float) else got[k] == expected[k] for k in keys):
        return None
    for hint, wrong in mistakes:
        if all(_close(got[k], wrong[k]) for k in wrong):
            return hint
    bad = next(k for k in keys if not (_close(got[k], expected[k]) if isinstance(expected[k], float)
                                      else got[k] == expected[k]))
    if isinstance(expected[bad], float) and isinstance(got[bad], (int, float)) and expected[bad]:
        return f"{bad!r} is off (× {got[bad] / expected[bad]:.4g} of the right value)"
    return f"{bad!r} is wrong"


def _training_case(name: str, n: float, d: float, peak: float, util: float, price: float) -> Case:
    def run(fn) -> Reason:
        got = fn(n, d, peak, util, price)
        expected = ref.training_cost(n, d, peak, util, price)
        f, h = expected["flops"], expected["gpu_hours"]
        mistakes = [
            ("the FLOPs use 2·N·D, the forward pass only; training costs 6·N·D (the backward pass is twice the forward)",
             {"flops": f / 3}),
            ("the utilisation is applied the wrong way: the hardware delivers peak × utilisation FLOP/s, so the "
             "time is FLOPs / (peak × utilisation)", {"gpu_hours": h * util * util}),
            ("the utilisation is ignored: real training reaches only a fraction of the peak", {"gpu_hours": h * util}),
            ("GPU-days were returned as 'gpu_hours' (× 24 missing)", {"gpu_hours": h / 24}),
            ("the cost should be gpu_hours × price_per_gpu_hour", {"cost": h}),
        ]
        return _compare_cost(got, expected, ("flops", "gpu_hours", "cost"), mistakes)

    return Case(name, run)


@piece("16.training_cost", "training cost: 6·N·D → GPU-hours → money")
def training_cost_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)
    cases = [
        _training_case("1B parameters, 10B tokens, 1 PFLOP/s at 50 %", 1e9, 1e10, 1e15, 0.5, 3.0),
        _training_case("GPT-3: 175B parameters, 300B tokens, A100 at 40 %", 175e9, 300e9, A100_BF16_FLOPS, 0.4, 2.0),
        _training_case("random model", rng.uniform(1e8, 1e11), rng.uniform(1e9, 1e13), A100_BF16_FLOPS,
                       rng.uniform(0.2, 0.6), rng.uniform(0.5, 4)),
    ]
    if extended:
        cases += [_training_case(f"random model {i}", rng.uniform(1e7, 1e12), rng.uniform(1e9, 1e13),
                                 rng.choice([312e12, 989e12, 125e12]), rng.uniform(0.1, 1.0), rng.uniform(0, 10))
                  for i in range(3)]
    return cases


# --- 16.inference_cost -----------------------------------------------------------------------


def _inference_case(name: str, n: float, batch: int, bpp: float, bandwidth: float) -> Case:
    def run(fn) -> Reason:
        kw = dict(batch=batch, bytes_per_param=bpp, peak_flops=A100_BF16_FLOPS, bandwidth=bandwidth,
                  utilisation=0.4, price_per_gpu_hour=2.0)
        got = fn(n, 1e6, **kw)
        expected = ref.inference_cost(n, 1e6, **kw)
        compute = batch * 2 * n / (A100_BF16_FLOPS * 0.4)
        memory = n * bpp / bandwidth
        rate = expected["tokens_per_second"]
        mistakes = [
            ("the faster of the two bounds was used; a step takes as long as the SLOWER of compute and memory",
             {"tokens_per_second": batch / min(compute, memory)}),
            ("the weights are read once per step for the whole batch, not once per sequence",
             {"tokens_per_second": batch / max(compute, batch * memory)}),
            ("each step makes `batch` tokens, one per sequence: tokens per second = batch / step time",
             {"tokens_per_second": 1 / max(compute, memory)}),
            ("a token costs 2·N FLOPs (one multiply-add per weight), not 6·N (that is training)",
             {"tokens_per_second": batch / max(3 * compute, memory)}),
        ]
        mistakes = [(h, w) for h, w in mistakes if not math.isclose(w["tokens_per_second"], rate, rel_tol=1e-6)]
        return _compare_cost(got, expected, ("tokens_per_second", "bound", "gpu_hours", "cost",
                                             "cost_per_million_tokens"), mistakes)

    return Case(name, run)


@piece("16.inference_cost", "inference cost: compute vs memory bound")
def inference_cost_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)
    cases = [
        _inference_case("7B in bf16, batch 1 (memory bound)", 7e9, 1, 2.0, 2.0e12),
        _inference_case("7B in bf16, batch 512 (compute bound)", 7e9, 512, 2.0, 2.0e12),
        _inference_case("random model and batch", rng.uniform(1e8, 1e11), rng.randint(2, 64), 2.0, 2.0e12),
    ]
    if extended:
        cases += [_inference_case(f"random model {i}", rng.uniform(1e8, 1e11), rng.choice([1, 8, 64, 256, 1024]),
                                  rng.choice([0.5, 1.0, 2.0, 4.0]), rng.choice([0.9e12, 2.0e12, 3.35e12]))
                  for i in range(4)]
    return cases


# --- 16.judge --------------------------------------------------------------------------------

SOURCES = [
    "ChatGLM-6B has 6 billion parameters and a vocabulary of 130,528 tokens.",
    "Llama 2 was released by Meta in July 2023 in sizes of 7, 13 and 70 billion parameters.",
    "GPT-3 has 175 billion parameters and was trained on 300 billion tokens.",
]


def _judge_case(name: str, claim: str, sims: list[float], threshold: float = 0.5) -> Case:
    def run(fn) -> Reason:
        got = fn(claim, SOURCES, sims, threshold)
        expected = ref.judge_claim(claim, SOURCES, sims, threshold)
        if not isinstance(got, ref.ClaimCheck):
            return f"judge_claim should return a ClaimCheck, got {type(got).__name__}"
        if got.supported != expected.supported:
            needed_numbers = ref.numbers_in(claim)
            if got.supported and set(expected.missing) & needed_numbers:
                return "a claim whose number appears in no source was judged supported: the numbers are ignored"
            if got.supported and expected.missing:
                return "a claim naming something the source does not mention was judged supported: the names are ignored"
            if got.supported:
                return "a claim below the similarity threshold was judged supported"
            return "a supported claim was rejected"
        if got.source != expected.source:
            if expected.missing == () and got.source == max(range(len(sims)), key=sims.__getitem__):
                return "cited the most similar source, but it lacks the claim's numbers/names while another has them"
            return "cited the wrong source"
        if tuple(got.missing) != expected.missing:
            return "'missing' should list (sorted) the numbers and names of the claim that the cited source lacks"
        if not math.isclose(got.similarity, expected.similarity):
            return "'similarity' should be the cited source's similarity"
        return None

    return Case(name, run)


@piece("16.judge", "grounded-answer judge (numbers and names)")
def judge_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)
    cases = [
        _judge_case("a supported claim", "ChatGLM-6B has a vocabulary of 130528 tokens.", [0.9, 0.2, 0.3]),
        _judge_case("a contradicted number", "GPT-3 has 200 billion parameters.", [0.3, 0.2, 0.88]),
        _judge_case("a wrong name", "Llama 2 was released by Google.", [0.2, 0.8, 0.3]),
        _judge_case("nothing similar enough", "Paris is a city.", [0.1, 0.05, 0.12]),
        _judge_case("cite the source that has the number", "It has 70 billion parameters.", [0.3, 0.6, 0.7]),
    ]
    if extended:
        claim = rng.choice(["GPT-3 was trained on 300 billion tokens.", "Llama 2 has a 13 billion parameter size."])
        cases += [
            _judge_case("threshold is respected", claim, [0.4, 0.45, 0.45], threshold=0.5),
            _judge_case("threshold lowered", claim, [0.4, 0.45, 0.45], threshold=0.4),
            _judge_case("thousands separators", "The vocabulary has 130,528 entries.", [0.7, 0.1, 0.2]),
            _judge_case("a number missing everywhere", "ChatGLM-6B was trained on 1 trillion tokens.",
                        [0.7, 0.2, rng.uniform(0.5, 0.69)]),
        ]
    return cases
