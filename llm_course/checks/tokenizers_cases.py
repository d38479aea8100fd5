"""Cases for lab 04 (tokenization). Each piece compares the learner's code with
``llm_course.tokenizers`` on hand-made and real (Shakespeare, Chinese reviews) inputs, and
recognises the classic mistakes by recomputing them."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import torch

from llm_course import tokenizers as ref
from llm_course.checks.engine import Case, Reason, piece


def _rng(gen: torch.Generator) -> random.Random:
    return random.Random(int(torch.randint(0, 2**31, (), generator=gen)))


def _english(rng: random.Random, n_chars: int) -> str:
    from llm_course.data import shakespeare
    text = shakespeare()
    start = rng.randrange(0, len(text) - n_chars)
    return text[start:start + n_chars]


def _chinese(rng: random.Random, n_reviews: int) -> str:
    from llm_course.data import chinese_sentiment
    reviews = chinese_sentiment()
    start = rng.randrange(0, len(reviews) - n_reviews)
    return "\n".join(r for r, _ in reviews[start:start + n_reviews])


def _compare_sequence(got, expected: list, what: str, mistakes: Sequence[tuple[str, list]] = ()) -> Reason:
    """None if ``got`` equals ``expected`` as a list; else a hint, never the expected values."""
    if isinstance(got, tuple):
        got = list(got)
    if not isinstance(got, list):
        return f"{what} should be a list, got {type(got).__name__}"
    if got == expected:
        return None
    for hint, wrong in mistakes:
        if got == wrong:
            return hint
    if len(got) != len(expected):
        return f"{what} has {len(got)} items, expected {len(expected)}"
    first = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
    return f"{what} first differs from the reference at position {first} (of {len(expected)})"


# --- 04.get_pair_counts --------------------------------------------------------------------------


@piece("04.get_pair_counts", "count adjacent pairs")
def pair_counts_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)

    def case(name: str, ids: list[int]) -> Case:
        def run(fn) -> Reason:
            given = list(ids)
            got = fn(given)
            if given != ids:
                return "get_pair_counts changed the list it was given; only read it"
            if not isinstance(got, dict):
                return f"should return a dict {{(a, b): count}}, got {type(got).__name__}"
            got = {k: v for k, v in got.items() if v}  # a Counter may keep zero entries
            expected = ref.get_pair_counts(ids)
            if got == expected:
                return None
            if got and not all(isinstance(k, tuple) and len(k) == 2 for k in got):
                return "the keys should be pairs (a, b) of adjacent ids, as tuples"
            mistakes = [
                ("each pair counted once: count every occurrence", {p: 1 for p in expected}),
                ("pairs counted in steps of two: every i gives a pair (ids[i], ids[i + 1]), so in "
                 "(a, a, a) the pair (a, a) occurs twice", dict(Counter(zip(ids[::2], ids[1::2])))),
                ("pairs of ids two apart were counted: pairs are (ids[i], ids[i + 1])",
                 dict(Counter(zip(ids, ids[2:])))),
            ]
            for hint, wrong in mistakes:
                if got == wrong:
                    return hint
            missing = len(set(expected) - set(got))
            return (f"{missing} of the {len(expected)} adjacent pairs are missing" if missing
                    else "some counts are wrong")

        return Case(name, run)

    text = _english(rng, 300)
    cases = [
        case("[1, 2, 3, 1, 2]", [1, 2, 3, 1, 2]),
        case('"aaab" (overlapping pairs)', list(b"aaab")),
        case("one id and no ids", [7]),
        case("300 bytes of Shakespeare", list(text.encode("utf-8"))),
    ]
    if extended:
        cases += [case("empty", []), case("a run of 9 equal ids", [5] * 9),
                  case("random ids up to 600", [rng.randrange(600) for _ in range(200)])]
    return cases


# --- 04.merge --------------------------------------------------------------------------------------


def _merge_overlapping(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 1  # the mistake: the second half is used again
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return [*ids[:i], new_id, *ids[i + 2:]]
    return list(ids)


@piece("04.merge", "merge one pair")
def merge_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)

    def case(name: str, ids: list[int], pair: tuple[int, int], new_id: int) -> Case:
        def run(fn) -> Reason:
            given = list(ids)
            got = fn(given, pair, new_id)
            if given != ids:
                return "merge changed the list it was given; build and return a new list"
            mistakes = [
                ("overlapping occurrences were merged: after merging ids[i], ids[i+1], continue at i + 2 "
                 "(in a a a only the first two a's merge)", _merge_overlapping(ids, pair, new_id)),
                ("only the first occurrence was merged: replace every occurrence", _merge_first_only(ids, pair, new_id)),
                ("the last id was dropped: when no pair starts at the last position, keep that id",
                 ref.merge(ids, pair, new_id)[:-1]),
            ]
            return _compare_sequence(got, ref.merge(ids, pair, new_id), "the merged ids", mistakes)

        return Case(name, run)

    words = list(_english(rng, 400).encode("utf-8"))
    cases = [
        case("[1, 2, 3, 1, 2] merging (1, 2)", [1, 2, 3, 1, 2], (1, 2), 256),
        case('"aaa" merging (a, a)', list(b"aaa"), (97, 97), 256),
        case('"aaaa" merging (a, a)', list(b"aaaa"), (97, 97), 300),
        case("pair not present", [1, 2, 3], (3, 1), 256),
        case("400 bytes of Shakespeare merging (e, space)", words, (101, 32), 256),
    ]
    if extended:
        cases += [case("empty", [], (1, 2), 256), case("pair at the very end", [4, 1, 2], (1, 2), 999),
                  case("odd run of 7", [9] * 7, (9, 9), 400),
                  case("random ids", [rng.randrange(4) for _ in range(300)], (1, 1), 512)]
    return cases


# --- 04.train_bpe ----------------------------------------------------------------------------------


def _train_variant(text: str, vocab_size: int, *, tie: str = "bytes", pretokenize: bool = True) -> dict:
    """The reference trainer with one deliberate mistake, to recognise it in a learner's merges."""
    chunks = ref.pretokenize(text) if pretokenize else [text]
    words = [(list(w.encode("utf-8")), f) for w, f in Counter(chunks).items()]
    vocab = {i: bytes([i]) for i in range(256)}

    def as_bytes(p):
        return vocab[p[0]], vocab[p[1]]

    choose = {"bytes": lambda tied: max(tied, key=as_bytes), "ids": max,
              "smallest_bytes": lambda tied: min(tied, key=as_bytes), "smallest_ids": min,
              "first_seen": lambda tied: tied[0]}[tie]
    merges = {}
    for new_id in range(256, vocab_size):
        counts: dict = {}
        for ids, f in words:
            for p, n in ref.get_pair_counts(ids).items():
                counts[p] = counts.get(p, 0) + n * f
        if not counts:
            break
        top = max(counts.values())
        best = choose([p for p in counts if counts[p] == top])
        words = [(ref.merge(ids, best, new_id), f) for ids, f in words]
        merges[best] = new_id
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
    return merges


