"""Model compression: quantisation, pruning, knowledge distillation, low-rank factorisation.

Four ways to make a trained network cheaper to store or to run:

* **quantisation** stores each weight as a small integer code plus a shared float scale
  (absmax = symmetric, zero-point = asymmetric), per tensor, per output channel or per group
  of input columns, in 8 or 4 bits (4-bit codes are packed two per byte);
* **pruning** sets weights to zero: the smallest |w| to a target sparsity (unstructured), or
  whole hidden neurons of a feed-forward network (structured — the matrices really shrink);
* **distillation** trains a small student to match a large teacher's softened distribution;
* **low-rank factorisation** replaces W (out, in) by B (out, r) · A (r, in) from a truncated SVD.

Quality is measured with ``perplexity``: a causal LM's held-out perplexity over a long token
sequence, in (optionally overlapping) windows that fit the model's context.

Everything works on ``nn.Linear`` layers, so it applies alike to ``llm_course.transformer``
models and to Hugging Face models (SmolLM2). Conventions: a Linear weight has shape
(out_features, in_features); "per channel" means one scale per OUTPUT channel (per row).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BITS = (4, 8)


# --------------------------------------------------------------------------- input checks

def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"[:120]


def _check_bits(bits: object) -> None:
    if isinstance(bits, bool) or bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {_describe(bits)}")


def _check_float_tensor(x: object, name: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty floating-point tensor, got {_describe(x)}")


def _check_axis(x: Tensor, axis: object) -> None:
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int) or not -x.dim() <= axis < x.dim()):
        raise ValueError(f"axis must be None (per tensor) or a dim of x (x has {x.dim()} dims), got {axis!r}")


def _check_group_size(group_size: object, in_features: int) -> None:
    if group_size is None:
        return
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size <= 0 \
            or in_features % group_size:
        raise ValueError(f"group_size must be a positive int dividing in_features={in_features}, "
                         f"got {group_size!r}")


def _check_sparsity(sparsity: object) -> None:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")


# --------------------------------------------------------------------------- quantisation

def qmax(bits: int) -> int:
    """Largest symmetric code: 127 for int8, 7 for int4. Codes use [-qmax, qmax], so that
    +max and -max are both exact and the grid is symmetric around an exact 0."""
    _check_bits(bits)
    return 2 ** (bits - 1) - 1


def reduce_except(x: Tensor, axis: int | None, fn: Callable = torch.amax) -> Tensor:
    """``fn`` (torch.amax or torch.amin) over every dim of x except ``axis`` — over all dims
    when axis is None — keeping them as size-1 dims so that the result broadcasts against x.
    For a weight (out, in) and axis=0: one value per row, shape (out, 1)."""
    dims = [d for d in range(x.dim()) if axis is None or d != axis % x.dim()]
    return fn(x, dim=dims, keepdim=True) if dims else x  # a 1-D x with axis=0: one block per entry


def absmax_quantize(x: Tensor, bits: int = 8, axis: int | None = None) -> tuple[Tensor, Tensor]:
    """Symmetric (absmax) quantisation: codes = round(x / scale), scale = max|x| / qmax.

    Args:
        x: float tensor. For a Linear weight (out, in), ``axis=0`` gives one scale per output
            channel (per row) — "per-channel"; ``axis=None`` one scale for the whole tensor.
        bits: 8 (codes in [-127, 127]) or 4 (codes in [-7, 7]).

    Returns:
        codes: int8, same shape as x. scale: float, x's dims kept with size 1 except ``axis``
        — e.g. (out, 1) per channel, (1, 1) per tensor. x ≈ codes · scale, and the error of
        each entry is at most scale / 2. A block of zeros gets scale 1 (its codes are 0).
    """
    _check_float_tensor(x, "x")
    _check_bits(bits)
    _check_axis(x, axis)
    q = qmax(bits)
    amax = reduce_except(x.abs(), axis, torch.amax)
    scale = torch.where(amax > 0, amax / q, torch.ones_like(amax))
    codes = torch.clamp(torch.round(x / scale), -q, q)
    return codes.to(torch.int8), scale


def zeropoint_quantize(x: Tensor, bits: int = 8, axis: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric (zero-point) quantisation onto unsigned codes 0 … 2^bits − 1.

    The range [min(x, 0), max(x, 0)] is mapped onto the codes: scale = (max − min)/(2^bits − 1),
    zero_point = round(−min / scale) (the code of the real 0, which stays exact), codes =
    clamp(round(x / scale) + zero_point, 0, 2^bits − 1). A skewed range (all weights ≥ −0.1,
    some up to +1) uses every code, where absmax would waste the negative half.

    Returns codes (uint8, shape of x), scale (float) and zero_point (int32), the last two with
    the same broadcastable shape as in ``absmax_quantize``.
    """
    _check_float_tensor(x, "x")
    _check_bits(bits)
    _check_axis(x, axis)
    top = 2 ** bits - 1
    lo = reduce_except(x, axis, torch.amin).clamp(max=0)
    hi = reduce_except(x, axis, torch.amax).clamp(min=0)
    scale = torch.where(hi > lo, (hi - lo) / top, torch.ones_like(hi))
    zero_point = torch.clamp(torch.round(-lo / scale), 0, top)
    codes = torch.clamp(torch.round(x / scale) + zero_point, 0, top)
    return codes.to(torch.uint8), scale, zero_point.to(torch.int32)


