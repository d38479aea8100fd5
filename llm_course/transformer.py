"""Transformer blocks (chapter 07) and the three model families built from them (chapter 08).

A block is two **sub-layers**, each wrapped in a residual connection and a normalisation:

    pre-norm  (GPT-2, LLaMA, most LLMs):   x = x + Attn(Norm(x));   x = x + FFN(Norm(x))
    post-norm (the 2017 Transformer, BERT): x = Norm(x + Attn(x));  x = Norm(x + FFN(x))

``TransformerBlock.residual`` is that wrapper, written once; ``DecoderBlock`` (the decoder of
an encoder–decoder) is the same wrapper around a third sub-layer, cross-attention.

The models differ only in which blocks they stack and which masks they use:

    EncoderOnly     (BERT)  bidirectional self-attention        → a vector per token (masked LM)
    EncoderDecoder  (T5)    encoder + causal decoder that reads the encoder (cross-attention)
    DecoderOnly     (GPT)   causal self-attention               → next-token logits

Shapes: x (batch, T, d_model) → (batch, T, d_model); token ids (batch, T) → logits (batch, T, vocab).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_course.attention import MultiHeadAttention, _check_positive_int, _describe
from llm_course.norms import LayerNorm, RMSNorm
from llm_course.positional import LearnedPositionalEmbedding

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


# --------------------------------------------------------------------------- chapter 08
def _make_norm(norm: str, d_model: int) -> nn.Module:
    # Looked up at call time, not import time, so that a notebook's own LayerNorm/RMSNorm are used.
    return {"layer": LayerNorm, "rms": RMSNorm}[norm](d_model)


class DecoderBlock(TransformerBlock):
    """The decoder block of an encoder–decoder (the 2017 Transformer, T5): causal self-attention,
    then **cross-attention** to the encoder's output ``memory``, then the FFN — three sub-layers,
    each in the same residual wrapper.

    Cross-attention is where the two halves meet: queries come from the decoder, keys and values
    from the encoder, so every target position can look at every source position.

    Attributes: those of ``TransformerBlock`` (``attn`` is the causal self-attention) plus
    ``cross_attn`` and its norm ``norm_cross``.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int | None = None, norm: str = "layer",
                 prenorm: bool = True, dropout: float = 0.0, activation: str = "gelu"):
        super().__init__(d_model, num_heads, d_ff, norm, prenorm, dropout, causal=True, activation=activation)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.norm_cross = type(self.norm1)(d_model)  # the same kind of norm as the other two

    def forward(self, x: Tensor, memory: Tensor, memory_mask: Tensor | None = None) -> Tensor:
        """x: (batch, T_tgt, d_model); memory: (batch, T_src, d_model), the encoder's output;
        memory_mask: bool, broadcastable to (batch, heads, T_tgt, T_src), True = may attend
        (hide the source's padding)."""
        _check_input(x, self.d_model, "DecoderBlock", min_dim=3)
        x = self.residual(x, self.norm1, lambda h: self.attn(h, is_causal=True)[0])
        x = self.residual(x, self.norm_cross, lambda h: self.cross_attn(h, context=memory, mask=memory_mask)[0])
        return self.residual(x, self.norm2, self.ffn)


@dataclass(frozen=True)
class ModelConfig:
    """The sizes and choices that define a model; every model class takes one.

    num_layers counts the blocks of *each* stack: an ``EncoderDecoder`` has num_layers encoder
    blocks and num_layers decoder blocks. ``tie_weights`` shares the token-embedding matrix with
    the output layer (GPT-2, BERT, T5 do). Every Linear and LayerNorm has a bias, except the
    output layer; ``parameter_count`` says how many parameters a configuration gives.
    """

    vocab_size: int
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    max_len: int = 256
    d_ff: int | None = None
    norm: str = "layer"
    activation: str = "gelu"
    prenorm: bool = True
    dropout: float = 0.0
    tie_weights: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "num_heads", "num_layers", "max_len"):
            _check_positive_int(name, getattr(self, name))
        if self.d_ff is not None:
            _check_positive_int("d_ff", self.d_ff)
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by num_heads={self.num_heads}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        _check_dropout(self.dropout)


