"""Making training affordable (chapter 11): count the FLOPs and the bytes before you spend them.

The notes split training optimisation into **algorithm** (do the same work with fewer FLOPs or
bytes), **data** (spend the FLOPs on better tokens) and **compute** (the hardware budget). This
module holds the accounting and the tricks, each one small enough to check against a
measurement of our own GPT (``llm_course.transformer.DecoderOnly``):

    count_parameters(config)             the parameter count, from the config alone
    flops_per_token(config, T)           forward FLOPs per token: 2·(matmul weights) + 4·L·T·d
    memory_estimate(config, batch, T)    bytes of parameters, gradients, optimizer state, activations
    saved_activation_bytes(model, x, y)  the activations autograd really keeps (the measurement)
    accumulate_gradients(model, x, y, k) one big batch's gradient, computed in k micro-batches
    checkpointed(model)                  recompute each block's activations in backward instead of storing them
    dedup(docs)                          exact and near-duplicate (MinHash) documents

FLOP convention: one multiply-add (MAC) = 2 FLOPs; only matrix multiplies are counted (norms,
softmax, GELU are O(d) per token, not O(d²)); attention is counted over all T×T query–key
pairs, as PaLM's 6N + 12·L·H·Q·T training formula (Chowdhery et al. 2022, appendix B) and
``torch.utils.flop_counter`` do — a causal kernel could skip half of them, which is Kaplan et
al. (2020)'s 2·L·T·d term.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from llm_course.attention import _check_positive_int, _describe
from llm_course.transformer import ModelConfig, swiglu_hidden_size

DTYPE_BYTES = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2}
OPTIMIZERS = ("sgd", "momentum", "adamw")
IGNORE_INDEX = -100  # target value that does not count in the loss (padding), as in F.cross_entropy
A100_BF16_FLOPS = 312e12  # NVIDIA A100's dense bf16 tensor-core peak, FLOP/s (datasheet)


def _check_config(config: object) -> None:
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {_describe(config)}")


def ffn_size(config: ModelConfig) -> int:
    """The FFN's hidden size d_ff: the config's, else the default of ``FeedForward``."""
    _check_config(config)
    if config.d_ff is not None:
        return config.d_ff
    return 4 * config.d_model if config.activation == "gelu" else swiglu_hidden_size(config.d_model)


# --------------------------------------------------------------------------- counting
def count_parameters(config: ModelConfig) -> int:
    """The number of parameters of ``DecoderOnly(config)``, from the config alone.

    Per block: attention 4·(d² + d) (q, k, v, out projections with biases); the FFN n·d·d_ff
    weights (n = 2 for gelu, 3 for swiglu) + its biases; two norms (weight and bias for
    LayerNorm, weight only for RMSNorm). Outside the blocks: the token and position tables,
    the final norm (pre-norm only) and the output layer (none if it is tied to the token table).
    """
    _check_config(config)
    c, d, f = config, config.d_model, ffn_size(config)
    n_mats = 2 if c.activation == "gelu" else 3
    norm = 2 * d if c.norm == "layer" else d
    attention = 4 * (d * d + d)
    ffn = n_mats * d * f + (n_mats - 1) * f + d
    block = attention + ffn + 2 * norm
    embeddings = c.vocab_size * d + c.max_len * d
    final_norm = norm if c.prenorm else 0
    head = 0 if c.tie_weights else c.vocab_size * d
    return embeddings + c.num_layers * block + final_norm + head


def flops_per_token(config: ModelConfig, T: int) -> int:
    """Forward-pass FLOPs per token of ``DecoderOnly(config)`` on sequences of length T.

    2 FLOPs (a multiply and an add) per weight of every matrix multiply — the four attention
    projections, the FFN's matrices and the output layer (d·vocab); the embedding lookup is a
    copy, not a multiply — plus attention itself: q·kᵀ and weights·v each cost T·d MACs per
    token per layer, so 4·T·d FLOPs per layer. Training (forward + backward) costs 3× this:
    the backward pass multiplies by each weight twice (for the input's and the weight's gradient).
    """
    _check_config(config)
    _check_positive_int("T", T)
    c, d = config, config.d_model
    n_mats = 2 if c.activation == "gelu" else 3
    matmul_weights = c.num_layers * (4 * d * d + n_mats * d * ffn_size(c)) + d * c.vocab_size
    return 2 * matmul_weights + 4 * c.num_layers * T * d


def training_flops(config: ModelConfig, T: int, tokens: float) -> float:
    """FLOPs to train on ``tokens`` tokens: 3 × forward (≈ 6·N·tokens for large models)."""
    if not tokens > 0:
        raise ValueError(f"tokens must be > 0, got {_describe(tokens)}")
    return 3.0 * flops_per_token(config, T) * tokens


def gpu_days(flops: float, peak_flops: float = A100_BF16_FLOPS, utilisation: float = 0.4) -> float:
    """Days on one accelerator of ``peak_flops`` FLOP/s that reaches ``utilisation`` of its peak."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1], got {_describe(utilisation)}")
    return flops / (peak_flops * utilisation) / 86_400


