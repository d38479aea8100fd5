"""Cases for lab 08 (the three architectures and parameter counting). The model pieces plug the
reference blocks and embeddings into the learner's model, so only the wiring the learner wrote
is graded; classic mistakes are recognised by recomputing them with the reference's layers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from llm_course import transformer as tref
from llm_course.attention import padding_mask
from llm_course.checks.engine import Case, Reason, compare_tensor, piece, randn

_ARGS = ("d_model", "num_heads", "d_ff", "norm", "prenorm")


def _build(cls, *args, **kwargs) -> tuple[nn.Module | None, Reason]:
    try:
        return cls(*args, **kwargs), None
    except NotImplementedError:
        raise
    except Exception as err:  # the constructor is given, but a learner may have edited it
        return None, f"{getattr(cls, '__name__', cls)} could not be built: {type(err).__name__}: {err}"


def _roughen_norms(module: nn.Module, gen: torch.Generator) -> None:
    """Give every norm a non-trivial scale and shift, so that a skipped or swapped norm shows."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (tref.LayerNorm, tref.RMSNorm)):
                for p in m.parameters():
                    p.add_(0.3 * torch.randn(p.shape, generator=gen))


def _int(gen: torch.Generator, lo: int, hi: int) -> int:
    return int(torch.randint(lo, hi + 1, (), generator=gen))


# --- 08.decoder_block -----------------------------------------------------------------------


def _decoder_variant(b: tref.DecoderBlock, x: Tensor, memory: Tensor, mask: Tensor | None, *,
                     cross_reads_self: bool = False, not_causal: bool = False, drop_mask: bool = False,
                     no_cross: bool = False, cross_first: bool = False, cross_norm1: bool = False,
                     flip_norm: bool = False, no_cross_residual: bool = False) -> Tensor:
    """The reference decoder block with one deliberate mistake."""
    prenorm = not b.prenorm if flip_norm else b.prenorm

    def residual(h, norm, f, skip=False):
        if prenorm:
            return (0 if skip else h) + f(norm(h))
        return norm((0 if skip else h) + f(h))

    def self_attn(h):
        return b.attn(h, is_causal=not not_causal)[0]

    def cross(h):
        if cross_reads_self:  # (the source mask does not even fit the decoder's own keys)
            return b.cross_attn(h, context=h)[0]
        return b.cross_attn(h, context=memory, mask=None if drop_mask else mask)[0]

    subs = [(b.norm1, self_attn, False), (b.norm1 if cross_norm1 else b.norm_cross, cross, no_cross_residual)]
    if cross_first:
        subs = subs[::-1]
    if no_cross:
        subs = subs[:1]
    for norm, f, skip in subs:
        x = residual(x, norm, f, skip)
    return residual(x, b.norm2, b.ffn)


_DECODER_MISTAKES = {
    "cross-attention read the decoder's own states: its keys and values must come from the encoder "
    "output (context=memory); only the queries come from the decoder": dict(cross_reads_self=True),
    "the self-attention is not causal: a decoder position must not see later target tokens (is_causal=True)":
        dict(not_causal=True),
    "memory_mask was not passed to the cross-attention, so the decoder attends to the source's padding":
        dict(drop_mask=True),
    "the cross-attention sub-layer is missing (self-attention → cross-attention → FFN)": dict(no_cross=True),
    "cross-attention ran before self-attention; the order is self-attention, cross-attention, FFN":
        dict(cross_first=True),
    "norm1 was used around the cross-attention; it has its own norm, norm_cross": dict(cross_norm1=True),
    "the residual connection around the cross-attention is missing (use self.residual for every sub-layer)":
        dict(no_cross_residual=True),
    "pre-norm and post-norm mixed up: let self.residual apply the norm": dict(flip_norm=True),
}


