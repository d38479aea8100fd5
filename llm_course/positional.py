"""Token embeddings and positional encodings (chapter 05).

Shapes used throughout:

    ids: (..., T) integer token ids             →  embeddings: (..., T, d_model)
    sinusoidal / learned position tables: (T, d_model), added to the embeddings
    RoPE acts on per-head queries and keys: x: (..., T, d_head), d_head even

Frequencies. Both the sinusoidal table and RoPE use one frequency per PAIR of dims:
θ_i = base^(−2i/d) for i = 0 … d/2−1 (base = 10000 in Vaswani et al. 2017 and Su et
al. 2021). Pair 0 turns once per position (θ_0 = 1 rad); the last pair almost not at all.

Pair convention: INTERLEAVED. The i-th pair is the two adjacent dims (2i, 2i+1), as in
the sinusoidal formula PE[pos, 2i] = sin(pos·θ_i), PE[pos, 2i+1] = cos(pos·θ_i), in the
RoPE paper and in GPT-J. GPT-NeoX and Hugging Face's Llama pair dim i with dim i + d/2
("rotate_half"). The two layouts are the same maths on permuted dims; what breaks a model
is mixing them (weights trained with one, RoPE applied with the other).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _describe(x: object) -> str:
    """How an argument looks, for error messages: a tensor's shape and dtype, else its type."""
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:80]


def _check_positive_int(name: str, value: object, *, even: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {_describe(value)}")
    if even and value % 2:
        raise ValueError(f"{name} must be even (dims come in (sin, cos) pairs), got {value}")


def _check_base(base: object) -> None:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1:
        raise ValueError(f"base must be a number > 1 (usually 10000.0), got {_describe(base)}")


def _check_ids(ids: object, num_rows: int) -> None:
    if not isinstance(ids, Tensor) or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"ids must be an integer tensor of token ids, got {_describe(ids)}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= num_rows):
        raise ValueError(
            f"ids must lie in [0, vocab_size={num_rows}), got values from {ids.min().item()} to {ids.max().item()}"
        )


def _check_rope_input(x: object, positions: object) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor of shape (..., T, d_head), got {_describe(x)}")
    if x.dim() < 2 or x.shape[-1] % 2:
        raise ValueError(
            f"x must have shape (..., T, d_head) with d_head even (RoPE rotates pairs of dims), "
            f"got shape {tuple(x.shape)}"
        )
    if positions is None:
        return
    if not isinstance(positions, Tensor) or positions.dtype == torch.bool or positions.is_complex():
        raise TypeError(f"positions must be an integer or float tensor, got {_describe(positions)}")
    try:
        torch.broadcast_shapes(positions.shape, x.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"positions of shape {tuple(positions.shape)} do not broadcast to x's (..., T) = {tuple(x.shape[:-1])}"
        ) from None


# --------------------------------------------------------------------------- token embedding
def token_embedding(ids: Tensor, weight: Tensor, padding_idx: int | None = None, scale: bool = False) -> Tensor:
    """Look up one row of ``weight`` per token id: the same as one_hot(ids) @ weight.

    Args:
        ids: (..., T) integer token ids in [0, vocab_size).
        weight: (vocab_size, d_model) the embedding table.
        padding_idx: a token id whose embedding is forced to 0 (and so gets no gradient).
        scale: multiply by √d_model, as the original Transformer does so that the
            embeddings are not drowned by the (unit-size) sinusoidal positions added to them.

    Returns:
        (..., T, d_model)
    """
    _check_ids(ids, weight.shape[0])
    # Indexing picks rows directly: the one-hot product would do vocab_size × d_model
    # multiply-adds per token to select one row, and store a (T, vocab_size) matrix.
    out = weight[ids]
    if padding_idx is not None:
        out = out.masked_fill((ids == padding_idx)[..., None], 0.0)
    if scale:
        out = out * math.sqrt(weight.shape[1])
    return out


class TokenEmbedding(nn.Module):
    """An embedding table ``weight`` (vocab_size, d_model) looked up with ``token_embedding``.

    Initialised N(0, 1) like ``nn.Embedding``; the padding row (if any) starts at 0 and,
    because its output is masked, never receives a gradient.
    """

    def __init__(self, vocab_size: int, d_model: int, *, padding_idx: int | None = None, scale: bool = False):
        super().__init__()
        _check_positive_int("vocab_size", vocab_size)
        _check_positive_int("d_model", d_model)
        if padding_idx is not None and not 0 <= padding_idx < vocab_size:
            raise ValueError(f"padding_idx must be in [0, vocab_size={vocab_size}), got {padding_idx!r}")
        self.padding_idx, self.scale = padding_idx, scale
        self.weight = nn.Parameter(torch.randn(vocab_size, d_model))
        if padding_idx is not None:
            with torch.no_grad():
                self.weight[padding_idx] = 0.0

    def forward(self, ids: Tensor) -> Tensor:
        """(..., T) ids → (..., T, d_model)."""
        return token_embedding(ids, self.weight, self.padding_idx, self.scale)


# --------------------------------------------------------------------------- frequencies
def inverse_frequencies(d: int, base: float = 10000.0) -> Tensor:
    """θ_i = base^(−2i/d) for i = 0 … d/2 − 1: the angle per position of each dim pair.

    Returns a float64 tensor of shape (d/2,), from 1 down to nearly 1/base: the
    wavelengths 2π/θ_i form a geometric series from 2π to about 2π·base positions.
    """
    _check_positive_int("d", d, even=True)
    _check_base(base)
    return base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)


