"""Cases for lab 07 (normalisation, residuals, feed-forward). Each piece compares the
learner's module with ``llm_course.norms`` / ``llm_course.transformer`` and recognises the
classic mistakes by recomputing them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_course import norms as ref
from llm_course import transformer as tref
from llm_course.checks.engine import Case, Reason, compare_gradients, compare_tensor, piece, randn


def _build(cls, *args, **kwargs) -> tuple[nn.Module | None, Reason]:
    try:
        return cls(*args, **kwargs), None
    except Exception as err:  # the constructor is given, but a learner may have edited it
        return None, f"{getattr(cls, '__name__', cls)}{args} could not be built: {type(err).__name__}: {err}"


def _build_pair(cls, reference_cls, params: dict[str, Tensor], *args, **kwargs):
    """The learner's module and the reference, built alike and given the same parameters.

    Returns (module, reference, reason); reason is None when the learner's module could be
    built and took the parameters.
    """
    module, reason = _build(cls, *args, **kwargs)
    reason = reason or _set_params(module, params)
    if reason:
        return None, None, reason
    reference = reference_cls(*args, **kwargs)
    _set_params(reference, params)
    return module, reference, None


def _set_params(module: nn.Module, values: dict[str, Tensor]) -> Reason:
    """Give the learner's module the same (random) learned parameters as the reference."""
    with torch.no_grad():
        for name, value in values.items():
            p = getattr(module, name, None)
            if not isinstance(p, Tensor) or p.shape != value.shape:
                return f"attribute {name} should be a tensor of shape {tuple(value.shape)}, got {p!r}"[:200]
            p.copy_(value)
    return None


def _affine(gen: torch.Generator, d: int, names=("weight", "bias")) -> dict[str, Tensor]:
    return {name: (1.0 if name == "weight" else 0.0) + 0.5 * randn(gen, d) for name in names}


def _normalise(x: Tensor, dims, *, unbiased=False, eps=1e-5, eps_outside=False, center=True) -> Tensor:
    """(x − mean) / √(var + eps) over ``dims``, with switchable mistakes."""
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, keepdim=True, unbiased=unbiased)
    if not center:
        return x / torch.sqrt(var + eps)
    return (x - mean) / (torch.sqrt(var) + eps if eps_outside else torch.sqrt(var + eps))


# --- 07.batchnorm ---------------------------------------------------------------------------

BN_WRONG_AXIS = ("normalised over the wrong axis: each sample was normalised over its features (that is "
                 "LayerNorm); BatchNorm normalises each feature over the batch")


def _bn_output_mistakes(x: Tensor, eps: float, w: Tensor, b: Tensor) -> list[tuple[str, Tensor]]:
    batch_dims = tuple(range(x.dim() - 1))
    variants = {
        "normalised with the unbiased variance (÷(n−1)); normalise with the batch's biased variance (÷n) "
        "— only running_var is unbiased": _normalise(x, batch_dims, unbiased=True, eps=eps),
        BN_WRONG_AXIS: _normalise(x, -1, eps=eps),
        "eps added outside the square root: divide by √(var + eps), not √var + eps":
            _normalise(x, batch_dims, eps=eps, eps_outside=True),
        "the learned weight and bias were not applied": None,
    }
    out = []
    for hint, y in variants.items():
        out.append((hint, _normalise(x, batch_dims, eps=eps) if y is None else y * w + b))
    if x.dim() == 3:
        out.append(("statistics taken over the batch axis only, separately for each position; for a "
                    "(batch, T, features) input take them over batch AND time",
                    _normalise(x, 0, eps=eps) * w + b))
    return out