def dequantize(codes: Tensor, scale: Tensor, zero_point: Tensor | None = None) -> Tensor:
    """(codes − zero_point) · scale, as float32 (zero_point None = symmetric codes)."""
    if not isinstance(codes, Tensor) or codes.is_floating_point():
        raise ValueError(f"codes must be an integer tensor, got {_describe(codes)}")
    _check_float_tensor(scale, "scale")
    q = codes.to(torch.float32)
    if zero_point is not None:
        q = q - zero_point.to(torch.float32)
    return q * scale


def pack_int4(codes: Tensor) -> Tensor:
    """Two 4-bit codes (uint8 values 0…15) per byte: (…, n) → (…, n/2) uint8, low nibble first."""
    if codes.dtype != torch.uint8 or codes.shape[-1] % 2 or int(codes.max()) > 15:
        raise ValueError(f"codes must be uint8 values in 0…15 with an even last dim, got {_describe(codes)}")
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_int4(packed: Tensor) -> Tensor:
    """Inverse of ``pack_int4``: (…, n/2) uint8 → (…, 2·(n/2)) uint8 codes 0…15."""
    return torch.stack([packed & 0x0F, packed >> 4], dim=-1).flatten(-2)


class QuantizedLinear(nn.Module):
    """A Linear layer whose weight is stored as int8 or packed int4 codes plus float scales
    (and zero points when asymmetric); the bias stays float. Weight-only: activations stay
    float, and every forward dequantises the whole weight and runs an ordinary float matmul —
    it saves memory, not time (on CPU it is slower than the float layer it replaces).

    Granularity: ``per_tensor=True`` — one scale; else one scale per output row, or, with
    ``group_size=g``, one per group of g consecutive input columns of a row (as GPTQ/AWQ's
    4-bit formats do). Build one with ``QuantizedLinear.from_linear(linear, ...)``.

    Shapes: x (..., in_features) → (..., out_features).
    """

    def __init__(self, in_features: int, out_features: int, bits: int = 8, group_size: int | None = None,
                 symmetric: bool = True, per_tensor: bool = False, bias: bool = True):
        super().__init__()
        _check_bits(bits)
        _check_group_size(group_size, in_features)
        if per_tensor and group_size is not None:
            raise ValueError("per_tensor=True and a group_size exclude each other")
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size, self.symmetric, self.per_tensor = bits, group_size, symmetric, per_tensor
        n_blocks = 1 if per_tensor else out_features * in_features // self.block_len
        n_codes = out_features * in_features // (2 if bits == 4 else 1)
        # Buffers, not Parameters: they are stored and moved by .to(device), but not trained.
        self.register_buffer("codes", torch.zeros(n_codes, dtype=torch.int8 if bits == 8 and symmetric else torch.uint8))
        self.register_buffer("scale", torch.ones(n_blocks, 1))
        self.register_buffer("zero_point", None if symmetric else torch.zeros(n_blocks, 1, dtype=torch.int32))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def block_len(self) -> int:
        """How many consecutive weights (row-major) share one scale."""
        if self.per_tensor:
            return self.in_features * self.out_features
        return self.group_size or self.in_features

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, group_size: int | None = None,
                    symmetric: bool = True, per_tensor: bool = False) -> "QuantizedLinear":
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear must be an nn.Linear, got {_describe(linear)}")
        layer = cls(linear.in_features, linear.out_features, bits, group_size, symmetric, per_tensor,
                    bias=linear.bias is not None)
        w = linear.weight.detach().float()
        blocks = w.reshape(-1, layer.block_len)  # one row per block of weights sharing a scale
        axis = None if per_tensor else 0
        if symmetric:
            codes, scale = absmax_quantize(blocks, bits, axis)
            zero_point = None
            if bits == 4:
                codes = (codes + 8).to(torch.uint8)  # −7…7 → 1…15, so that it fits a nibble
        else:
            codes, scale, zero_point = zeropoint_quantize(blocks, bits, axis)
        codes = codes.flatten()
        layer.codes = pack_int4(codes) if bits == 4 else codes
        layer.scale = scale.reshape(-1, 1)
        layer.zero_point = None if zero_point is None else zero_point.reshape(-1, 1)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        return layer.to(linear.weight.device)

    def dequantized_weight(self) -> Tensor:
        """The (out_features, in_features) float32 weight the codes stand for."""
        codes = self.codes
        if self.bits == 4:
            codes = unpack_int4(codes)
            if self.symmetric:
                codes = codes.to(torch.int8) - 8
        blocks = codes.reshape(-1, self.block_len)
        return dequantize(blocks, self.scale, self.zero_point).reshape(self.out_features, self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        kind = "per tensor" if self.per_tensor else f"groups of {self.group_size}" if self.group_size else "per channel"
        return (f"{self.in_features}, {self.out_features}, int{self.bits} {'absmax' if self.symmetric else 'zero-point'}"
                f", {kind}")


def replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module],
                    skip: Iterable[str] = ("lm_head",)) -> list[str]:
    """Replace every ``nn.Linear`` of ``model`` (in place) by ``make(linear)``, except those whose
    qualified name ends with one of ``skip``. Returns the names replaced."""
    skip = tuple(skip)
    targets = [(name, m) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and not (skip and name.endswith(skip))]
    for name, linear in targets:
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, make(linear))
    return [name for name, _ in targets]


