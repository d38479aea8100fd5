"""Cases for lab 12 (generating text). Each piece compares the learner's code with
``llm_course.generation`` and recognises the classic mistakes by recomputing them."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from llm_course import generation as ref
from llm_course.attention import merge_heads, split_heads
from llm_course.checks.engine import Case, Reason, compare_tensor, piece, randn
from llm_course.transformer import DecoderOnly, ModelConfig

NEG_INF = float("-inf")


def _kept_reason(got: object, expected: Tensor, known: list[tuple[str, Tensor]]) -> Reason:
    """Compare two filtered logit tensors: first which tokens survive, then their values."""
    if not isinstance(got, Tensor):
        return f"the output should be a torch.Tensor of logits, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"the output has shape {tuple(got.shape)}, expected {tuple(expected.shape)} (same as the logits)"
    got = got.detach().double()
    if torch.isfinite(got).all() and (got >= 0).all() and torch.allclose(got.sum(-1), torch.ones(()).double(),
                                                                           atol=1e-4):
        return "returned probabilities; a filter returns LOGITS (the softmax comes later, once, after every filter)"
    if (got == 0).any() and not (expected == 0).any() and not torch.isinf(got).any():
        return "removed tokens were set to 0; set their logits to −inf (float('-inf')) so that softmax gives them 0"
    for hint, wrong in known:
        if wrong.shape == got.shape and torch.equal(torch.isinf(got), torch.isinf(wrong)) \
                and not torch.equal(torch.isinf(got), torch.isinf(expected)):
            finite = torch.isfinite(got)
            if torch.allclose(got[finite], wrong.double()[finite], atol=1e-5, rtol=1e-4):
                return hint
    got_kept, exp_kept = torch.isfinite(got), torch.isfinite(expected)
    if not torch.equal(got_kept, exp_kept):
        extra, missing = int((got_kept & ~exp_kept).sum()), int((~got_kept & exp_kept).sum())
        return f"the kept set is wrong: {extra} token(s) kept that should be removed, {missing} removed that should be kept"
    return compare_tensor(torch.where(got_kept, got, 0.0), torch.where(exp_kept, expected.double(), 0.0),
                          "the kept logits", known_mistakes=[(h, torch.where(exp_kept, w.double(), 0.0))
                                                             for h, w in known if w.shape == got.shape])


def _logits(gen: torch.Generator, *shape: int, scale: float = 2.5) -> Tensor:
    return scale * randn(gen, *shape)


# --- 12.temperature -------------------------------------------------------------------------


def _temperature_case(name: str, gen: torch.Generator, shape: tuple[int, ...], temperature: float) -> Case:
    logits = _logits(gen, *shape)

    def run(fn) -> Reason:
        got = fn(logits.clone(), temperature)
        return compare_tensor(got, logits / temperature, "the output", known_mistakes=[
            ("multiplied by the temperature; DIVIDE the logits by it (T < 1 sharpens, T > 1 flattens)",
             logits * temperature),
            ("returned probabilities; return the scaled LOGITS (softmax comes later)",
             torch.softmax(logits / temperature, -1)),
            ("the temperature was applied to the probabilities; divide the logits", torch.softmax(logits, -1) / temperature),
            ("divided by temperature²; divide the logits by the temperature once", logits / temperature**2),
        ])

    return Case(name, run)


def _bad_value_case(name: str, call: Callable, argument: str) -> Case:
    def run(fn) -> Reason:
        try:
            call(fn)
        except NotImplementedError:
            raise
        except ValueError as err:
            return None if argument in str(err) else f"the ValueError should name {argument!r}, got: {err}"
        except Exception as err:
            return f"raised {type(err).__name__}; expected a ValueError naming {argument!r}"
        return f"no error; an invalid {argument} must raise ValueError"

    return Case(name, run)


@piece("12.temperature", "temperature")
def temperature_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _temperature_case("(batch 3, vocab 10), T = 0.5", gen, (3, 10), 0.5),
        _temperature_case("T = 2 (flatter)", gen, (2, 7), 2.0),
        _temperature_case("T = 1 changes nothing", gen, (4, 5), 1.0),
    ]
    if extended:
        cases += [
            _temperature_case("one row (vocab,)", gen, (12,), 0.25),
            _temperature_case("T = 3.7, (2, 3, 20)", gen, (2, 3, 20), 3.7),
        ]
    return cases


# --- 12.top_k -------------------------------------------------------------------------------


def _keep_top(logits: Tensor, n: int) -> Tensor:
    """Exactly the n highest (ties broken by topk's order)."""
    n = max(0, min(n, logits.shape[-1]))
    out = torch.full_like(logits, NEG_INF)
    idx = torch.topk(logits, n, dim=-1).indices
    return out.scatter(-1, idx, logits.gather(-1, idx))


def _top_k_case(name: str, logits: Tensor, k: int, min_keep: int | None = None) -> Case:
    def run(fn) -> Reason:
        args = (logits.clone(), k) if min_keep is None else (logits.clone(), k, min_keep)
        got = fn(*args)
        expected = ref.top_k_filter(logits, k, min_keep or 1)
        kk = min(max(k, min_keep or 1), logits.shape[-1])
        known = [
            ("off by one: kept k + 1 tokens; keep the k highest", ref.top_k_filter(logits, kk + 1)
             if kk < logits.shape[-1] else expected),
            ("off by one: kept k − 1 tokens; keep the k highest", _keep_top(logits, kk - 1)),
            ("kept the k LOWEST logits; keep the k highest", -ref.top_k_filter(-logits, kk)),
        ]
        known.append(("tokens tied with the k-th logit were removed; keep every token whose logit is ≥ the "
                      "k-th highest (compare values, do not just keep k indices)", _keep_top(logits, kk)))
        if min_keep is not None:
            known.append(("min_tokens_to_keep was ignored: keep at least that many tokens",
                          ref.top_k_filter(logits, min(k, logits.shape[-1]))))
        known = [(h, w) for h, w in known if not torch.equal(torch.isinf(w), torch.isinf(expected))]
        return _kept_reason(got, expected, known)

    return Case(name, run)


@piece("12.top_k", "top-k filtering")
def top_k_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    ties = torch.tensor([[4.0, 1.0, 2.5, 2.5, 2.5, 0.0, -1.0], [0.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0]])
    cases = [
        _top_k_case("(batch 3, vocab 20), k = 5", _logits(gen, 3, 20), 5),
        _top_k_case("k = 1: only the best token", _logits(gen, 2, 9), 1),
        _top_k_case("ties with the k-th logit are all kept", ties, 2),
        _top_k_case("k ≥ vocab keeps everything", _logits(gen, 2, 6), 10),
    ]
    if extended:
        cases += [
            _top_k_case("(2, 3, 50), k = 17", _logits(gen, 2, 3, 50), 17),
            _top_k_case("k = vocab", _logits(gen, 4, 8), 8),
            _top_k_case("k = vocab − 1", _logits(gen, 4, 8), 7),
            _top_k_case("min_tokens_to_keep = 4 > k = 2", _logits(gen, 3, 10), 2, 4),
            _top_k_case("ties, k = 4", ties, 4),
            _bad_value_case("k = 0 raises ValueError naming k", lambda fn: fn(torch.zeros(1, 3), 0), "k"),
        ]
    return cases


# --- 12.top_p -------------------------------------------------------------------------------


def _nucleus_variant(logits: Tensor, top_p: float, *, drop_crossing=False, no_sort=False, on_logits=False,
                     min_keep: int = 1) -> Tensor:
    """Top-p with one deliberate mistake (each removes the same way the reference does)."""
    scores = logits if on_logits else torch.softmax(logits, -1)
    order = torch.arange(scores.shape[-1]).expand_as(scores) if no_sort else scores.argsort(-1, descending=True)
    ranked = scores.gather(-1, order)
    cumulative = ranked.cumsum(-1)
    keep = (cumulative <= top_p) if drop_crossing else (cumulative - ranked < top_p)
    keep[..., :min_keep] = True
    mask = torch.zeros_like(keep).scatter(-1, order, keep)
    return logits.masked_fill(~mask, NEG_INF)


def _top_p_case(name: str, logits: Tensor, top_p: float, min_keep: int | None = None) -> Case:
    def run(fn) -> Reason:
        args = (logits.clone(), top_p) if min_keep is None else (logits.clone(), top_p, min_keep)
        got = fn(*args)
        expected = ref.top_p_filter(logits, top_p, min_keep or 1)
        known = [
            ("the token that crosses top_p was dropped: keep tokens while the mass ABOVE them is < top_p, so "
             "the set's total reaches at least top_p", _nucleus_variant(logits, top_p, drop_crossing=True,
                                                                        min_keep=min_keep or 1)),
            ("the probabilities were not sorted: add them up from the most probable token down",
             _nucleus_variant(logits, top_p, no_sort=True, min_keep=min_keep or 1)),
            ("the cumulative sum was taken over logits; turn them into probabilities (softmax) first",
             _nucleus_variant(logits, top_p, on_logits=True, min_keep=min_keep or 1)),
        ]
        if min_keep is not None:
            known.append(("min_tokens_to_keep was ignored: keep at least that many tokens",
                          ref.top_p_filter(logits, top_p)))
        known = [(h, w) for h, w in known if not torch.equal(torch.isinf(w), torch.isinf(expected))]
        return _kept_reason(got, expected, known)

    return Case(name, run)


@piece("12.top_p", "top-p (nucleus) filtering")
def top_p_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    hand = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.5, 0.3]]).log()
    cases = [
        _top_p_case("(batch 4, vocab 30), top_p = 0.9", _logits(gen, 4, 30), 0.9),
        _top_p_case("by hand: probabilities 0.5, 0.3, 0.15, 0.05 (any order), top_p = 0.7", hand, 0.7),
        _top_p_case("top_p = 0.3 (often only the best token)", _logits(gen, 3, 12), 0.3),
        _top_p_case("top_p = 1 keeps every token", _logits(gen, 2, 10), 1.0),
    ]
    if extended:
        cases += [
            _top_p_case("(2, 3, 40), top_p = 0.6", _logits(gen, 2, 3, 40), 0.6),
            _top_p_case("by hand, top_p = 0.95", hand, 0.95),
            _top_p_case("flat logits (scale 0.3), top_p = 0.5", _logits(gen, 3, 25, scale=0.3), 0.5),
            _top_p_case("min_tokens_to_keep = 3, top_p = 0.05", _logits(gen, 3, 15), 0.05, 3),
            _top_p_case("input already filtered by top-k (−inf entries)", ref.top_k_filter(_logits(gen, 3, 20), 6), 0.8),
            _bad_value_case("top_p = 0 raises ValueError naming top_p", lambda fn: fn(torch.zeros(1, 3), 0.0), "top_p"),
        ]
    return cases


