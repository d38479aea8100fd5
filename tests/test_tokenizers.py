"""llm_course.tokenizers against independent references: tiktoken (built from our ranks, no
download), Hugging Face `tokenizers` WordPiece, hand-worked cases, and round trips on
seeded random Unicode."""

from __future__ import annotations

import random
from functools import lru_cache

import pytest

from llm_course.data import chinese_sentiment, shakespeare_split
from llm_course.device import quick_mode
from llm_course.tokenizers import (
    GPT2_SPLIT_PATTERN, BPETokenizer, build_vocab, decode, encode_chunk, get_pair_counts,
    load_wordpiece_vocab, merge, pretokenize, train_bpe, train_merges, wordpiece_encode,
    wordpiece_pretokenize, wordpiece_tokenize,
)

SPECIAL = "<|endoftext|>"
EN_CHARS = 60_000 if quick_mode() else 400_000


@lru_cache(maxsize=1)
def english() -> tuple[str, str]:
    train, val = shakespeare_split()
    return train[:EN_CHARS], val[:EN_CHARS // 4]


@lru_cache(maxsize=1)
def chinese() -> str:
    return "\n".join(review for review, _ in chinese_sentiment()[:1500])


@lru_cache(maxsize=1)
def trained() -> BPETokenizer:
    train, _ = english()
    return train_bpe(train + SPECIAL + chinese()[:30_000], 1024, special_tokens=[SPECIAL])


def random_unicode(rng: random.Random, n: int) -> str:
    """Mixed scripts, emoji, combining marks, whitespace runs, contractions, astral planes."""
    pools = ["abc xyz", "   \t\n\r", "中文字符汉语标记化", "😀🎉👍🏽🇨🇳", "éüñçß", "Привет", "'s 'll 've",
             "0123456789", ".,;:!?-—…", "\u0301\u200b\ufeff", "<|endoftext|>"]
    out = []
    for _ in range(n):
        if rng.random() < 0.1:
            out.append(chr(rng.randint(0x20, 0x10FFFF)))
        else:
            out.append(rng.choice(rng.choice(pools)))
    # lone surrogates cannot be encoded to UTF-8 at all, so they are not text
    return "".join(c for c in out if not 0xD800 <= ord(c[0]) <= 0xDFFF)


# --- primitives, by hand -----------------------------------------------------------------------


def test_pair_counts_and_merge_by_hand():
    assert get_pair_counts([97, 97, 97]) == {(97, 97): 2}          # overlapping pairs both count
    assert get_pair_counts([1]) == {} and get_pair_counts([]) == {}
    assert merge([97, 97, 97], (97, 97), 256) == [256, 97]          # ... but only one can merge
    assert merge([97, 97, 97, 97], (97, 97), 256) == [256, 256]
    assert merge([1, 2, 1, 2, 3], (1, 2), 9) == [9, 9, 3]
    assert merge([], (1, 2), 9) == []


def test_training_by_hand_with_the_tie_rule():
    # "ab": (a, b) occurs 3 times, nothing else twice → first merge (97, 98)
    assert list(train_merges("ab ab ab", 257)) == [(97, 98)]
    # all pairs of "abcd" tie at count 1: the greatest bytes pair wins, (c, d)
    assert list(train_merges("abcd", 257)) == [(99, 100)]
    # ties are compared on the bytes, not on the ids. After "ab" (256) and " ab" (257), three
    # pairs tie at count 2: (ab, c), ( , b), (b, d). By ids (256, 99) would win; by bytes
    # (b"b", b"d") is the greatest.
    text = "ab ab abc abc bd bd"
    merges = train_merges(text, 259)
    assert list(merges) == [(97, 98), (32, 256), (98, 100)]
    assert train_bpe(text, 259).merges == merges


def test_vocab_too_small_to_hold_merges_stops_early():
    assert train_merges("", 300) == {}
    assert train_merges("ab", 1000) == {(97, 98): 256}


def test_incremental_trainer_equals_the_definition_on_real_text():
    train, _ = english()
    text = train[:15_000] + chinese()[:3_000]
    assert train_bpe(text, 420).merges == train_merges(text, 420)


def test_encode_chunk_applies_merges_in_training_order():
    merges = {(97, 97): 256, (256, 97): 257, (97, 98): 258}
    assert encode_chunk(b"aaab", merges) == [257, 98]     # (a,a) first, not (a,b)
    assert encode_chunk(b"", merges) == []
    assert encode_chunk(b"xyz", merges) == list(b"xyz")


def test_decode_stops_mid_character_without_raising():
    vocab = build_vocab({})
    zhong = "中".encode("utf-8")
    assert decode(list(zhong), vocab) == "中"
    assert decode(list(zhong[:2]), vocab) == "\ufffd"
    assert decode(list(b"ok" + zhong[:1]), vocab) == "ok\ufffd"


# --- independent reference 1: tiktoken built from our ranks -------------------------------------


def tiktoken_from(tok: BPETokenizer):
    tiktoken = pytest.importorskip("tiktoken")
    return tiktoken.Encoding(name="llm_course_test", pat_str=tok.pattern,
                             mergeable_ranks=tok.mergeable_ranks(), special_tokens=tok.special_tokens)


def test_ids_identical_to_tiktoken_on_english_and_chinese():
    tok = trained()
    enc = tiktoken_from(tok)
    _, val = english()
    for text in (val, chinese()[30_000:60_000], f"Hello{SPECIAL}世界 {SPECIAL}!"):
        assert tok.encode(text) == enc.encode(text, allowed_special="all")


def test_ids_identical_to_tiktoken_on_random_unicode():
    tok, enc = trained(), tiktoken_from(trained())
    rng = random.Random(4)
    for _ in range(30):
        text = random_unicode(rng, 200)
        assert tok.encode(text) == enc.encode(text, allowed_special="all"), text


def test_ascii_fast_path_splits_exactly_as_the_unicode_pattern():
    """The stdlib `re` pattern used for ASCII text against `regex` with the \\p{...} classes,
    on random strings over all 128 ASCII characters (incl. \\x1c-\\x1f, which Python's \\s
    matches and Unicode White_Space does not) and a bias towards the tricky ones."""
    import re

    import regex

    from llm_course.tokenizers import GPT2_SPLIT_PATTERN, GPT2_SPLIT_PATTERN_ASCII
    rng = random.Random(7)
    tricky = " \t\n\r\x0b\x0c\x1c\x1f'sdmtlvre1_"
    for _ in range(3000):
        text = "".join(rng.choice(tricky) if rng.random() < 0.6 else chr(rng.randrange(128))
                       for _ in range(rng.randint(0, 40)))
        assert re.findall(GPT2_SPLIT_PATTERN_ASCII, text) == regex.findall(GPT2_SPLIT_PATTERN, text), repr(text)


def test_ascii_fast_path_ids_identical_to_tiktoken():
    tok = trained()
    enc = tiktoken_from(tok)
    rng = random.Random(11)
    for _ in range(30):
        text = "".join(chr(rng.randrange(128)) for _ in range(300))
        assert text.isascii() and tok.encode(text) == enc.encode(text, allowed_special="all"), repr(text)


# --- round trips and streaming -----------------------------------------------------------------


def test_round_trip_is_exact_on_random_unicode():
    tok = trained()
    rng = random.Random(0)
    for _ in range(60):
        text = random_unicode(rng, rng.randint(0, 300))
        assert tok.decode(tok.encode(text)) == text


def test_special_tokens_are_never_split_or_merged():
    tok = trained()
    sid = tok.special_tokens[SPECIAL]
    ids = tok.encode(f"a{SPECIAL}{SPECIAL}b")
    assert ids.count(sid) == 2 and len(ids) == 4
    assert all(sid not in pair for pair in tok.merges)
    assert sid not in tok.encode_ordinary(f"a{SPECIAL}")        # ordinary mode spells it out
    # a special token in the training text is cut out, not learned from
    small = train_bpe(f"xy{SPECIAL}" * 50, 300, special_tokens=[SPECIAL])
    assert all(b"<|" not in small.vocab[i] for i in small.merges.values())


def test_encode_iterable_equals_encode_for_any_chunking():
    tok = trained()
    rng = random.Random(1)
    for _ in range(40):
        text = random_unicode(rng, 300) + " I'll go" + SPECIAL[:5]
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text), rng.randint(1, 40))))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        assert list(tok.encode_iterable(iter(chunks))) == tok.encode(text)
    # character by character, across a contraction and a special token
    text = f"they'll   say {SPECIAL}\n\n  ok'"
    assert list(tok.encode_iterable(text)) == tok.encode(text)