def memory_estimate(config: ModelConfig, batch: int, T: int, optimizer: str = "adamw",
                    dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """Bytes one training step of ``DecoderOnly(config)`` holds, by kind.

    Returns {"params", "grads", "optimizer", "activations", "total"}:

    * params: N values in ``dtype``; mixed precision (bf16/fp16) also keeps an fp32 **master
      copy** (4 bytes each) that the optimizer updates — tiny updates vanish in 16 bits;
    * grads: N values in ``dtype``;
    * optimizer: fp32 state per parameter — none for SGD, one momentum buffer, two AdamW
      moments (m and v);
    * activations: what autograd saves for backward (dropout 0). Per layer and per token, in
      ``dtype``: each norm keeps 3 d-vectors for LayerNorm (input, x − mean, normalised; 2 for
      RMSNorm) + its output, which the next matmul saves; attention keeps q, k, v and its
      output (4 d-vectors) and one log-sum-exp per head; the FFN keeps 2 d_ff-vectors for
      gelu (before and after GELU; 4 for swiglu); each norm also keeps one scalar (its std).
      Outside the layers: the final norm (pre-norm; post-norm keeps the first block's input,
      one d-vector, instead), the log-probabilities (vocab per token), and the int64 ids and
      targets, plus the loss's fp32 scalar.
    """
    _check_config(config)
    _check_positive_int("batch", batch)
    _check_positive_int("T", T)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {list(DTYPE_BYTES)}, got {_describe(dtype)}")
    if config.dropout:
        raise ValueError(f"memory_estimate counts activations for dropout=0 (dropout masks are not "
                         f"counted), got config.dropout={config.dropout}")
    c, d, tokens = config, config.d_model, batch * T
    n, size = count_parameters(config), DTYPE_BYTES[dtype]
    mixed = dtype != torch.float32
    params = n * size + (4 * n if mixed else 0)
    grads = n * size
    states = {"sgd": 0, "momentum": 1, "adamw": 2}[optimizer]
    optimizer_bytes = states * 4 * n
    norm_saved = 3 if c.norm == "layer" else 2
    ffn_saved = 2 if c.activation == "gelu" else 4
    per_layer = (2 * (norm_saved + 1) + 4) * d + ffn_saved * ffn_size(c) + 2 + c.num_heads
    outside = (norm_saved + 1) * d + 1 if c.prenorm else d
    values = tokens * (c.num_layers * per_layer + outside + c.vocab_size)
    activations = values * size + 2 * 8 * tokens + 4
    return {"params": params, "grads": grads, "optimizer": optimizer_bytes, "activations": activations,
            "total": params + grads + optimizer_bytes + activations}


# --------------------------------------------------------------------------- measuring
def lm_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Mean next-token cross-entropy of ``model(x)`` against targets y, both (batch, T);
    targets equal to ``IGNORE_INDEX`` (padding) do not count."""
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)


def saved_activation_bytes(model: nn.Module, x: Tensor, y: Tensor) -> int:
    """Bytes of the tensors autograd saves for backward in one forward pass of ``lm_loss``.

    An independent measurement of activation memory: a ``saved_tensors_hooks`` pack hook sees
    every tensor an operation saves; we sum the bytes of each distinct storage once (views
    share one) and leave out the parameters (they exist anyway). Runs on any device; the
    graph is freed on return.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lm_loss(model, x, y)
    return sum(seen.values())


# --------------------------------------------------------------------------- algorithm tricks
def accumulate_gradients(model: nn.Module, x: Tensor, y: Tensor, k: int) -> float:
    """Fill the parameters' ``.grad`` with the gradient of ``lm_loss(model, x, y)`` on the whole
    batch, computed in k micro-batches of about batch/k sequences; return that loss.

    Memory is that of one micro-batch; the result is the big batch's gradient because the
    loss is a mean over tokens: each micro-batch contributes its *sum* of token losses divided
    by the number of counted tokens in the whole batch. (Dividing each micro-batch's mean by
    k is right only when every micro-batch holds as many counted tokens.)

    x, y: (batch, T) token ids and targets (``IGNORE_INDEX`` = not counted); 1 ≤ k ≤ batch.
    """
    if not isinstance(x, Tensor) or not isinstance(y, Tensor) or x.dim() != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must be (batch, T) tensors of the same shape, got {_describe(x)} and {_describe(y)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be an int in [1, batch={x.shape[0]}], got {_describe(k)}")
    model.zero_grad(set_to_none=True)
    n_tokens = int((y != IGNORE_INDEX).sum())
    total = 0.0
    for xs, ys in zip(x.chunk(k), y.chunk(k)):
        logits = model(xs).flatten(0, 1)
        loss = F.cross_entropy(logits, ys.flatten(), ignore_index=IGNORE_INDEX, reduction="sum") / n_tokens
        loss.backward()  # adds into .grad: the micro-batches' gradients sum up
        total += loss.item()
    return total


class Checkpointed(nn.Module):
    """Runs ``module`` without keeping its internal activations: only its inputs are saved, and
    backward runs the module's forward again to get them back (activation checkpointing,
    Chen et al. 2016). Costs one extra forward of the module per step."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled():
            return self.module(*args, **kwargs)
        return checkpoint(self.module, *args, use_reentrant=False, **kwargs)


def checkpointed(model: nn.Module) -> nn.Module:
    """Wrap every block of ``model.blocks`` in ``Checkpointed``, in place; returns the model."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"model must have a .blocks ModuleList (a DecoderOnly), got {_describe(model)}")
    for i, block in enumerate(blocks):
        if not isinstance(block, Checkpointed):
            blocks[i] = Checkpointed(block)
    return model


# --------------------------------------------------------------------------- data: deduplication
_PRIME = 4_294_967_291  # the largest prime below 2³²


def _normalise(text: str) -> str:
    """Lower case, runs of whitespace collapsed: line breaks and capitals do not make a document new."""
    return re.sub(r"\s+", " ", text.lower()).strip()


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of character n-grams of ``text`` after ``_normalise``."""
    _check_positive_int("n", n)
    text = _normalise(text)
    return {text[i:i + n] for i in range(max(1, len(text) - n + 1))}


def minhash(items: set[str], num_perm: int = 128, seed: int = 0) -> np.ndarray:
    """MinHash signature (num_perm,) of a set: for each of num_perm random hash functions
    h(x) = (a·x + b) mod p, the smallest value over the set. Two sets agree in one position
    with probability equal to their Jaccard similarity |A∩B| / |A∪B| (Broder 1997)."""
    _check_positive_int("num_perm", num_perm)
    if not items:
        raise ValueError("items must be a non-empty set (shingles of a non-empty text)")
    rng = np.random.default_rng(seed)
    a = rng.integers(1, _PRIME, num_perm, dtype=np.uint64)
    b = rng.integers(0, _PRIME, num_perm, dtype=np.uint64)
    # a stable hash of each shingle below p (Python's hash() changes between runs)
    x = np.array([int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") % _PRIME
                  for s in items], dtype=np.uint64)
    # a, b, x < p < 2³², so a·x + b < 2⁶⁴ never overflows, and a·x wraps around p many times:
    # the values are well mixed, so the smallest one is a random element of the set
    return ((x[:, None] * a + b) % _PRIME).min(axis=0)


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass
class DedupResult:
    """keep: indices of the documents to keep (first of each group); exact: (i, j) pairs with
    j an exact copy of an earlier i; near: (i, j, estimated Jaccard) near-duplicate pairs."""

    keep: list[int]
    exact: list[tuple[int, int]]
    near: list[tuple[int, int, float]]


def dedup(docs: list[str], threshold: float = 0.8, n: int = 5, num_perm: int = 128, bands: int = 32) -> DedupResult:
    """Find exact duplicates (same text after normalising whitespace and case) and near
    duplicates (estimated Jaccard of character n-gram shingles ≥ threshold).

    Near duplicates use locality-sensitive hashing: the signature is cut into ``bands`` bands;
    two documents become a candidate pair if any band is identical, then the pair is kept if
    their signatures agree in ≥ threshold of positions. With r = num_perm/bands rows per band,
    a pair of similarity s is a candidate with probability 1 − (1 − s^r)^bands.
    """
    if not isinstance(docs, (list, tuple)) or not all(isinstance(t, str) for t in docs):
        raise TypeError(f"docs must be a list of strings, got {_describe(docs)}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {_describe(threshold)}")
    _check_positive_int("bands", bands)
    if num_perm % bands:
        raise ValueError(f"num_perm={num_perm} must be divisible by bands={bands}")
    first: dict[str, int] = {}
    exact, unique = [], []
    for j, text in enumerate(docs):
        key = _normalise(text)
        if key in first:
            exact.append((first[key], j))
        else:
            first[key] = j
            unique.append(j)
    sigs = {j: minhash(shingles(docs[j], n), num_perm) for j in unique}
    rows = num_perm // bands
    buckets: dict[tuple, list[int]] = {}
    for j in unique:
        for band in range(bands):
            buckets.setdefault((band, sigs[j][band * rows:(band + 1) * rows].tobytes()), []).append(j)
    candidates = {(i, j) for group in buckets.values() for pos, i in enumerate(group) for j in group[pos + 1:]}
    near, dropped = [], set()
    for i, j in sorted(candidates):
        similarity = float((sigs[i] == sigs[j]).mean())
        if similarity >= threshold:
            near.append((i, j, similarity))
            dropped.add(j)
    keep = [j for j in unique if j not in dropped]
    return DedupResult(keep, exact, near)