# --- 12.repetition_penalty ------------------------------------------------------------------


def _penalty_case(name: str, logits: Tensor, ids: Tensor, penalty: float) -> Case:
    def run(fn) -> Reason:
        got = fn(logits.clone(), ids.clone(), penalty)
        expected = ref.repetition_penalty(logits, ids, penalty)
        seen = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, ids, True)
        counts = torch.zeros_like(logits).scatter_add(-1, ids, torch.ones_like(ids, dtype=logits.dtype))
        repeated = torch.where(logits > 0, logits / penalty**counts, logits * penalty**counts)
        return compare_tensor(got, expected, "the output", known_mistakes=[
            ("negative logits were divided by the penalty, which moves them UP; multiply a negative logit by it",
             torch.where(seen, logits / penalty, logits)),
            ("a token was penalised once per occurrence; penalise each seen token once",
             torch.where(seen, repeated, logits)),
            ("every token was penalised; penalise only the tokens that occur in ids",
             torch.where(logits > 0, logits / penalty, logits * penalty)),
            ("positive logits were multiplied by the penalty; divide a positive logit by it (multiply a negative one)",
             torch.where(seen, logits * penalty, logits)),
            ("the penalty was applied the wrong way round (that rewards repetition)",
             torch.where(seen, torch.where(logits > 0, logits * penalty, logits / penalty), logits)),
        ])

    return Case(name, run)