def _bn_case(name: str, gen: torch.Generator, shapes: list[tuple[int, ...]], *, eps: float = 1e-5,
             momentum: float = 0.1) -> Case:
    C = shapes[0][-1]
    params = _affine(gen, C)
    batches = [1.5 * randn(gen, *s) + randn(gen, C) for s in shapes]  # per-feature offsets: means ≠ 0
    eval_x = randn(gen, 3, *shapes[0][1:]) + 2.0

    def run(cls) -> Reason:
        module, reference, reason = _build_pair(cls, ref.BatchNorm, params, C, eps=eps, momentum=momentum)
        if reason:
            return reason
        module.train()
        for step, x in enumerate(batches, start=1):
            before = {k: getattr(reference, k).clone() for k in ("running_mean", "running_var")}
            try:
                got = module(x.clone())
            except RuntimeError as err:
                if "shape" not in str(err):
                    raise
                return (f"raised RuntimeError: {err} — the batch mean and variance (and the running statistics) "
                        "have one value per feature, shape (features,): normalised over the wrong axis? take the "
                        "statistics over every axis except the last")
            expected = reference(x)
            reason = compare_tensor(got, expected.detach(), f"training output (step {step})",
                                    known_mistakes=_bn_output_mistakes(x, eps, params["weight"], params["bias"]))
            if reason:
                return reason
            reason = _running_reason(module, reference, before, x, momentum, step)
            if reason:
                return reason
        module.eval()
        reference.eval()
        stored = {k: getattr(reference, k).clone() for k in ("running_mean", "running_var")}
        got = module(eval_x.clone())
        batch_stats = _normalise(eval_x, tuple(range(eval_x.dim() - 1)), eps=eps) * params["weight"] + params["bias"]
        reason = compare_tensor(got, reference(eval_x).detach(), "eval-mode output", known_mistakes=[
            ("in eval mode it used the batch's own statistics; it must use running_mean and running_var",
             batch_stats)])
        if reason:
            return reason
        for k, value in stored.items():
            if not torch.allclose(getattr(module, k).detach().double(), value.double(), atol=1e-6):
                return f"{k} changed in eval mode: update the running statistics only when self.training"
        return None

    return Case(name, run)


def _running_reason(module, reference, before: dict[str, Tensor], x: Tensor, momentum: float, step: int) -> Reason:
    dims = tuple(range(x.dim() - 1))
    mean, var = x.mean(dims), x.var(dims, unbiased=False)
    n = x.numel() // x.shape[-1]
    m = momentum
    mistakes = {
        "running_mean": [
            ("running_mean was not updated in training mode", before["running_mean"]),
            ("momentum reversed: new = (1 − momentum)·old + momentum·batch statistic, not momentum·old + …",
             m * before["running_mean"] + (1 - m) * mean),
        ],
        "running_var": [
            ("running_var was not updated in training mode", before["running_var"]),
            ("running_var was updated with the biased variance (÷n); PyTorch stores the unbiased one (÷(n−1))",
             (1 - m) * before["running_var"] + m * var),
            ("momentum reversed: new = (1 − momentum)·old + momentum·batch statistic, not momentum·old + …",
             m * before["running_var"] + (1 - m) * var * n / (n - 1)),
        ],
    }
    for k, known in mistakes.items():
        got = getattr(module, k, None)
        reason = compare_tensor(got, getattr(reference, k), f"{k} after training step {step}",
                                known_mistakes=known)
        if reason:
            return reason
    return None


def _bn_gradient_case(gen: torch.Generator) -> Case:
    x, g = randn(gen, 6, 4), randn(gen, 6, 4)

    def grad(module) -> Tensor | None:
        leaf = x.clone().requires_grad_()
        (module(leaf) * g).sum().backward()
        return leaf.grad

    def run(cls) -> Reason:
        module, reason = _build(cls, 4)
        if reason:
            return reason
        got = grad(module.train())
        if got is None:
            return "no gradient reached x: avoid .detach(), .numpy() or in-place writes to the input"
        return compare_tensor(got, grad(ref.BatchNorm(4)), "the gradient of x", atol=1e-4, known_mistakes=[
            ("the gradient is wrong as if the batch mean and variance were detached: they are part of the "
             "computation in training mode", g * torch.rsqrt(x.var(0, unbiased=False) + 1e-5))])

    return Case("gradients flow through the batch statistics", run)