def quantize_model(model: nn.Module, bits: int = 8, group_size: int | None = None, *, symmetric: bool = True,
                   per_tensor: bool = False, skip: Iterable[str] = ("lm_head",)) -> list[str]:
    """Weight-only quantisation of ``model`` in place: each ``nn.Linear`` becomes a ``QuantizedLinear``.

    Skipped (stay float): embeddings (nn.Embedding is not a Linear), norms, biases, and the
    Linears whose names end with ``skip`` — by default the output layer ``lm_head``, which is
    often tied to the embedding matrix (quantising it would untie and duplicate it) and is
    the layer most sensitive to rounding. Returns the names of the quantised layers.
    """
    _check_bits(bits)
    return replace_linears(model, lambda lin: QuantizedLinear.from_linear(lin, bits, group_size, symmetric, per_tensor),
                           skip)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes you would store: every parameter and buffer once (a tied embedding / output matrix
    counts once), at its actual dtype — packed int4 codes count half a byte per weight."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t is not None and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


# --------------------------------------------------------------------------- evaluation

@torch.inference_mode()
def perplexity(model: nn.Module, ids: Tensor, window: int, stride: int | None = None,
               batch_size: int = 8) -> tuple[float, int]:
    """Perplexity of a causal language model on one long sequence of token ids, in windows.

    A model sees at most ``window`` tokens at a time, so the sequence is cut into windows of
    that length starting every ``stride`` tokens. Each window scores only the targets that no
    earlier window scored — with ``stride = window`` (the default) the windows do not overlap
    and a window's first token goes unscored (nothing before it in the window to predict it
    from); with ``stride < window`` every token after the first is scored exactly once, with at
    least ``window − stride`` tokens of context (the "sliding window" evaluation: better
    context, ``window / stride`` times the compute). The last window is moved back to end at
    the sequence's end, so all windows have one length and run in batches of ``batch_size``.

    ``model(x)`` maps ids (B, L) to logits (B, L, V), or to an object with ``.logits`` (Hugging
    Face models). Returns (exp(mean negative log-likelihood of the scored tokens), how many
    tokens were scored).
    """
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.is_floating_point() or ids.numel() < 2:
        raise ValueError(f"ids must be a 1-D integer tensor of at least 2 token ids, got {_describe(ids)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an int ≥ 2, got {window!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    stride = window if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= window:
        raise ValueError(f"stride must be an int in [1, window={window}], got {stride!r}")
    n = ids.numel()
    window = min(window, n)
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] + window < n:  # a last window, ending exactly at the end of the sequence
        starts.append(n - window)
    # First position each window scores: the one after the previous window's end (the first
    # window: position 1). In window coordinates, logit i predicts position start + 1 + i.
    first, scored_to = [], 1
    for s in starts:
        first.append(max(scored_to, s + 1) - s - 1)
        scored_to = s + window
    device = next(iter(model.parameters()), ids).device
    was_training = model.training
    model.eval()  # no dropout while measuring
    total, count = 0.0, 0
    position = torch.arange(window - 1, device=device)
    for b in range(0, len(starts), batch_size):
        x = torch.stack([ids[s:s + window] for s in starts[b:b + batch_size]]).long().to(device)
        out = model(x)
        logits = getattr(out, "logits", out)
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten(), reduction="none")
        keep = position[None, :] >= torch.tensor(first[b:b + batch_size], device=device)[:, None]
        total += nll.view(keep.shape)[keep].double().sum().item()
        count += int(keep.sum())
    model.train(was_training)
    return math.exp(total / count), count


