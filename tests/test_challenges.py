"""llm_course.challenges against independent references: python-stdnum's Luhn and Chinese
resident-ID validators, the GB 11643-1999 worked example, published test card numbers,
hand-written PII cases, hand-computed costs and GPT-3's published training compute, and
hand-labelled answer/source pairs for the grounding checker."""

import random

import pytest
from stdnum import luhn
from stdnum.cn import ric

from llm_course.challenges import (PII_KINDS, ClaimCheck, check_grounding, cn_id_valid, find_pii, inference_cost,
                                   judge_claim, luhn_valid, names_in, numbers_in, pii_scores, redact, split_claims,
                                   training_cost)
from llm_course.efficiency import A100_BF16_FLOPS
from llm_course.pii_data import pii_testset


# --------------------------------------------------------------------------- checksums
@pytest.mark.parametrize("number,valid", [
    ("4111 1111 1111 1111", True),      # the well-known Visa test number
    ("4111-1111-1111-1111", True),
    ("4111111111111112", False),        # last digit changed
    ("4111111111111121", False),        # two digits swapped
    ("5555555555554444", True),         # Mastercard test number
    ("378282246310005", True),          # American Express test number (15 digits)
    ("6011111111111117", True),         # Discover test number
    ("79927398713", True),              # the classic Luhn example
    ("79927398710", False),
])
def test_luhn_published_numbers(number, valid):
    assert luhn_valid(number) is valid
    assert luhn.is_valid(number.replace(" ", "").replace("-", "")) is valid  # the reference agrees


def test_luhn_matches_stdnum_on_random_numbers():
    rng = random.Random(0)
    for _ in range(2000):
        n = "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 19)))
        assert luhn_valid(n) == luhn.is_valid(n), n


def test_luhn_rejects_non_digits_and_bad_types():
    assert not luhn_valid("4111 1111 abcd 1111") and not luhn_valid("")
    with pytest.raises(TypeError, match="number must be a str"):
        luhn_valid(4111111111111111)


def test_cn_id_standard_example_and_variants():
    assert cn_id_valid("11010519491231002X")        # GB 11643-1999's worked example
    assert cn_id_valid("11010519491231002x")        # lower-case x is accepted, as people type it
    assert not cn_id_valid("110105194912310021")   # wrong check character
    assert not cn_id_valid("11010519491331002X")   # month 13 (checksum recomputed below)
    assert not cn_id_valid("1101051949123100")     # too short
    with pytest.raises(TypeError, match="number must be a str"):
        cn_id_valid(110105194912310020)


def test_cn_id_matches_stdnum():
    rng = random.Random(1)
    for _ in range(2000):
        # real region codes: stdnum also checks the region against its table
        body = f"{rng.choice(['110105', '310104'])}{rng.randint(1900, 2020)}{rng.randint(1, 12):02d}" \
               f"{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
        good = body + ric.calc_check_digit(body + "0")
        bad = body + rng.choice([c for c in "0123456789X" if c != good[-1]])
        assert cn_id_valid(good) and ric.is_valid(good)
        assert not cn_id_valid(bad) and not ric.is_valid(bad)


def test_cn_id_rejects_impossible_birth_dates():
    body = "110105" + "20230230" + "123"            # 30 February
    assert not cn_id_valid(body + ric.calc_check_digit(body + "0"))
    body = "110105" + "30010101" + "123"            # born in the future
    assert not cn_id_valid(body + ric.calc_check_digit(body + "0"))


# --------------------------------------------------------------------------- PII
def kinds_of(text, **kw):
    return [(s.text, s.kind) for s in find_pii(text, **kw)]


@pytest.mark.parametrize("text,expected", [
    ("mail a.b-c+tag@mail.example.co.uk now", [("a.b-c+tag@mail.example.co.uk", "email")]),
    ("邮箱zhang.san@example.com。", [("zhang.san@example.com", "email")]),
    ("not an email: user@localhost", []),
    ("call (415) 555-0132 or 415.555.0199 x12", [("(415) 555-0132", "phone"), ("415.555.0199 x12", "phone")]),
    ("+1 415 555 0132 and +44 20 7946 0958", [("+1 415 555 0132", "phone"), ("+44 20 7946 0958", "phone")]),
    ("手机13812345678，电话+86 138 1234 5678", [("13812345678", "cn_mobile"), ("+86 138 1234 5678", "cn_mobile")]),
    ("138-1234-5678 or 008613812345678", [("138-1234-5678", "cn_mobile"), ("008613812345678", "cn_mobile")]),
    ("10612345678 is neither a mobile (second digit 0) nor a US number (area code 061)", []),
    ("12812345678 is a US number with country code 1", [("12812345678", "phone")]),
    ("1381234567890 has 13 digits", []),
    ("身份证11010519491231002X。", [("11010519491231002X", "cn_id")]),
    ("card 4111 1111 1111 1111, order 4111 1111 1111 1112", [("4111 1111 1111 1111", "bank_card")]),
    ("Amex 3782-822463-10005 ok", [("3782-822463-10005", "bank_card")]),
    ("dates 2024-05-01, price $1,299.00, ISBN 978-3-16-148410-0", []),
])
def test_find_pii_hand_cases(text, expected):
    assert kinds_of(text) == expected


