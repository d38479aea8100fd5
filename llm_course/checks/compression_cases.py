"""Cases for lab 14 (model compression). Each piece compares the learner's function with
``llm_course.compression`` and recognises the classic mistakes by recomputing them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from llm_course import compression as ref
from llm_course.checks.engine import Case, Reason, compare_gradients, compare_tensor, piece, randn


def _weights(gen: torch.Generator, out: int, inp: int, outlier: bool = False) -> Tensor:
    """A weight-like matrix with rows of different scales (and optionally one outlier row)."""
    w = randn(gen, out, inp) * (0.2 + torch.rand(out, 1, generator=gen))
    if outlier:
        w[int(torch.randint(0, out, (), generator=gen))] *= 20
    return w


def _unpack(result, n: int, name: str) -> tuple[tuple | None, Reason]:
    if not isinstance(result, tuple) or len(result) != n:
        return None, f"{name} should return a tuple of {n} tensors, got {type(result).__name__}"
    return result, None


# --- 14.absmax --------------------------------------------------------------------------------

def _absmax_variant(x: Tensor, bits: int, axis, *, q=None, rounding=torch.round, wrong_axis=False):
    q = ref.qmax(bits) if q is None else q
    if wrong_axis and axis is not None:  # reduced over `axis` itself: one scale per column
        amax = x.abs().amax(dim=axis, keepdim=True)
    else:
        amax = ref.reduce_except(x.abs(), axis)
    scale = torch.where(amax > 0, amax / q, torch.ones_like(amax))
    return rounding(x / scale).clamp(-q - 1, q).to(torch.int8), scale


AXIS_HINT = ("one scale per COLUMN: per-channel quantisation of a weight (out, in) with axis=0 keeps one scale per "
             "row (per output channel) — take max|x| over every dim except `axis`")
GRID_HINT = ("the scale divides by 2^(bits−1) (128 / 8); the symmetric grid is [−qmax, qmax] with qmax = "
             "2^(bits−1) − 1, so scale = max|x| / 127 for int8 (/ 7 for int4)")


def _absmax_case(name: str, gen: torch.Generator, x: Tensor, bits: int, axis) -> Case:
    def run(fn) -> Reason:
        result, reason = _unpack(fn(x.clone(), bits, axis), 2, "absmax_quantize")
        if reason:
            return reason
        codes, scale = result
        exp_codes, exp_scale = ref.absmax_quantize(x, bits, axis)
        if isinstance(scale, Tensor) and axis is not None and x.dim() == 2 and scale.shape != exp_scale.shape \
                and scale.numel() == x.shape[1 - axis % 2]:
            return AXIS_HINT
        reason = compare_tensor(scale, exp_scale, "scale", known_mistakes=[
            (GRID_HINT, _absmax_variant(x, bits, axis, q=2 ** (bits - 1))[1]),
            ("the scale is max|x| itself; divide it by qmax (127 for int8, 7 for int4)",
             ref.reduce_except(x.abs(), axis)),
        ])
        if reason:
            return reason
        if not isinstance(codes, Tensor) or codes.dtype != torch.int8:
            return f"codes should be an int8 tensor, got {codes.dtype if isinstance(codes, Tensor) else type(codes).__name__}"
        return compare_tensor(codes, exp_codes, "codes", known_mistakes=[
            ("codes rounded down with floor: use torch.round (nearest), which halves the worst-case error",
             _absmax_variant(x, bits, axis, rounding=torch.floor)[0]),
            ("codes truncated toward zero (a float → int cast without rounding): round to nearest first",
             _absmax_variant(x, bits, axis, rounding=torch.trunc)[0]),
            ("codes rounded up with ceil: use torch.round (nearest)", _absmax_variant(x, bits, axis, rounding=torch.ceil)[0]),
        ])

    return Case(name, run)


def _absmax_bound_case(gen: torch.Generator) -> Case:
    x = _weights(gen, 6, 40)

    def run(fn) -> Reason:
        result, reason = _unpack(fn(x.clone(), 8, 0), 2, "absmax_quantize")
        if reason:
            return reason
        codes, scale = result
        err = (x - codes.float() * scale).abs()
        if not (err <= scale / 2 + 1e-6).all():
            return "the round-trip error x − codes·scale exceeds half a step (scale / 2) somewhere"
        return None

    return Case("round-trip error ≤ scale / 2", run)


def _absmax_zero_case() -> Case:
    x = torch.zeros(3, 4)
    x[0] = torch.tensor([0.5, -1.0, 0.25, 0.0])

    def run(fn) -> Reason:
        result, reason = _unpack(fn(x.clone(), 8, 0), 2, "absmax_quantize")
        if reason:
            return reason
        codes, scale = result
        if not isinstance(scale, Tensor) or not torch.isfinite(scale).all() or (scale[1:] != 1).any():
            return "a row of zeros must get scale 1 (not 0, which divides by zero and gives NaN codes)"
        return compare_tensor(codes, ref.absmax_quantize(x, 8, 0)[0], "codes")

    return Case("a row of zeros (scale 1, codes 0)", run)


@piece("14.absmax", "absmax (symmetric) quantisation, per tensor and per channel")
def absmax_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    out = 4 + int(torch.randint(0, 4, (), generator=gen))
    cases = [
        _absmax_case(f"int8 per channel (axis=0), weight ({out}, 16)", gen, _weights(gen, out, 16), 8, 0),
        _absmax_case("int8 per tensor (axis=None)", gen, _weights(gen, 5, 12), 8, None),
        _absmax_case("int4 per channel, with an outlier row", gen, _weights(gen, 6, 10, outlier=True), 4, 0),
        _absmax_bound_case(gen),
    ]
    if extended:
        cases += [
            _absmax_case("int4 per tensor", gen, _weights(gen, 3, 9), 4, None),
            _absmax_case("int8, one scale per column (axis=1)", gen, _weights(gen, 7, 5), 8, 1),
            _absmax_case("int8, 3-D tensor, axis=-1", gen, randn(gen, 2, 3, 8), 8, -1),
            _absmax_case("int8 per channel, 1 row", gen, _weights(gen, 1, 33), 8, 0),
            _absmax_zero_case(),
        ]
    return cases


# --- 14.zeropoint -----------------------------------------------------------------------------

def _zp_variant(x: Tensor, bits: int, axis, *, include_zero=True, zp_sign=1.0):
    top = 2 ** bits - 1
    lo, hi = ref.reduce_except(x, axis, torch.amin), ref.reduce_except(x, axis, torch.amax)
    if include_zero:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = torch.where(hi > lo, (hi - lo) / top, torch.ones_like(hi))
    zp = torch.clamp(torch.round(zp_sign * -lo / scale), 0, top)
    codes = torch.clamp(torch.round(x / scale) + zp, 0, top)
    return codes, scale, zp


def _zp_case(name: str, x: Tensor, bits: int, axis) -> Case:
    def run(fn) -> Reason:
        result, reason = _unpack(fn(x.clone(), bits, axis), 3, "zeropoint_quantize")
        if reason:
            return reason
        codes, scale, zp = result
        exp_codes, exp_scale, exp_zp = ref.zeropoint_quantize(x, bits, axis)
        reason = compare_tensor(scale, exp_scale, "scale", known_mistakes=[
            ("the range does not include 0: widen it to [min(x, 0), max(x, 0)] so that 0 is exactly representable",
             _zp_variant(x, bits, axis, include_zero=False)[1]),
            ("the scale divides by 2^bits; there are 2^bits − 1 steps between code 0 and code 2^bits − 1",
             exp_scale * (2 ** bits - 1) / 2 ** bits),
        ])
        if reason:
            return reason
        for got, expected, what in ((zp, exp_zp, "zero_point"), (codes, exp_codes, "codes")):
            if not isinstance(got, Tensor) or got.is_floating_point():
                return f"{what} should be an integer tensor, got {got.dtype if isinstance(got, Tensor) else type(got).__name__}"
        reason = compare_tensor(zp.long(), exp_zp.long(), "zero_point", known_mistakes=[
            ("zero_point has the wrong sign: it is round(−min / scale), the code that stands for the real 0",
             _zp_variant(x, bits, axis, zp_sign=-1.0)[2].long())])
        if reason:
            return reason
        return compare_tensor(codes.long(), exp_codes.long(), "codes", known_mistakes=[
            ("codes not clamped to [0, 2^bits − 1]", (torch.round(x / exp_scale) + exp_zp).long()),
            ("the zero point was subtracted instead of added: codes = round(x / scale) + zero_point",
             torch.clamp(torch.round(x / exp_scale) - exp_zp, 0, 2 ** bits - 1).long()),
        ])

    return Case(name, run)


@piece("14.zeropoint", "zero-point (asymmetric) quantisation")
def zeropoint_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _zp_case("int8 per tensor, skewed values", randn(gen, 4, 10) + 1.0, 8, None),
        _zp_case("int8 per channel (axis=0)", _weights(gen, 5, 12) + 0.3, 8, 0),
        _zp_case("int4 per channel, all values positive (the range must still include 0)",
                 torch.rand(4, 8, generator=gen) + 0.5, 4, 0),
    ]
    if extended:
        cases += [
            _zp_case("int4 per tensor", randn(gen, 3, 7) - 0.5, 4, None),
            _zp_case("int8, all values negative", -torch.rand(6, 5, generator=gen) - 0.1, 8, 0),
            _zp_case("int8, 3-D, axis=1", randn(gen, 2, 4, 6), 8, 1),
        ]
    return cases


# --- 14.dequantize ----------------------------------------------------------------------------

def _deq_case(name: str, codes: Tensor, scale: Tensor, zp: Tensor | None) -> Case:
    def run(fn) -> Reason:
        got = fn(codes.clone(), scale.clone(), None if zp is None else zp.clone())
        expected = ref.dequantize(codes, scale, zp)
        mistakes = []
        if zp is not None:
            mistakes = [
                ("the zero point was ignored: subtract it from the codes before scaling", codes.float() * scale),
                ("the zero point was subtracted after scaling: compute (codes − zero_point) · scale",
                 codes.float() * scale - zp.float()),
                ("the zero point was added: compute (codes − zero_point) · scale", (codes.float() + zp.float()) * scale),
            ]
        mistakes.append(("divided by the scale: dequantise by multiplying the codes by it", codes.float() / scale))
        if isinstance(got, Tensor) and not got.is_floating_point():
            return f"dequantize should return a float tensor, got {got.dtype}"
        return compare_tensor(got, expected, "output", known_mistakes=mistakes)

    return Case(name, run)


@piece("14.dequantize", "dequantisation")
def dequantize_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    x = _weights(gen, 4, 6)
    c8, s8 = ref.absmax_quantize(x, 8, 0)
    cz, sz, zz = ref.zeropoint_quantize(x + 0.5, 8, 0)
    cases = [_deq_case("int8 absmax per channel (zero_point None)", c8, s8, None),
             _deq_case("uint8 zero-point per channel", cz, sz, zz)]
    if extended:
        c4, s4, z4 = ref.zeropoint_quantize(randn(gen, 3, 5, 4), 4, None)
        c44, s44 = ref.absmax_quantize(randn(gen, 2, 9), 4, None)
        cases += [_deq_case("int4 zero-point per tensor, 3-D", c4, s4, z4),
                  _deq_case("int4 absmax per tensor", c44, s44, None)]
    return cases


# --- 14.prune ---------------------------------------------------------------------------------

def _mask_by_order(w: Tensor, k: int, descending: bool = False, signed: bool = False) -> Tensor:
    """Prune the k first entries when sorted by |w| (or by w itself when signed)."""
    order = torch.argsort((w if signed else w.abs()).flatten(), stable=True, descending=descending)
    mask = torch.ones(w.numel(), dtype=torch.bool)
    mask[order[:k]] = False
    return mask.reshape(w.shape)


def _prune_case(name: str, w: Tensor, sparsity: float) -> Case:
    def run(fn) -> Reason:
        got = fn(w.clone(), sparsity)
        expected = ref.magnitude_mask(w, sparsity)
        if not isinstance(got, Tensor) or got.dtype != torch.bool:
            return f"the mask should be a bool tensor (True = keep), got {got.dtype if isinstance(got, Tensor) else type(got).__name__}"
        if got.shape != w.shape:
            return f"the mask has shape {tuple(got.shape)}, expected the weight's shape {tuple(w.shape)}"
        if torch.equal(got, expected):
            return None
        k = round(sparsity * w.numel())
        pruned = int((~got).sum())
        if torch.equal(got, ~expected):
            return "the mask is inverted: True must mean KEEP (multiply the weight by the mask)"
        if torch.equal(got, _mask_by_order(w, k, descending=True)):
            return "the LARGEST weights were pruned: remove those with the smallest |w|"
        if torch.equal(got, _mask_by_order(w, k, signed=True)):
            return "pruned the most negative weights: rank by magnitude |w|, not by the signed value"
        if pruned != k:
            return (f"{pruned} of {w.numel()} weights were pruned; sparsity {sparsity} means exactly "
                    f"round(sparsity · numel) of them, even when several |w| are equal (break ties by position)")
        return compare_tensor(got, expected, "mask", known_mistakes=[
            ("ties broken the wrong way: among equal |w|, prune the earlier position first (a stable sort)",
             _tie_last(w, k))])

    return Case(name, run)


def _tie_last(w: Tensor, k: int) -> Tensor:
    n = w.numel()
    order = torch.argsort(w.abs().flatten().flip(0), stable=True)
    mask = torch.ones(n, dtype=torch.bool)
    mask[(n - 1 - order[:k])] = False
    return mask.reshape(w.shape)


@piece("14.prune", "magnitude pruning to a target sparsity")
def prune_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    ties = torch.tensor([[0.0, 0.5, 0.0, -0.5], [0.5, 0.0, 1.0, -0.2]])
    cases = [
        _prune_case("weight (6, 10), sparsity 0.5", randn(gen, 6, 10), 0.5),
        _prune_case("weight (5, 4), sparsity 0.3", randn(gen, 5, 4), 0.3),
        _prune_case("many equal weights (ties): the count must still be exact", ties, 0.25),
        _prune_case("sparsity 0 (nothing pruned)", randn(gen, 3, 3), 0.0),
    ]
    if extended:
        cases += [
            _prune_case("1-D weight, sparsity 0.9", randn(gen, 50), 0.9),
            _prune_case("ties at the threshold, sparsity 0.625", ties, 0.625),
            _prune_case("3-D weight, sparsity 0.25", randn(gen, 2, 3, 4), 0.25),
            _prune_case("round(0.45 · 11) weights", randn(gen, 11), 0.45),
        ]
    return cases


# --- 14.distill -------------------------------------------------------------------------------

def _kd_variant(s: Tensor, t: Tensor, y: Tensor, T: float, alpha: float, *, t2=True, reverse=False,
                teacher_T=True, swap_alpha=False, sum_positions=False, no_soft_student=False) -> Tensor:
    V = s.shape[-1]
    s, t, y = s.reshape(-1, V), t.reshape(-1, V), y.reshape(-1)
    ls = F.log_softmax(s / (1 if no_soft_student else T), -1)
    lt = F.log_softmax(t / (T if teacher_T else 1), -1)
    kl = (ls.exp() * (ls - lt)) if reverse else (lt.exp() * (lt - ls))
    kl = kl.sum() if sum_positions else kl.sum(-1).mean()
    a = 1 - alpha if swap_alpha else alpha
    return a * (T * T if t2 else 1) * kl + (1 - a) * F.cross_entropy(s, y)


DISTILL_MISTAKES = {
    "the KL term is not multiplied by T²: its gradients shrink like 1/T², so scale it by T² to keep the two terms balanced": dict(t2=False),
    "KL in the wrong direction: the teacher is the target, KL(p_teacher ‖ p_student) = Σ p_t (log p_t − log p_s)": dict(reverse=True),
    "the teacher's logits were not divided by T: soften both distributions with the same temperature": dict(teacher_T=False),
    "the student's logits were not divided by T inside the KL: soften both distributions": dict(no_soft_student=True),
    "alpha weights the wrong term: alpha multiplies the distillation (KL) term, 1 − alpha the hard-label CE": dict(swap_alpha=True),
    "the KL was summed over the positions: average it over positions (sum over the vocabulary only)": dict(sum_positions=True),
}


def _kd_case(name: str, gen: torch.Generator, shape: tuple[int, ...], T: float, alpha: float) -> Case:
    s, t = randn(gen, *shape), 2 * randn(gen, *shape)
    y = torch.randint(0, shape[-1], shape[:-1], generator=gen)

    def run(fn) -> Reason:
        got = fn(s.clone(), t.clone(), y.clone(), T, alpha)
        if isinstance(got, Tensor) and got.dim() != 0:
            return f"the loss should be a scalar (0-dim tensor), got shape {tuple(got.shape)}"
        return compare_tensor(got, ref.distillation_loss(s, t, y, T, alpha), "loss",
                              known_mistakes=[(h, _kd_variant(s, t, y, T, alpha, **kw)) for h, kw in DISTILL_MISTAKES.items()])

    return Case(name, run)


def _kd_grad_case(gen: torch.Generator) -> Case:
    s, t = randn(gen, 3, 4, 7), randn(gen, 3, 4, 7)
    y = torch.randint(0, 7, (3, 4), generator=gen)

    def run(fn) -> Reason:
        s1, t1 = s.clone().requires_grad_(), t.clone().requires_grad_()
        fn(s1, t1, y, 3.0, 0.6).backward()
        if t1.grad is not None and t1.grad.abs().sum() > 0:
            return "a gradient reached the teacher's logits: the teacher is a fixed target — detach it"
        s2 = s.clone().requires_grad_()
        ref.distillation_loss(s2, t, y, 3.0, 0.6).backward()
        return compare_gradients([("student_logits", s1.grad, s2.grad)])

    return Case("gradients reach the student only", run)


@piece("14.distill", "the distillation loss")
def distill_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _kd_case("(batch 4, vocab 10), T = 2, alpha 0.5", gen, (4, 10), 2.0, 0.5),
        _kd_case("(batch 2, T 5, vocab 8), T = 4, alpha 0.9", gen, (2, 5, 8), 4.0, 0.9),
        _kd_case("T = 1, alpha 0.3", gen, (6, 5), 1.0, 0.3),
        _kd_grad_case(gen),
    ]
    if extended:
        cases += [
            _kd_case("alpha 1 (pure distillation), T = 3", gen, (3, 12), 3.0, 1.0),
            _kd_case("alpha 0 (pure cross-entropy)", gen, (3, 6), 5.0, 0.0),
            _kd_case("T = 0.5 (sharpened), alpha 0.7", gen, (2, 3, 9), 0.5, 0.7),
            _kd_case("one position", gen, (1, 20), 2.5, 0.4),
        ]
    return cases
