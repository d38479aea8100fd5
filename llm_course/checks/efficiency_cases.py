"""Cases for lab 11 (making training affordable). Counts are compared with the reference
``llm_course.efficiency`` AND with what a built model really has (``sum(p.numel())``,
``FlopCounterMode``, a one-batch gradient); classic mistakes are recognised by recomputing them."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from llm_course import efficiency as ref
from llm_course.checks.engine import Case, Reason, compare_tensor, piece
from llm_course.transformer import DecoderOnly, ModelConfig


def _compare_count(got: Any, expected: int, what: str, known_mistakes: list[tuple[str, int]] = ()) -> Reason:
    """None if the integer ``got`` equals ``expected``; else a reason that does not give the answer away."""
    if isinstance(got, bool) or not isinstance(got, (int, float)) or isinstance(got, float) and not got.is_integer():
        return f"{what} should be a whole number (int), got {type(got).__name__} {got!r}"[:160]
    if int(got) == expected:
        return None
    for hint, wrong in known_mistakes:
        if int(got) == wrong and wrong != expected:
            return hint
    ratio = got / expected if expected else float("inf")
    return f"{what} is {'too large' if got > expected else 'too small'} (× {ratio:.4g} of the right count)"


def _random_config(gen: torch.Generator, **fixed) -> ModelConfig:
    def pick(*options):
        return options[int(torch.randint(0, len(options), (), generator=gen))]

    heads = pick(2, 4)
    kwargs = dict(vocab_size=pick(37, 50, 65), d_model=heads * pick(4, 8), num_heads=heads,
                  num_layers=pick(1, 2, 3), max_len=pick(16, 24))
    kwargs.update(fixed)
    return ModelConfig(**kwargs)


# --- 11.params -------------------------------------------------------------------------------


def _params_case(name: str, config: ModelConfig) -> Case:
    def run(fn) -> Reason:
        got = fn(config)
        measured = sum(p.numel() for p in DecoderOnly(config).parameters())
        c, d = config, config.d_model
        f = ref.ffn_size(config)
        n_mats = 2 if c.activation == "gelu" else 3
        n_norm = 2 * d if c.norm == "layer" else d
        n_norms = 2 * c.num_layers + (1 if c.prenorm else 0)
        mistakes = [
            ("the output layer was counted although it is tied to the token embedding (tie_weights=True): "
             "shared weights count once", measured + c.vocab_size * d),
            ("the output layer (d_model × vocab, not tied) is missing", measured - c.vocab_size * d),
            ("the position table (max_len × d_model) is missing", measured - c.max_len * d),
            ("the biases of the linear layers are missing (every nn.Linear has one here)",
             measured - c.num_layers * (4 * d + (n_mats - 1) * f + d)),
            ("the norms' parameters are missing (LayerNorm has a weight and a bias, RMSNorm a weight)",
             measured - n_norms * n_norm),
            ("the final norm (pre-norm only) is missing", measured - n_norm),
            ("counted only one block: multiply the block's parameters by num_layers",
             measured - (c.num_layers - 1) * (ref.count_parameters(dataclasses.replace(c, num_layers=2))
                                              - ref.count_parameters(dataclasses.replace(c, num_layers=1)))),
            ("the FFN has the wrong number of matrices: gelu has 2 (up, down), swiglu 3 (gate, up, down)",
             measured + (1 if n_mats == 2 else -1) * c.num_layers * (d * f + f)),
        ]
        return _compare_count(got, measured, "the parameter count", mistakes)

    return Case(name, run)


@piece("11.params", "parameter count from the config")
def params_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _params_case("default GPT block (LayerNorm, gelu, tied output layer)", _random_config(gen)),
        _params_case("output layer not tied", _random_config(gen, tie_weights=False)),
        _params_case("explicit d_ff = 40", _random_config(gen, d_ff=40)),
    ]
    if extended:
        cases += [
            _params_case("RMSNorm + SwiGLU (LLaMA-style)", _random_config(gen, norm="rms", activation="swiglu")),
            _params_case("post-norm (no final norm)", _random_config(gen, prenorm=False, tie_weights=False)),
            _params_case("one layer", _random_config(gen, num_layers=1, d_ff=24)),
            _params_case("SwiGLU, untied, 4 layers", _random_config(gen, activation="swiglu", num_layers=4,
                                                                     tie_weights=False)),
        ]
    return cases


# --- 11.flops --------------------------------------------------------------------------------


def _measured_forward_flops(config: ModelConfig, T: int) -> int:
    """FlopCounterMode on one sequence, with attention as explicit matmuls (the CPU's fused
    kernel is not counted by FlopCounterMode)."""
    model = DecoderOnly(config)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, T, dtype=torch.long))
    return counter.get_total_flops() // T


def _flops_case(name: str, config: ModelConfig, T: int) -> Case:
    def run(fn) -> Reason:
        got = fn(config, T)
        expected = _measured_forward_flops(config, T)
        c, d = config, config.d_model
        attention = 4 * c.num_layers * T * d
        matmuls = expected - attention
        mistakes = [
            ("counted 1 FLOP per multiply-add; a MAC is 2 FLOPs (a multiply and an add)", expected // 2),
            ("the attention term is missing: q·kᵀ and weights·v cost 4·T·d FLOPs per token per layer",
             matmuls),
            ("the attention term is half of it: count both q·kᵀ and weights·v over all T keys (4·T·d per layer)",
             matmuls + attention // 2),
            ("the output layer (d_model × vocab matmul) is missing", expected - 2 * d * c.vocab_size),
            ("the training cost (3× forward) was returned; this asks for the forward pass", 3 * expected),
            ("the embedding lookup was counted as a matmul; it only copies rows", expected + 2 * d * c.vocab_size),
        ]
        return _compare_count(got, expected, "forward FLOPs per token", mistakes)

    return Case(name, run)


@piece("11.flops", "forward FLOPs per token")
def flops_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _flops_case("default GPT block, T = 8", _random_config(gen), 8),
        _flops_case("T = 16 (attention grows with T)", _random_config(gen, d_ff=40), 16),
        _flops_case("untied output layer, T = 1", _random_config(gen, tie_weights=False), 1),
    ]
    if extended:
        cases += [
            _flops_case("SwiGLU (three FFN matrices)", _random_config(gen, activation="swiglu"), 12),
            _flops_case("RMSNorm, 4 layers, T = max_len", _random_config(gen, norm="rms", num_layers=4), 16),
            _flops_case("one layer, T = 3", _random_config(gen, num_layers=1), 3),
        ]
    return cases


# --- 11.memory -------------------------------------------------------------------------------


@contextmanager
def _reference_helpers(fn: Callable, **helpers):
    """Run the learner's ``fn`` with the reference ``count_parameters`` in its globals, so a
    mistake in the earlier piece is not charged twice."""
    namespace = getattr(fn, "__globals__", {})
    saved = {k: namespace[k] for k in helpers if k in namespace}
    namespace.update(helpers)
    try:
        yield
    finally:
        for k in helpers:
            namespace.pop(k, None)
        namespace.update(saved)


def _memory_mistakes(config: ModelConfig, batch: int, T: int, optimizer: str, dtype: torch.dtype) -> dict:
    """key → [(hint, wrong value)] for each classic mistake."""
    n = ref.count_parameters(config)
    size = ref.DTYPE_BYTES[dtype]
    mixed = dtype != torch.float32
    states = {"sgd": 0, "momentum": 1, "adamw": 2}[optimizer]
    one_layer = ref.memory_estimate(dataclasses.replace(config, num_layers=1), batch, T, dtype=dtype)["activations"]
    optimizer_mistakes = []
    if optimizer == "adamw":
        optimizer_mistakes.append(("AdamW keeps TWO fp32 moments per parameter (m and v); counted once", 4 * n))
    if mixed and states:
        optimizer_mistakes.append(("optimizer state was counted in the 16-bit dtype; the moments stay fp32",
                                   states * size * n))
    return {
        "params": [("mixed precision keeps an fp32 master copy of the weights (4 bytes each) besides the "
                    "16-bit working copy", n * size)] if mixed else [],
        "grads": [("gradients are stored in the working dtype (2 bytes in bf16/fp16)", 4 * n)] if mixed else [],
        "optimizer": optimizer_mistakes,
        "activations": [("activations counted once per model, not once per layer: multiply the per-layer "
                         "activations by num_layers", one_layer)] if config.num_layers > 1 else [],
    }


def _memory_case(name: str, config: ModelConfig, batch: int, T: int, optimizer: str = "adamw",
                 dtype: torch.dtype = torch.float32, measure: bool = False) -> Case:
    def run(fn) -> Reason:
        kwargs = dict(optimizer=optimizer, dtype=dtype)
        with _reference_helpers(fn, count_parameters=ref.count_parameters):
            got = fn(config, batch, T, **kwargs)
        expected = ref.memory_estimate(config, batch, T, **kwargs)
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"should return a dict with keys {sorted(expected)}, got {type(got).__name__} " \
                   f"{sorted(got) if isinstance(got, dict) else ''}"
        if measure:  # the activations must match what autograd really saves, not only the reference
            torch.manual_seed(0)
            x = torch.randint(0, config.vocab_size, (batch, T))
            expected["activations"] = ref.saved_activation_bytes(DecoderOnly(config), x, x.roll(1, 1))
        mistakes = _memory_mistakes(config, batch, T, optimizer, dtype)
        for key in ("params", "grads", "optimizer", "activations"):
            reason = _compare_count(got[key], expected[key], f"{key!r} bytes", mistakes[key])
            if reason:
                return reason
        if got["total"] != sum(got[k] for k in ("params", "grads", "optimizer", "activations")):
            return "'total' should be the sum of params, grads, optimizer and activations"
        return None

    return Case(name, run)


@piece("11.memory", "training-memory estimate")
def memory_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _memory_case("fp32, AdamW, activations vs a measured forward pass", _random_config(gen, num_layers=2),
                     batch=2, T=8, measure=True),
        _memory_case("bf16 mixed precision, AdamW", _random_config(gen, num_layers=3), batch=3, T=5,
                     dtype=torch.bfloat16),
        _memory_case("fp32, plain SGD (no optimizer state)", _random_config(gen), batch=1, T=4, optimizer="sgd"),
    ]
    if extended:
        cases += [
            _memory_case("fp16, SGD with momentum", _random_config(gen, num_layers=2), batch=2, T=6,
                         optimizer="momentum", dtype=torch.float16),
            _memory_case("explicit d_ff, 4 layers, measured", _random_config(gen, num_layers=4, d_ff=40),
                         batch=2, T=7, measure=True),
            _memory_case("untied output layer, bf16", _random_config(gen, tie_weights=False, num_layers=2),
                         batch=4, T=3, dtype=torch.bfloat16),
            _memory_case("one token, one layer", _random_config(gen, num_layers=1), batch=1, T=1),
        ]
    return cases


# --- 11.accumulate ---------------------------------------------------------------------------


def _tiny_model(seed: int) -> DecoderOnly:
    torch.manual_seed(seed)
    return DecoderOnly(ModelConfig(vocab_size=23, d_model=16, num_heads=2, num_layers=2, max_len=16))


def _flat_grads(model) -> torch.Tensor | None:
    grads = [p.grad for p in model.parameters()]
    if any(g is None for g in grads):
        return None
    return torch.cat([g.flatten() for g in grads]).detach().clone()


def _variant_grads(seed: int, x, y, k: int, mode: str, stale: float | None) -> torch.Tensor:
    """The gradient a classic mistake produces (recomputed, not stored)."""
    model = _tiny_model(seed)
    if stale is not None:
        for p in model.parameters():
            p.grad = torch.full_like(p, stale)
    n_tokens = int((y != ref.IGNORE_INDEX).sum())
    for xs, ys in zip(x.chunk(k), y.chunk(k)):
        if mode == "last_only":
            model.zero_grad(set_to_none=True)
        logits = model(xs).flatten(0, 1)
        if mode in ("sum_of_means", "mean_over_k"):
            loss = F.cross_entropy(logits, ys.flatten(), ignore_index=ref.IGNORE_INDEX)
            loss = loss / k if mode == "mean_over_k" else loss
        else:
            loss = F.cross_entropy(logits, ys.flatten(), ignore_index=ref.IGNORE_INDEX, reduction="sum") / n_tokens
        loss.backward()
    return _flat_grads(model)


ACCUMULATE_HINTS = {
    "sum_of_means": "the micro-batch losses were summed without scaling (the sum of k means): the gradient is "
                    "about k times the big batch's — scale each micro-batch's loss by its share of the batch",
    "mean_over_k": "each micro-batch's MEAN loss was divided by k: that equals the big batch only when every "
                   "micro-batch holds the same number of counted tokens — divide each micro-batch's token-loss "
                   "SUM by the number of counted tokens in the whole batch",
    "last_only": "only the last micro-batch's gradient survived: gradients were zeroed inside the loop — zero "
                 "them once, before it, and let backward() add up",
    "stale": "gradients from before the call were kept: zero the gradients once before accumulating",
}


def _accumulate_case(name: str, gen: torch.Generator, batch: int, T: int, k: int, *, padded: bool = False,
                     stale: bool = False) -> Case:
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
    x = torch.randint(0, 23, (batch, T), generator=gen)
    y = torch.randint(0, 23, (batch, T), generator=gen)
    if padded:  # sequences of different lengths: micro-batches hold different numbers of counted tokens
        for i in range(batch):
            y[i, max(1, T - 2 * i):] = ref.IGNORE_INDEX
    fill = 0.5 if stale else None

    def run(fn) -> Reason:
        model = _tiny_model(seed)
        expected_loss = ref.lm_loss(model, x, y)
        expected_loss.backward()  # the big batch, in one go: the independent reference
        expected = _flat_grads(model)
        model.zero_grad(set_to_none=True)
        if stale:
            for p in model.parameters():
                p.grad = torch.full_like(p, 0.5)
        got_loss = fn(model, x.clone(), y.clone(), k)
        got = _flat_grads(model)
        if got is None:
            return "no gradient reached the parameters: call backward() on each micro-batch's loss"
        mistakes = [(ACCUMULATE_HINTS["stale"], expected + 0.5)] if stale else []
        mistakes += [(ACCUMULATE_HINTS[m], _variant_grads(seed, x, y, k, m, fill))
                     for m in ("sum_of_means", "mean_over_k", "last_only")]
        reason = compare_tensor(got, expected, "the accumulated gradient", atol=1e-6, rtol=1e-4,
                                known_mistakes=mistakes)
        if reason:
            return reason
        if not isinstance(got_loss, (int, float)) or abs(float(got_loss) - expected_loss.item()) > 1e-4:
            return "the returned loss should be the big batch's mean loss (a float)"
        return None

    return Case(name, run)


@piece("11.accumulate", "gradient accumulation")
def accumulate_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _accumulate_case("batch 8 in k = 4 equal micro-batches", gen, 8, 6, 4),
        _accumulate_case("k = 1 (no accumulation)", gen, 4, 5, 1),
        _accumulate_case("batch 7 in k = 3 unequal micro-batches (3, 3, 1)", gen, 7, 5, 3),
        _accumulate_case("padded targets: micro-batches hold different token counts", gen, 6, 8, 2, padded=True),
    ]
    if extended:
        cases += [
            _accumulate_case("k = batch (one sequence per micro-batch)", gen, 5, 4, 5),
            _accumulate_case("stale gradients from an earlier step must not leak in", gen, 6, 5, 3, stale=True),
            _accumulate_case("padding and unequal micro-batches", gen, 5, 10, 2, padded=True),
        ]
    return cases
