"""Tokenization: byte-level BPE (train, encode, decode, save/load) and WordPiece (chapter 04).

Byte-level BPE in four lines:

    1. pre-tokenise the text with a regex (words, numbers, punctuation runs, whitespace);
    2. write every pre-token as its UTF-8 bytes: ids 0..255, so ANY text can be spelled;
    3. training: repeatedly replace the most frequent adjacent pair (a, b) by a new id;
    4. encoding: in each pre-token, apply the learned merges in the order they were learned.

Ids: 0..255 are the bytes, 256.. the merges in training order, then the special tokens.
A merge table is a dict ``{(a, b): new_id}`` whose insertion order is the training order,
so ``new_id`` doubles as the merge's *rank* (lower = learned earlier = applied first).

Determinism: when two pairs are equally frequent, training takes the pair whose bytes are
lexicographically greatest, comparing ``(bytes(a), bytes(b))``. Special tokens
(``"<|endoftext|>"``) are cut out of the text before anything else, so they are never split
and never take part in a merge.

WordPiece (BERT's tokenizer) is the other subword scheme of the chapter: no merges at
encode time, but a greedy longest-match-first search in a fixed vocabulary, where a piece
that continues a word is written ``##piece``, and a word that cannot be spelled becomes
``[UNK]`` as a whole.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path

import regex

from llm_course.files import atomic_write

# GPT-2's pre-tokeniser: English contractions, letters, numbers, other symbols (each run may
# carry one leading space), then whitespace. "\s+(?!\S)" leaves the last space of a run for
# the next word, so " the" stays one pre-token. Every character matches some branch, so the
# pre-tokens always concatenate back to the text.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# The same pattern for text that is pure ASCII, where \p{L} is [A-Za-z], \p{N} is [0-9] and
# \s (Unicode White_Space) is [\t\n\v\f\r ] — note: NOT Python's \s, which also matches
# \x1c-\x1f. It splits ASCII text exactly as the pattern above, and runs on the standard
# library's `re`, about twice as fast as `regex` (which we need for \p{…} classes).
GPT2_SPLIT_PATTERN_ASCII = (
    r"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^\t\n\x0b\x0c\r A-Za-z0-9]+"""
    r"""|[\t\n\x0b\x0c\r ]+(?![^\t\n\x0b\x0c\r ])|[\t\n\x0b\x0c\r ]+"""
)

FORMAT = "llm_course.bpe"
FORMAT_VERSION = 1
NOT_A_MERGE = 2**62  # the rank of a pair that was never merged (larger than any id)
CACHE_LIMIT = 200_000  # distinct pre-tokens kept by BPETokenizer.encode

Pair = tuple[int, int]
Merges = dict[Pair, int]