def _bn_batch_of_one_case() -> Case:
    def run(cls) -> Reason:
        module, reason = _build(cls, 3)
        if reason:
            return reason
        try:
            module.eval()(torch.randn(1, 3))
        except NotImplementedError:
            raise
        except Exception as err:
            return f"in eval mode a batch of one sample must work (it uses the running statistics), got {err}"
        return None

    return Case("eval mode works on a batch of 1", run)


@piece("07.batchnorm", "batch normalisation")
def batchnorm_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    B = 6 + int(torch.randint(0, 4, (), generator=gen))
    cases = [
        _bn_case(f"(batch {B}, 4 features), 3 training steps, then eval", gen, [(B, 4), (B + 2, 4), (B, 4)]),
        _bn_case("(batch, T, features) input: statistics over batch and time", gen, [(3, 5, 6), (2, 7, 6)]),
        _bn_case("eps = 0.5 (is eps inside the square root?)", gen, [(5, 3), (5, 3)], eps=0.5),
    ]
    if extended:
        cases += [
            _bn_case("momentum 0.3, 4 steps", gen, [(8, 5), (4, 5), (9, 5), (2, 5)], momentum=0.3),
            _bn_case("batch of 2", gen, [(2, 7), (2, 7)], momentum=0.5),
            _bn_case("(batch, T, features), one feature", gen, [(4, 3, 1), (2, 2, 1)]),
            _bn_gradient_case(gen),
            _bn_batch_of_one_case(),
        ]
    return cases


# --- 07.layernorm ---------------------------------------------------------------------------


def _ln_case(name: str, gen: torch.Generator, shape: tuple[int, ...], *, eps: float = 1e-5,
             bias: bool = True, scale: float = 1.0) -> Case:
    d = shape[-1]
    params = _affine(gen, d, ("weight", "bias") if bias else ("weight",))
    x = scale * (randn(gen, *shape) + randn(gen, d))

    def run(cls) -> Reason:
        module, reference, reason = _build_pair(cls, ref.LayerNorm, params, d, eps=eps, bias=bias)
        if reason:
            return reason
        w, b = params["weight"], params.get("bias", torch.zeros(d))
        mistakes = [
            ("normalised with the unbiased variance (÷(d−1)); LayerNorm uses the biased variance (÷d)",
             _normalise(x, -1, unbiased=True, eps=eps) * w + b),
            ("eps added outside the square root: divide by √(var + eps), not √var + eps",
             _normalise(x, -1, eps=eps, eps_outside=True) * w + b),
            ("the mean was not subtracted: LayerNorm centres each vector before scaling it",
             _normalise(x, -1, eps=eps, center=False) * w + b),
            ("the learned weight and bias were not applied", _normalise(x, -1, eps=eps)),
        ]
        if x.dim() >= 2:
            mistakes.append(("normalised over the wrong axis: over the batch (dim 0, that is BatchNorm); LayerNorm "
                             "normalises each vector over its own features (the last dim)",
                             _normalise(x, 0, eps=eps) * w + b))
        if x.dim() == 3:
            mistakes.append(("normalised over the whole (T, features) of each sequence; LayerNorm normalises each "
                             "token's features on their own (dim=-1 only)", _normalise(x, (1, 2), eps=eps) * w + b))
        return compare_tensor(module(x.clone()), reference(x).detach(), "output", known_mistakes=mistakes)

    return Case(name, run)


def _ln_gradient_case(gen: torch.Generator) -> Case:
    x, g = randn(gen, 3, 4, 8), randn(gen, 3, 4, 8)

    def grads(module) -> list[Tensor | None]:
        leaf = x.clone().requires_grad_()
        (module(leaf) * g).sum().backward()
        return [leaf.grad, module.weight.grad, module.bias.grad]

    def run(cls) -> Reason:
        module, reason = _build(cls, 8)
        if reason:
            return reason
        return compare_gradients(zip(("x", "weight", "bias"), grads(module), grads(ref.LayerNorm(8))))

    return Case("gradients reach x, weight and bias", run)