# --- save / load ---------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    tok = trained()
    path = tmp_path / "tok.json"
    tok.save(path)
    back = BPETokenizer.load(path)
    assert back.merges == tok.merges and back.special_tokens == tok.special_tokens
    text = english()[1][:5000]
    assert back.encode(text) == tok.encode(text)
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]  # no temp file left behind


def test_load_rejects_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "tok.json"
    trained().save(path)
    data = path.read_text(encoding="utf-8")
    path.write_text(data[: len(data) // 2], encoding="utf-8")
    with pytest.raises(ValueError, match="truncated"):
        BPETokenizer.load(path)
    path.write_text('{"model": {"type": "BPE"}}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a llm_course.bpe file"):
        BPETokenizer.load(path)
    path.write_text(data.replace('"version": 1', '"version": 7'), encoding="utf-8")
    with pytest.raises(ValueError, match="version 7"):
        BPETokenizer.load(path)


# --- bad input -----------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="vocab_size"):
        train_merges("abc", 100)
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe("abc", 256, special_tokens=[SPECIAL])
    with pytest.raises(ValueError, match="special_tokens"):
        train_bpe("abc", 300, special_tokens=SPECIAL)
    with pytest.raises(ValueError, match="duplicates"):
        train_bpe("abc", 300, special_tokens=[SPECIAL, SPECIAL])
    with pytest.raises(TypeError, match="text must be a str"):
        trained().encode(b"bytes")
    with pytest.raises(TypeError, match="text must be a str"):
        pretokenize(None)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        trained().decode([0, 10**6])
    with pytest.raises(ValueError, match="256, 257"):
        BPETokenizer({(1, 2): 300})
    with pytest.raises(ValueError, match="exist before"):
        BPETokenizer({(1, 300): 256})


def test_pretokens_concatenate_back_to_the_text():
    rng = random.Random(2)
    for _ in range(20):
        text = random_unicode(rng, 200)
        assert "".join(pretokenize(text, GPT2_SPLIT_PATTERN)) == text


# --- independent reference 2: Hugging Face WordPiece ---------------------------------------------


@lru_cache(maxsize=1)
def bert_vocab() -> dict[str, int]:
    from llm_course.pretrained import minilm_path
    return load_wordpiece_vocab(minilm_path() / "vocab.txt")


def hf_wordpiece(vocab: dict[str, int], max_chars: int = 100):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]",
                                                           max_input_chars_per_word=max_chars))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    return tok