# --------------------------------------------------------------------------- pruning

def magnitude_mask(w: Tensor, sparsity: float) -> Tensor:
    """Bool mask (True = keep) that zeroes exactly round(sparsity · numel) entries of w: those
    with the smallest |w|. Ties are broken by position (the earlier one is pruned first), so
    the count is exact even when many weights are equal (e.g. already zero).

    Same rule as ``torch.nn.utils.prune.l1_unstructured(module, name, amount=sparsity)``.
    """
    _check_float_tensor(w, "w")
    _check_sparsity(sparsity)
    k = round(sparsity * w.numel())
    order = torch.argsort(w.detach().abs().flatten(), stable=True)  # smallest |w| first
    mask = torch.ones(w.numel(), dtype=torch.bool, device=w.device)
    mask[order[:k]] = False
    return mask.reshape(w.shape)


def magnitude_prune(model: nn.Module, sparsity: float, *, scope: str = "layer",
                    skip: Iterable[str] = ("lm_head",)) -> dict[str, Tensor]:
    """Zero the smallest-magnitude weights of every ``nn.Linear`` (not biases; names ending with
    ``skip`` excluded), in place. scope="layer": each matrix loses ``sparsity`` of its weights;
    scope="global": one threshold over all of them, so layers with small weights lose more.

    Returns {layer name: keep mask}. The zeros are still stored densely: the model's size and
    speed do not change unless it is saved in a sparse format or run on sparse kernels.
    """
    _check_sparsity(sparsity)
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    skip = tuple(skip)
    layers = {name: m for name, m in model.named_modules()
              if isinstance(m, nn.Linear) and not (skip and name.endswith(skip))}
    if scope == "layer":
        masks = {name: magnitude_mask(m.weight, sparsity) for name, m in layers.items()}
    else:
        flat = magnitude_mask(torch.cat([m.weight.detach().flatten() for m in layers.values()]), sparsity)
        masks = dict(zip(layers, flat.split([m.weight.numel() for m in layers.values()])))
        masks = {name: mask.reshape(layers[name].weight.shape) for name, mask in masks.items()}
    with torch.no_grad():
        for name, m in layers.items():
            m.weight.mul_(masks[name])
    return masks


def sparsity_of(model: nn.Module, skip: Iterable[str] = ("lm_head",)) -> float:
    """Fraction of exactly-zero weights over the model's ``nn.Linear`` weights (``skip`` excluded)."""
    skip = tuple(skip)
    ws = [m.weight for n, m in model.named_modules() if isinstance(m, nn.Linear) and not (skip and n.endswith(skip))]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def prune_ffn_neurons(inputs: list[nn.Linear], output: nn.Linear, fraction: float) -> Tensor:
    """Structured pruning of one feed-forward network: remove ``fraction`` of its hidden neurons.

    Hidden neuron j is row j of every input projection (``up``, and ``gate`` for SwiGLU) and
    column j of the output projection (``down``); its score is the product of those weight
    norms (a neuron whose weights in or out are small contributes little). The lowest-scoring
    neurons are cut out: the matrices really shrink (d_ff → d_ff − k), so the model gets
    smaller and faster on ordinary dense kernels. Modifies the layers in place; returns the
    kept neuron indices (sorted).
    """
    _check_sparsity(fraction)
    d_ff = output.in_features
    if any(lin.out_features != d_ff for lin in inputs):
        raise ValueError(f"every input projection must have out_features = output.in_features = {d_ff}")
    with torch.no_grad():
        score = output.weight.norm(dim=0)
        for lin in inputs:
            score = score * lin.weight.norm(dim=1)
        n_keep = d_ff - round(fraction * d_ff)
        keep = torch.sort(torch.topk(score, n_keep).indices).values
        for lin in inputs:
            lin.weight = nn.Parameter(lin.weight[keep].clone())
            if lin.bias is not None:
                lin.bias = nn.Parameter(lin.bias[keep].clone())
            lin.out_features = n_keep
        output.weight = nn.Parameter(output.weight[:, keep].clone())
        output.in_features = n_keep
    return keep


