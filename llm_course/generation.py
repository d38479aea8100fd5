"""Generating text with a decoder-only model (chapter 09 samples; chapter 12 adds the rest).

Autoregressive generation（自回归生成）: run the model on the sequence so far, take the logits
of the LAST position (the prediction of the next token), choose one token, append it, repeat.

Choosing a token is a pipeline of small functions on the logits (the same order as Hugging
Face's ``generate``):

    repetition_penalty → apply_temperature → top_k_filter → top_p_filter → softmax → sample
                                                                         (or argmax: greedy)

A filter never renormalises: it sets the logits of the tokens it removes to −inf, so the
softmax that follows gives them probability 0 and shares the rest out in proportion.

The KV cache（键值缓存）: a causal model's keys and values of past positions never change, so
each step need only compute the NEW token's query, key and value and attend over the stored
ones — one position of work per step instead of the whole sequence.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from llm_course.attention import merge_heads, split_heads

NEG_INF = float("-inf")


# --------------------------------------------------------------------------- input checks
def _check_logits(logits: object) -> None:
    if not isinstance(logits, Tensor) or logits.dim() < 1 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor of shape (..., vocab), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")


def _check_positive_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def _check_k(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int ≥ 1, got {value!r}")


def _check_top_p(top_p: object) -> None:
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def _check_options(temperature: object, top_k: object, top_p: object, repetition_penalty: object) -> None:
    _check_positive_number("temperature", temperature)
    if top_k is not None:
        _check_k("top_k", top_k)
    if top_p is not None:
        _check_top_p(top_p)
    if repetition_penalty is not None:
        _check_positive_number("repetition_penalty", repetition_penalty)


def _check_ids(ids: object) -> None:
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.shape[1] < 1 or ids.dtype.is_floating_point \
            or ids.dtype == torch.bool:
        raise ValueError(f"ids must be an integer tensor of shape (batch, T) with T ≥ 1, got "
                         f"{getattr(ids, 'shape', type(ids).__name__)}")


def _check_fits(model: nn.Module, ids: Tensor, max_new_tokens: int) -> None:
    """A learned position table has max_len rows: prompt + new tokens must fit in it."""
    T, max_len = ids.shape[1], model.config.max_len
    if T > max_len:
        raise ValueError(f"the prompt ids has {T} tokens, more than the model's max_len={max_len}")
    if T + max_new_tokens > max_len:
        raise ValueError(f"prompt ({T} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                         f"max_len={max_len}")


def _check_max_new_tokens(max_new_tokens: object) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")


# --------------------------------------------------------------------------- the logit filters
def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """logits / temperature. Below 1 sharpens the distribution (→ greedy as T → 0), above 1
    flattens it (→ uniform as T → ∞); 1 leaves it as the model learned it.

    Shapes: (..., vocab) → (..., vocab).
    """
    _check_logits(logits)
    _check_positive_number("temperature", temperature)
    return logits / temperature


def top_k_filter(logits: Tensor, k: int, min_tokens_to_keep: int = 1) -> Tensor:
    """Keep the k highest logits of each row, set the others to −inf.

    Tokens tied with the k-th highest logit are all kept (a tie cannot be broken fairly), so
    a row may keep more than k. k ≥ vocab keeps everything. At least ``min_tokens_to_keep``
    tokens survive. Same result as ``transformers``' ``TopKLogitsWarper``.

    Shapes: (..., vocab) → (..., vocab).
    """
    _check_logits(logits)
    _check_k("k", k)
    _check_k("min_tokens_to_keep", min_tokens_to_keep)
    k = min(max(k, min_tokens_to_keep), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: Tensor, top_p: float, min_tokens_to_keep: int = 1) -> Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the smallest set of most probable
    tokens whose probabilities add up to at least ``top_p``, set the others to −inf.

    Sort the probabilities in decreasing order and add them up: every token before the one
    that makes the sum reach ``top_p`` is kept, AND that crossing token too. Tokens tied with
    the last kept one are kept as well (as in ``top_k_filter``). top_p = 1 keeps every token
    with probability > 0. Without ties at that boundary the kept set is ``transformers``'
    ``TopPLogitsWarper``'s.

    Shapes: (..., vocab) → (..., vocab).
    """
    _check_logits(logits)
    _check_top_p(top_p)
    _check_k("min_tokens_to_keep", min_tokens_to_keep)
    probs = torch.softmax(logits, dim=-1)
    sorted_probs = probs.sort(dim=-1, descending=True).values
    # tail[j]: the mass of the j-th most probable token and of every less probable one, added up
    # from the smallest so that tiny probabilities are not rounded away (top_p = 1 keeps them).
    # 1 − tail[j] is the mass ranked ABOVE token j: keep it while that is still below top_p —
    # which keeps the token that crosses top_p too.
    tail = sorted_probs.flip(-1).cumsum(dim=-1).flip(-1)
    n_keep = (tail > 1 - top_p).sum(dim=-1, keepdim=True)
    n_keep = n_keep.clamp(min=min(min_tokens_to_keep, logits.shape[-1]))
    threshold = sorted_probs.gather(-1, n_keep - 1)        # the probability of the last kept token
    return logits.masked_fill(probs < threshold, NEG_INF)