def test_wordpiece_by_hand():
    vocab = {"un", "##aff", "##able", "aff", "able", "a", "##b", "[UNK]"}
    assert wordpiece_tokenize("unaffable", vocab) == ["un", "##aff", "##able"]
    assert wordpiece_tokenize("able", vocab) == ["able"]                     # longest first
    assert wordpiece_tokenize("unx", vocab) == ["[UNK]"]                     # the WHOLE word
    assert wordpiece_tokenize("ab", vocab, max_input_chars_per_word=1) == ["[UNK]"]
    assert wordpiece_pretokenize("Hi,  there!! $5") == ["Hi", ",", "there", "!", "!", "$", "5"]


def test_wordpiece_tokens_identical_to_hugging_face():
    vocab = bert_vocab()
    hf = hf_wordpiece(vocab)
    _, val = english()
    texts = [val.lower()[:20_000], chinese()[:5_000],
             "unaffable tokenization supercalifragilisticexpialidocious 😀 naïve café $5.00 don't"]
    for text in texts:
        assert wordpiece_encode(text, vocab) == hf.encode(text, add_special_tokens=False).tokens
    short = hf_wordpiece(vocab, max_chars=5)
    assert wordpiece_encode(texts[2], vocab, max_input_chars_per_word=5) == \
        short.encode(texts[2], add_special_tokens=False).tokens
