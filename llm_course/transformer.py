"""Transformer building blocks (chapter 07; chapter 08 builds whole models from them).

A block is two **sub-layers**, each wrapped in a residual connection and a normalisation:

    pre-norm  (GPT-2, LLaMA, most LLMs):   x = x + Attn(Norm(x));   x = x + FFN(Norm(x))
    post-norm (the 2017 Transformer, BERT): x = Norm(x + Attn(x));  x = Norm(x + FFN(x))

``TransformerBlock.residual`` is that wrapper, written once; a decoder block with
cross-attention (chapter 08) is the same wrapper around a third sub-layer.

Shapes: x (batch, T, d_model) → (batch, T, d_model).
"""

from __future__ import annotations

import math
from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from llm_course.attention import MultiHeadAttention, _check_positive_int, _describe
from llm_course.norms import LayerNorm, RMSNorm

ACTIVATIONS = ("gelu", "swiglu")
NORMS = ("layer", "rms")


def _check_dropout(dropout: object) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a float in [0, 1), got {_describe(dropout)}")


def swiglu_hidden_size(d_model: int, multiple_of: int = 8) -> int:
    """Hidden size of a SwiGLU FFN with the parameters of a 4·d_model GELU FFN.

    SwiGLU has three weight matrices instead of two, so the hidden size is scaled by 2/3:
    3 · d_model · (2/3 · 4·d_model) = 2 · d_model · 4·d_model. Rounded up to a multiple of
    ``multiple_of`` for fast matrix multiplies (LLaMA uses 256).

    >>> swiglu_hidden_size(768)
    2048
    """
    _check_positive_int("d_model", d_model)
    _check_positive_int("multiple_of", multiple_of)
    return multiple_of * math.ceil(2 * 4 * d_model / 3 / multiple_of)


class FeedForward(nn.Module):
    """The position-wise feed-forward network: the same 2-layer MLP applied to every token.

    gelu:   down(dropout(GELU(up(x))))                      d_ff defaults to 4·d_model
    swiglu: down(dropout(SiLU(gate(x)) ⊙ up(x)))            d_ff defaults to swiglu_hidden_size
            (Shazeer 2020; PaLM, LLaMA) — a learned gate decides, per hidden unit, how much
            of ``up(x)`` passes.

    GELU is the exact (erf) form, as ``torch.nn.GELU()``. Attributes: ``up``, ``down`` and,
    for swiglu, ``gate`` (all ``nn.Linear``).

    Shapes: x (..., d_model) → (..., d_model).
    """

    def __init__(self, d_model: int, d_ff: int | None = None, activation: str = "gelu",
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        _check_positive_int("d_model", d_model)
        if d_ff is not None:
            _check_positive_int("d_ff", d_ff)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        _check_dropout(dropout)
        if d_ff is None:
            d_ff = 4 * d_model if activation == "gelu" else swiglu_hidden_size(d_model)
        self.d_model, self.d_ff, self.activation = d_model, d_ff, activation
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.gate = nn.Linear(d_model, d_ff, bias=bias) if activation == "swiglu" else None
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.d_model, "FeedForward", min_dim=1)
        if self.activation == "gelu":
            h = F.gelu(self.up(x))
        else:
            h = F.silu(self.gate(x)) * self.up(x)
        return self.down(self.dropout(h))


class TransformerBlock(nn.Module):
    """One encoder / decoder-only transformer block: self-attention and a feed-forward network,
    each inside a residual connection with a normalisation (pre-norm by default).

    Args:
        d_model, num_heads: as for ``MultiHeadAttention``.
        d_ff: hidden size of the FFN (default 4·d_model for gelu, the 2/3 rule for swiglu).
        norm: "layer" (LayerNorm) or "rms" (RMSNorm).
        prenorm: True = x + f(Norm(x)) (GPT-2, LLaMA); False = Norm(x + f(x)) (2017, BERT).
        dropout: on attention weights, inside the FFN, and on each sub-layer's output.
        causal: always apply a causal mask (a decoder-only language model's block).
        activation: "gelu" or "swiglu".

    Attributes: ``attn``, ``ffn``, ``norm1`` (around attention), ``norm2`` (around the FFN),
    ``drop``. With norm="layer", activation="gelu" it computes what
    ``torch.nn.TransformerEncoderLayer(d_model, num_heads, d_ff, activation="gelu",
    batch_first=True, norm_first=prenorm)`` computes.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int | None = None, norm: str = "layer",
                 prenorm: bool = True, dropout: float = 0.0, causal: bool = False,
                 activation: str = "gelu"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        _check_dropout(dropout)
        self.d_model, self.prenorm, self.causal = d_model, prenorm, causal
        self.attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.ffn = FeedForward(d_model, d_ff, activation, dropout)
        # Looked up here, not at import, so that a notebook's own LayerNorm/RMSNorm are used.
        Norm = {"layer": LayerNorm, "rms": RMSNorm}[norm]
        self.norm1, self.norm2 = Norm(d_model), Norm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        """x: (batch, T, d_model); mask: bool, broadcastable to (batch, heads, T, T), True = may
        attend; is_causal: add a causal mask (also on when the block was built with causal=True)."""
        _check_input(x, self.d_model, "TransformerBlock", min_dim=3)
        is_causal = is_causal or self.causal
        x = self.residual(x, self.norm1, lambda h: self.attn(h, mask=mask, is_causal=is_causal)[0])
        return self.residual(x, self.norm2, self.ffn)

    def residual(self, x: Tensor, norm: nn.Module, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        """One sub-layer with its residual connection: the sub-layer only learns a *change* to x.

        pre-norm:  x + drop(sublayer(norm(x)))  — the path x → output is the identity
        post-norm: norm(x + drop(sublayer(x)))  — every block's output passes a norm
        """
        if self.prenorm:
            return x + self.drop(sublayer(norm(x)))
        return norm(x + self.drop(sublayer(x)))


def _check_input(x: object, d_model: int, layer: str, min_dim: int) -> None:
    if not isinstance(x, Tensor) or x.dim() < min_dim or x.shape[-1] != d_model \
            or (min_dim == 3 and x.dim() != 3):
        shape = "(batch, T, d_model)" if min_dim == 3 else "(..., d_model)"
        raise ValueError(f"{layer} input x must have shape {shape} with d_model={d_model}, got {_describe(x)}")
