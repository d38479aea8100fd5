"""Cases for lab 05 (embeddings and positions). Each piece compares the learner's code with
``llm_course.positional`` and recognises the classic mistakes by recomputing them.

The pair convention checked here is the library's: INTERLEAVED pairs (2i, 2i+1), as in the
sinusoidal formula, the RoPE paper and GPT-J. A learner who pairs dim i with dim i + d/2
(GPT-NeoX, Hugging Face Llama's ``rotate_half``) is told so by name.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from llm_course import positional as ref
from llm_course.checks.engine import Case, Reason, compare_tensor, piece, randn

ATOL = 1e-4  # angles pos·θ in float32 vs float64 differ by ~1e-5 at the positions used here

# --- wrong versions of the reference, to name a learner's mistake ------------------------


def _freqs(d: int, base: float, exponent: str = "2i/d") -> Tensor:
    """θ_i with a possible mistake in the exponent."""
    i = torch.arange(d // 2, dtype=torch.float64)
    return {"2i/d": base ** (-2 * i / d), "i/d": base ** (-i / d), "+2i/d": base ** (2 * i / d)}[exponent]


FREQ_MISTAKES = {
    "the exponent is i/d; it must be 2i/d (i counts pairs, so the exponents are 0, 2/d, 4/d, …: "
    "torch.arange(0, d, 2) / d)": dict(exponent="i/d"),
    "the exponent has the wrong sign: θ_i = base^(−2i/d) must shrink from 1 towards 1/base, "
    "you computed base^(+2i/d)": dict(exponent="+2i/d"),
}
BASE_HINT = "the base argument was ignored (your numbers use base 10000 whatever base is passed)"


def _angles(positions: Tensor, d: int, base: float, exponent: str = "2i/d") -> Tensor:
    return positions.double()[..., None] * _freqs(d, base, exponent)


def _interleave(a: Tensor, b: Tensor) -> Tensor:
    return torch.stack((a, b), dim=-1).flatten(-2)


def _frequency_mistakes(base: float, make) -> list[tuple[str, Tensor]]:
    """Hints for wrong frequencies, each with ``make(base, exponent)`` = the output it would give."""
    out = [(hint, make(base, kw["exponent"])) for hint, kw in FREQ_MISTAKES.items()]
    if base != 10000.0:
        out.append((BASE_HINT, make(10000.0, "2i/d")))
    return out


# --- 05.embedding ----------------------------------------------------------------------------


@piece("05.embedding", "token embedding lookup")
def embedding_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(name: str, ids: Tensor, V: int, d: int, padding_idx: int | None = None, scale: bool = False) -> Case:
        weight = randn(gen, V, d)

        def run(fn) -> Reason:
            w = weight.clone()
            kwargs = {}
            if padding_idx is not None:
                kwargs["padding_idx"] = padding_idx
            if scale:
                kwargs["scale"] = True
            got = fn(ids.clone(), w, **kwargs)
            if not torch.equal(w, weight):
                return "the function changed the weight table in place; it must only read it"
            expected = ref.token_embedding(ids, weight, padding_idx, scale)
            plain = ref.token_embedding(ids, weight, padding_idx)
            mistakes = []
            if scale:
                mistakes += [("scale=True must multiply by √d_model; you multiplied by d_model", plain * d),
                             ("scale=True must multiply by √d_model; you divided by it", plain / math.sqrt(d)),
                             ("scale=True was ignored: multiply the embeddings by √d_model", plain)]
            if padding_idx is not None:
                mistakes.append(("positions holding padding_idx must get the zero vector (padding_idx was ignored)",
                                 ref.token_embedding(ids, weight, None, scale)))
            if isinstance(got, Tensor) and tuple(got.shape) == (*ids.shape, V) and V != d:
                return f"output has shape {tuple(got.shape)}: one vector of size d_model={d} per token is expected"
            return compare_tensor(got, expected, "embeddings", atol=ATOL, known_mistakes=mistakes)

        return Case(name, run)

    V, d = 10, 6
    cases = [
        case("1-D ids: one row per token", torch.tensor([3, 0, 7, 3]), V, d),
        case("batch of ids (2, 5)", torch.randint(0, V, (2, 5), generator=gen), V, d),
        case("padding_idx=0 gives zero vectors", torch.tensor([[0, 4, 2, 0], [5, 0, 0, 1]]), V, d, padding_idx=0),
        case("scale=True (d_model = 16)", torch.randint(0, V, (3, 4), generator=gen), V, 16, scale=True),
    ]
    if extended:
        pad = int(torch.randint(1, 50, (), generator=gen))
        cases += [
            case("padding and scale together", torch.randint(0, 50, (4, 9), generator=gen), 50, 8,
                 padding_idx=pad, scale=True),
            case("three leading dims", torch.randint(0, 7, (2, 3, 4), generator=gen), 7, 5),
            Case("the padding row gets no gradient", _embedding_gradient_case(gen)),
        ]
    return cases


def _embedding_gradient_case(gen: torch.Generator):
    ids = torch.tensor([[1, 2, 0, 1], [0, 3, 3, 2]])
    weight = randn(gen, 5, 4)

    def grad(fn) -> Tensor | None:
        w = weight.clone().requires_grad_()
        (fn(ids.clone(), w, padding_idx=0) * torch.linspace(-1, 1, 32).view(2, 4, 4)).sum().backward()
        return w.grad

    def run(fn) -> Reason:
        got = grad(fn)
        if got is None:
            return "no gradient reached weight: avoid .detach(), .numpy() or building a new tensor from its values"
        expected = grad(ref.token_embedding)
        if torch.allclose(got.detach()[1:], expected[1:], atol=ATOL) and got.detach()[0].abs().max() > 0:
            return "the padding row received a gradient: zero the padding positions of the output"
        return compare_tensor(got, expected, "the gradient of weight", atol=ATOL)

    return run


# --- 05.frequencies ------------------------------------------------------------------------


@piece("05.frequencies", "inverse frequencies θ_i = base^(−2i/d)")
def frequencies_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(d: int, base: float = 10000.0) -> Case:
        def run(fn) -> Reason:
            got = fn(d, base) if base != 10000.0 else fn(d)
            if isinstance(got, Tensor) and tuple(got.shape) == (d,):
                return f"shape ({d},): there is one frequency per PAIR of dims, so d/2 = {d // 2} of them"
            mistakes = _frequency_mistakes(base, lambda b, e: _freqs(d, b, e))
            return compare_tensor(got, ref.inverse_frequencies(d, base), f"inverse_frequencies({d}, base={base:g})",
                                  atol=1e-7, rtol=1e-4, known_mistakes=mistakes)

        return Case(f"d = {d}" + (f", base = {base:g}" if base != 10000.0 else ""), run)

    cases = [case(2), case(8), case(64), case(6, base=100.0)]
    if extended:
        cases += [case(2 * int(torch.randint(5, 40, (), generator=gen))), case(128, base=500000.0), case(10, base=2.0)]
    return cases


# --- 05.sinusoidal -------------------------------------------------------------------------


def _sinusoid_variant(T: int, d: int, base: float, exponent: str = "2i/d", *, swap=False, halves=False, start=0):
    a = _angles(torch.arange(start, start + T), d, base, exponent)
    first, second = (a.cos(), a.sin()) if swap else (a.sin(), a.cos())
    return (torch.cat((first, second), -1) if halves else _interleave(first, second)).float()


SINUSOID_MISTAKES = {
    "sin and cos are swapped: even dims 2i hold sin(pos·θ_i), odd dims 2i+1 hold cos(pos·θ_i)": dict(swap=True),
    "your layout is [all sines | all cosines] (split halves, as tensor2tensor and GPT-J store it); this lab's "
    "convention interleaves the pairs: dim 2i = sin, dim 2i+1 = cos": dict(halves=True),
    "positions start at 1; the first row is position 0 (sin 0 = 0, cos 0 = 1)": dict(start=1),
}


def _sinusoid_property_hint(got: Tensor, T: int, d: int) -> Reason:
    got = got.detach().double()
    row0 = torch.tensor([0.0, 1.0] * (d // 2), dtype=torch.float64)
    if not torch.allclose(got[0], row0, atol=ATOL):
        return "row 0 (position 0) must be 0 in even dims (sin 0) and 1 in odd dims (cos 0)"
    if not torch.allclose(got[:, 0], torch.arange(T).double().sin(), atol=ATOL):
        return "dim 0 must be sin(pos): the first pair has θ_0 = base^0 = 1"
    return "the first pair is right but later pairs are not: check θ_i = base^(−2i/d)"


@piece("05.sinusoidal", "sinusoidal position encoding")
def sinusoidal_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(T: int, d: int, base: float = 10000.0) -> Case:
        def run(fn) -> Reason:
            got = fn(T, d, base) if base != 10000.0 else fn(T, d)
            mistakes = [(h, _sinusoid_variant(T, d, base, **kw)) for h, kw in SINUSOID_MISTAKES.items()]
            mistakes += _frequency_mistakes(base, lambda b, e: _sinusoid_variant(T, d, b, e))
            reason = compare_tensor(got, ref.sinusoidal_encoding(T, d, base), f"sinusoidal_encoding({T}, {d})",
                                    atol=ATOL, known_mistakes=mistakes)
            if reason and "differs from the reference" in reason:
                reason = _sinusoid_property_hint(got, T, d)
            return reason

        return Case(f"T = {T}, d = {d}" + (f", base = {base:g}" if base != 10000.0 else ""), run)

    cases = [case(1, 2), case(10, 8), case(50, 16), case(12, 6, base=100.0)]
    if extended:
        cases += [case(int(torch.randint(100, 200, (), generator=gen)), 64), case(7, 2), case(30, 10, base=1000.0)]
    return cases


# --- 05.rope_cache -------------------------------------------------------------------------


@piece("05.rope_cache", "RoPE cos/sin cache")
def rope_cache_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(name: str, positions: Tensor, d: int, base: float = 10000.0) -> Case:
        def run(fn) -> Reason:
            got = fn(positions.clone(), d, base) if base != 10000.0 else fn(positions.clone(), d)
            if not isinstance(got, tuple) or len(got) != 2:
                return f"should return a tuple (cos, sin), got {type(got).__name__}"
            cos, sin = ref.rope_cache(positions, d, base)
            if isinstance(got[0], Tensor) and got[0].shape[-1] == d and d > 2:
                return (f"last dim {d}: the cache holds one angle per pair, so d_head/2 = {d // 2} "
                        "(repeat it in apply_rope if you need to, not here)")
            if isinstance(got[0], Tensor) and got[0].shape == cos.shape and torch.allclose(
                    got[0].double(), sin.double(), atol=ATOL) and not torch.allclose(sin, cos, atol=ATOL):
                return "cos and sin are swapped: return (cos, sin) in that order"
            variants = _frequency_mistakes(base, lambda b, e: _angles(positions, d, b, e))
            for name_, got_t, exp, fn_ in (("cos", got[0], cos, torch.cos), ("sin", got[1], sin, torch.sin)):
                reason = compare_tensor(got_t, exp, name_, atol=ATOL,
                                        known_mistakes=[(h, fn_(a).float()) for h, a in variants])
                if reason:
                    return reason
            return None

        return Case(name, run)

    cases = [case("positions 0…7, d_head 8", torch.arange(8), 8),
             case("positions 5…9, d_head 4", torch.arange(5, 10), 4),
             case("base 100", torch.arange(6), 6, base=100.0)]
    if extended:
        cases += [case("random positions, batch (2, 9), d_head 16", torch.randint(0, 200, (2, 9), generator=gen), 16),
                  case("float positions", torch.arange(6) / 3, 8)]
    return cases


# --- 05.rope ---------------------------------------------------------------------------------


def _rope_variant(x: Tensor, positions: Tensor | None, base: float, exponent: str = "2i/d", *,
                  sign: int = 1, swap: bool = False, pairs_in: str = "interleaved",
                  pairs_out: str = "interleaved", ignore_positions: bool = False) -> Tensor:
    """The reference RoPE with one deliberate mistake."""
    T, d = x.shape[-2], x.shape[-1]
    pos = torch.arange(T) if positions is None or ignore_positions else positions
    a = sign * _angles(pos, d, base, exponent)
    cos, sin = (a.sin(), a.cos()) if swap else (a.cos(), a.sin())
    xd = x.double()
    x1, x2 = (xd[..., 0::2], xd[..., 1::2]) if pairs_in == "interleaved" else xd.chunk(2, dim=-1)
    r1, r2 = x1 * cos - x2 * sin, x1 * sin + x2 * cos
    out = _interleave(r1, r2) if pairs_out == "interleaved" else torch.cat((r1, r2), -1)
    return out.to(x.dtype)


ROPE_MISTAKES = {
    "cos and sin are swapped in the rotation: (x₁, x₂) → (x₁·cos − x₂·sin, x₁·sin + x₂·cos)": dict(swap=True),
    "you rotate by −θ: the first output is x₁·cos − x₂·sin and the second x₁·sin + x₂·cos": dict(sign=-1),
    "you paired dim i with dim i + d/2 (split halves, the GPT-NeoX / HF Llama 'rotate_half' convention); this lab "
    "states the interleaved convention of the RoPE paper and GPT-J: pairs are dims (2i, 2i+1), x[..., 0::2] and "
    "x[..., 1::2]": dict(pairs_in="halves", pairs_out="halves"),
    "pairs are read as (2i, 2i+1) but written back as [all first | all second] halves: put each rotated pair back "
    "at dims (2i, 2i+1) (stack on a new last axis, then flatten)": dict(pairs_out="halves"),
    "pairs are read as halves (i, i + d/2) but written back interleaved: read them as x[..., 0::2], x[..., 1::2]":
        dict(pairs_in="halves"),
}


def _rope_mistakes(x: Tensor, positions: Tensor | None, base: float) -> list[tuple[str, Tensor]]:
    out = [(h, _rope_variant(x, positions, base, **kw)) for h, kw in ROPE_MISTAKES.items()]
    out += _frequency_mistakes(base, lambda b, e: _rope_variant(x, positions, b, e))
    if positions is not None:
        out.append(("the positions argument was ignored (rotated by 0 … T−1 instead)",
                    _rope_variant(x, positions, base, ignore_positions=True)))
    return out


@piece("05.rope", "rotary position embedding (RoPE)")
def rope_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def case(name: str, x: Tensor, positions: Tensor | None = None, base: float = 10000.0) -> Case:
        def run(fn) -> Reason:
            kwargs = {} if base == 10000.0 else {"base": base}
            got = fn(x.clone(), positions.clone(), **kwargs) if positions is not None else fn(x.clone(), **kwargs)
            if isinstance(got, Tensor) and got.shape == x.shape and got.is_floating_point():
                norms_got, norms_x = got.detach().double().norm(dim=-1), x.double().norm(dim=-1)
                if not torch.allclose(norms_got, norms_x, atol=1e-3):
                    return ("the lengths of the vectors changed: a rotation keeps every pair's length "
                            "(is one pair mixing numbers from two different pairs, or a sign missing?)")
            return compare_tensor(got, ref.apply_rope(x, positions, base), "rotated x", atol=ATOL,
                                  known_mistakes=_rope_mistakes(x, positions, base))

        return Case(name, run)

    cases = [
        case("(T = 6, d_head = 8), default positions", randn(gen, 6, 8)),
        case("(batch 2, heads 3, T 5, d_head 16)", randn(gen, 2, 3, 5, 16)),
        case("explicit positions 10 … 16", randn(gen, 7, 8), torch.arange(10, 17)),
        case("base 100", randn(gen, 4, 6), None, base=100.0),
        Case("q·k depends only on m − n (visible offsets)", _relative_property_case(gen, [3, 17])),
    ]
    if extended:
        offsets = torch.randint(1, 200, (3,), generator=gen).tolist()
        cases += [
            case("per-sequence positions (2, 5)", randn(gen, 2, 5, 4), torch.randint(0, 100, (2, 5), generator=gen)),
            case("d_head 2", randn(gen, 9, 2)),
            case("base 500000 (Llama 3)", randn(gen, 3, 6, 32), None, base=500000.0),
            Case("q·k depends only on m − n (hidden offsets)", _relative_property_case(gen, offsets)),
        ]
    return cases


def _relative_property_case(gen: torch.Generator, offsets: list[int]):
    """Rotate q at m and k at n, and again at m + s and n + s: the dot products must agree."""
    q, k = randn(gen, 8, 16), randn(gen, 8, 16)
    m, n = torch.randint(0, 50, (8,), generator=gen), torch.randint(0, 50, (8,), generator=gen)

    def dots(fn, shift: int) -> Tensor:
        return (fn(q.clone(), m + shift) * fn(k.clone(), n + shift)).sum(-1).detach().double()

    def run(fn) -> Reason:
        base = dots(fn, 0)
        if torch.allclose(base, (q * k).sum(-1).double(), atol=1e-3):
            return "q·k did not change at all: are q and k being rotated?"
        for s in offsets:
            if not torch.allclose(dots(fn, s), base, atol=1e-3):
                return ("shifting both positions by the same offset changed q·k: with RoPE it must depend only "
                        "on m − n (each pair must turn by a proper rotation with angle pos·θ_i)")
        return None

    return run


# --- 05.rope_relative ------------------------------------------------------------------------


@piece("05.rope_relative", "RoPE attention scores depend on m − n only")
def rope_scores_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    def exact(name: str, q: Tensor, k: Tensor, qp: Tensor | None = None, kp: Tensor | None = None) -> Case:
        def run(fn) -> Reason:
            got = fn(q.clone(), k.clone()) if qp is None else fn(q.clone(), k.clone(), qp.clone(), kp.clone())
            kp_, qp_ = (torch.arange(k.shape[-2]) if kp is None else kp), (torch.arange(q.shape[-2]) if qp is None else qp)
            q_rot = ref.apply_rope(q, qp_)
            mistakes = [
                ("only q was rotated: rotate k too, by its own positions, or the score depends on where q is",
                 q_rot @ k.transpose(-2, -1)),
                ("k was rotated with the query positions: each tensor turns by its own positions",
                 q_rot @ ref.apply_rope(k, qp_).transpose(-2, -1) if q.shape == k.shape else torch.zeros(0)),
                ("q·k equals rotating by −θ: check the sign in your apply_rope",
                 ref.apply_rope(q, -qp_) @ ref.apply_rope(k, -kp_).transpose(-2, -1)),
            ]
            return compare_tensor(got, ref.rope_scores(q, k, qp, kp), "scores", atol=1e-3, known_mistakes=mistakes)

        return Case(name, run)

    def shift_case(name: str, offsets: list[int]) -> Case:
        q, k = randn(gen, 3, 6, 8), randn(gen, 3, 6, 8)
        qp, kp = torch.randint(0, 40, (6,), generator=gen), torch.randint(0, 40, (6,), generator=gen)

        def run(fn) -> Reason:
            first = fn(q.clone(), k.clone(), qp.clone(), kp.clone())
            if not isinstance(first, Tensor) or first.shape != (3, 6, 6):
                return f"scores should have shape (3, 6, 6), got {getattr(first, 'shape', type(first).__name__)}"
            for s in offsets:
                moved = fn(q.clone(), k.clone(), qp + s, kp + s)
                if not torch.allclose(moved.detach().double(), first.detach().double(), atol=1e-3):
                    return ("shifting every position by the same offset changed the scores: they must depend "
                            "only on m − n (is k rotated too, by its own positions?)")
            return None

        return Case(name, run)

    cases = [
        exact("T = 5, d_head = 8, default positions", randn(gen, 5, 8), randn(gen, 5, 8)),
        exact("different q and k positions", randn(gen, 2, 4, 8), randn(gen, 2, 6, 8),
              torch.arange(3, 7), torch.arange(0, 6)),
        shift_case("shift both positions by 1 and 5", [1, 5]),
    ]
    if extended:
        offsets = torch.randint(6, 300, (3,), generator=gen).tolist()
        cases += [shift_case("shift by hidden offsets", offsets),
                  exact("d_head 32, random positions", randn(gen, 7, 32), randn(gen, 7, 32),
                        torch.randint(0, 100, (7,), generator=gen), torch.randint(0, 100, (7,), generator=gen))]
    return cases