def _decoder_block_case(name: str, gen: torch.Generator, d_model: int, H: int, B: int, T: int, S: int, *,
                        norm: str = "layer", prenorm: bool = True, padded: bool = False) -> Case:
    x, memory = randn(gen, B, T, d_model), randn(gen, B, S, d_model)
    lengths = torch.tensor([S] + [max(1, S - 1 - i % 3) for i in range(B - 1)])
    mask = padding_mask(lengths, S) if padded else None
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))

    def run(cls) -> Reason:
        torch.manual_seed(seed)
        reference = tref.DecoderBlock(d_model, H, norm=norm, prenorm=prenorm)
        _roughen_norms(reference, torch.Generator().manual_seed(seed))
        module, reason = _build(cls, d_model, H, norm=norm, prenorm=prenorm)
        if reason:
            return reason
        for sub in ("attn", "cross_attn", "ffn", "norm1", "norm_cross", "norm2", "drop"):
            setattr(module, sub, getattr(reference, sub))
        module.eval()
        reference.eval()
        with torch.no_grad():
            expected = reference(x, memory, mask)
            mistakes = [(hint, _decoder_variant(reference, x, memory, mask, **kw))
                        for hint, kw in _DECODER_MISTAKES.items() if padded or "memory_mask" not in hint]
            got = module(x.clone(), memory.clone(), mask) if padded else module(x.clone(), memory.clone())
        if isinstance(got, tuple):
            return "forward should return one tensor (batch, T_tgt, d_model), not a tuple"
        return compare_tensor(got, expected, "output", atol=1e-4, known_mistakes=mistakes)

    return Case(name, run)


@piece("08.decoder_block", "decoder block with cross-attention")
def decoder_block_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    T = _int(gen, 4, 7)
    cases = [
        _decoder_block_case(f"pre-norm, T_tgt {T}, T_src 6", gen, 16, 4, B=2, T=T, S=6),
        _decoder_block_case("source padding (memory_mask)", gen, 16, 2, B=3, T=5, S=7, padded=True),
        _decoder_block_case("post-norm (prenorm=False)", gen, 24, 3, B=2, T=4, S=5, prenorm=False, padded=True),
    ]
    if extended:
        cases += [
            _decoder_block_case("RMSNorm, 8 heads", gen, 32, 8, B=1, T=6, S=3, norm="rms", padded=True),
            _decoder_block_case("one target token", gen, 8, 2, B=2, T=1, S=4),
            _decoder_block_case("source shorter than target", gen, 16, 4, B=2, T=8, S=2, padded=True),
        ]
    return cases


# --- the three models -----------------------------------------------------------------------


def _config(gen: torch.Generator, **overrides) -> tref.ModelConfig:
    kwargs = dict(vocab_size=_int(gen, 20, 40), d_model=16, num_heads=4, num_layers=2, max_len=16)
    kwargs.update(overrides)
    return tref.ModelConfig(**kwargs)


def _plugged(cls, config: tref.ModelConfig, seed: int) -> tuple[nn.Module | None, nn.Module | None, Reason]:
    """The learner's model holding the reference model's layers (same weights, same blocks)."""
    torch.manual_seed(seed)
    reference = {"EncoderOnly": tref.EncoderOnly, "DecoderOnly": tref.DecoderOnly,
                 "EncoderDecoder": tref.EncoderDecoder}[_family(cls)](config)
    _roughen_norms(reference, torch.Generator().manual_seed(seed))
    module, reason = _build(cls, config)
    if reason:
        return None, None, reason
    for name, child in reference.named_children():
        setattr(module, name, child)
    return module.eval(), reference.eval(), None


def _family(cls) -> str:
    for base in getattr(cls, "__mro__", ()):
        if base.__name__ in ("EncoderOnly", "DecoderOnly", "EncoderDecoder"):
            return base.__name__
    return "DecoderOnly"


def _ids(gen: torch.Generator, config: tref.ModelConfig, B: int, T: int) -> Tensor:
    return torch.randint(0, config.vocab_size, (B, T), generator=gen)


