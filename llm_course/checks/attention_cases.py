"""Cases for lab 06 (attention). Each piece compares the learner's code with
``llm_course.attention`` and recognises the classic mistakes by recomputing them."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from llm_course import attention as ref
from llm_course.checks.engine import Case, Reason, compare_gradients, compare_tensor, piece, randn

# --- 06.sdpa ------------------------------------------------------------------------------


def _attention_variant(q, k, v, mask, *, scale="sqrt", softmax_dim=-1, mask_mode="fill"):
    """The reference computation with one deliberate mistake, to recognise it in a learner's output."""
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1)
    scores = scores / {"sqrt": math.sqrt(d_k), "none": 1.0, "d": d_k}[scale]
    if mask is not None and mask_mode == "fill":
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    elif mask is not None and mask_mode == "inverted":
        scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
    elif mask is not None and mask_mode == "zero_scores":
        scores = scores * mask
    weights = scores.softmax(dim=softmax_dim)
    if mask is not None and mask_mode == "after_softmax":
        weights = weights * mask
    return weights @ v, weights


SDPA_MISTAKES = {
    "scores were not divided by √d_k": dict(scale="none"),
    "scores were divided by d_k instead of √d_k": dict(scale="d"),
    "softmax over the query axis (dim=-2); it must run over the keys (dim=-1)": dict(softmax_dim=-2),
    "the mask is inverted: True must mean 'may attend'": dict(mask_mode="inverted"),
    "the mask was applied after the softmax: masked keys are zeroed but the rows no longer sum to 1":
        dict(mask_mode="after_softmax"),
    "masked scores were multiplied by 0 instead of set to -∞, so masked keys still get weight":
        dict(mask_mode="zero_scores"),
}


def _sdpa_case(name: str, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Case:
    def run(fn) -> Reason:
        result = fn(q.clone(), k.clone(), v.clone(), mask) if mask is not None else fn(q.clone(), k.clone(), v.clone())
        if not isinstance(result, tuple) or len(result) != 2:
            return f"should return a tuple (output, weights), got {type(result).__name__}"
        out, weights = result
        exp_out, exp_w = ref.scaled_dot_product_attention(q, k, v, mask)
        mistakes = [(hint, _attention_variant(q, k, v, mask, **kw)) for hint, kw in SDPA_MISTAKES.items()
                    if mask is not None or "mask_mode" not in kw]
        reason = compare_tensor(weights, exp_w, "weights", known_mistakes=[(h, w) for h, (_, w) in mistakes])
        if reason and reason not in SDPA_MISTAKES and isinstance(weights, Tensor) and weights.shape == exp_w.shape:
            reason = _weights_property_hint(weights.detach(), mask) or reason
        return reason or compare_tensor(out, exp_out, "output", known_mistakes=[(h, o) for h, (o, _) in mistakes])

    return Case(name, run)


def _weights_property_hint(weights: Tensor, mask: Tensor | None) -> Reason:
    """Explain wrong weights by a property every correct answer has."""
    row_sums = weights.double().sum(-1)
    if not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-4):
        return "rows of the weights do not sum to 1: is the softmax over the last (key) axis?"
    if mask is not None:
        leaked = weights.double().masked_fill(torch.broadcast_to(mask, weights.shape), 0).abs().max().item()
        if leaked > 1e-6:
            return f"masked-out keys got weight (up to {leaked:.3g}); they must get exactly 0"
    return None


@piece("06.sdpa", "scaled dot-product attention")
def sdpa_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    B, H = 2 + int(torch.randint(0, 2, (), generator=gen)), 3
    T, d = 5 + int(torch.randint(0, 3, (), generator=gen)), 8
    lengths = torch.tensor([T, 2 + int(torch.randint(0, T - 2, (), generator=gen))])
    cases = [
        _sdpa_case("2-D inputs: 2 queries, 3 keys", randn(gen, 2, 4), randn(gen, 3, 4), randn(gen, 3, 2)),
        _sdpa_case(f"batch {B} × {H} heads, T={T}, d_k={d}", *(randn(gen, B, H, T, d) for _ in range(3))),
        _sdpa_case("T_q ≠ T_k and d_v ≠ d_k", randn(gen, 2, 4, 6), randn(gen, 2, 7, 6), randn(gen, 2, 7, 3)),
        _sdpa_case("causal mask (T, T) broadcast over batch and heads",
                   *(randn(gen, B, H, T, d) for _ in range(3)), ref.causal_mask(T)),
        _sdpa_case("padding mask (batch, 1, 1, T)",
                   *(randn(gen, 2, H, T, d) for _ in range(3)), ref.padding_mask(lengths, T)),
        _sdpa_case("large d_k = 256", *(randn(gen, 2, 6, 256) for _ in range(3))),
    ]
    if extended:
        mask = ref.causal_mask(T) & ref.padding_mask(lengths, T)
        cases += [
            _sdpa_case("three leading dims", *(randn(gen, 2, 2, 3, 4, 5) for _ in range(3))),
            _sdpa_case("causal & padding combined", *(randn(gen, 2, H, T, d) for _ in range(3)), mask),
            _sdpa_case("scaled-up inputs (is the softmax stable?)", *(8 * randn(gen, 2, 4, 16) for _ in range(3))),
            Case("gradients reach q, k and v", _sdpa_gradient_case(gen)),
        ]
    return cases


