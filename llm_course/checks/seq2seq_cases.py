"""Cases for lab 03 (encoder–decoder). Each piece compares the learner's code with
``llm_course.seq2seq`` and recognises the classic mistakes by recomputing them.

Decoding is checked on ``ToyDecoder``s: tiny random step functions whose best output can
be found by brute force, so "beam ≥ greedy" and "a wide beam is exact" are facts to test.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from llm_course import seq2seq as ref
from llm_course.checks.engine import Case, Reason, compare_gradients, compare_tensor, piece, randn

# --- 03.attention_step --------------------------------------------------------------------


def _attention_variant(m: ref.AdditiveAttention, query, keys, mask, *, softmax_dim=-1, mask_mode="fill",
                       tanh=True, use_query=True):
    """The reference additive attention with one deliberate mistake."""
    pre = m.key_proj(keys) + (m.query_proj(query)[:, None, :] if use_query else 0)
    scores = m.score_proj(torch.tanh(pre) if tanh else pre).squeeze(-1)
    if mask is not None and mask_mode == "fill":
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    elif mask is not None and mask_mode == "inverted":
        scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=softmax_dim)
    if mask is not None and mask_mode == "after_softmax":
        weights = weights * mask
    return (weights[:, :, None] * keys).sum(1), weights


ATTENTION_MISTAKES = {
    "softmax over the batch axis (dim=0); it must run over the source positions (dim=-1)": dict(softmax_dim=0),
    "the padding mask was ignored: padded source positions got weight": dict(mask_mode="ignored"),
    "the mask is inverted: True marks real (non-padding) positions": dict(mask_mode="inverted"),
    "the mask was applied after the softmax: padding is zeroed but the rows no longer sum to 1":
        dict(mask_mode="after_softmax"),
    "tanh is missing: additive attention scores vᵀ tanh(W_q q + W_k k)": dict(tanh=False),
    "the query was ignored: the scores must depend on the decoder state (W_q q)": dict(use_query=False),
}


def _build_attention(cls, d_query: int, d_key: int, d_attn: int):
    reference = ref.AdditiveAttention(d_query, d_key, d_attn)
    try:
        module = cls(d_query, d_key, d_attn)
        module.load_state_dict(reference.state_dict())
    except (TypeError, RuntimeError) as err:
        return None, reference, f"AdditiveAttention(d_query, d_key, d_attn) could not be built: {err}"
    return module, reference, None


def _attention_case(name: str, gen: torch.Generator, *, B: int, S: int, d_query: int, d_key: int, d_attn: int,
                    lengths: list[int] | None = None, scale: float = 1.0) -> Case:
    def run(cls) -> Reason:
        module, reference, reason = _build_attention(cls, d_query, d_key, d_attn)
        if reason:
            return reason
        query, keys = scale * randn(gen, B, d_query), scale * randn(gen, B, S, d_key)
        mask = None if lengths is None else torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]
        result = module(query.clone(), keys.clone(), mask) if mask is not None else module(query.clone(), keys.clone())
        if not isinstance(result, tuple) or len(result) != 2:
            return f"forward should return a tuple (context, weights), got {type(result).__name__}"
        context, weights = result
        with torch.no_grad():
            exp_c, exp_w = reference(query, keys, mask)
            mistakes = [(hint, _attention_variant(reference, query, keys, mask, **kw))
                        for hint, kw in ATTENTION_MISTAKES.items() if mask is not None or "mask_mode" not in kw]
        if isinstance(context, Tensor) and tuple(context.shape) == (B, d_attn) and d_attn != d_key:
            return (f"context has shape {tuple(context.shape)}, expected {tuple(exp_c.shape)}: average the "
                    "encoder states themselves (keys), not their projections")
        reason = compare_tensor(weights, exp_w, "weights", known_mistakes=[(h, w) for h, (_, w) in mistakes])
        if reason and reason not in ATTENTION_MISTAKES and isinstance(weights, Tensor) and weights.shape == exp_w.shape:
            reason = _weights_hint(weights.detach(), mask) or reason
        return reason or compare_tensor(context, exp_c, "context", known_mistakes=[(h, c) for h, (c, _) in mistakes])

    return Case(name, run)


def _weights_hint(weights: Tensor, mask: Tensor | None) -> Reason:
    sums = weights.double().sum(-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        return "rows of the weights do not sum to 1: is the softmax over the source positions (dim=-1)?"
    if mask is not None and weights.double().masked_fill(mask, 0).abs().max() > 1e-6:
        return "padded source positions got weight; they must get exactly 0"
    return None


def _attention_gradient_case(gen: torch.Generator) -> Case:
    def run(cls) -> Reason:
        module, reference, reason = _build_attention(cls, 6, 8, 5)
        if reason:
            return reason
        query, keys = randn(gen, 3, 6), randn(gen, 3, 4, 8)
        mask = torch.tensor([[True] * 4, [True, True, False, False], [True, False, False, False]])
        for m in (module, reference):
            m.zero_grad()
            context, _ = m(query, keys, mask)
            (context * torch.linspace(-1, 1, context.numel()).view_as(context)).sum().backward()
        return compare_gradients((name, p.grad, p_ref.grad)
                                 for (name, p), p_ref in zip(module.named_parameters(), reference.parameters()))

    return Case("gradients reach every parameter", run)


@piece("03.attention_step", "one decoder step of additive attention")
def attention_step_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    S = 5 + int(torch.randint(0, 3, (), generator=gen))
    cases = [
        _attention_case(f"batch 3, {S} source positions, no mask", gen, B=3, S=S, d_query=8, d_key=8, d_attn=6),
        _attention_case("padding mask, lengths [S, 2, 4]", gen, B=3, S=S, d_query=8, d_key=8, d_attn=6,
                        lengths=[S, 2, 4]),
        _attention_case("d_query ≠ d_key ≠ d_attn, with padding", gen, B=2, S=4, d_query=5, d_key=7, d_attn=3,
                        lengths=[3, 4]),
    ]
    if extended:
        cases += [
            _attention_case("one source position", gen, B=2, S=1, d_query=4, d_key=6, d_attn=4),
            _attention_case("a row with a single real position", gen, B=4, S=6, d_query=8, d_key=4, d_attn=8,
                            lengths=[1, 6, 3, 2]),
            _attention_case("large inputs (is the softmax stable?)", gen, B=2, S=7, d_query=8, d_key=8, d_attn=8,
                            lengths=[7, 5], scale=30.0),
            _attention_gradient_case(gen),
        ]
    return cases


# --- shared by 03.greedy and 03.beam ---------------------------------------------------------


def _same_tokens(got, expected: list[list[int]]) -> bool:
    return isinstance(got, list) and len(got) == len(expected) and all(
        isinstance(g, list) and [int(t) for t in g] == e for g, e in zip(got, expected))


def _toy(seed: int, vocab: int, **kw) -> ref.ToyDecoder:
    return ref.ToyDecoder(vocab, hidden=8, seed=seed, **kw)


# --- 03.greedy ------------------------------------------------------------------------------


def _greedy_variant(step, state, max_len, bos, eos, *, feed="own", stop=True, score="log", steps_delta=0):
    """The reference greedy decoding with one deliberate mistake."""
    B = state.shape[0]
    tokens = torch.full((B,), bos, dtype=torch.long)
    scores, done = torch.zeros(B, dtype=torch.float64), torch.zeros(B, dtype=torch.bool)
    out: list[list[int]] = [[] for _ in range(B)]
    for _ in range(max_len + steps_delta):
        log_probs, state = step(tokens if feed == "own" else torch.full_like(tokens, bos), state)
        best_lp, tokens = log_probs.max(dim=-1)
        for b in (range(B) if not stop else (~done).nonzero().flatten().tolist()):
            out[b].append(int(tokens[b]))
            scores[b] += float(best_lp[b].exp() if score == "prob" else best_lp[b])
        done |= tokens == eos
        if done.all():
            break
    return out, scores


GREEDY_MISTAKES = {
    "the prediction is not fed back: each step must take the token the previous step chose, not <s>":
        dict(feed="bos"),
    "sequences go on after </s>: once a row has produced </s>, stop adding to it": dict(stop=False),
    "scores add probabilities; add log-probabilities (the step function returns log-probs)": dict(score="prob"),
    "one step too few: generate up to max_len tokens (</s> included)": dict(steps_delta=-1),
    "one step too many: generate at most max_len tokens (</s> included)": dict(steps_delta=1),
}


def _greedy_reason(got, step, state, max_len, bos, eos) -> Reason:
    if not isinstance(got, tuple) or len(got) != 2:
        return f"should return a tuple (tokens, scores), got {type(got).__name__}"
    tokens, scores = got
    exp_tokens, exp_scores = ref.greedy_decode(step, state, max_len=max_len, bos=bos, eos=eos)
    if not isinstance(tokens, list) or len(tokens) != len(exp_tokens) or not all(isinstance(t, list) for t in tokens):
        return f"tokens should be a list of {len(exp_tokens)} lists of ids (one per row of state)"
    if _same_tokens(tokens, exp_tokens):
        return compare_tensor(scores, exp_scores, "scores", atol=1e-5, known_mistakes=[
            (hint, _greedy_variant(step, state, max_len, bos, eos, **kw)[1])
            for hint, kw in GREEDY_MISTAKES.items()])
    for hint, kw in GREEDY_MISTAKES.items():
        if _same_tokens(tokens, _greedy_variant(step, state, max_len, bos, eos, **kw)[0]):
            return hint
    for row in tokens:
        if eos in row[:-1]:
            return "a sequence goes on after </s>: stop adding tokens to a row once it has produced eos"
        if len(row) > max_len:
            return f"a sequence has {len(row)} tokens, more than max_len={max_len}"
    wrong = sum(not _same_tokens([t], [e]) for t, e in zip(tokens, exp_tokens))
    return f"{wrong} of {len(tokens)} sequences differ from greedy's: at each step take the argmax of the log-probs"


def _greedy_case(name: str, toy: ref.ToyDecoder, B: int, max_len: int, bos: int = ref.BOS,
                 eos: int = ref.EOS) -> Case:
    def run(fn) -> Reason:
        state = toy.initial_state(B)
        got = fn(toy, state.clone(), max_len=max_len, bos=bos, eos=eos)
        return _greedy_reason(got, toy, state, max_len, bos, eos)

    return Case(name, run)


@piece("03.greedy", "greedy decoding")
def greedy_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    seed = int(torch.randint(0, 10_000, (), generator=gen))
    cases = [
        _greedy_case("one sequence", _toy(seed, 5), B=1, max_len=8),
        _greedy_case("a batch of 6 that finish at different steps", _toy(seed + 1, 5), B=6, max_len=10),
        _greedy_case("max_len cuts some sequences off", _toy(seed + 2, 6, eos_drift=0.1), B=4, max_len=4),
    ]
    if extended:
        cases += [
            _greedy_case("max_len = 1", _toy(seed + 3, 4), B=3, max_len=1),
            _greedy_case("bos and eos are not the defaults", _toy(seed + 4, 6, eos=5), B=5, max_len=9, bos=4, eos=5),
            _greedy_case("a batch of 16", _toy(seed + 5, 7), B=16, max_len=12),
        ]
    return cases


# --- 03.beam --------------------------------------------------------------------------------


def _beam_variant(step, state, beam_width, max_len, bos, eos, *, per_beam_top1=False, score="log",
                  reorder=True, keep_finished=True, keep_cut_off=True, seed_greedy=True):
    """The reference beam search with one deliberate mistake."""
    finished = []
    if seed_greedy:
        g_tokens, g_scores = ref.greedy_decode(step, state, max_len=max_len, bos=bos, eos=eos)
        finished.append((g_tokens[0], float(g_scores[0])))
    live = [([], 0.0)]
    for t in range(max_len):
        prev = torch.tensor([seq[-1] if seq else bos for seq, _ in live])
        log_probs, state = step(prev, state)
        add = log_probs.double().exp() if score == "prob" else log_probs.double()
        totals = torch.tensor([s for _, s in live], dtype=torch.float64)[:, None] + add
        if per_beam_top1:
            values, tokens = totals.max(-1)
            order = values.argsort(descending=True)
            cands = [(values[i].item(), i.item() * totals.shape[1] + tokens[i].item()) for i in order]
        else:
            best = totals.flatten().topk(min(beam_width, totals.numel()))
            cands = list(zip(best.values.tolist(), best.indices.tolist()))
        keep, new_live = [], []
        for s, flat in cands:
            parent, token = divmod(flat, totals.shape[1])
            seq = live[parent][0] + [token]
            if (keep_finished and token == eos) or (keep_cut_off and t == max_len - 1):
                finished.append((seq, s))
            elif t < max_len - 1:
                keep.append(parent)
                new_live.append((seq, s))
        live = new_live
        if not live:
            break
        state = state[torch.tensor(keep)] if reorder else state[: len(keep)]
        finished.sort(key=lambda h: h[1], reverse=True)
        if len(finished) >= beam_width and live[0][1] <= finished[beam_width - 1][1]:
            break
    unique = {tuple(seq): s for seq, s in finished}
    return [(list(seq), s) for seq, s in sorted(unique.items(), key=lambda h: h[1], reverse=True)[:beam_width]]


BEAM_MISTAKES = {
    "scores summed probabilities; sum log-probabilities (probabilities must be multiplied, and "
    "their products underflow)": dict(score="prob"),
    "each surviving hypothesis must carry its parent's state: reorder the state with the parents' "
    "indices (state[parents])": dict(reorder=False),
    "hypotheses that end in </s> were not kept as finished: move them to the finished list and "
    "stop extending them": dict(keep_finished=False),
    "hypotheses still live at max_len were dropped: keep them as (cut-off) candidates": dict(keep_cut_off=False),
    "kept only one extension per hypothesis: take the top beam_width over ALL (hypothesis, token) "
    "candidates, so one hypothesis may have several children": dict(per_beam_top1=True),
}


def _same_hyps(got, expected, atol=1e-5) -> bool:
    return (isinstance(got, list) and len(got) == len(expected)
            and all(isinstance(g, tuple) and len(g) == 2 and [int(t) for t in g[0]] == e[0]
                    and isinstance(g[1], (float, int)) and abs(float(g[1]) - e[1]) <= atol
                    for g, e in zip(got, expected)))


def _beam_reason(got, toy, state, beam_width, max_len, bos, eos) -> Reason:
    if not isinstance(got, list) or not got or not all(
            isinstance(h, tuple) and len(h) == 2 and isinstance(h[0], list) for h in got):
        return "should return a non-empty list of (tokens: list[int], score: float) pairs, best first"
    if not all(isinstance(h[1], (float, int)) for h in got):
        return "each score should be a Python float (use float(...) or .item())"
    expected = ref.beam_search(toy, state, beam_width=beam_width, max_len=max_len, bos=bos, eos=eos)
    if _same_hyps(got, expected):
        return None
    for hint, kw in BEAM_MISTAKES.items():
        try:
            wrong = _beam_variant(toy, state, beam_width, max_len, bos, eos, **kw)
        except RuntimeError:  # this mistake crashes on this case (e.g. states of the wrong size)
            continue
        if _same_hyps(got, wrong):
            return hint
    if len(got) > beam_width:
        return f"returned {len(got)} hypotheses, more than beam_width={beam_width}"
    for seq, s in got:
        if eos in seq[:-1]:
            return "a hypothesis goes on after </s>: a hypothesis that produced eos is finished"
        if len(seq) > max_len or (len(seq) < max_len and (not seq or seq[-1] != eos)):
            return "every hypothesis must end with eos, or be cut off at exactly max_len tokens"
        true = ref.sequence_log_prob(toy, state, seq, bos=bos)
        if abs(true - s) > 1e-4:
            if abs(math.exp(true) - s) < 1e-4:
                return "scores are probabilities (products); return and rank by log-probabilities (sums)"
            return ("a score is not the model's log-probability of its tokens: did each hypothesis carry "
                    "its parent's state?")
    if [s for _, s in got] != sorted((s for _, s in got), reverse=True):
        return "hypotheses are not sorted best first"
    g_tokens, g_scores = ref.greedy_decode(toy, state, max_len=max_len, bos=bos, eos=eos)
    if got[0][1] < float(g_scores[0]) - 1e-6:
        return ("the best hypothesis scores below greedy decoding: plain beam search can lose the greedy "
                "path, so add greedy's hypothesis to the candidates")
    if got[0][1] < expected[0][1] - 1e-6:
        return "the best hypothesis scores below what a correct beam of this width finds"
    return "the hypotheses differ from the reference beam search (which ones are kept, or their order)"


def _beam_case(name: str, toy: ref.ToyDecoder, beam_width: int, max_len: int, bos: int = ref.BOS,
               eos: int = ref.EOS) -> Case:
    def run(fn) -> Reason:
        state = toy.initial_state(1)
        got = fn(toy, state.clone(), beam_width=beam_width, max_len=max_len, bos=bos, eos=eos)
        return _beam_reason(got, toy, state, beam_width, max_len, bos, eos)

    return Case(name, run)


def _exact_case(name: str, toy: ref.ToyDecoder, max_len: int) -> Case:
    """A beam as wide as the whole search space must find the brute-force optimum."""

    def run(fn) -> Reason:
        state = toy.initial_state(1)
        width = toy.vocab_size ** max_len
        got = fn(toy, state.clone(), beam_width=width, max_len=max_len, bos=ref.BOS, eos=ref.EOS)
        best_seq, best_score = ref.brute_force_best(toy, state, vocab_size=toy.vocab_size, max_len=max_len)
        if not isinstance(got, list) or not got or not isinstance(got[0], tuple) or len(got[0]) != 2:
            return "should return a non-empty list of (tokens, score) pairs, best first"
        if [int(t) for t in got[0][0]] != best_seq or abs(float(got[0][1]) - best_score) > 1e-5:
            return (f"a beam of width {width} covers every sequence, yet its best is not the most probable "
                    "sequence (found by trying them all)")
        return _beam_reason(got, toy, state, width, max_len, ref.BOS, ref.EOS)

    return Case(name, run)


def _beam_beats_greedy(seed: int, vocab: int, width: int, max_len: int) -> ref.ToyDecoder:
    """The first ToyDecoder from ``seed`` on where a beam of ``width`` beats greedy (a case that
    separates beam search from a disguised greedy)."""
    for s in range(seed, seed + 200):
        toy = _toy(s, vocab)
        state = toy.initial_state(1)
        _, g = ref.greedy_decode(toy, state, max_len=max_len)
        if ref.beam_search(toy, state, beam_width=width, max_len=max_len)[0][1] > float(g[0]) + 1e-3:
            return toy
    raise RuntimeError("no ToyDecoder where beam beats greedy")  # pragma: no cover


@piece("03.beam", "beam search")
def beam_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    seed = int(torch.randint(0, 10_000, (), generator=gen))
    cases = [
        _beam_case("beam_width = 1 is greedy decoding", _toy(seed, 5), beam_width=1, max_len=8),
        _beam_case("width 3 finds better than greedy here", _beam_beats_greedy(seed + 1, 5, 3, 6), 3, 6),
        _beam_case("max_len cuts hypotheses off", _toy(seed + 2, 6, eos_drift=0.05), beam_width=3, max_len=3),
        _exact_case("a beam wider than the search space is exact (brute force)", _toy(seed + 3, 3), max_len=4),
    ]
    if extended:
        cases += [
            _beam_case("width 5 on a 7-token vocabulary", _beam_beats_greedy(seed + 4, 7, 5, 8), 5, 8),
            _beam_case("bos and eos are not the defaults", _toy(seed + 5, 6, eos=5), beam_width=4, max_len=7,
                       bos=4, eos=5),
            _beam_case("width 2", _beam_beats_greedy(seed + 6, 4, 2, 6), 2, 6),
            _exact_case("exact on another tiny model", _toy(seed + 7, 4), max_len=4),
            _beam_case("max_len = 1", _toy(seed + 8, 5), beam_width=3, max_len=1),
        ]
    return cases