@piece("12.repetition_penalty", "repetition penalty")
def repetition_penalty_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def ids(B, T, V):
        return torch.randint(0, V, (B, T), generator=gen)

    cases = [
        _penalty_case("(batch 2, vocab 12), 6 previous tokens, penalty 1.5", _logits(gen, 2, 12), ids(2, 6, 12), 1.5),
        _penalty_case("by hand: logits [2, −2, 1], ids [0, 1, 1], penalty 2",
                      torch.tensor([[2.0, -2.0, 1.0]]), torch.tensor([[0, 1, 1]]), 2.0),
        _penalty_case("penalty 1 changes nothing", _logits(gen, 3, 8), ids(3, 5, 8), 1.0),
    ]
    if extended:
        cases += [
            _penalty_case("many repeats (T = 40, vocab 10), penalty 1.3", _logits(gen, 3, 10), ids(3, 40, 10), 1.3),
            _penalty_case("penalty 0.7 < 1 encourages repetition", _logits(gen, 2, 16), ids(2, 9, 16), 0.7),
            _penalty_case("one previous token", _logits(gen, 1, 5), ids(1, 1, 5), 3.0),
        ]
    return cases


# --- 12.kv_cache ----------------------------------------------------------------------------


def _kv_case(name: str, gen: torch.Generator, num_layers: int, B: int, H: int, d: int, chunks: list[int]) -> Case:
    updates = [[(randn(gen, B, H, t, d), randn(gen, B, H, t, d)) for t in chunks] for _ in range(num_layers)]

    def run(cls) -> Reason:
        cache = cls(num_layers)
        if getattr(cache, "length", None) != 0:
            return f"a new cache's length should be 0, got {getattr(cache, 'length', None)!r}"
        seen = 0
        for step, t in enumerate(chunks):
            for layer in range(num_layers):
                k_new, v_new = updates[layer][step]
                out = cache.update(layer, k_new.clone(), v_new.clone())
                if not isinstance(out, tuple) or len(out) != 2:
                    return "update should return the tuple (keys, values) of that layer so far"
                exp_k = torch.cat([u[0] for u in updates[layer][:step + 1]], dim=-2)
                exp_v = torch.cat([u[1] for u in updates[layer][:step + 1]], dim=-2)
                what = f"layer {layer}'s keys after update {step + 1}"
                if step and isinstance(out[0], Tensor) and torch.equal(out[0], k_new):
                    return "returned only the new keys; append them to the cached ones and return them all"
                reason = compare_tensor(out[0], exp_k, what, known_mistakes=[
                    ("returned only the new keys; append them to the cached ones and return them all", k_new),
                    ("the values were returned as keys", exp_v)])
                if reason:
                    if "shape" in reason and out[0].shape[0] != B:
                        reason += " — concatenate along the time axis (dim=-2), not the batch"
                    elif "shape" in reason:
                        reason += " — concatenate along the time axis (dim=-2)"
                    return reason
                reason = compare_tensor(out[1], exp_v, f"layer {layer}'s values after update {step + 1}",
                                        known_mistakes=[
                                            ("the values were not appended: only the keys grow; append v as you "
                                             "append k", updates[layer][0][1]),
                                            ("returned only the new values; append them to the cached ones",
                                             v_new)])
                if reason and "shape" in reason and out[1].shape[:-2] == exp_v.shape[:-2]:
                    return "the values were not appended: only the keys grow; append v along dim=-2 as you append k"
                if reason:
                    return reason
            seen += t
            if cache.length != seen:
                return f"length should be {seen} after {step + 1} update(s) of every layer, got {cache.length!r}"
        return None

    return Case(name, run)