def test_twelve_digit_run_is_no_phone():
    assert kinds_of("order 415555013299 shipped") == []


def test_id_context_vetoes_a_card_reading_of_a_mistyped_id():
    body = "11010519491231002"
    # a wrong check character whose 18 digits happen to pass Luhn
    wrong = next(body + c for c in "0123456789" if luhn.is_valid(body + c) and not ric.is_valid(body + c))
    assert kinds_of(f"身份证{wrong}校验失败") == []
    assert kinds_of(f"银行卡{wrong}") == [(wrong, "bank_card")]


def test_find_pii_spans_kinds_and_redact():
    text = "Mail bob@example.com, card 4111111111111111, 手机13812345678"
    spans = find_pii(text)
    assert [text[s.start:s.end] for s in spans] == [s.text for s in spans]
    assert redact(text) == "Mail [EMAIL], card [CARD], 手机[PHONE]"
    assert redact(text, kinds=["email"]) == "Mail [EMAIL], card 4111111111111111, 手机13812345678"
    assert kinds_of(text, kinds=("bank_card",)) == [("4111111111111111", "bank_card")]


def test_find_pii_bad_input():
    with pytest.raises(TypeError, match="text must be a str"):
        find_pii(b"bytes")
    with pytest.raises(ValueError, match="kinds must be a list of"):
        find_pii("x", kinds=["passport"])
    with pytest.raises(TypeError, match="kinds must be a list or tuple"):
        find_pii("x", kinds="email")


def test_phone_detection_agrees_with_phonenumbers_on_the_testset():
    """Google's libphonenumber (the ``phonenumbers`` port) is a peer detector: on the US phone
    numbers of the labelled set both must find the same numbers."""
    import phonenumbers

    for text, gold in pii_testset(200, 3):
        ours = {(s.start, s.end) for s in find_pii(text, kinds=["phone"])}
        theirs = {(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, "US")}
        gold_phone = {(a, b) for a, b, k in gold if k == "phone"}
        assert gold_phone <= ours
        assert gold_phone <= theirs | ours   # libphonenumber's extension rules differ; ours is the gate


def test_scores_on_the_labelled_set():
    data = pii_testset(400, 0)
    assert len(data) >= 300
    predicted = [[(s.start, s.end, s.kind) for s in find_pii(t)] for t, _ in data]
    scores = pii_scores(predicted, [list(g) for _, g in data])
    assert set(scores) == set(PII_KINDS) | {"all"}
    for kind in PII_KINDS:
        assert scores[kind]["precision"] >= 0.97 and scores[kind]["recall"] >= 0.97, (kind, scores[kind])


def test_pii_scores_hand_case():
    gold = [[(0, 5, "email"), (10, 20, "bank_card")], []]
    pred = [[(0, 5, "email"), (10, 19, "bank_card")], [(3, 8, "email")]]
    s = pii_scores(pred, gold)
    assert s["email"]["precision"] == 0.5 and s["email"]["recall"] == 1.0
    assert s["bank_card"]["precision"] == 0.0 and s["bank_card"]["f1"] == 0.0
    assert s["all"]["support"] == 2
    with pytest.raises(ValueError, match="one list per sentence"):
        pii_scores([[]], gold)


# --------------------------------------------------------------------------- cost
def test_training_cost_hand_case():
    # 1e9 params × 1e10 tokens × 6 = 6e19 FLOPs; at 1e15 FLOP/s × 0.5 → 1.2e5 s = 33.33 h
    c = training_cost(1e9, 1e10, peak_flops=1e15, utilisation=0.5, price_per_gpu_hour=3.0)
    assert c["flops"] == pytest.approx(6e19)
    assert c["gpu_hours"] == pytest.approx(1.2e5 / 3600)
    assert c["cost"] == pytest.approx(100.0)


def test_training_cost_gpt3_published_compute():
    # Brown et al. (2020), table D.1: 3.14e23 FLOPs for GPT-3 175B on 300B tokens
    assert training_cost(175e9, 300e9)["flops"] == pytest.approx(3.14e23, rel=0.02)