# --------------------------------------------------------------------------- distillation

def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor,
                      T: float = 2.0, alpha: float = 0.5) -> Tensor:
    """Knowledge-distillation loss (Hinton, Vinyals & Dean, 2015):

        alpha · T² · KL(softmax(teacher/T) ‖ softmax(student/T))  +  (1 − alpha) · CE(student, targets)

    The KL term pulls the student towards the teacher's *softened* distribution — which
    wrong answers the teacher finds plausible ("dark knowledge"). Its gradient shrinks like
    1/T², so it is multiplied by T² to keep the two terms balanced whatever T is. The teacher
    is a fixed target: no gradient flows into teacher_logits.

    Shapes: logits (..., V) (e.g. (batch, T, V)); targets (...) class ids. Both terms are
    averaged over the positions (the KL is summed over the vocabulary first).
    """
    _check_float_tensor(student_logits, "student_logits")
    _check_float_tensor(teacher_logits, "teacher_logits")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits must have the student's shape {tuple(student_logits.shape)}, "
                         f"got {tuple(teacher_logits.shape)}")
    if not isinstance(targets, Tensor) or targets.shape != student_logits.shape[:-1]:
        raise ValueError(f"targets must be a tensor of shape {tuple(student_logits.shape[:-1])}, got {_describe(targets)}")
    if isinstance(T, bool) or not isinstance(T, (int, float)) or not T > 0:
        raise ValueError(f"T (the temperature) must be > 0, got {T!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    V = student_logits.shape[-1]
    s = student_logits.reshape(-1, V)
    t = teacher_logits.detach().reshape(-1, V)
    log_p_student = F.log_softmax(s / T, dim=-1)
    log_p_teacher = F.log_softmax(t / T, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()
    ce = F.cross_entropy(s, targets.reshape(-1))
    return alpha * T ** 2 * kl + (1 - alpha) * ce


# --------------------------------------------------------------------------- low-rank

def rank_for_energy(singular_values: Tensor, energy: float) -> int:
    """Smallest r whose top-r singular values keep ``energy`` of Σσ² (the squared Frobenius norm)."""
    if isinstance(energy, bool) or not isinstance(energy, (int, float)) or not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy!r}")
    kept = torch.cumsum(singular_values.double() ** 2, 0) / (singular_values.double() ** 2).sum()
    return min(int((kept < energy - 1e-12).sum()) + 1, singular_values.numel())


def low_rank_factorize(linear: nn.Linear, rank: int | None = None, energy: float | None = None) -> nn.Sequential:
    """Replace W (out, in) by B·A with A (rank, in), B (out, rank), from the truncated SVD
    W = U S Vᵀ: A = S_r^½ V_rᵀ, B = U_r S_r^½. By Eckart–Young this is the best rank-r
    approximation: ‖W − BA‖_F² = Σ_{i>r} σ_i². Parameters drop from out·in to r·(out + in),
    a saving only when r < out·in / (out + in).

    Give ``rank`` or ``energy`` (keep that fraction of Σσ²). Returns nn.Sequential(A, B) as two
    nn.Linear layers (the bias, if any, goes on B).
    """
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"linear must be an nn.Linear, got {_describe(linear)}")
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank and energy")
    W = linear.weight.detach().float()  # float32 SVD: 3-4× faster than float64, error ~1e-6 relative
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    if rank is None:
        rank = rank_for_energy(S, energy)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= S.numel():
        raise ValueError(f"rank must be an int in [1, {S.numel()}], got {rank!r}")
    root = S[:rank].sqrt()
    A = nn.Linear(linear.in_features, rank, bias=False)
    B = nn.Linear(rank, linear.out_features, bias=linear.bias is not None)
    dtype = linear.weight.dtype
    with torch.no_grad():
        A.weight.copy_((root[:, None] * Vh[:rank]).to(dtype))
        B.weight.copy_((U[:, :rank] * root).to(dtype))
        if linear.bias is not None:
            B.bias.copy_(linear.bias.detach())
    return nn.Sequential(A, B).to(linear.weight.device)