@piece("12.kv_cache", "KV cache")
def kv_cache_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _kv_case("2 layers, a prompt of 5 then 3 single tokens", gen, 2, 2, 4, 8, [5, 1, 1, 1]),
        _kv_case("1 layer, single tokens from the start", gen, 1, 1, 2, 4, [1, 1, 1]),
    ]
    if extended:
        cases += [
            _kv_case("3 layers, chunks of 4, 2, 3", gen, 3, 3, 2, 6, [4, 2, 3]),
            _kv_case("batch 1, one head", gen, 2, 1, 1, 5, [2, 1]),
        ]
    return cases


# --- 12.cached_forward ----------------------------------------------------------------------


def _tiny_model(seed: int, **overrides) -> DecoderOnly:
    torch.manual_seed(seed)
    config = dict(vocab_size=30, d_model=32, num_heads=4, num_layers=2, max_len=40)
    model = DecoderOnly(ModelConfig(**{**config, **overrides})).eval()
    return model


@torch.no_grad()
def _forward_variant(model: DecoderOnly, ids: Tensor, cuts: list[int], *, offset_zero=False, mask="shifted",
                     use_cache=True, skip_norm_residual=False) -> Tensor:
    """Chunked cached forward with one deliberate mistake; returns the logits of every chunk."""
    cache = ref.KVCache(len(model.blocks))
    outs = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        chunk = ids[:, a:b]
        offset, T = (0 if offset_zero else cache.length), b - a
        h = model.pos_emb(model.tok_emb(chunk), offset=offset)
        T_k = cache.length + T if use_cache else T
        if mask == "shifted":
            m = torch.ones(T, T_k, dtype=torch.bool).tril(T_k - T)
        elif mask == "top-left":
            m = torch.ones(T, T_k, dtype=torch.bool).tril()
        else:
            m = None
        for layer, block in enumerate(model.blocks):
            def attention(x, attn=block.attn, layer=layer):
                q = split_heads(attn.q_proj(x), attn.num_heads)
                k, v = split_heads(attn.k_proj(x), attn.num_heads), split_heads(attn.v_proj(x), attn.num_heads)
                if use_cache:
                    k, v = cache.update(layer, k, v)
                return attn.out_proj(merge_heads(attn.attend(q, k, v, m)[0]))

            h = block.residual(h, block.norm1, attention)
            h = block.residual(h, block.norm2, block.ffn)
        if not use_cache:
            cache.update(0, torch.zeros(1, 1, T, 1), torch.zeros(1, 1, T, 1))  # only to advance the offset
        outs.append(model.logits(h))
    return torch.cat(outs, dim=1)