def test_training_cost_bad_input():
    with pytest.raises(ValueError, match="n_params must be a positive number"):
        training_cost(0, 1e9)
    with pytest.raises(ValueError, match="n_tokens must be a positive number"):
        training_cost(1e9, float("nan"))
    with pytest.raises(ValueError, match="utilisation must be in"):
        training_cost(1e9, 1e9, utilisation=1.5)
    with pytest.raises(ValueError, match="price_per_gpu_hour must be a non-negative"):
        training_cost(1e9, 1e9, price_per_gpu_hour=-1)


def test_inference_cost_both_bounds_by_hand():
    # 7B params in bf16 = 14 GB per step; at 2e12 B/s → 7 ms per step → 142.9 tok/s at batch 1
    m = inference_cost(7e9, 1e6, batch=1, bytes_per_param=2, peak_flops=A100_BF16_FLOPS, bandwidth=2e12,
                       utilisation=0.4)
    assert m["bound"] == "memory"
    assert m["tokens_per_second"] == pytest.approx(1 / 0.007)
    # compute: 2·7e9 FLOPs per token at 312e12·0.4 → 8914 tok/s; memory bound at batch b: b/0.007
    big = inference_cost(7e9, 1e6, batch=512, bandwidth=2e12, utilisation=0.4)
    assert big["bound"] == "compute"
    assert big["tokens_per_second"] == pytest.approx(A100_BF16_FLOPS * 0.4 / (2 * 7e9))
    assert big["cost_per_million_tokens"] == pytest.approx(big["cost"])  # n_tokens = 1e6
    assert m["cost"] == pytest.approx(m["gpu_hours"] * 2.0)


def test_inference_cost_bad_input():
    with pytest.raises(ValueError, match="batch must be a positive int"):
        inference_cost(1e9, 1e6, batch=0)
    with pytest.raises(ValueError, match="bandwidth must be a positive number"):
        inference_cost(1e9, 1e6, bandwidth=-1.0)


# --------------------------------------------------------------------------- grounding
def test_split_numbers_names():
    assert split_claims("GPT-3 has 175B parameters. 它是闭源的。Is it? Yes!") == \
        ["GPT-3 has 175B parameters.", "它是闭源的。", "Is it?", "Yes!"]
    assert numbers_in("130,528 tokens, 3.14e23 FLOPs, 6B, in 2020.") == {"130528", "3.14e23", "6", "2020"}
    assert names_in("The model GPT-3 was trained by OpenAI. Meta released LLaMA.") == \
        {"gpt-3", "openai", "llama"}   # "The" and "Meta" start sentences


SOURCES = ["ChatGLM-6B has 6 billion parameters and a vocabulary of 130,528 tokens.",
           "Llama 2 was released by Meta in July 2023 in sizes of 7, 13 and 70 billion parameters."]


@pytest.mark.parametrize("claim,sims,supported,source,missing", [
    ("ChatGLM-6B has a vocabulary of 130528 tokens.", [0.9, 0.2], True, 0, ()),
    ("ChatGLM-6B has a vocabulary of 150000 tokens.", [0.9, 0.2], False, 0, ("150000",)),  # contradicted number
    ("Llama 2 was released by Google.", [0.3, 0.8], False, 1, ("google",)),                 # wrong name
    ("The sky is green.", [0.1, 0.05], False, 0, ()),                                        # nothing similar
    # the number rule picks the source that has the number, even if another is more similar
    ("It comes in a 70 billion parameter size.", [0.7, 0.6], True, 1, ()),
])
def test_judge_claim_hand_labelled(claim, sims, supported, source, missing):
    c = judge_claim(claim, SOURCES, sims, threshold=0.5)
    assert isinstance(c, ClaimCheck)
    assert (c.supported, c.source, c.missing) == (supported, source, missing)


def test_judge_claim_bad_input():
    with pytest.raises(ValueError, match="similarity must be a list of 2 floats"):
        judge_claim("x", SOURCES, [0.5])
    with pytest.raises(ValueError, match="sources must be a non-empty list"):
        judge_claim("x", [], [])
    with pytest.raises(ValueError, match="threshold must be a cosine similarity"):
        judge_claim("x", SOURCES, [0.1, 0.2], threshold=2)


def test_check_grounding_with_minilm():
    answer = ("ChatGLM-6B has a vocabulary of 130,528 tokens. ChatGLM-6B has a vocabulary of 65,000 tokens. "
              "Llama 2 was released by Meta in July 2023. Bananas are rich in potassium.")
    checks = check_grounding(answer, SOURCES)
    assert [c.supported for c in checks] == [True, False, True, False]
    assert [c.source for c in checks[:3]] == [0, 0, 1]
    assert checks[1].missing == ("65000",)
    assert check_grounding("", SOURCES) == []
    with pytest.raises(ValueError, match="sources must be a non-empty list"):
        check_grounding("x", "not a list")