def _decoder_only_case(name: str, gen: torch.Generator, B: int, T: int, **overrides) -> Case:
    config = _config(gen, **overrides)
    ids = _ids(gen, config, B, T)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))

    def run(cls) -> Reason:
        module, ref, reason = _plugged(cls, config, seed)
        if reason:
            return reason
        with torch.no_grad():
            expected = ref(ids)

            def stack(h, causal=True):
                for block in ref.blocks:
                    h = block(h, is_causal=causal)
                return h

            mistakes = [
                ("the blocks ran without a causal mask: position t must not see tokens after t (is_causal=True)",
                 ref.logits(stack(ref.embed(ids), causal=False))),
                ("the final norm is missing: use self.logits(h), which applies final_norm before lm_head",
                 ref.lm_head(stack(ref.embed(ids)))),
                ("the position embedding is missing: self.embed(ids) adds it to the token embedding",
                 ref.logits(stack(ref.tok_emb(ids)))),
                ("the output layer is missing: forward must return vocabulary logits", stack(ref.embed(ids))),
            ]
            got = module(ids.clone())
        return compare_tensor(got, expected, "logits", atol=1e-4, known_mistakes=mistakes)

    return Case(name, run)


def _causality_case(gen: torch.Generator) -> Case:
    config = _config(gen)
    ids = _ids(gen, config, 2, 10)

    def run(cls) -> Reason:
        module, _, reason = _plugged(cls, config, 0)
        if reason:
            return reason
        changed = ids.clone()
        changed[:, 6:] = (changed[:, 6:] + 1) % config.vocab_size
        with torch.no_grad():
            a, b = module(ids), module(changed)
        if not torch.allclose(a[:, :6], b[:, :6], atol=1e-5):
            return "changing tokens 6… changed the logits at positions 0…5: the model looks at the future"
        return None

    return Case("causal: later tokens never change earlier logits", run)


@piece("08.decoder_only", "decoder-only (GPT) forward pass")
def decoder_only_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _decoder_only_case("2 layers, pre-norm, (batch 2, T 7)", gen, 2, 7),
        _decoder_only_case("post-norm, untied output layer", gen, 3, 5, prenorm=False, tie_weights=False),
        _causality_case(gen),
    ]
    if extended:
        cases += [
            _decoder_only_case("RMSNorm + SwiGLU, 3 layers", gen, 2, 9, norm="rms", activation="swiglu",
                               num_layers=3),
            _decoder_only_case("one token", gen, 4, 1),
            _decoder_only_case("the full context (T = max_len)", gen, 1, 16),
        ]
    return cases


def _encoder_only_case(name: str, gen: torch.Generator, B: int, T: int, padded: bool = False, **overrides) -> Case:
    config = _config(gen, **overrides)
    ids = _ids(gen, config, B, T)
    mask = padding_mask(torch.tensor([T] + [max(1, T - 2)] * (B - 1)), T) if padded else None
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))

    def run(cls) -> Reason:
        module, ref, reason = _plugged(cls, config, seed)
        if reason:
            return reason
        with torch.no_grad():
            expected = ref.encode(ids, mask)

            def stack(h, mask=mask, causal=False):
                for block in ref.blocks:
                    h = block(h, mask=mask, is_causal=causal)
                return h

            mistakes = [
                ("the final norm is missing: encode returns final_norm(h)", stack(ref.embed(ids))),
                ("a causal mask was used: an encoder is bidirectional, every token sees both sides",
                 ref.final_norm(stack(ref.embed(ids), causal=True))),
            ]
            if padded:
                mistakes.append(("the padding mask was not passed to the blocks",
                                 ref.final_norm(stack(ref.embed(ids), mask=None))))
            got = module.encode(ids.clone(), mask) if padded else module.encode(ids.clone())
        return compare_tensor(got, expected, "encode(ids)", atol=1e-4, known_mistakes=mistakes)

    return Case(name, run)