def repetition_penalty(logits: Tensor, ids: Tensor, penalty: float) -> Tensor:
    """Make every token that already occurs in ``ids`` less likely (Keskar et al. 2019, CTRL).

    A seen token's logit is divided by ``penalty`` if it is positive and MULTIPLIED by it if it
    is negative: with penalty > 1 both move it down (dividing a negative logit would move it
    up). Each seen token is penalised once, however often it occurs. penalty = 1 changes
    nothing; < 1 encourages repetition. Same result as ``RepetitionPenaltyLogitsProcessor``.

    Shapes: logits (batch, vocab), ids (batch, T) → (batch, vocab).
    """
    _check_logits(logits)
    _check_positive_number("penalty", penalty)
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype.is_floating_point \
            or logits.dim() != 2 or ids.shape[0] != logits.shape[0]:
        raise ValueError(f"ids must be an integer tensor (batch, T) matching logits (batch, vocab); got ids "
                         f"{getattr(ids, 'shape', type(ids).__name__)} and logits {tuple(logits.shape)}")
    seen = logits.gather(-1, ids)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, ids, seen)


def next_token(logits: Tensor, ids: Tensor | None = None, *, greedy: bool = False, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None, repetition_penalty: float | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """Choose the next token of each sequence from its last-position logits.

    logits: (batch, vocab); ids: (batch, T) the sequences so far (needed for the penalty).
    greedy: take the most probable token (argmax; temperature, top-k and top-p cannot change
    it); otherwise sample from softmax of the filtered logits. Returns (batch, 1) token ids.
    """
    _check_options(temperature, top_k, top_p, repetition_penalty)
    if repetition_penalty is not None:
        if ids is None:
            raise ValueError("repetition_penalty needs ids, the tokens generated so far")
        logits = _penalise(logits, ids, repetition_penalty)
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)


_penalise = repetition_penalty  # next_token's argument of the same name hides the function


# --------------------------------------------------------------------------- generation loops
def _last_logits(model: nn.Module, ids: Tensor) -> Tensor:
    """(batch, vocab) next-token logits; works for our models and for transformers' (``.logits``)."""
    out = model(ids)
    return getattr(out, "logits", out)[:, -1, :]


def _context_length(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "max_len", None) or getattr(config, "max_position_embeddings", None)


@torch.no_grad()
def generate(model: nn.Module, ids: Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None, *,
             top_p: float | None = None, repetition_penalty: float | None = None,
             greedy: bool = False) -> Tensor:
    """Append ``max_new_tokens`` tokens to ``ids`` (batch, T) → (batch, T + max_new_tokens),
    running the WHOLE sequence through the model at every step (no cache).

    temperature: logits are divided by it — below 1 sharpens the distribution, above 1 flattens it.
    top_k: sample only among the k most likely tokens (the rest get probability 0).
    top_p, repetition_penalty, greedy: see ``next_token``.
    The model sees at most its last ``model.config.max_len`` tokens (a learned position table
    has no row beyond that). The model is put in eval mode and restored afterwards. Also
    works with a ``transformers`` causal LM.
    """
    _check_ids(ids)
    _check_max_new_tokens(max_new_tokens)
    _check_options(temperature, top_k, top_p, repetition_penalty)
    options = dict(greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p,
                   repetition_penalty=repetition_penalty, generator=generator)
    window = _context_length(model) or ids.shape[1] + max_new_tokens
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            logits = _last_logits(model, ids[:, -window:])
            ids = torch.cat([ids, next_token(logits, ids, **options)], dim=1)
    finally:
        model.train(was_training)
    return ids