TRAIN_MISTAKES = {
    "ties broken by comparing ids, not bytes: compare (vocab[a], vocab[b]) of tied pairs": dict(tie="ids"),
    "ties broken the wrong way: among equally frequent pairs take the lexicographically GREATEST bytes":
        dict(tie="smallest_bytes"),
    "ties broken the wrong way (smallest ids): take the pair with the lexicographically greatest bytes":
        dict(tie="smallest_ids"),
    "ties broken by the order pairs were seen: use the tie rule (greatest bytes)": dict(tie="first_seen"),
    "the text was not pre-tokenised: merges must not cross pre-token boundaries (use pretokenize)":
        dict(pretokenize=False),
}


@piece("04.train_bpe", "train BPE merges")
def train_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)

    def case(name: str, text: str, vocab_size: int) -> Case:
        def run(fn) -> Reason:
            got = fn(text, vocab_size)
            if not isinstance(got, dict):
                return f"should return a dict {{(a, b): new_id}}, got {type(got).__name__}"
            expected = ref.train_merges(text, vocab_size)
            got_items, exp_items = list(got.items()), list(expected.items())
            if got_items == exp_items:
                return None
            if got and list(got.values()) != list(range(256, 256 + len(got))):
                return "new ids must be 256, 257, ... in the order the merges are learned"
            mistakes = [(h, list(_train_variant(text, vocab_size, **kw).items())) for h, kw in TRAIN_MISTAKES.items()]
            for hint, wrong in mistakes:
                if got_items == wrong:
                    return hint
            if len(got_items) != len(exp_items):
                return (f"learned {len(got_items)} merges, expected {len(exp_items)} "
                        "(vocab_size - 256, fewer only if no pair is left)")
            first = next(i for i, (a, b) in enumerate(zip(got_items, exp_items)) if a != b)
            return f"merge number {first} (0-based) differs from the reference"

        return Case(name, run)

    cases = [
        case('"ab ab abc abc bd bd", 3 merges (a tie to break)', "ab ab abc abc bd bd", 259),
        case('"abcd": every pair ties', "abcd", 257),
        case("1,500 chars of Shakespeare, 40 merges", _english(rng, 1500), 296),
        case("stops when no pair is left", "ab", 300),
    ]
    if extended:
        cases += [case("Chinese reviews, 30 merges", _chinese(rng, 20), 286),
                  case("3,000 chars of Shakespeare, 60 merges", _english(rng, 3000), 316),
                  case("empty text", "", 260),
                  case("many ties: a b c d e ...", " ".join("abcdefgh" * 3), 270)]
    return cases


