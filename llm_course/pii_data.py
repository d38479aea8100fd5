"""A labelled test set for PII detection (chapter 16), generated offline and reproducibly.

Fake but realistic personal data comes from the ``faker`` package (its ``en_US`` and
``zh_CN`` providers: names, emails, US phone numbers, Chinese mobiles, Chinese resident ID
numbers, payment card numbers) and is planted into English and Chinese sentences; the gold
span of every planted value is recorded as it is inserted. Sentences also carry **hard
negatives** — things a naive pattern takes for PII: dates, times, prices, order numbers of
card length that fail the Luhn check, ID-shaped numbers with a wrong check character,
11-digit numbers that are not mobiles, ISBNs — checked with ``python-stdnum``'s validators.

This module shares no code with ``llm_course.challenges``, the detector it tests.
"""

from __future__ import annotations

import random
from functools import lru_cache

from faker import Faker
from stdnum import luhn
from stdnum.cn import ric

Span = tuple[int, int, str]

EN_TEMPLATES = [
    "Please contact {name} at {email} or call {phone}.",
    "{name} paid with card {card} on {date} (order {order}).",
    "Call me back on {phone} before {time}, thanks!",
    "Invoice {order}: total {price}, charged to {card}.",
    "New signup: {email}, phone {phone}, referred by {name}.",
    "The book (ISBN {isbn}) ships on {date}; questions to {email}.",
    "Reference number {order} was issued to {name} on {date}.",
    "My card {card} was declined at {time}; reach me at {phone}.",
    "Meeting moved to {date} at {time}. Dial-in code {pin}.",
    "Forward the receipt for {price} to {email}.",
]
ZH_TEMPLATES = [
    "请联系{name}，手机号{mobile}，邮箱{email}。",
    "客户{name}的身份证号是{cn_id}，银行卡号{card}。",
    "订单号{order}已于{date}发货，如有问题请拨打{mobile}。",
    "{name}于{date}开户，证件号码{cn_id}。",
    "退款{price}元将退回尾号卡{card}，请留意。",
    "身份证{bad_id}校验失败，请重新输入。",
    "快递单号{eleven}，预计{date}送达。",
    "会议定于{date}{time}举行，联系人{name}，电话{mobile}。",
    "请把发票寄到{email}，金额{price}元。",
    "工号{pin}的员工{name}，手机{mobile}，身份证{cn_id}。",
]


@lru_cache(maxsize=4)
def pii_testset(n: int = 400, seed: int = 0) -> tuple[tuple[str, tuple[Span, ...]], ...]:
    """``n`` sentences (half English, half Chinese) with their gold PII spans.

    Returns a tuple of (sentence, ((start, end, kind), ...)); kinds are "email", "phone"
    (US/international), "cn_mobile", "cn_id" and "bank_card". Same arguments, same data.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int ≥ 2, got {n!r}")
    rng = random.Random(seed)
    en, zh = Faker("en_US"), Faker("zh_CN")
    en.seed_instance(seed)
    zh.seed_instance(seed + 1)
    out = []
    for i in range(n):
        chinese = i % 2 == 1
        template = rng.choice(ZH_TEMPLATES if chinese else EN_TEMPLATES)
        out.append(_fill(template, _values(rng, en, zh, chinese)))
    return tuple(out)


def _fill(template: str, values: dict[str, tuple[str, str | None]]) -> tuple[str, tuple[Span, ...]]:
    """Format the template left to right, recording where each PII value lands."""
    text, spans, rest = "", [], template
    while "{" in rest:
        before, _, after = rest.partition("{")
        field, _, rest = after.partition("}")
        text += before
        value, kind = values[field]
        if kind is not None:
            spans.append((len(text), len(text) + len(value), kind))
        text += value
    return text + rest, tuple(spans)


def _values(rng: random.Random, en: Faker, zh: Faker, chinese: bool) -> dict[str, tuple[str, str | None]]:
    faker = zh if chinese else en
    return {
        "name": (faker.name(), None),
        "email": (faker.email(), "email"),
        "phone": (en.phone_number(), "phone"),
        "mobile": (_format_mobile(rng, zh.phone_number()), "cn_mobile"),
        "cn_id": (zh.ssn(), "cn_id"),
        "card": (_format_card(rng, faker.credit_card_number(card_type=rng.choice(
            ["unionpay", "visa", "mastercard"] if chinese else ["visa16", "visa19", "mastercard", "amex", "discover"]))),
            "bank_card"),
        "date": (faker.date(), None),
        "time": (faker.time(pattern="%H:%M"), None),
        "price": (f"{rng.uniform(1, 5000):,.2f}" if not chinese else f"{rng.uniform(1, 5000):.2f}", None),
        "order": (_not_luhn(rng, rng.choice([13, 16, 19])), None),
        "isbn": (en.isbn13(), None),
        "pin": (str(rng.randint(1000, 999999)), None),
        "bad_id": (_bad_id(rng, zh.ssn()), None),
        "eleven": (rng.choice("2456789") + "".join(rng.choice("0123456789") for _ in range(10)), None),
    }


def _format_mobile(rng: random.Random, mobile: str) -> str:
    style = rng.randrange(4)
    if style == 1:
        return f"+86 {mobile[:3]} {mobile[3:7]} {mobile[7:]}"
    if style == 2:
        return f"{mobile[:3]}-{mobile[3:7]}-{mobile[7:]}"
    if style == 3:
        return f"+86{mobile}"
    return mobile


def _format_card(rng: random.Random, number: str) -> str:
    sep = rng.choice(["", " ", "-"])
    if not sep:
        return number
    groups = [4, 6, 5] if len(number) == 15 else [4] * (len(number) // 4) + ([len(number) % 4] if len(number) % 4 else [])
    parts, start = [], 0
    for g in groups:
        parts.append(number[start:start + g])
        start += g
    return sep.join(parts)


def _not_luhn(rng: random.Random, length: int) -> str:
    while True:
        number = rng.choice("123456789") + "".join(rng.choice("0123456789") for _ in range(length - 1))
        if not luhn.is_valid(number):
            return number


def _bad_id(rng: random.Random, good: str) -> str:
    """The ID with a wrong check character (``calc_check_digit`` takes the full 18 characters)."""
    right = ric.calc_check_digit(good)
    return good[:17] + rng.choice([c for c in "0123456789X" if c != right])