@piece("08.encoder_only", "encoder-only (BERT) encode")
def encoder_only_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _encoder_only_case("pre-norm, (batch 2, T 6)", gen, 2, 6),
        _encoder_only_case("with a padding mask", gen, 3, 7, padded=True),
        _encoder_only_case("post-norm", gen, 2, 5, prenorm=False),
    ]
    if extended:
        cases += [
            _encoder_only_case("RMSNorm, 3 layers, padding", gen, 2, 8, padded=True, norm="rms", num_layers=3),
            _encoder_only_case("one token", gen, 3, 1),
        ]
    return cases


def _encoder_decoder_case(name: str, gen: torch.Generator, B: int, S: int, T: int, padded: bool = True,
                          **overrides) -> Case:
    config = _config(gen, **overrides)
    src, tgt = _ids(gen, config, B, S), _ids(gen, config, B, T)
    src_mask = (torch.arange(S) < torch.tensor([S] + [max(1, S - 1 - i % 3) for i in range(B - 1)])[:, None]) \
        if padded else None
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))

    def run(cls) -> Reason:
        module, ref, reason = _plugged(cls, config, seed)
        if reason:
            return reason
        keys = None if src_mask is None else src_mask[:, None, None, :]
        with torch.no_grad():
            expected = ref(src, tgt, src_mask)

            def encode(enc_keys=keys, final=True):
                h = ref.embed(src)
                for block in ref.encoder:
                    h = block(h, mask=enc_keys)
                return ref.encoder_norm(h) if final else h

            def decode(memory, cross_keys=keys, causal=True, final=True):
                h = ref.embed(tgt)
                for block in ref.decoder:
                    h = block(h, memory, memory_mask=cross_keys) if causal else _decoder_variant(
                        block, h, memory, cross_keys, not_causal=True)
                return ref.logits(h) if final else ref.lm_head(h)

            mistakes = [
                ("the decoder read the source embeddings instead of the encoder's output: encode first, then "
                 "pass memory to every decoder block", decode(ref.embed(src))),
                ("the encoder's final norm (encoder_norm) is missing", decode(encode(final=False))),
                ("the decoder's final norm is missing: use self.logits(h)", decode(encode(), final=False)),
            ]
            if padded:
                mistakes += [
                    ("the source padding mask was not used in the encoder's self-attention",
                     decode(encode(enc_keys=None))),
                    ("the source padding mask was not passed to the decoder's cross-attention (memory_mask)",
                     decode(encode(), cross_keys=None)),
                    ("the source padding mask was ignored everywhere", decode(encode(enc_keys=None), cross_keys=None)),
                ]
            got = module(src.clone(), tgt.clone(), src_mask) if padded else module(src.clone(), tgt.clone())
        return compare_tensor(got, expected, "logits", atol=1e-4, known_mistakes=mistakes)

    return Case(name, run)


@piece("08.encoder_decoder", "encoder–decoder (T5) encode and decode")
def encoder_decoder_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _encoder_decoder_case("pre-norm, no padding", gen, 2, 6, 5, padded=False),
        _encoder_decoder_case("source padding (src_mask)", gen, 3, 7, 4),
        _encoder_decoder_case("post-norm, untied, padding", gen, 2, 5, 6, prenorm=False, tie_weights=False),
    ]
    if extended:
        cases += [
            _encoder_decoder_case("RMSNorm + SwiGLU, 3 layers", gen, 2, 8, 3, norm="rms", activation="swiglu",
                                  num_layers=3),
            _encoder_decoder_case("one target token", gen, 3, 5, 1),
            _encoder_decoder_case("target longer than source", gen, 2, 3, 9),
        ]
    return cases


# --- 08.parameter_breakdown -----------------------------------------------------------------

KEYS = ("embedding", "positions", "attention", "feed-forward", "norms", "output layer")