# --- 04.encode -------------------------------------------------------------------------------------


def _encode_variant(chunk: bytes, merges: dict, order: str) -> list[int]:
    ids = list(chunk)
    if order == "table_reversed":
        for pair, new_id in reversed(merges.items()):
            ids = ref.merge(ids, pair, new_id)
        return ids
    while len(ids) >= 2:
        pairs = [p for p in zip(ids, ids[1:]) if p in merges]
        if not pairs:
            break
        pair = {"latest": max(pairs, key=merges.get), "leftmost": pairs[0],
                "most_frequent": Counter(pairs).most_common(1)[0][0],
                "once": min(pairs, key=merges.get)}[order]
        ids = ref.merge(ids, pair, merges[pair])
        if order == "once":
            break
    return ids


ENCODE_MISTAKES = {
    "merges applied in the wrong order: always merge the adjacent pair learned FIRST (lowest id)": "latest",
    "merged the leftmost mergeable pair: pick the adjacent pair learned first, wherever it is": "leftmost",
    "merges applied in the wrong order (the table was walked from the last merge back)": "table_reversed",
    "merged the most frequent pair of the chunk: at encode time the order is the training order": "most_frequent",
    "stopped after one merge: repeat until no adjacent pair is a learned merge": "once",
}


@piece("04.encode", "encode a pre-token with the merges")
def encode_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)
    merges = ref.train_merges(_english(rng, 4000), 380)

    def case(name: str, chunk: bytes, table: dict) -> Case:
        def run(fn) -> Reason:
            given = dict(table)
            got = fn(chunk, given)
            if list(given.items()) != list(table.items()):
                return "encode_chunk changed the merges it was given"
            mistakes = [(h, _encode_variant(chunk, table, o)) for h, o in ENCODE_MISTAKES.items()]
            return _compare_sequence(got, ref.encode_chunk(chunk, table), "the ids", mistakes)

        return Case(name, run)

    hand = {(97, 97): 256, (256, 97): 257, (97, 98): 258}
    cases = [
        case('b"aaab" with merges (a,a), (aa,a), (a,b)', b"aaab", hand),
        case('b"ab" (one merge applies)', b"ab", hand),
        case("no merge applies", b"xyz", hand),
        case('" wherefore" with 124 merges learned from Shakespeare', " wherefore".encode(), merges),
        case('" nothing" with the same merges', " nothing".encode(), merges),
    ]
    if extended:
        words = [w for w in ref.pretokenize(_english(rng, 2000)) if len(w) > 4]
        cases += [case("empty chunk", b"", hand), case("one byte", b"q", merges),
                  case('"中文" (UTF-8 bytes)', "中文".encode(), merges),
                  *(case(f"the pre-token {w!r}", w.encode(), merges) for w in rng.sample(words, 4))]
    return cases


# --- 04.decode -------------------------------------------------------------------------------------


