"""Cases for lab 15 (serving): the request rules and the server-sent-event framing.

``15.validate`` runs ``validate_request`` on valid requests at every boundary and on requests
that break one or several rules; a rule counts as applied when one message names its field.
``15.sse`` parses the learner's events the way a client does, and checks laziness with a
source that records how far it has been read.
"""

from __future__ import annotations

import json
import math
import random

import torch

from llm_course.checks.engine import Case, Reason, piece
from llm_course.serving import Limits

FIELDS = ("prompt", "temperature", "max_tokens")


def _rng(gen: torch.Generator) -> random.Random:
    return random.Random(int(torch.randint(0, 2**31, (), generator=gen)))


# --- 15.validate ---------------------------------------------------------------------------------


def _field(message: str) -> str | None:
    """Which field a message is about (max_tokens before prompt: 'tokens' is in both)."""
    for name in ("max_tokens", "temperature", "prompt"):
        if name in message:
            return name
    return None


@piece("15.validate", "request validation")
def validate_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)
    p_lim, t_lim = rng.randint(8, 64), rng.randint(16, 128)
    limits = Limits(max_prompt_tokens=p_lim, max_tokens=t_lim)

    def case(desc: str, prompt: str, max_tokens: int, temperature: float, n_tokens: int,
             broken: tuple[str, ...] = ()) -> Case:
        def run(fn) -> Reason:
            got = fn(prompt, max_tokens, temperature, n_tokens, limits)
            if not isinstance(got, list) or not all(isinstance(m, str) for m in got):
                return f"should return a list of str messages, got {type(got).__name__}"
            if not broken and got:
                return f"{desc} is a valid request but was rejected: {got[0]!r}"
            named = [_field(m) for m in got]
            if got and len(got) < len(broken) and set(named) <= set(broken):
                return (f"{desc}: {len(got)} message(s) for {len(broken)} broken rules — report one "
                        "message per broken rule, every one of them")
            for field in broken:
                if field not in named:
                    return f"{desc} was accepted: no message names {field!r}"
            if None in named:
                return f"every message should name its field ({', '.join(FIELDS)}); this one does not: {got[named.index(None)]!r}"
            if len(got) != len(broken):
                return (f"{desc}: {len(got)} message(s) for {len(broken)} broken rule(s) — "
                        "report one message per broken rule, every one of them")
            return None

        return Case(desc, run)

    ok = dict(prompt="Hello there", max_tokens=min(16, t_lim), temperature=0.7, n_tokens=3)

    def with_(**changes):
        d = {**ok, **changes}
        return d["prompt"], d["max_tokens"], d["temperature"], d["n_tokens"]

    cases = [
        case("a valid request", *with_()),
        case("temperature 0 (greedy, allowed)", *with_(temperature=0.0)),
        case("temperature 2 (the upper bound, allowed)", *with_(temperature=2.0)),
        case("max_tokens 1 (allowed)", *with_(max_tokens=1)),
        case("max_tokens equal to the limit (allowed)", *with_(max_tokens=t_lim)),
        case("a prompt exactly at the token limit (allowed)", *with_(n_tokens=p_lim)),
        case("an empty prompt", *with_(prompt="", n_tokens=0), broken=("prompt",)),
        case("a whitespace-only prompt", *with_(prompt="  \n\t ", n_tokens=3), broken=("prompt",)),
        case("a prompt one token over the limit", *with_(n_tokens=p_lim + 1), broken=("prompt",)),
        case("temperature 2.5 (above 2)", *with_(temperature=2.5), broken=("temperature",)),
        case("temperature -0.1 (below 0)", *with_(temperature=-0.1), broken=("temperature",)),
        case("max_tokens 0", *with_(max_tokens=0), broken=("max_tokens",)),
        case("max_tokens one over the limit", *with_(max_tokens=t_lim + 1), broken=("max_tokens",)),
        case("a request that breaks three rules", *with_(prompt="", n_tokens=0, temperature=3.0, max_tokens=0),
             broken=("prompt", "temperature", "max_tokens")),
    ]
    if extended:
        cases += [
            case("temperature NaN", *with_(temperature=math.nan), broken=("temperature",)),
            case("temperature inf (above 2)", *with_(temperature=math.inf), broken=("temperature",)),
            case("temperature 2.0001 (above 2)", *with_(temperature=2.0001), broken=("temperature",)),
            case("max_tokens negative", *with_(max_tokens=-5), broken=("max_tokens",)),
            case("a long prompt far over the limit", *with_(prompt="word " * 500, n_tokens=10 * p_lim),
                 broken=("prompt",)),
            case("a prompt over the limit with temperature 2.5 (above 2)",
                 *with_(n_tokens=p_lim + 5, temperature=2.5), broken=("prompt", "temperature")),
            case("a one-character prompt (allowed)", *with_(prompt="a", n_tokens=1)),
        ]
    return cases