def pretokenize(text: str, pattern: str = GPT2_SPLIT_PATTERN) -> list[str]:
    """Split text into pre-tokens; merges never cross their boundaries.

    >>> pretokenize("Hello, world!  It's 2024.")
    ['Hello', ',', ' world', '!', ' ', ' It', "'s", ' 2024', '.']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return regex.findall(pattern, text)


# --- the two primitives of BPE --------------------------------------------------------------


def get_pair_counts(ids: Sequence[int]) -> dict[Pair, int]:
    """How often each adjacent pair occurs in ``ids``; overlapping pairs count ("aaa" → (a, a): 2).

    >>> get_pair_counts([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts: dict[Pair, int] = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    Occurrences cannot overlap: in (a, a, a) only the first two a's merge.

    >>> merge([97, 97, 97, 98], (97, 97), 256)
    [256, 97, 98]
    """
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2  # both halves are consumed: the second one cannot start another pair
        else:
            out.append(ids[i])
            i += 1
    return out


def build_vocab(merges: Merges) -> dict[int, bytes]:
    """id → the bytes it stands for: 0..255 are single bytes, each merge joins two entries."""
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocab[new_id] = vocab[a] + vocab[b]
    return vocab


# --- training -------------------------------------------------------------------------------


def train_merges(text: str, vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN) -> Merges:
    """Learn ``vocab_size - 256`` merges the straightforward way: recount every pair per merge.

    This is the definition (and the lab's version); ``train_bpe`` gives identical merges
    with incremental counts, fast enough for megabytes. Ties in frequency go to the pair
    whose bytes are lexicographically greatest. Stops early if no pair is left.

    >>> train_merges("aaab aaab", 258)
    {(97, 97): 256, (256, 97): 257}
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256:
        raise ValueError(f"vocab_size must be an int ≥ 256 (the 256 byte tokens), got {vocab_size!r}")
    # Merges never cross pre-tokens, so train on the distinct pre-tokens, weighted by frequency.
    words = [(list(word.encode("utf-8")), freq) for word, freq in Counter(pretokenize(text, pattern)).items()]
    vocab = {i: bytes([i]) for i in range(256)}
    merges: Merges = {}
    for new_id in range(256, vocab_size):
        counts: dict[Pair, int] = {}
        for ids, freq in words:
            for pair, n in get_pair_counts(ids).items():
                counts[pair] = counts.get(pair, 0) + n * freq
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        words = [(merge(ids, best, new_id), freq) for ids, freq in words]
        merges[best] = new_id
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
    return merges


def train_bpe(
    text: str, vocab_size: int, special_tokens: Sequence[str] = (), pattern: str = GPT2_SPLIT_PATTERN
) -> BPETokenizer:
    """Train a byte-level BPE tokenizer with ``vocab_size`` ids in all (bytes + merges + specials).

    Same result as ``train_merges`` (plus special tokens), but each merge only touches the
    words that contain the merged pair:

    * the text is reduced once to its distinct pre-tokens ("words") and their frequencies;
    * ``where[pair]`` indexes the words that contain a pair, so a merge visits only those;
    * pair counts change by deltas (old pairs of a rewritten word out, new pairs in);
    * a max-heap of (count, pair) with lazy deletion finds the next pair; entries whose count
      is out of date are skipped when popped.
    """
    specials = _check_special_tokens(special_tokens)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256 + len(specials):
        raise ValueError(f"vocab_size must be an int ≥ 256 + {len(specials)} special tokens, got {vocab_size!r}")
    word_freqs: Counter[str] = Counter()
    for part in _split_on_specials(text, _special_regex(specials)):
        if part not in specials:
            word_freqs.update(pretokenize(part, pattern))
    words = [list(w.encode("utf-8")) for w in word_freqs]
    freqs = list(word_freqs.values())

    counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for i, (ids, freq) in enumerate(zip(words, freqs)):
        for pair in zip(ids, ids[1:]):
            counts[pair] += freq
            where[pair].add(i)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)

    vocab = {i: bytes([i]) for i in range(256)}
    merges: Merges = {}
    for new_id in range(256, vocab_size - len(specials)):
        best = _pop_most_frequent(heap, counts, vocab)
        if best is None:
            break
        merges[best] = new_id
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        delta: Counter[Pair] = Counter()
        for i in where.pop(best):
            old = words[i]
            new = merge(old, best, new_id)
            if len(new) == len(old):
                continue  # a stale index entry: an earlier merge already removed the pair here
            freq = freqs[i]
            for pair in zip(old, old[1:]):
                delta[pair] -= freq
            for pair in zip(new, new[1:]):
                delta[pair] += freq
                where[pair].add(i)
            words[i] = new
        for pair, d in delta.items():
            if d == 0:
                continue
            counts[pair] += d
            if counts[pair] > 0:
                heapq.heappush(heap, (-counts[pair], pair))
            else:
                del counts[pair]
                where.pop(pair, None)
    first_special = 256 + len(merges)
    return BPETokenizer(merges, {s: first_special + i for i, s in enumerate(specials)}, pattern)


def _pop_most_frequent(heap: list, counts: dict[Pair, int], vocab: dict[int, bytes]) -> Pair | None:
    """Pop the most frequent pair (ties: greatest bytes); put the other tied pairs back."""
    while heap:
        neg, pair = heapq.heappop(heap)
        if counts.get(pair) == -neg:
            break
    else:
        return None
    tied = {pair}
    while heap and heap[0][0] == neg:
        _, other = heapq.heappop(heap)
        if counts.get(other) == -neg:
            tied.add(other)
    best = max(tied, key=lambda p: (vocab[p[0]], vocab[p[1]]))
    for other in tied - {best}:
        heapq.heappush(heap, (neg, other))
    return best


# --- encoding and decoding ------------------------------------------------------------------


def encode_chunk(chunk: bytes, merges: Merges) -> list[int]:
    """Token ids of one pre-token: start from its bytes, apply merges by rank (earliest first).

    At each step the adjacent pair with the lowest rank is merged everywhere in the chunk;
    this replays training, so a chunk seen in training is split exactly as training split it.

    >>> encode_chunk(b"aaab", {(97, 97): 256, (256, 97): 257})
    [257, 98]
    """
    ids = list(chunk)
    while len(ids) >= 2:
        ranks = [merges.get(pair, NOT_A_MERGE) for pair in zip(ids, ids[1:])]
        best = min(ranks)  # the merge learned first among the adjacent pairs
        if best == NOT_A_MERGE:
            break  # no adjacent pair was ever merged: done
        i = ranks.index(best)
        ids = merge(ids, (ids[i], ids[i + 1]), best)
    return ids


def decode(ids: Iterable[int], vocab: dict[int, bytes]) -> str:
    """Text of a sequence of ids. Bytes that end mid-character decode to U+FFFD instead of raising.

    >>> decode([228, 184], {i: bytes([i]) for i in range(256)})   # 2 of the 3 bytes of "中"
    '�'
    """
    ids = list(ids)
    if any(i not in vocab for i in ids):
        raise ValueError(f"ids contains ids not in the vocabulary (size {len(vocab)}): "
                         f"{sorted({i for i in ids if i not in vocab})[:5]}")
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


class _PreTokenCache(dict):
    """{pre-token: ids}; a missing pre-token is encoded with the merges on first lookup."""

    def __init__(self, merges: Merges):
        super().__init__()
        self.merges = merges

    def __missing__(self, word: str) -> list[int]:
        ids = self[word] = encode_chunk(word.encode("utf-8"), self.merges)
        return ids


class BPETokenizer:
    """A trained byte-level BPE tokenizer: merges + special tokens + pre-tokenisation regex.

    ``encode`` caches the ids of every distinct pre-token it has seen: natural text repeats
    its words, so after a few kilobytes nearly every pre-token is a dictionary hit.
    """

    def __init__(self, merges: Merges, special_tokens: dict[str, int] | None = None,
                 pattern: str = GPT2_SPLIT_PATTERN):
        expected = list(range(256, 256 + len(merges)))
        if list(merges.values()) != expected:
            raise ValueError("merges must map pairs to the ids 256, 257, ... in training order")
        if any(a >= new or b >= new for (a, b), new in merges.items()):
            raise ValueError("merges: a merge may only join ids that exist before it")
        self.merges = dict(merges)
        self.pattern = pattern
        self.special_tokens = dict(special_tokens or {})
        first = 256 + len(merges)
        if sorted(self.special_tokens.values()) != list(range(first, first + len(self.special_tokens))):
            raise ValueError(f"special_tokens must take the ids right after the merges ({first}, {first + 1}, ...)")
        _check_special_tokens(list(self.special_tokens))
        self.vocab = build_vocab(self.merges)
        self.vocab.update({i: s.encode("utf-8") for s, i in self.special_tokens.items()})
        self._regex = regex.compile(pattern)
        self._ascii_regex = re.compile(GPT2_SPLIT_PATTERN_ASCII) if pattern == GPT2_SPLIT_PATTERN else None
        self._special_regex = _special_regex(list(self.special_tokens))
        self._cache = _PreTokenCache(self.merges)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, specials={list(self.special_tokens)})"

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of text in which special tokens are NOT recognised (treated as plain text)."""
        fast = self._ascii_regex is not None and text.isascii()
        words = (self._ascii_regex if fast else self._regex).findall(text)
        cache = self._cache
        if len(cache) > CACHE_LIMIT:  # bound the memory when streaming huge, varied text
            cache.clear()
        return list(chain.from_iterable(map(cache.__getitem__, words)))

    def encode(self, text: str) -> list[int]:
        """Ids of text; special tokens in it become their single id and are never split."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if self._special_regex is None:
            return self.encode_ordinary(text)
        out: list[int] = []
        for part in _split_on_specials(text, self._special_regex):
            special = self.special_tokens.get(part)
            out += [special] if special is not None else self.encode_ordinary(part)
        return out

    def encode_iterable(self, chunks: Iterable[str]) -> Iterator[int]:
        """Stream the ids of a text given in pieces (e.g. a file's lines), in constant memory.

        Yields exactly ``encode("".join(chunks))``. A chunk boundary can fall inside a
        pre-token or a special token, so the unsure tail of the text is held back: the last
        two pre-tokens (the regex looks at most two characters past a match, e.g. "'l" may
        still become "'ll") and anything that could be the start of a special token.
        """
        pending = ""
        for chunk in chunks:
            if not isinstance(chunk, str):
                raise TypeError(f"chunks must yield str, got {type(chunk).__name__}")
            pending += chunk
            cut = self._stable_prefix(pending)
            if cut:
                yield from self.encode(pending[:cut])
                pending = pending[cut:]
        yield from self.encode(pending)

    def _stable_prefix(self, text: str) -> int:
        """Length of a prefix of text whose ids cannot change whatever text follows."""
        start = 0  # the last ordinary segment begins after the last complete special token
        if self._special_regex is not None:
            for m in self._special_regex.finditer(text):
                start = m.end()
        starts = [m.start() for m in self._regex.finditer(text, start)]
        cut = starts[-2] if len(starts) >= 2 else start
        longest = max((len(s) for s in self.special_tokens), default=0)
        for k in range(max(start, len(text) - longest + 1), len(text)):
            if any(s.startswith(text[k:]) for s in self.special_tokens):
                # a special token may be arriving: cut before the pre-token holding its start
                cut = min(cut, max([p for p in starts if p <= k], default=start))
                break
        return cut

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids; a sequence that stops inside a UTF-8 character ends in U+FFFD."""
        return decode(ids, self.vocab)

    def mergeable_ranks(self) -> dict[bytes, int]:
        """{token bytes: id} for every non-special token: tiktoken's ``mergeable_ranks``."""
        return {b: i for i, b in self.vocab.items() if i < 256 + len(self.merges)}

    # --- persistence ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as JSON, atomically: a crash never leaves a half-written file."""
        path = Path(path)
        data = {"format": FORMAT, "version": FORMAT_VERSION, "pattern": self.pattern,
                "special_tokens": self.special_tokens, "merges": [list(p) for p in self.merges]}
        with atomic_write(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a file written by ``save``; a truncated or foreign file raises ValueError."""
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a complete {FORMAT} file (truncated or not JSON): {err}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file (its 'format' field is missing or different)")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path} has {FORMAT} version {data.get('version')!r}; this code reads {FORMAT_VERSION}")
        try:
            merges = {(int(a), int(b)): 256 + i for i, (a, b) in enumerate(data["merges"])}
            return cls(merges, {str(k): int(v) for k, v in data["special_tokens"].items()}, str(data["pattern"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is a damaged {FORMAT} file: {err}") from None


def _check_special_tokens(special_tokens: Sequence[str]) -> list[str]:
    specials = list(special_tokens)
    if isinstance(special_tokens, str) or not all(isinstance(s, str) and s for s in specials):
        raise ValueError(f"special_tokens must be a sequence of non-empty str, got {special_tokens!r}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special_tokens contains duplicates: {specials}")
    return specials


def _special_regex(specials: Sequence[str]) -> regex.Pattern | None:
    # Longest first, so "<|endoftext|>" wins over a special token that is its prefix.
    if not specials:
        return None
    return regex.compile("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)))


def _split_on_specials(text: str, special_regex: regex.Pattern | None) -> list[str]:
    """Text cut around special tokens, which are kept as parts of their own."""
    if special_regex is None:
        return [text]
    return [p for p in regex.split(f"({special_regex.pattern})", text) if p]


# --- WordPiece ------------------------------------------------------------------------------


def wordpiece_tokenize(word: str, vocab: dict[str, int] | set[str], unk_token: str = "[UNK]",
                       max_input_chars_per_word: int = 100) -> list[str]:
    """WordPiece pieces of one word: greedy longest-match-first, continuations prefixed "##".

    If some position of the word cannot be matched, the WHOLE word becomes ``unk_token``
    (not just its tail). Words longer than ``max_input_chars_per_word`` are ``unk_token`` too.

    >>> wordpiece_tokenize("unaffable", {"un", "##aff", "##able", "aff"})
    ['un', '##aff', '##able']
    """
    if len(word) > max_input_chars_per_word:
        return [unk_token]
    pieces: list[str] = []
    start = 0
    while start < len(word):
        end = len(word)
        piece = None
        while end > start:  # try the longest candidate first, then shrink it
            candidate = word[start:end] if start == 0 else "##" + word[start:end]
            if candidate in vocab:
                piece = candidate
                break
            end -= 1
        if piece is None:
            return [unk_token]
        pieces.append(piece)
        start = end
    return pieces


def _is_punctuation(ch: str) -> bool:
    # BERT's rule: ASCII symbols such as $ + < = > ^ ` | ~ count too, not only Unicode's P* categories.
    return (ch.isascii() and not ch.isalnum() and ch.isprintable() and not ch.isspace()) or \
        unicodedata.category(ch).startswith("P")


def wordpiece_pretokenize(text: str) -> list[str]:
    """BERT's pre-tokenisation: split on whitespace, and every punctuation character alone.

    >>> wordpiece_pretokenize("Hello, world!")
    ['Hello', ',', 'world', '!']
    """
    words: list[str] = []
    for chunk in text.split():
        current = ""
        for ch in chunk:
            if _is_punctuation(ch):
                words += [current, ch] if current else [ch]
                current = ""
            else:
                current += ch
        if current:
            words.append(current)
    return words


def wordpiece_encode(text: str, vocab: dict[str, int] | set[str], unk_token: str = "[UNK]",
                     max_input_chars_per_word: int = 100) -> list[str]:
    """WordPiece tokens of a text (no lower-casing or accent stripping: do that before)."""
    return [piece for word in wordpiece_pretokenize(text)
            for piece in wordpiece_tokenize(word, vocab, unk_token, max_input_chars_per_word)]


def load_wordpiece_vocab(path: str | os.PathLike) -> dict[str, int]:
    """A BERT ``vocab.txt`` (one token per line) as {token: id}."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return {token: i for i, token in enumerate(lines)}