class _Model(nn.Module):
    """What the three models share: token + learned position embeddings in, a final norm and
    the **output layer** (a Linear to vocabulary logits; softmax turns them into probabilities)
    out, and GPT-2's initialisation."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {_describe(config)}")
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = LearnedPositionalEmbedding(c.max_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)

    def _finish_init(self) -> None:
        """Call at the end of a subclass's __init__, once every layer exists."""
        c = self.config
        # With post-norm the last block already ends in a norm; a pre-norm stack needs one more.
        self.final_norm = _make_norm(c.norm, c.d_model) if c.prenorm else nn.Identity()
        self.apply(_init_gpt2)
        for name, p in self.named_parameters():
            # Residual projections add onto the stream once per sub-layer: scale them down so the
            # stream's variance does not grow with depth (GPT-2).
            if name.endswith(("out_proj.weight", "down.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.num_layers))
        if c.tie_weights:
            self.lm_head.weight = self.tok_emb.weight

    def embed(self, ids: Tensor) -> Tensor:
        """ids: (batch, T) integer token ids → (batch, T, d_model)."""
        c = self.config
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"ids must be an integer tensor of shape (batch, T), got {_describe(ids)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= c.vocab_size):
            raise ValueError(f"ids must lie in [0, vocab_size={c.vocab_size}), got values "
                             f"{int(ids.min())}…{int(ids.max())}")
        if ids.shape[1] > c.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds max_len={c.max_len}")
        return self.drop(self.pos_emb(self.tok_emb(ids)))

    def logits(self, h: Tensor) -> Tensor:
        """The output layer: (batch, T, d_model) hidden states → (batch, T, vocab_size) logits."""
        return self.lm_head(self.final_norm(h))

    def _block(self) -> TransformerBlock:
        c = self.config
        return TransformerBlock(c.d_model, c.num_heads, c.d_ff, c.norm, c.prenorm, c.dropout, activation=c.activation)


def _init_gpt2(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class EncoderOnly(_Model):
    """BERT-style: every token attends to every (non-padding) token, left and right, so each
    output vector describes its token *in context*. Pretrained as a masked language model:
    logits at the masked positions predict the hidden tokens.

    forward(ids (batch, T), mask=None) → logits (batch, T, vocab); ``encode`` gives the
    (batch, T, d_model) vectors a classifier would use. mask: bool, broadcastable to
    (batch, heads, T, T), True = may attend (e.g. ``padding_mask``).
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.blocks = nn.ModuleList(self._block() for _ in range(config.num_layers))
        self._finish_init()

    def encode(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.embed(ids)
        for block in self.blocks:
            h = block(h, mask=mask)
        return self.final_norm(h)

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.lm_head(self.encode(ids, mask))


class DecoderOnly(_Model):
    """GPT-style: causal self-attention, so position t sees tokens 0…t only and its logits
    predict token t+1. One forward pass trains on every position of a sequence at once.

    forward(ids (batch, T)) → logits (batch, T, vocab_size).
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.blocks = nn.ModuleList(self._block() for _ in range(config.num_layers))
        self._finish_init()

    def forward(self, ids: Tensor) -> Tensor:
        h = self.embed(ids)
        for block in self.blocks:
            h = block(h, is_causal=True)
        return self.logits(h)


class EncoderDecoder(_Model):
    """T5 / 2017-Transformer style: an encoder reads the whole source bidirectionally; a causal
    decoder writes the target, reading the encoder's output through cross-attention in every
    block. Encoder, decoder and output layer share one token-embedding table (as T5 does).

    forward(src (batch, S), tgt (batch, T), src_mask=None) → logits (batch, T, vocab_size);
    src_mask: bool (batch, S), True = a real source token (False = padding).
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = config
        self.encoder = nn.ModuleList(self._block() for _ in range(c.num_layers))
        self.decoder = nn.ModuleList(
            DecoderBlock(c.d_model, c.num_heads, c.d_ff, c.norm, c.prenorm, c.dropout, c.activation)
            for _ in range(c.num_layers)
        )
        self.encoder_norm = _make_norm(c.norm, c.d_model) if c.prenorm else nn.Identity()
        self._finish_init()

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """src (batch, S) → memory (batch, S, d_model)."""
        keys = None if src_mask is None else _key_mask(src_mask, src)
        h = self.embed(src)
        for block in self.encoder:
            h = block(h, mask=keys)
        return self.encoder_norm(h)

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """tgt (batch, T), memory (batch, S, d_model) → logits (batch, T, vocab_size)."""
        keys = None if src_mask is None else _key_mask(src_mask, memory)
        h = self.embed(tgt)
        for block in self.decoder:
            h = block(h, memory, memory_mask=keys)
        return self.logits(h)

    def forward(self, src: Tensor, tgt: Tensor, src_mask: Tensor | None = None) -> Tensor:
        return self.decode(tgt, self.encode(src, src_mask), src_mask)


def _key_mask(src_mask: Tensor, src: Tensor) -> Tensor:
    """(batch, S) True = real token → (batch, 1, 1, S): every head and query may attend to real keys."""
    if not isinstance(src_mask, Tensor) or src_mask.dtype != torch.bool or tuple(src_mask.shape) != tuple(src.shape[:2]):
        raise ValueError(f"src_mask must be a bool tensor of shape (batch, S)={tuple(src.shape[:2])}, "
                         f"got {_describe(src_mask)}")
    return src_mask[:, None, None, :]


# --------------------------------------------------------------------------- parameter counting
ARCHITECTURES = ("encoder-only", "decoder-only", "encoder-decoder")
MODELS = {"encoder-only": EncoderOnly, "decoder-only": DecoderOnly, "encoder-decoder": EncoderDecoder}
POSITIONS = ("learned", "rotary")


def parameter_breakdown(config: ModelConfig, architecture: str = "decoder-only", *,
                        positions: str = "learned", bias: bool = True) -> dict[str, int]:
    """How many parameters a model has, by kind, from its configuration alone (no model is built).

    For ``MODELS[architecture](config)`` the total equals ``sum(p.numel() for p in
    model.parameters())``. Two switches describe real models that differ from ours:
    ``positions="rotary"`` (RoPE: no position table, rotations have no parameters) and
    ``bias=False`` (no bias in any Linear or LayerNorm, as in T5 and LLaMA).

    With d = d_model, f = d_ff, V = vocab_size, b = 1 if bias else 0, per block:

        attention      4d² + 4bd         q, k, v and output projections
        feed-forward   2df + b(f + d)    gelu: up, down
                       3df + b(2f + d)   swiglu: gate, up, down
        norms          2 per block, 3 in a decoder block that has cross-attention;
                       (1 + b)·d for a LayerNorm, d for an RMSNorm (no bias)

    and once per model: the token embedding V·d, a learned position table max_len·d, one
    final norm per stack when pre-norm, and an output layer V·d unless it is tied to the
    embedding (a shared matrix is counted once, as ``model.parameters()`` does).

    Returns:
        {"embedding", "positions", "attention", "feed-forward", "norms", "output layer"} → int.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {_describe(config)}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be a bool, got {_describe(bias)}")
    c, b = config, int(bias)
    d, V = c.d_model, c.vocab_size
    f = c.d_ff or (4 * d if c.activation == "gelu" else swiglu_hidden_size(d))
    ffn = 2 * d * f + b * (f + d) if c.activation == "gelu" else 3 * d * f + b * (2 * f + d)
    norm = (1 + b) * d if c.norm == "layer" else d
    stacks = 2 if architecture == "encoder-decoder" else 1
    blocks = stacks * c.num_layers
    cross = c.num_layers if architecture == "encoder-decoder" else 0  # decoder blocks that read an encoder
    return {
        "embedding": V * d,
        "positions": c.max_len * d if positions == "learned" else 0,
        "attention": (blocks + cross) * (4 * d * d + 4 * b * d),
        "feed-forward": blocks * ffn,
        "norms": (2 * blocks + cross + (stacks if c.prenorm else 0)) * norm,
        "output layer": 0 if c.tie_weights else V * d,
    }


def parameter_count(config: ModelConfig, architecture: str = "decoder-only", *,
                    positions: str = "learned", bias: bool = True) -> int:
    """The total of ``parameter_breakdown`` (same arguments): one closed-form number."""
    return sum(parameter_breakdown(config, architecture, positions=positions, bias=bias).values())


@dataclass(frozen=True)
class PublishedModel:
    """A released model described in the terms of ``parameter_breakdown``."""

    name: str
    config: ModelConfig
    architecture: str
    positions: str
    bias: bool
    reported: int | None  # the count its authors or its released checkpoint report (None: only rounded)
    source: str

    def count(self) -> int:
        return parameter_count(self.config, self.architecture, positions=self.positions, bias=self.bias)


def _gpt(name: str, d: int, layers: int, heads: int, max_len: int, reported: int | None, source: str):
    # GPT-2 and GPT-3 share one design: pre-norm LayerNorm, GELU FFN of 4·d, learned positions,
    # biases everywhere, output layer tied to the embedding, a 50,257-token byte-level BPE.
    return PublishedModel(name, ModelConfig(50257, d, heads, layers, max_len), "decoder-only", "learned", True,
                          reported, source)


_GPT2 = "openai/gpt-2 model hparams (n_embd, n_layer, n_head, n_ctx); total as reported by transformers' GPT2LMHeadModel"
_GPT3 = "Brown et al. 2020, 'Language Models are Few-Shot Learners', Table 2.1 (d_model, n_layers, n_heads, context 2048)"
PUBLISHED = {m.name: m for m in (
    _gpt("GPT-2 small", 768, 12, 12, 1024, 124_439_808, _GPT2),
    _gpt("GPT-2 medium", 1024, 24, 16, 1024, 354_823_168, _GPT2),
    _gpt("GPT-2 large", 1280, 36, 20, 1024, 774_030_080, _GPT2),
    _gpt("GPT-2 XL", 1600, 48, 25, 1024, 1_557_611_200, _GPT2),
    _gpt("GPT-3 2.7B", 2560, 32, 32, 2048, None, _GPT3),
    _gpt("GPT-3 6.7B", 4096, 32, 32, 2048, None, _GPT3),
    _gpt("GPT-3 175B", 12288, 96, 96, 2048, None, _GPT3),
    # GLM-6B's config.json: hidden_size 4096, num_layers 28, num_attention_heads 32,
    # inner_hidden_size 16384, vocab_size 130528, max_sequence_length 2048. modeling_chatglm.py:
    # rotary positions (no table), biases on query_key_value / dense / the FFN, a LayerNorm before
    # attention and before the FFN (its residual adds the normalised input scaled by √(2·layers),
    # a DeepNorm-style variant; the same parameters as pre-norm), a final_layernorm, and
    # lm_head = Linear(4096, 130528, bias=False). Loaded with transformers, lm_head shares the
    # word-embedding matrix and the model reports 6,173,286,400 parameters: the "62 亿 (6.2B)"
    # of the ChatGLM-6B README.
    PublishedModel("ChatGLM-6B", ModelConfig(130_528, 4096, 32, 28, 2048, d_ff=16384), "decoder-only", "rotary",
                   True, 6_173_286_400, "THUDM/chatglm-6b config.json and modeling_chatglm.py (Hugging Face)"),
)}
CHATGLM_6B = PUBLISHED["ChatGLM-6B"]
GPT3_175B = PUBLISHED["GPT-3 175B"]


def chatglm_6b_parameters() -> int:
    """ChatGLM-6B's parameter count from its published configuration.

    A decoder-only model: d_model 4096, 28 layers, 32 heads, FFN 16384 (GELU), vocabulary 130,528,
    rotary positions, biases on every Linear and LayerNorm, two LayerNorms per block and a final
    one (as a pre-norm stack has), output layer sharing the embedding matrix.
    """
    config = ModelConfig(vocab_size=130_528, d_model=4096, num_heads=32, num_layers=28, max_len=2048, d_ff=16384)
    return parameter_count(config, "decoder-only", positions="rotary", bias=True)


# --------------------------------------------------------------------------- pretraining objectives
IGNORE_INDEX = -100  # F.cross_entropy skips targets equal to this


def mask_tokens(ids: Tensor, mask_id: int, vocab_size: int, p: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT's masked-language-model corruption (Devlin et al. 2019).

    Each position is chosen with probability ``p``; a chosen token becomes ``mask_id`` 80% of the
    time, a random token 10%, and stays itself 10% (so the model cannot learn that only [MASK]
    positions matter). Only chosen positions are predicted.

    Args:
        ids: (..., T) integer token ids.
    Returns:
        inputs: ids with the chosen positions corrupted; labels: the original id at chosen
        positions and ``IGNORE_INDEX`` (-100) elsewhere. Both shaped like ``ids``.
    """
    if not isinstance(ids, Tensor) or ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.dim() < 1:
        raise ValueError(f"ids must be an integer tensor of shape (..., T), got {_describe(ids)}")
    _check_positive_int("vocab_size", vocab_size)
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id must be an int in [0, vocab_size={vocab_size}), got {_describe(mask_id)}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"p must be a float in (0, 1], got {_describe(p)}")
    u = torch.rand(ids.shape, generator=generator)
    action = torch.rand(ids.shape, generator=generator)
    chosen = u < p
    inputs = ids.clone()
    inputs[chosen & (action < 0.8)] = mask_id
    randomise = chosen & (action >= 0.8) & (action < 0.9)
    inputs[randomise] = torch.randint(0, vocab_size, ids.shape, generator=generator)[randomise].to(ids.dtype)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs, labels


def span_corrupt(ids: Tensor, first_sentinel: int, noise_density: float = 0.15, mean_span: float = 3.0,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """T5's span-corruption objective (Raffel et al. 2020) on one sequence.

    About ``noise_density`` of the tokens, in spans of ``mean_span`` tokens on average, are cut
    out. The input keeps the rest, each span replaced by one sentinel token; the target lists
    each sentinel followed by the tokens it replaced, and ends with one more sentinel. Sentinel
    i is ``first_sentinel + i`` (T5 takes its 100 ``<extra_id_i>`` from the end of its vocabulary).

    Args:
        ids: (T,) integer token ids, T ≥ 2.
    Returns:
        inputs (T − noise + spans,), targets (noise + spans + 1,).
    """
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool \
            or len(ids) < 2:
        raise ValueError(f"ids must be a 1-D integer tensor of at least 2 tokens, got {_describe(ids)}")
    if isinstance(noise_density, bool) or not isinstance(noise_density, (int, float)) or not 0 < noise_density < 1:
        raise ValueError(f"noise_density must be a float in (0, 1), got {_describe(noise_density)}")
    if isinstance(mean_span, bool) or not isinstance(mean_span, (int, float)) or mean_span < 1:
        raise ValueError(f"mean_span must be a number ≥ 1, got {_describe(mean_span)}")
    if isinstance(first_sentinel, bool) or not isinstance(first_sentinel, int) or first_sentinel < 0:
        raise ValueError(f"first_sentinel must be a non-negative int, got {_describe(first_sentinel)}")
    n = len(ids)
    noise = min(max(1, round(n * noise_density)), n - 1)
    spans = min(max(1, round(noise / mean_span)), noise, n - noise)
    noise_lengths = _random_composition(noise, spans, generator)
    keep_lengths = _random_composition(n - noise, spans, generator)
    inputs, targets, start = [], [], 0
    for i, (keep, cut) in enumerate(zip(keep_lengths, noise_lengths)):
        # kept text, then one sentinel where the cut span was
        inputs += [*ids[start:start + keep].tolist(), first_sentinel + i]
        targets += [first_sentinel + i, *ids[start + keep:start + keep + cut].tolist()]
        start += keep + cut
    targets.append(first_sentinel + spans)
    return torch.tensor(inputs, dtype=ids.dtype), torch.tensor(targets, dtype=ids.dtype)


def _random_composition(total: int, parts: int, generator: torch.Generator | None) -> list[int]:
    """``total`` split into ``parts`` positive integers, uniformly over all such splits."""
    cuts = (torch.randperm(total - 1, generator=generator)[:parts - 1] + 1).sort().values.tolist()
    bounds = [0, *cuts, total]
    return [hi - lo for lo, hi in zip(bounds, bounds[1:])]