@piece("07.layernorm", "layer normalisation")
def layernorm_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    T = 4 + int(torch.randint(0, 4, (), generator=gen))
    cases = [
        _ln_case("(batch 5, 8 features)", gen, (5, 8)),
        _ln_case(f"(batch 2, T {T}, 16 features)", gen, (2, T, 16)),
        _ln_case("eps = 0.5 (is eps inside the square root?)", gen, (4, 6), eps=0.5, scale=0.5),
        _ln_case("a batch of ONE sample (LayerNorm does not need a batch)", gen, (1, 10)),
    ]
    if extended:
        cases += [
            _ln_case("one vector, shape (d,)", gen, (12,)),
            _ln_case("no bias", gen, (3, 5, 8), bias=False),
            _ln_case("large inputs (×1000)", gen, (2, 3, 32), scale=1000.0),
            _ln_gradient_case(gen),
        ]
    return cases


# --- 07.rmsnorm -----------------------------------------------------------------------------


def _rms_case(name: str, gen: torch.Generator, shape: tuple[int, ...], *, eps: float | None = None,
              scale: float = 1.0) -> Case:
    d = shape[-1]
    params = _affine(gen, d, ("weight",))
    x = scale * (randn(gen, *shape) + randn(gen, d))

    def run(cls) -> Reason:
        module, reference, reason = _build_pair(cls, ref.RMSNorm, params, d, eps=eps)
        if reason:
            return reason
        w = params["weight"]
        e = torch.finfo(x.dtype).eps if eps is None else eps
        ms = x.pow(2).mean(-1, keepdim=True)
        mistakes = [
            ("the mean was subtracted: RMSNorm does not centre, it divides x by √(mean(x²) + eps)",
             _normalise(x, -1, eps=e) * w),
            ("eps added outside the square root: divide by √(mean(x²) + eps), not √mean(x²) + eps",
             x / (ms.sqrt() + e) * w),
            ("divided by the root of the SUM of squares; use the mean of the squares over the last dim",
             x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) + e) * w),
            ("divided by the mean square without the square root", x / (ms + e) * w),
            ("the learned weight was not applied", x / torch.sqrt(ms + e)),
        ]
        if x.dim() >= 2:
            mistakes.append(("normalised over the wrong axis (the batch); RMSNorm works on each vector's own "
                             "features (the last dim)", x / torch.sqrt(x.pow(2).mean(0, keepdim=True) + e) * w))
        return compare_tensor(module(x.clone()), reference(x).detach(), "output", known_mistakes=mistakes)

    return Case(name, run)


@piece("07.rmsnorm", "RMS normalisation")
def rmsnorm_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _rms_case("(batch 4, 8 features), eps=None (→ finfo(dtype).eps)", gen, (4, 8)),
        _rms_case("(batch 2, T 5, 16 features), eps=1e-6", gen, (2, 5, 16), eps=1e-6),
        _rms_case("eps = 0.5 (is eps inside the square root?)", gen, (3, 6), eps=0.5, scale=0.5),
    ]
    if extended:
        cases += [
            _rms_case("one vector, shape (d,)", gen, (7,), eps=1e-5),
            _rms_case("large inputs (×1000)", gen, (2, 3, 32), scale=1000.0),
            _rms_case("three leading dims", gen, (2, 2, 3, 4), eps=1e-5),
        ]
    return cases


# --- 07.ffn ---------------------------------------------------------------------------------


def _ffn_variant(m: tref.FeedForward, x: Tensor, mistake: str) -> Tensor:
    if m.activation == "gelu":
        act = {"none": lambda t: t, "relu": F.relu, "tanh_gelu": lambda t: F.gelu(t, approximate="tanh")}
        return m.down(act[mistake](m.up(x))) if mistake in act else None
    h = {"none": m.gate(x) * m.up(x), "swap": F.silu(m.up(x)) * m.gate(x),
         "no_gate": F.silu(m.up(x)), "sigmoid": torch.sigmoid(m.gate(x)) * m.up(x)}.get(mistake)
    return None if h is None else m.down(h)