# --------------------------------------------------------------------------- sinusoidal
def sinusoidal_encoding(T: int, d: int, base: float = 10000.0) -> Tensor:
    """The fixed sinusoidal position table of Vaswani et al. (2017), float32 (T, d).

    PE[pos, 2i] = sin(pos·θ_i) and PE[pos, 2i+1] = cos(pos·θ_i), θ_i = base^(−2i/d).
    Because each pair is (sin, cos) of one angle, PE[pos + k] is PE[pos] with every pair
    rotated by k·θ_i: a fixed linear map that depends on k only.
    """
    _check_positive_int("T", T)
    _check_positive_int("d", d, even=True)
    # float64 angles: at position 10⁴ one float32 ulp of pos·θ is ~1e-3 rad, and this costs nothing.
    angles = torch.arange(T, dtype=torch.float64)[:, None] * inverse_frequencies(d, base)  # (T, d/2)
    pe = torch.stack((angles.sin(), angles.cos()), dim=-1)     # (T, d/2, 2): the pairs
    return pe.flatten(-2).float()                              # interleave: sin, cos, sin, cos …


class LearnedPositionalEmbedding(nn.Module):
    """A learned table ``weight`` (max_len, d_model), one trainable vector per position
    (GPT-2, BERT); ``forward(x)`` adds rows offset … offset+T−1 to x.

    Initialised N(0, 0.02²) as in GPT-2. It cannot represent a position it never saw:
    asking for one beyond ``max_len`` is an error, not an extrapolation.
    """

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        _check_positive_int("max_len", max_len)
        _check_positive_int("d_model", d_model)
        self.max_len, self.d_model = max_len, d_model
        self.weight = nn.Parameter(0.02 * torch.randn(max_len, d_model))

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x: (..., T, d_model) → x + weight[offset : offset + T]."""
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (..., T, d_model={self.d_model}), got {_describe(x)}")
        T = x.shape[-2]
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a non-negative int, got {_describe(offset)}")
        if offset + T > self.max_len:
            raise ValueError(
                f"positions {offset}…{offset + T - 1} go beyond max_len={self.max_len}: a learned table has "
                f"no vector for an unseen position (T={T}, offset={offset})"
            )
        return x + self.weight[offset:offset + T]


# --------------------------------------------------------------------------- rotary (RoPE)
def rope_cache(positions: Tensor, d_head: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """(cos, sin) of the RoPE angles pos·θ_i, each float32 (..., T, d_head/2).

    Compute them once per sequence length and reuse them in every layer and head.
    """
    _check_positive_int("d_head", d_head, even=True)
    if not isinstance(positions, Tensor) or positions.dtype == torch.bool or positions.is_complex():
        raise TypeError(f"positions must be an integer or float tensor, got {_describe(positions)}")
    angles = positions.to(torch.float64)[..., None] * inverse_frequencies(d_head, base).to(positions.device)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: Tensor, positions: Tensor | None = None, base: float = 10000.0) -> Tensor:
    """Rotate each interleaved pair (x[2i], x[2i+1]) of x by the angle pos·θ_i.

    Args:
        x: (..., T, d_head) queries or keys, d_head even, floating point.
        positions: integer or float positions broadcastable to (..., T); default 0 … T−1.
        base: the frequency base (10000 in the paper; Llama 3 uses 500000).

    Returns:
        a tensor like x. Rotations keep lengths, and rotating q by mθ and k by nθ gives
        q·k that depends on m − n only: the relative-position property.
    """
    _check_rope_input(x, positions)
    if positions is None:
        positions = torch.arange(x.shape[-2], device=x.device)
    cos, sin = rope_cache(positions, x.shape[-1], base)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]                        # the two coordinates of each pair
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return rotated.flatten(-2)                                 # back to (…, d_head), pairs interleaved


def rope_scores(q: Tensor, k: Tensor, q_positions: Tensor | None = None, k_positions: Tensor | None = None,
                base: float = 10000.0) -> Tensor:
    """Dot products of rotated queries and keys, (..., T_q, T_k): the RoPE attention scores
    before the 1/√d scaling and softmax.

    Both q AND k are rotated, each by its own position; that is what turns absolute
    rotations into a score that depends on the offset between them.
    """
    _check_rope_input(q, q_positions)
    _check_rope_input(k, k_positions)
    return apply_rope(q, q_positions, base) @ apply_rope(k, k_positions, base).transpose(-2, -1)