class KVCache:
    """The keys and values every layer has computed so far, so they are never recomputed.

    ``keys[l]`` and ``values[l]`` are (batch, kv_heads, T_seen, d_head) for layer l (None
    before the first update). Memory: 2 (K and V) × layers × T_seen × kv_heads·d_head numbers
    per sequence — it grows linearly with the length.
    """

    def __init__(self, num_layers: int):
        _check_k("num_layers", num_layers)
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers

    @property
    def length(self) -> int:
        """How many positions are cached (those of layer 0)."""
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append the new positions' k, v (batch, heads, T_new, d_head) to ``layer``'s cache;
        return all the keys and values of that layer so far, (batch, heads, T_seen + T_new, d_head)."""
        if not 0 <= layer < len(self.keys):
            raise ValueError(f"layer must be in [0, {len(self.keys)}), got {layer!r}")
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=-2)  # the time axis
            v = torch.cat([self.values[layer], v], dim=-2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values) if t is not None)


def forward_cached(model: nn.Module, ids: Tensor, cache: KVCache) -> Tensor:
    """Run only the NEW tokens ``ids`` (batch, T_new) through a ``DecoderOnly``, attending to
    the cached positions as well; ``cache`` is extended. → logits (batch, T_new, vocab).

    Same maths as ``model(all_ids)[:, -T_new:]``: the new tokens get positions
    offset … offset + T_new − 1 (offset = positions already cached), and new token i may
    attend to every cached position and to new tokens 0 … i.
    """
    _check_ids(ids)
    offset, T = cache.length, ids.shape[1]
    h = model.drop(model.pos_emb(model.tok_emb(ids), offset=offset))
    # new token i sees cached positions and new tokens ≤ i: a causal mask shifted right by offset
    mask = None if T == 1 else torch.ones(T, offset + T, dtype=torch.bool, device=ids.device).tril(offset)
    for layer, block in enumerate(model.blocks):
        def attention(x: Tensor, attn=block.attn, layer=layer) -> Tensor:
            q = split_heads(attn.q_proj(x), attn.num_heads)
            k, v = cache.update(layer, split_heads(attn.k_proj(x), attn.num_heads),
                                split_heads(attn.v_proj(x), attn.num_heads))
            out, _ = attn.attend(q, k, v, mask)
            return attn.out_proj(merge_heads(out))

        h = block.residual(h, block.norm1, attention)
        h = block.residual(h, block.norm2, block.ffn)
    return model.logits(h)


@torch.no_grad()
def generate_cached(model: nn.Module, ids: Tensor, max_new_tokens: int, **options: Any) -> Tensor:
    """``generate`` with a KV cache: the prompt is run once (prefill), then each step feeds
    only the token just chosen. Same tokens as ``generate`` for the same options (and the same
    ``generator`` state when sampling). ``options``: those of ``next_token``.

    Unlike ``generate`` it cannot slide a window: prompt + max_new_tokens must fit in
    ``model.config.max_len``.
    """
    _check_ids(ids)
    _check_max_new_tokens(max_new_tokens)
    _check_options(*(options.get(k, d) for k, d in
                     (("temperature", 1.0), ("top_k", None), ("top_p", None), ("repetition_penalty", None))))
    _check_fits(model, ids, max_new_tokens)
    was_training = model.training
    model.eval()
    try:
        cache = KVCache(len(model.blocks))
        logits = forward_cached(model, ids, cache)[:, -1]      # prefill: the whole prompt at once
        for step in range(max_new_tokens):
            new = next_token(logits, ids, **options)
            ids = torch.cat([ids, new], dim=1)
            if step < max_new_tokens - 1:
                logits = forward_cached(model, new, cache)[:, -1]  # decode: one token
    finally:
        model.train(was_training)
    return ids


# --------------------------------------------------------------------------- beam search
def beam_search_lm(model: nn.Module, ids: Tensor, beam_width: int, max_new_tokens: int,
                   eos: int | None = None) -> list[tuple[list[int], float]]:
    """Beam search for a decoder-only model, with chapter 03's ``seq2seq.beam_search``.

    That search drives a step function ``step(tokens (k,), state (k, ...))``. For a
    decoder-only model the state is simply the sequence so far: a step appends the token it
    is given and returns the log-probabilities of the next one. The prompt's last token plays
    the role of ``<bos>`` (the first token fed in). No cache: each step reruns the k beams.

    ids: (1, T) ONE prompt. eos: a token id that ends a hypothesis (None: run to the end).
    Returns up to ``beam_width`` (new tokens, total log-probability), best first.
    """
    from llm_course.seq2seq import beam_search

    _check_ids(ids)
    if ids.shape[0] != 1:
        raise ValueError(f"ids must hold ONE prompt, shape (1, T), got {tuple(ids.shape)}")
    _check_k("max_new_tokens", max_new_tokens)

    def step(tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        seq = torch.cat([state, tokens[:, None]], dim=1)
        return torch.log_softmax(_last_logits(model, seq).float(), dim=-1), seq

    vocab = getattr(model.config, "vocab_size", None)
    never = vocab if vocab is not None else 2**62  # an id no model can produce: no early end
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return beam_search(step, ids[:, :-1], beam_width=beam_width, max_len=max_new_tokens,
                               bos=int(ids[0, -1]), eos=never if eos is None else eos)
    finally:
        model.train(was_training)