@piece("04.decode", "decode ids to text")
def decode_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)
    merges = ref.train_merges(_english(rng, 3000) + _chinese(rng, 5), 340)
    vocab = ref.build_vocab(merges)

    def case(name: str, text: str, drop_last_bytes: int = 0) -> Case:
        def run(fn) -> Reason:
            ids = [i for w in ref.pretokenize(text) for i in ref.encode_chunk(w.encode(), merges)]
            if drop_last_bytes:  # end the id sequence inside the last character
                ids = ids[:-1] + list(vocab[ids[-1]][:-drop_last_bytes])
            expected = ref.decode(ids, vocab)
            try:
                got = fn(list(ids), dict(vocab))
            except UnicodeDecodeError:
                return ("raised UnicodeDecodeError on ids that end inside a UTF-8 character: "
                        "decode with errors='replace'")
            if not isinstance(got, str):
                return f"should return a str, got {type(got).__name__}"
            if got == expected:
                return None
            data = b"".join(vocab[i] for i in ids)
            per_token = "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)
            if got == per_token:
                return ("each token was decoded on its own: a character can be split over tokens, so join "
                        "all the bytes first and decode once")
            if got == data.decode("utf-8", errors="ignore"):
                return "the incomplete character was dropped: use errors='replace' so it shows as �"
            if got == data.decode("latin-1"):
                return "the bytes were decoded as Latin-1: text is UTF-8"
            return "the text differs from the reference"

        return Case(name, run)

    cases = [
        case("English", "To be, or not to be: that is the question."),
        case("Chinese (3 bytes per character)", "这本书很好看，推荐！"),
        case("emoji and accents", "café 😀 naïve"),
        case("ends inside a UTF-8 character", "好的", drop_last_bytes=1),
    ]
    if extended:
        cases += [case("empty", ""), case("ends 2 bytes into an emoji", "ok 😀", drop_last_bytes=2),
                  case("whitespace runs", "a \n\n\t  b   "), case("Shakespeare", _english(rng, 500))]
    return cases


# --- 04.wordpiece ----------------------------------------------------------------------------------


def _wordpiece_variant(word: str, vocab, unk: str, max_chars: int, mistake: str) -> list[str]:
    if mistake != "no_max" and len(word) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        ends = range(start + 1, len(word) + 1) if mistake == "shortest" else range(len(word), start, -1)
        found = None
        for end in ends:
            cand = word[start:end] if (start == 0 or mistake == "no_prefix") else "##" + word[start:end]
            if cand in vocab:
                found = (cand, end)
                break
        if found is None:
            return pieces + [unk] if mistake == "partial_unk" else [unk]
        pieces.append(found[0])
        start = found[1]
    return pieces


WORDPIECE_MISTAKES = {
    "continuation pieces must be looked up (and returned) with the '##' prefix": "no_prefix",
    "when part of a word cannot be matched, the WHOLE word becomes [UNK], not only the rest": "partial_unk",
    "shortest match first: WordPiece takes the LONGEST piece in the vocabulary at each position": "shortest",
    "words longer than max_input_chars_per_word must become [UNK]": "no_max",
}

TOY_VOCAB = {"[UNK]", "un", "##aff", "##able", "aff", "able", "a", "##a", "b", "##b", "ab", "##ab",
             "play", "##ing", "##s", "p", "##l", "##ay", "##in", "##g", "中", "##文", "token", "##ization"}


@piece("04.wordpiece", "WordPiece tokenize one word")
def wordpiece_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)

    def case(name: str, word: str, vocab=TOY_VOCAB, max_chars: int = 100, unk: str = "[UNK]") -> Case:
        def run(fn) -> Reason:
            kwargs = {} if (max_chars, unk) == (100, "[UNK]") else dict(unk_token=unk, max_input_chars_per_word=max_chars)
            got = fn(word, vocab, **kwargs)
            mistakes = [(h, _wordpiece_variant(word, vocab, unk, max_chars, m)) for h, m in WORDPIECE_MISTAKES.items()]
            expected = ref.wordpiece_tokenize(word, vocab, unk, max_chars)
            return _compare_sequence(got, expected, f"the pieces of {word!r}", mistakes)

        return Case(name, run)

    cases = [
        case('"unaffable"', "unaffable"),
        case('"playing" (longest match first)', "playing"),
        case('"abx" (cannot be spelled)', "abx"),
        case('"tokenization" with max_input_chars_per_word=5', "tokenization", max_chars=5),
        case('"中文"', "中文"),
    ]
    if extended:
        from llm_course.pretrained import minilm_path
        bert = ref.load_wordpiece_vocab(minilm_path() / "vocab.txt")
        words = [w.lower() for w in ref.wordpiece_pretokenize(_english(rng, 600)) if len(w) > 6][:4]
        cases += [case("empty word", ""), case('"aaab" (## pieces repeat)', "aaab"),
                  case('"plays" with unk_token "<unk>" and a cap of 5', "plays", max_chars=5, unk="<unk>"),
                  case('"unplayable" (fails after a good start)', "unplayable"),
                  *(case(f"{w!r} with BERT's vocabulary", w, bert) for w in words)]
    return cases