def _mistaken_terms(c: tref.ModelConfig, arch: str, positions: str, bias: bool) -> dict[str, list[tuple[str, int]]]:
    """Per term, what classic mistakes would give (computed from the reference with one change)."""
    ref = tref.parameter_breakdown(c, arch, positions=positions, bias=bias)
    d, V, b = c.d_model, c.vocab_size, int(bias)
    f = c.d_ff or (4 * d if c.activation == "gelu" else tref.swiglu_hidden_size(d))
    stacks = 2 if arch == "encoder-decoder" else 1
    blocks, cross = stacks * c.num_layers, (c.num_layers if arch == "encoder-decoder" else 0)
    norm = (1 + b) * d if c.norm == "layer" else d
    n_norms = 2 * blocks + cross + (stacks if c.prenorm else 0)
    out = {k: [] for k in KEYS}
    out["attention"] += [
        ("the attention biases are missing (4·d per attention layer when bias=True)",
         (blocks + cross) * 4 * d * d),
        ("the cross-attention of the decoder blocks is not counted (an encoder–decoder has one per decoder block)",
         blocks * (4 * d * d + 4 * b * d)),
        ("the output projection is missing: attention has FOUR d×d matrices (q, k, v, out)",
         (blocks + cross) * (3 * d * d + 3 * b * d)),
    ]
    out["feed-forward"] += [
        ("the feed-forward biases are missing", blocks * (2 if c.activation == "gelu" else 3) * d * f),
        ("SwiGLU has THREE matrices (gate, up, down) and biases 2f + d" if c.activation == "swiglu" else
         "a GELU FFN has two matrices (up, down)", blocks * (2 * d * f + b * (f + d)) if c.activation == "swiglu"
         else blocks * (3 * d * f + b * (2 * f + d))),
        ("d_ff was taken as 4·d_model although the config gives d_ff", blocks * (
            2 * d * 4 * d + b * (5 * d) if c.activation == "gelu" else 3 * d * 4 * d + b * 9 * d)),
    ]
    out["norms"] += [
        ("the final norm (one per stack when pre-norm) is missing" if c.prenorm else
         "a post-norm stack has no final norm (its last block already ends in one)",
         (n_norms - stacks if c.prenorm else n_norms + stacks) * norm),
        ("the LayerNorm biases are wrong: a LayerNorm has weight AND bias (when bias=True), an RMSNorm only a weight",
         n_norms * ((2 - b) * d if c.norm == "layer" else 2 * d)),
        ("the norm around the cross-attention (one per decoder block) is missing", (n_norms - cross) * norm),
    ]
    out["positions"] += [
        ("rotary positions have no parameters (no table)" if positions == "rotary" else
         "the learned position table (max_len × d_model) is missing", c.max_len * d if positions == "rotary" else 0),
    ]
    out["output layer"] += [
        ("a tied output layer shares the embedding matrix: count it once (0 here)" if c.tie_weights else
         "an untied output layer is a separate vocab_size × d_model matrix", 0 if not c.tie_weights else V * d),
        ("the output layer has no bias", V * d + V),
    ]
    out["embedding"] += [("the encoder and decoder share ONE token-embedding table", 2 * V * d)]
    # drop "mistakes" that coincide with the right answer for this configuration
    return {k: [(h, v) for h, v in vs if v != ref[k]] for k, vs in out.items()}