def _cached_forward_case(name: str, gen: torch.Generator, cuts: list[int], B: int = 2, **overrides) -> Case:
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
    ids = torch.randint(0, 30, (B, cuts[-1]), generator=gen)

    def run(fn) -> Reason:
        model = _tiny_model(seed, **overrides)
        cache = ref.KVCache(len(model.blocks))
        outs = []
        with torch.no_grad():
            expected = model(ids)
            for a, b in zip(cuts[:-1], cuts[1:]):
                got = fn(model, ids[:, a:b].clone(), cache)
                if not isinstance(got, Tensor) or got.shape != (B, b - a, model.config.vocab_size):
                    return (f"for a chunk of {b - a} new token(s) the output should be logits of shape "
                            f"{(B, b - a, model.config.vocab_size)}, got {getattr(got, 'shape', type(got).__name__)}")
                outs.append(got)
                if cache.length != b:
                    return (f"after tokens {a}…{b - 1} the cache holds {cache.length} positions, expected {b}: "
                            "call cache.update(layer, k, v) once per layer with the new keys and values")
            known = [
                ("the position offset did not advance: new tokens must get positions offset … offset+T−1 "
                 "(offset = cache.length, read BEFORE updating), e.g. model.pos_emb(x, offset=offset)",
                 _forward_variant(model, ids, cuts, offset_zero=True)),
                ("the cached keys/values were not used: attend over cache.update(...)'s output (all positions), "
                 "not only the new tokens' k and v", _forward_variant(model, ids, cuts, use_cache=False, mask="causal")),
                ("the causal mask is aligned top-left; with a cache, new token i may see every cached position and "
                 "new tokens ≤ i: torch.ones(T, offset + T).tril(offset)", _forward_variant(model, ids, cuts, mask="top-left")),
                ("no causal mask among the new tokens: in a chunk of several new tokens, token i must not see "
                 "tokens after it", _forward_variant(model, ids, cuts, mask=None)),
            ]
            known = [(h, w) for h, w in known if not torch.allclose(w, expected, atol=1e-5)]
        return compare_tensor(torch.cat(outs, dim=1), expected, "logits of the new tokens (vs model(ids))",
                              atol=1e-4, known_mistakes=known)

    return Case(name, run)