def _sdpa_gradient_case(gen: torch.Generator):
    q, k, v = (randn(gen, 2, 5, 8) for _ in range(3))
    mask = ref.causal_mask(5)

    def grads(fn) -> list:
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out, _ = fn(*leaves, mask)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return [leaf.grad for leaf in leaves]

    def run(fn) -> Reason:
        return compare_gradients(zip("qkv", grads(fn), grads(ref.scaled_dot_product_attention)))

    return run


# --- 06.causal_mask and 06.padding_mask --------------------------------------------------


def _bool_mask_reason(got, expected: Tensor, what: str, mistakes: list[tuple[str, Tensor]]) -> Reason:
    if isinstance(got, Tensor) and got.dtype != torch.bool and got.shape == expected.shape:
        return f"{what} should be a bool tensor (True = may attend), got {got.dtype}"
    return compare_tensor(got, expected, what, known_mistakes=mistakes)


@piece("06.causal_mask", "causal mask")
def causal_mask_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(T: int) -> Case:
        def run(fn) -> Reason:
            full = torch.ones(T, T, dtype=torch.bool)
            mistakes = [
                ("upper-triangular: position i may attend to the future, not the past", full.triu()),
                ("the diagonal is False: a position must be allowed to attend to itself", full.tril(-1)),
                ("inverted: True marks the future here, but True must mean 'may attend'", full.triu(1)),
            ]
            return _bool_mask_reason(fn(T), ref.causal_mask(T), f"causal_mask({T})", mistakes)

        return Case(f"T = {T}", run)

    sizes = [1, 4, 7] + ([2, 16, 33 + int(torch.randint(0, 9, (), generator=gen))] if extended else [])
    return [case(T) for T in sizes]


@piece("06.padding_mask", "padding mask")
def padding_mask_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(lengths: list[int], T: int) -> Case:
        def run(fn) -> Reason:
            lengths_t = torch.tensor(lengths)
            expected = ref.padding_mask(lengths_t, T)
            got = fn(lengths_t.clone(), T)
            if isinstance(got, Tensor) and tuple(got.shape) == (len(lengths), T):
                return (f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}: add the two singleton "
                        "dims (batch, 1, 1, T) so the mask broadcasts over heads and queries")
            positions = torch.arange(T)
            mistakes = [
                ("off by one: key j is real iff j < length (not ≤)",
                 (positions <= lengths_t[:, None])[:, None, None, :]),
                ("inverted: True marks padding here, but True must mean 'may attend'", ~expected),
            ]
            return _bool_mask_reason(got, expected, f"padding_mask({lengths}, T={T})", mistakes)

        return Case(f"lengths {lengths}, T = {T}", run)

    cases = [case([3, 5, 1], 5), case([4], 6)]
    if extended:
        T = 9 + int(torch.randint(0, 5, (), generator=gen))
        cases += [case(torch.randint(1, T + 1, (4,), generator=gen).tolist(), T), case([0, 2], 3)]
    return cases


# --- 06.split_heads and 06.merge_heads ---------------------------------------------------