FFN_MISTAKES = {
    "none": "no activation: without a non-linearity the two linear layers collapse into one linear map",
    "relu": "ReLU used; this FFN uses GELU (F.gelu)",
    "tanh_gelu": "the tanh approximation of GELU was used; use the exact form F.gelu(h) (as torch.nn.GELU())",
    "swap": "gate and up swapped: SiLU goes on gate(x), which then multiplies up(x)",
    "no_gate": "the gate is missing: SwiGLU multiplies SiLU(gate(x)) by up(x)",
    "sigmoid": "sigmoid(gate(x)) used; SwiGLU uses SiLU(gate(x)) = gate(x)·sigmoid(gate(x))",
}


def _ffn_case(name: str, gen: torch.Generator, d_model: int, d_ff: int | None, activation: str,
              shape: tuple[int, ...]) -> Case:
    x = randn(gen, *shape, d_model)

    def run(cls) -> Reason:
        reference = tref.FeedForward(d_model, d_ff, activation)
        module, reason = _build(cls, d_model, d_ff, activation=activation)
        if reason:
            return reason
        try:
            module.load_state_dict(reference.state_dict())
        except RuntimeError as err:
            return f"its parameters do not match up/gate/down: {err}"
        module.eval()
        with torch.no_grad():
            expected = reference(x)
            mistakes = [(hint, v) for key, hint in FFN_MISTAKES.items()
                        if (v := _ffn_variant(reference, x, key)) is not None]
        return compare_tensor(module(x.clone()), expected, "output", known_mistakes=mistakes)

    return Case(name, run)


def _position_wise_case(gen: torch.Generator) -> Case:
    x = randn(gen, 2, 6, 8)

    def run(cls) -> Reason:
        module, reason = _build(cls, 8, 16)
        if reason:
            return reason
        module.eval()
        whole = module(x)
        alone = torch.stack([module(x[:, t]) for t in range(x.shape[1])], dim=1)
        if not torch.allclose(whole, alone, atol=1e-5):
            return "not position-wise: a token's output depends on the other tokens (the FFN acts on each alone)"
        return None

    return Case("position-wise: each token is transformed on its own", run)


@piece("07.ffn", "position-wise feed-forward network")
def ffn_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _ffn_case("gelu, d_model 8, d_ff 32, (batch 2, T 5)", gen, 8, 32, "gelu", (2, 5)),
        _ffn_case("swiglu, d_model 12, d_ff 32", gen, 12, 32, "swiglu", (3, 4)),
        _ffn_case("gelu, default d_ff = 4·d_model", gen, 16, None, "gelu", (2, 3)),
    ]
    if extended:
        cases += [
            _ffn_case("swiglu, default d_ff (2/3 rule)", gen, 24, None, "swiglu", (2, 3)),
            _ffn_case("one token vector (d_model,)", gen, 10, 40, "gelu", ()),
            _ffn_case("swiglu, three leading dims", gen, 8, 16, "swiglu", (2, 2, 3)),
            _position_wise_case(gen),
        ]
    return cases


# --- 07.block -------------------------------------------------------------------------------


def _block_variant(b: tref.TransformerBlock, x: Tensor, mask: Tensor | None, is_causal: bool, *,
                   prenorm: bool | None = None, no_residual: tuple[int, ...] = (), ffn_first: bool = False,
                   same_norm: bool = False, drop_mask: bool = False, residual_from_norm: bool = False) -> Tensor:
    """The reference block with one deliberate mistake."""
    prenorm = b.prenorm if prenorm is None else prenorm
    is_causal = is_causal or b.causal

    def attn(h: Tensor) -> Tensor:
        return b.attn(h, mask=None if drop_mask else mask, is_causal=False if drop_mask else is_causal)[0]

    subs = [(b.norm1, attn), (b.norm1 if same_norm else b.norm2, b.ffn)]
    if ffn_first:
        subs = [(b.norm1, b.ffn), (b.norm2, attn)]
    for i, (norm, f) in enumerate(subs):
        if prenorm:
            h = norm(x)
            x = (0 if i in no_residual else (h if residual_from_norm else x)) + f(h)
        else:
            x = norm((0 if i in no_residual else x) + f(x))
    return x