@piece("12.cached_forward", "forward pass with a KV cache")
def cached_forward_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _cached_forward_case("prompt of 6, then 4 single tokens", gen, [0, 6, 7, 8, 9, 10]),
        _cached_forward_case("chunks of 5, 4 and 3 tokens (masks inside a chunk)", gen, [0, 5, 9, 12]),
        _cached_forward_case("post-norm model, batch 3", gen, [0, 4, 5, 6, 7], B=3, prenorm=False),
    ]
    if extended:
        cases += [
            _cached_forward_case("RMSNorm + SwiGLU, 3 layers", gen, [0, 3, 4, 8, 9], norm="rms",
                                 activation="swiglu", num_layers=3),
            _cached_forward_case("one token at a time from the start", gen, [0, 1, 2, 3, 4, 5]),
            _cached_forward_case("one head, batch 1, up to max_len", gen, [0, 30, 39, 40], B=1, num_heads=1),
        ]
    return cases


# --- 12.generate_cached ---------------------------------------------------------------------

USES_YOUR_PIECES = " (this check runs your forward_cached and KVCache: make their checks pass first)"


def _generate_case(name: str, gen: torch.Generator, B: int, T: int, n: int, sample: dict | None = None,
                   **overrides) -> Case:
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
    ids = torch.randint(0, 30, (B, T), generator=gen)

    def run(fn) -> Reason:
        model = _tiny_model(seed, **overrides)
        if sample is None:
            options = {"greedy": True}
            expected = ref.generate(model, ids, n, greedy=True)
        else:
            options = {**sample, "generator": torch.Generator().manual_seed(seed)}
            expected = ref.generate(model, ids, n, **{**sample, "generator": torch.Generator().manual_seed(seed)})
        got = fn(model, ids.clone(), n, **options)
        if not isinstance(got, Tensor) or got.dim() != 2 or got.shape[0] != B:
            return f"should return the ids, shape (batch, T + max_new_tokens) = {(B, T + n)}, got " \
                   f"{getattr(got, 'shape', type(got).__name__)}"
        if got.shape[1] != T + n:
            return (f"returned {got.shape[1] - T} new tokens for max_new_tokens={n}: generate exactly max_new_tokens"
                    + (" (a token chosen after the prompt, then one per step)" if got.shape[1] - T == n - 1 else ""))
        if not torch.equal(got[:, :T], ids):
            return "the prompt was changed: the output must start with the prompt ids"
        if torch.equal(got, expected):
            return None
        first = int((got != expected).any(0).nonzero()[0])
        what = "greedy tokens" if sample is None else "sampled tokens (same generator seed)"
        return (f"{what} differ from uncached generation from new token {first - T} on: after the prompt feed "
                "ONLY the newest token to forward_cached (the cache holds the rest)" + USES_YOUR_PIECES)

    return Case(name, run)


@piece("12.generate_cached", "generation with a KV cache")
def generate_cached_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _generate_case("greedy, batch 2, prompt 4, 20 new tokens == uncached", gen, 2, 4, 20),
        _generate_case("sampling (T = 1.2, top-k 8) with a seeded generator == uncached", gen, 1, 3, 15,
                       dict(temperature=1.2, top_k=8)),
        _generate_case("greedy, post-norm, batch 3", gen, 3, 2, 12, prenorm=False),
    ]
    if extended:
        cases += [
            _generate_case("greedy, prompt of 1 token, up to max_len", gen, 2, 1, 39),
            _generate_case("one new token", gen, 2, 5, 1),
            _generate_case("top-p 0.8 + repetition penalty 1.3", gen, 2, 6, 20,
                           dict(top_p=0.8, repetition_penalty=1.3)),
            _generate_case("greedy, RMSNorm + SwiGLU, 3 layers", gen, 1, 7, 25, norm="rms", activation="swiglu",
                           num_layers=3),
        ]
    return cases