@piece("06.split_heads", "split heads")
def split_heads_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(B: int, T: int, d_model: int, H: int) -> Case:
        def run(fn) -> Reason:
            x = randn(gen, B, T, d_model)
            mistakes = [("split by a reshape alone: view as (batch, T, heads, d_head), then transpose T and heads",
                         x.reshape(B, H, T, d_model // H))]
            return compare_tensor(fn(x.clone(), H), ref.split_heads(x, H), "split_heads output",
                                  known_mistakes=mistakes)

        return Case(f"(batch {B}, T {T}, d_model {d_model}) into {H} heads", run)

    cases = [case(2, 5, 12, 3), case(1, 7, 16, 4)]
    return cases + ([case(3, 2, 24, 8), case(2, 9, 10, 1)] if extended else [])


@piece("06.merge_heads", "merge heads")
def merge_heads_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(B: int, H: int, T: int, d_head: int) -> Case:
        def run(fn) -> Reason:
            x = randn(gen, B, H, T, d_head)
            mistakes = [("merged by a reshape alone: transpose heads and T back before reshaping",
                         x.reshape(B, T, H * d_head))]
            return compare_tensor(fn(x.clone()), ref.merge_heads(x), "merge_heads output", known_mistakes=mistakes)

        return Case(f"(batch {B}, {H} heads, T {T}, d_head {d_head})", run)

    cases = [case(2, 3, 5, 4), case(1, 4, 6, 2)]
    return cases + ([case(3, 8, 2, 3), case(2, 1, 9, 10)] if extended else [])


# --- 06.mha -----------------------------------------------------------------------------

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _mha_variant(m: ref.MultiHeadAttention, x, context, mask, *, transpose=True, out_proj=True):
    """The reference multi-head attention with one deliberate mistake."""
    context = x if context is None else context
    B, H = x.shape[0], m.num_heads

    def split(t: Tensor) -> Tensor:
        return ref.split_heads(t, H) if transpose else t.reshape(B, H, t.shape[1], -1)

    q, k, v = split(m.q_proj(x)), split(m.k_proj(context)), split(m.v_proj(context))
    out, weights = ref.scaled_dot_product_attention(q, k, v, mask)
    merged = ref.merge_heads(out) if transpose else out.reshape(B, x.shape[1], -1)
    return (m.out_proj(merged) if out_proj else merged), weights


MHA_MISTAKES = {
    "the output projection out_proj is missing (heads are concatenated but not mixed)": dict(out_proj=False),
    "heads split and merged by reshape alone, without transposing T and heads": dict(transpose=False),
}


def _build_mha(cls, d_model: int, H: int) -> tuple[nn.Module | None, ref.MultiHeadAttention, Reason]:
    reference = ref.MultiHeadAttention(d_model, H)
    try:
        module = cls(d_model, H)
    except TypeError as err:
        return None, reference, f"MultiHeadAttention(d_model, num_heads) could not be built: {err}"
    for name in PROJECTIONS:
        layer = getattr(module, name, None)
        if not isinstance(layer, nn.Linear) or (layer.in_features, layer.out_features) != (d_model, d_model):
            return None, reference, f"{name} should be nn.Linear(d_model, d_model), got {layer!r}"
    try:
        module.load_state_dict(reference.state_dict())
    except RuntimeError as err:
        return None, reference, f"its parameters do not match q_proj/k_proj/v_proj/out_proj: {err}"
    return module, reference, None


def _mha_case(name: str, gen: torch.Generator, d_model: int, H: int, B: int, T: int, *,
              mask_kind: str | None = None, cross: bool = False) -> Case:
    """Compare the module's output on the fused path (need_weights=False).

    That path runs PyTorch's attention kernel inside the given ``attend`` method, so a
    mistake in the learner's own scaled_dot_product_attention is not charged twice.
    """
    def run(cls) -> Reason:
        module, reference, reason = _build_mha(cls, d_model, H)
        if reason:
            return reason
        x = randn(gen, B, T, d_model)
        context = randn(gen, B, T + 2, d_model) if cross else None
        T_k = T + 2 if cross else T
        mask = {None: None,
                "causal": ref.causal_mask(T),
                "padding": ref.padding_mask(torch.tensor([T_k] + [max(1, T_k - 2)] * (B - 1)), T_k)}[mask_kind]
        kwargs = {"mask": mask} if mask is not None else {}
        if cross:
            kwargs["context"] = context
        result = module(x, **kwargs)
        if not isinstance(result, tuple) or len(result) != 2:
            return f"forward should return a tuple (output, weights), got {type(result).__name__}"
        with torch.no_grad():
            expected, _ = reference(x, context, mask)
            mistakes = [(hint, _mha_variant(reference, x, context, mask, **kw)[0]) for hint, kw in MHA_MISTAKES.items()]
        return compare_tensor(result[0], expected, "output", known_mistakes=mistakes)

    return Case(name, run)


def _mha_weights_case(gen: torch.Generator) -> Case:
    def run(cls) -> Reason:
        module, _, reason = _build_mha(cls, 16, 4)
        if reason:
            return reason
        result = module(randn(gen, 2, 5, 16), need_weights=True)
        weights = result[1] if isinstance(result, tuple) and len(result) == 2 else None
        if not isinstance(weights, Tensor) or tuple(weights.shape) != (2, 4, 5, 5):
            shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
            return f"with need_weights=True the weights should have shape (batch, heads, T, T) = (2, 4, 5, 5), got {shape}"
        return None

    return Case("need_weights=True returns (batch, heads, T, T) weights", run)


@piece("06.mha", "multi-head attention")
def mha_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        Case("has q_proj, k_proj, v_proj, out_proj = nn.Linear(d_model, d_model)",
             lambda cls: _build_mha(cls, 16, 4)[2]),
        _mha_case("d_model 16, 4 heads, no mask", gen, 16, 4, B=2, T=5),
        _mha_case("causal mask", gen, 16, 4, B=2, T=6, mask_kind="causal"),
        _mha_case("padding mask", gen, 24, 3, B=3, T=5, mask_kind="padding"),
        _mha_weights_case(gen),
    ]
    if extended:
        cases += [
            _mha_case("d_model 32, 8 heads", gen, 32, 8, B=1, T=7),
            _mha_case("one head", gen, 12, 1, B=2, T=4, mask_kind="causal"),
            _mha_case("cross-attention (context longer than x)", gen, 16, 2, B=2, T=3, cross=True,
                      mask_kind="padding"),
        ]
    return cases