def _breakdown_case(name: str, gen: torch.Generator, arch: str, positions: str = "learned", bias: bool = True,
                    build: bool = True, **overrides) -> Case:
    d_head = 2 * _int(gen, 1, 4)
    heads = _int(gen, 1, 4)
    kwargs = dict(vocab_size=_int(gen, 10, 300), d_model=d_head * heads, num_heads=heads,
                  num_layers=_int(gen, 1, 4), max_len=_int(gen, 4, 64))
    kwargs.update(overrides)
    config = tref.ModelConfig(**kwargs)

    def run(fn) -> Reason:
        got = fn(config, arch, positions=positions, bias=bias)
        if not isinstance(got, dict) or set(got) != set(KEYS):
            return f"should return a dict with the keys {list(KEYS)}, got {type(got).__name__} " \
                   f"{sorted(got) if isinstance(got, dict) else ''}"[:300]
        expected = tref.parameter_breakdown(config, arch, positions=positions, bias=bias)
        mistakes = _mistaken_terms(config, arch, positions, bias)
        for key in KEYS:
            value = got[key]
            if isinstance(value, Tensor):
                value = value.item()
            if isinstance(value, bool) or not isinstance(value, int):
                return f"the '{key}' term should be an int, got {type(value).__name__}"
            if value != expected[key]:
                hint = next((h for h, v in mistakes[key] if v == value), None)
                return f"the '{key}' term is wrong" + (f": {hint}" if hint else f" (got {value:,})")
        if build:  # the independent check: the numbers PyTorch reports for a real model
            model = tref.MODELS[arch](config)
            if sum(got.values()) != sum(p.numel() for p in model.parameters()):
                return "the total differs from sum(p.numel() for p in model.parameters())"
        return None

    flags = ", ".join(f"{k}={v}" for k, v in overrides.items())
    extra = "" if positions == "learned" and bias else f", positions={positions}, bias={bias}"
    return Case(f"{name}: {arch}" + (f", {flags}" if flags else "") + extra, run)


@piece("08.parameter_breakdown", "parameter count by formula")
def breakdown_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _breakdown_case("GPT-like", gen, "decoder-only"),
        _breakdown_case("BERT-like", gen, "encoder-only", prenorm=False),
        _breakdown_case("T5-like", gen, "encoder-decoder", d_ff=24),
        _breakdown_case("untied", gen, "decoder-only", tie_weights=False),
        _breakdown_case("LLaMA-like", gen, "decoder-only", "rotary", False, build=False, norm="rms",
                        activation="swiglu", tie_weights=False),
    ]
    if extended:
        for arch in tref.ARCHITECTURES:
            for norm, act, tie, pre in ((("rms", "gelu", False, True), ("layer", "swiglu", True, False),
                                         ("rms", "swiglu", True, True), ("layer", "gelu", False, False))):
                cases.append(_breakdown_case("hidden config", gen, arch, norm=norm, activation=act,
                                             tie_weights=tie, prenorm=pre, d_ff=_int(gen, 4, 40)))
        cases += [
            _breakdown_case("no biases", gen, "encoder-decoder", "learned", False, build=False),
            _breakdown_case("rotary", gen, "encoder-only", "rotary", True, build=False, norm="rms"),
            _breakdown_case("GPT-3 size", gen, "decoder-only", build=False, vocab_size=50257, d_model=12288,
                            num_heads=96, num_layers=96, max_len=2048),
        ]
    return cases


# --- 08.chatglm -----------------------------------------------------------------------------


@piece("08.chatglm", "ChatGLM-6B's parameter count")
def chatglm_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def run(fn) -> Reason:
        got = fn()
        if isinstance(got, Tensor):
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, int):
            return f"should return an int, got {type(got).__name__}"
        m = tref.CHATGLM_6B
        expected = m.count()
        if got == expected:
            return None
        c, d, V = m.config, m.config.d_model, m.config.vocab_size
        known = {
            expected + V * d: "the output layer was counted as a second vocab × d matrix; the released model "
                              "shares it with the word embedding (tie_weights=True)",
            expected + c.max_len * d: "ChatGLM-6B uses rotary positions: no learned position table",
            tref.parameter_count(c, positions="rotary", bias=False): "ChatGLM-6B's Linears and LayerNorms have biases",
            tref.parameter_count(tref.ModelConfig(V, d, 32, 28, 2048, d_ff=16384, activation="swiglu"),
                                 positions="rotary"): "ChatGLM-6B's FFN is up → GELU → down (two matrices), not SwiGLU",
        }
        return known.get(got, f"{got:,} is not the released model's count (check each value against config.json)")

    return [Case("ChatGLM-6B from its published config", run)]