# --- 15.sse --------------------------------------------------------------------------------------


class _Source:
    """An iterator over pieces that records how many have been read."""

    def __init__(self, pieces: list[str]):
        self.pieces, self.read = pieces, 0

    def __iter__(self):
        for p in self.pieces:
            self.read += 1
            yield p


def _completion_chunk(p: str) -> dict:
    return {"object": "text_completion", "choices": [{"index": 0, "text": p, "finish_reason": None}]}


def _chat_chunk(p: str) -> dict:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": p}}]}


def _check_events(events: list, pieces: list[str], make_chunk) -> Reason:
    """None if ``events`` frame ``pieces`` correctly; else what a client would trip over."""
    if not all(isinstance(e, str) for e in events):
        return "each event should be a str"
    if not events or events[-1].rstrip("\n") != "data: [DONE]":
        return "the stream does not end with the event data: [DONE] — clients wait for it"
    for i, event in enumerate(events):
        if not event.endswith("\n\n"):
            return (f"event {i} does not end with a blank line (\\n\\n): events are not separated, "
                    "so a client cannot tell where one ends")
        if not event.startswith("data: "):
            return f"event {i} should start with 'data: '"
        if "\n" in event[:-2]:
            return f"event {i} has a raw newline inside its data: send the chunk as JSON (json.dumps escapes it)"
    if len(events) != len(pieces) + 1:
        return f"{len(events)} events for {len(pieces)} pieces: send one event per piece, then [DONE]"
    for i, (event, p) in enumerate(zip(events, pieces)):
        data = event[len("data: "):-2]
        try:
            got = json.loads(data)
        except ValueError:
            return f"event {i} does not carry valid JSON (use json.dumps, not str())"
        if got != make_chunk(p):
            return f"event {i} does not carry make_chunk(piece) of piece {i}"
    return None


@piece("15.sse", "server-sent events")
def sse_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    rng = _rng(gen)

    def framing(desc: str, pieces: list[str], make_chunk=_completion_chunk, start: int = 0) -> Case:
        def run(fn) -> Reason:
            usage = {"completion_tokens": start}
            events = list(fn(iter(pieces), make_chunk, usage))
            reason = _check_events(events, pieces, make_chunk)
            if reason:
                return reason
            added = usage.get("completion_tokens", 0) - start
            if added == len(pieces):
                return None
            if added == sum(len(p) for p in pieces):
                return "usage counts characters, not tokens: each piece is one token, add 1 per piece"
            if usage.get("completion_tokens") == len(pieces):
                return 'usage["completion_tokens"] was reset: add to it, it may already hold a count'
            return f'usage["completion_tokens"] grew by {added} for {len(pieces)} pieces (one token each)'

        return Case(desc, run)

    def lazy(desc: str, pieces: list[str]) -> Case:
        def run(fn) -> Reason:
            source = _Source(pieces)
            # a generator: a stand-in for fn pulls each piece from here (checks.remote), so
            # source.read counts what the learner's code really read
            events = fn(iter(source), _completion_chunk, {"completion_tokens": 0})
            if isinstance(events, (list, tuple, str)):
                return ("returned every event at once: yield each event as soon as its piece arrives "
                        "(a generator), or the client sees nothing until the end")
            first = next(iter(events))
            if source.read > 1:
                return (f"the first event left only after {source.read} pieces were read: the stream "
                        "buffers — yield each event as soon as its piece arrives")
            if not first.startswith("data: "):
                return "the first event should start with 'data: '"
            return None

        return Case(desc, run)

    words = ["Hel", "lo", ",", " wor", "ld", "!"]
    cases = [
        framing("four text pieces", words[:4]),
        framing("pieces with a newline, quotes and a backslash", ["line one\nline two", ' say "hi"', " a\\b", "\n\n"]),
        framing("no pieces at all (only [DONE])", []),
        framing("an empty piece still counts as a token", ["a", "", "b"]),
        framing("chat chunks", ["Paris", " is", " the", " capital"], _chat_chunk),
        lazy("the first event leaves before the rest is generated", words),
    ]
    if extended:
        from llm_course.data import shakespeare

        text = shakespeare()
        start = rng.randrange(0, len(text) - 400)
        cuts = sorted(rng.sample(range(1, 300), 40))
        real = [text[start + a:start + b] for a, b in zip([0, *cuts], [*cuts, 300])]
        cases += [
            framing("Shakespeare in 41 random pieces", real, _chat_chunk),
            framing("usage already holds a count (add to it)", words, start=rng.randint(3, 50)),
            framing("non-ASCII pieces", ["你好", "，", "世界", " café"]),
            lazy("lazy over 41 pieces", real),
        ]
    return cases
