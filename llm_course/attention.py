"""Attention: the operation at the heart of every transformer (chapter 06).

Shapes used throughout (any number of leading dims is allowed where it says ``...``):

    q: (..., T_q, d_k)     queries, one per position that is asking
    k: (..., T_k, d_k)     keys, one per position that can be looked at
    v: (..., T_k, d_v)     values, what each looked-at position hands back
    mask: broadcastable to (..., T_q, T_k), bool, True = "may attend"

``scaled_dot_product_attention`` is the explicit version the lab teaches.
``MultiHeadAttention`` uses it when you ask for the attention weights, and PyTorch's
fused kernel (same maths, no T×T matrix kept in memory) when you do not — that is the
path later chapters train with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _describe(x: object) -> str:
    """How an argument looks, for error messages: a tensor's shape and dtype, else its type."""
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:80]


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {_describe(value)}")


def validate_attention_inputs(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> None:
    """Raise a clear error if q, k, v (and mask) cannot go into attention together."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have shape (..., T, d), got shape {tuple(t.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same last dim d_k, got q {tuple(q.shape)} and k {tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same number of positions T_k, "
            f"got k {tuple(k.shape)} and v {tuple(v.shape)}"
        )
    try:
        scores_shape = (*torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]), q.shape[-2], k.shape[-2])
    except RuntimeError:
        raise ValueError(
            f"the leading (batch/head) dims of q {tuple(q.shape)} and k {tuple(k.shape)} do not broadcast"
        ) from None
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = may attend), got {_describe(mask)}")
    try:
        torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the attention scores' "
            f"shape (..., T_q, T_k) = {scores_shape}"
        ) from None


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """softmax(q kᵀ / √d_k) v, with masked-out keys given zero weight.

    Args:
        q: (..., T_q, d_k); k: (..., T_k, d_k); v: (..., T_k, d_v).
        mask: bool, broadcastable to (..., T_q, T_k); True where a query may attend to a key.

    Returns:
        output: (..., T_q, d_v) — each query's weighted average of the values.
        weights: (..., T_q, T_k) — each row sums to 1.

    A query row whose keys are all masked gets uniform weights rather than NaN (the
    scores are filled with the most negative float, not -inf); such rows only occur for
    padding queries, whose outputs are ignored downstream.
    """
    validate_attention_inputs(q, k, v, mask)
    d_k = q.shape[-1]
    # Dot products of random d_k-dim vectors have variance d_k; dividing by √d_k keeps
    # the scores O(1) so the softmax does not saturate into a one-hot.
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)  # over keys: each query distributes one unit of attention
    return weights @ v, weights


def causal_mask(T: int, device: torch.device | str | None = None) -> Tensor:
    """(T, T) bool, lower-triangular: position i may attend to positions 0..i only.

    >>> causal_mask(3).int()
    tensor([[1, 0, 0],
            [1, 1, 0],
            [1, 1, 1]], dtype=torch.int32)
    """
    _check_positive_int("T", T)
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: Tensor, T: int) -> Tensor:
    """(batch, 1, 1, T) bool: key position j is real (True) iff j < lengths[b].

    The two singleton dims broadcast over heads and queries, so the result combines with a
    causal mask by ``&`` and feeds straight into attention over (batch, heads, T, T) scores.
    """
    if not isinstance(lengths, Tensor) or lengths.dim() != 1 or lengths.is_floating_point():
        raise ValueError(f"lengths must be a 1-D integer tensor (one length per sequence), got {_describe(lengths)}")
    _check_positive_int("T", T)
    if lengths.numel() and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(f"lengths must lie in [0, T={T}], got {lengths.tolist()}")
    positions = torch.arange(T, device=lengths.device)
    return (positions < lengths[:, None])[:, None, None, :]


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(batch, T, d_model) → (batch, heads, T, d_head), with d_head = d_model / heads.

    The reshape alone would give (batch, T, heads, d_head); the transpose puts heads
    before time so that each head sees a whole sequence of its own d_head-dim slice.
    """
    batch, T, d_model = x.shape
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
    return x.view(batch, T, num_heads, d_model // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(batch, heads, T, d_head) → (batch, T, heads·d_head): the inverse of ``split_heads``."""
    batch, heads, T, d_head = x.shape
    return x.transpose(1, 2).reshape(batch, T, heads * d_head)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections.

    Each of ``num_heads`` heads attends in its own d_head = d_model / num_heads subspace;
    their outputs are concatenated and mixed by the output projection. Same parameter
    count as one big head: 4·d_model² weights (+ 4·d_model biases).

    Self-attention: ``mha(x)``. Cross-attention (a decoder reading an encoder):
    ``mha(x, context=encoder_states)``.

    Attributes: ``d_model``, ``num_heads``, ``dropout`` (the arguments), and the four
    projections ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, each
    ``nn.Linear(d_model, d_model, bias=bias)``.
    """

    def __init__(self, d_model: int, num_heads: int, *, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        _check_positive_int("d_model", d_model)
        _check_positive_int("num_heads", num_heads)
        if d_model % num_heads:
            raise ValueError(
                f"d_model={d_model} must be divisible by num_heads={num_heads} "
                f"(each head gets d_model / num_heads dims)"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.d_model, self.num_heads, self.dropout = d_model, num_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        is_causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` to ``context`` (default: to ``x`` itself).

        Args:
            x: (batch, T_q, d_model).
            context: (batch, T_k, d_model) or None for self-attention.
            mask: bool, broadcastable to (batch, heads, T_q, T_k); True = may attend.
            is_causal: also forbid attending to later positions (decoder self-attention).
            need_weights: return the (batch, heads, T_q, T_k) attention weights; this takes
                the explicit path, which materialises the T_q×T_k matrix.

        Returns:
            (output (batch, T_q, d_model), weights or None)
        """
        context = x if context is None else context
        self._check_inputs(x, context)
        q = split_heads(self.q_proj(x), self.num_heads)
        k = split_heads(self.k_proj(context), self.num_heads)
        v = split_heads(self.v_proj(context), self.num_heads)
        out, weights = self.attend(q, k, v, mask, is_causal=is_causal, need_weights=need_weights)
        return self.out_proj(merge_heads(out)), weights

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *,
        is_causal: bool = False, need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attention over split heads, q: (batch, heads, T_q, d_head), k/v: (batch, heads, T_k, d_head).

        With ``need_weights`` it runs the explicit ``scaled_dot_product_attention`` and
        returns the weights; otherwise PyTorch's fused kernel, which computes the same
        output without keeping the T_q×T_k weights (faster, far less memory).
        """
        validate_attention_inputs(q, k, v, mask)
        T_q, T_k = q.shape[-2], k.shape[-2]
        p_drop = self.dropout if self.training else 0.0
        if not need_weights and mask is None:
            # is_causal lets the fused kernel skip the masked half instead of computing it
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p_drop, is_causal=is_causal), None
        if is_causal:  # aligned top-left, as PyTorch's is_causal is
            causal = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril()
            mask = causal if mask is None else mask & causal
        if not need_weights:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop), None
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        if p_drop:  # drop whole attention links, as the fused kernel does
            out = F.dropout(weights, p_drop) @ v
        return out, weights

    def _check_inputs(self, x: Tensor, context: Tensor) -> None:
        for name, t in (("x", x), ("context", context)):
            if not isinstance(t, Tensor) or t.dim() != 3 or t.shape[-1] != self.d_model:
                raise ValueError(f"{name} must have shape (batch, T, d_model={self.d_model}), got {_describe(t)}")
        if context.shape[0] != x.shape[0]:
            raise ValueError(f"x and context batch sizes differ: {x.shape[0]} vs {context.shape[0]}")