def _block_mistakes(prenorm: bool, masked: bool) -> dict[str, dict]:
    out = {
        ("post-norm instead of pre-norm: normalise the sub-layer's INPUT, x + f(norm(x)), not norm(x + f(x))"
         if prenorm else "pre-norm instead of post-norm: with prenorm=False the block computes norm(x + f(x))"):
            dict(prenorm=not prenorm),
        "the residual connection is missing around attention (add the sub-layer's input back)":
            dict(no_residual=(0,)),
        "the residual connection is missing around the feed-forward network": dict(no_residual=(1,)),
        "both residual connections are missing": dict(no_residual=(0, 1)),
        "the feed-forward network ran before attention; the order is attention, then FFN": dict(ffn_first=True),
        "norm1 was used for both sub-layers; the FFN has its own norm2": dict(same_norm=True),
    }
    if prenorm:
        out["the residual adds the normalised x; add the un-normalised input x (the identity path)"] = \
            dict(residual_from_norm=True)
    if masked:
        out["the mask / is_causal was not passed to the attention"] = dict(drop_mask=True)
    return out


def _block_case(name: str, gen: torch.Generator, d_model: int, H: int, B: int, T: int, *, norm: str = "layer",
                prenorm: bool = True, mask_kind: str | None = None, causal_flag: bool = False) -> Case:
    x = randn(gen, B, T, d_model)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))

    def run(cls) -> Reason:
        torch.manual_seed(seed)
        reference = tref.TransformerBlock(d_model, H, norm=norm, prenorm=prenorm, causal=causal_flag)
        with torch.no_grad():  # non-trivial norms, so that swapping or skipping one shows
            for p in (*reference.norm1.parameters(), *reference.norm2.parameters()):
                p.add_(0.3 * torch.randn(p.shape))
        module, reason = _build(cls, d_model, H, norm=norm, prenorm=prenorm, causal=causal_flag)
        if reason:
            return reason
        # Plug in the reference sub-layers: only this piece (the wiring) is graded here, so a
        # mistake in an earlier piece is not charged twice.
        for sub in ("attn", "ffn", "norm1", "norm2"):
            setattr(module, sub, getattr(reference, sub))
        module.eval()
        reference.eval()
        mask = ref_padding(B, T) if mask_kind == "padding" else None
        is_causal = mask_kind == "causal"
        kwargs = {"mask": mask} if mask is not None else {}
        if is_causal:
            kwargs["is_causal"] = True
        with torch.no_grad():
            expected = reference(x, mask, is_causal)
            mistakes = [(hint, _block_variant(reference, x, mask, is_causal, **kw))
                        for hint, kw in _block_mistakes(prenorm, bool(mask_kind) or causal_flag).items()]
        got = module(x.clone(), **kwargs)
        if isinstance(got, tuple):
            return "forward should return one tensor (batch, T, d_model), not a tuple"
        return compare_tensor(got, expected, "output", atol=1e-4, known_mistakes=mistakes)

    return Case(name, run)


def ref_padding(B: int, T: int) -> Tensor:
    from llm_course.attention import padding_mask

    return padding_mask(torch.tensor([T] + [max(1, T - 2)] * (B - 1)), T)


@piece("07.block", "pre-norm transformer block")
def block_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _block_case("pre-norm, LayerNorm, d_model 16, 4 heads", gen, 16, 4, B=2, T=5),
        _block_case("pre-norm with a causal mask (is_causal=True)", gen, 16, 2, B=2, T=6, mask_kind="causal"),
        _block_case("pre-norm with a padding mask", gen, 24, 3, B=3, T=5, mask_kind="padding"),
        _block_case("post-norm (prenorm=False)", gen, 16, 4, B=2, T=4, prenorm=False),
    ]
    if extended:
        cases += [
            _block_case("pre-norm, RMSNorm, d_model 32, 8 heads", gen, 32, 8, B=1, T=7, norm="rms"),
            _block_case("block built with causal=True", gen, 16, 4, B=2, T=6, causal_flag=True),
            _block_case("post-norm with a padding mask", gen, 16, 2, B=3, T=4, prenorm=False, mask_kind="padding"),
            _block_case("one token (T = 1)", gen, 8, 2, B=2, T=1),
        ]
    return cases
