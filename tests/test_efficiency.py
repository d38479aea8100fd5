"""llm_course.efficiency against independent references: the parameters a built model has,
PyTorch's FlopCounterMode, the tensors autograd saves, a one-batch gradient, the optimizer's
real state, torch.utils.checkpoint's gradients, exact Jaccard similarity and datasketch."""

import copy
import dataclasses
import itertools

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from llm_course import efficiency as E
from llm_course.transformer import DecoderOnly, ModelConfig

BASE = ModelConfig(vocab_size=37, d_model=32, num_heads=4, num_layers=2, max_len=24)
VARIANTS = [dataclasses.replace(BASE, norm=n, activation=a, prenorm=p, tie_weights=t, d_ff=f)
            for n, a, p, t, f in itertools.product(("layer", "rms"), ("gelu", "swiglu"), (True, False),
                                                   (True, False), (None, 40))]
IDS = [f"{c.norm}-{c.activation}-{'pre' if c.prenorm else 'post'}-{'tied' if c.tie_weights else 'untied'}-"
       f"dff{c.d_ff}" for c in VARIANTS]


@pytest.mark.parametrize("config", VARIANTS, ids=IDS)
def test_count_parameters_equals_the_built_model(config):
    assert E.count_parameters(config) == sum(p.numel() for p in DecoderOnly(config).parameters())


@pytest.mark.parametrize("config", VARIANTS[::3], ids=IDS[::3])
@pytest.mark.parametrize("T", [1, 7, 24])
def test_flops_per_token_equals_flop_counter_mode(config, T):
    model = DecoderOnly(config)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(torch.zeros(2, T, dtype=torch.long))
    assert E.flops_per_token(config, T) * 2 * T == counter.get_total_flops()


def test_training_is_three_forward_passes_by_flop_counter():
    model, ids = DecoderOnly(BASE), torch.randint(0, 37, (2, 12))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fwd:
        model(ids)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as both:
        model(ids).pow(2).mean().backward()
    assert both.get_total_flops() == 3 * fwd.get_total_flops()
    assert E.training_flops(BASE, 12, 24) == 3 * fwd.get_total_flops()


def test_six_n_d_for_a_large_model():
    # attention is a small correction at T << 6d: 6·N·D within 10 % for a GPT-3-like shape
    c = ModelConfig(vocab_size=50_257, d_model=12_288, num_heads=96, num_layers=96, max_len=2048)
    n_nonembedding = E.count_parameters(c) - c.vocab_size * c.d_model - c.max_len * c.d_model
    assert abs(E.training_flops(c, 2048, 1.0) / (6 * n_nonembedding) - 1) < 0.1
    assert 170e9 < E.count_parameters(c) < 180e9  # GPT-3's 175B


@pytest.mark.parametrize("config", VARIANTS, ids=IDS)
def test_activation_estimate_equals_saved_tensors(config):
    torch.manual_seed(0)
    x, y = torch.randint(0, 37, (3, 11)), torch.randint(0, 37, (3, 11))
    measured = E.saved_activation_bytes(DecoderOnly(config), x, y)
    assert E.memory_estimate(config, 3, 11)["activations"] == measured


def test_saved_activation_bytes_counts_views_once_and_excludes_parameters():
    lin = torch.nn.Linear(4, 4, bias=False)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, ids):  # (B, T) → (B, T, 4): the input x is saved once by the matmul
            return self.lin(torch.ones(*ids.shape, 4, requires_grad=True))

    bytes_ = E.saved_activation_bytes(Model(), torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    # matmul input 2·3·4 fp32 = 96; log-probs 96; targets 6 int64 = 48; the loss normaliser 4
    assert bytes_ == 96 + 96 + 48 + 4


def test_memory_states_equal_a_real_adamw_step():
    model, x = DecoderOnly(BASE), torch.randint(0, 37, (2, 8))
    opt = torch.optim.AdamW(model.parameters())
    E.lm_loss(model, x, x).backward()
    opt.step()
    est = E.memory_estimate(BASE, 2, 8, optimizer="adamw")
    assert est["params"] == sum(p.nbytes for p in model.parameters())
    assert est["grads"] == sum(p.grad.nbytes for p in model.parameters())
    assert est["optimizer"] == sum(t.nbytes for s in opt.state.values() for k, t in s.items() if k != "step")
    assert est["total"] == sum(est[k] for k in ("params", "grads", "optimizer", "activations"))


def test_memory_bytes_per_parameter_by_hand():
    n = E.count_parameters(BASE)
    fp32 = E.memory_estimate(BASE, 1, 1, "adamw")
    bf16 = E.memory_estimate(BASE, 1, 1, "adamw", torch.bfloat16)
    sgd = E.memory_estimate(BASE, 1, 1, "sgd")
    momentum = E.memory_estimate(BASE, 1, 1, "momentum", torch.float16)
    assert fp32["params"] + fp32["grads"] + fp32["optimizer"] == 16 * n
    assert (bf16["params"], bf16["grads"], bf16["optimizer"]) == (6 * n, 2 * n, 8 * n)  # ZeRO's 2 + 2 + 12
    assert sgd["optimizer"] == 0 and momentum["optimizer"] == 4 * n
    # activations: values halve in 16 bits; the int64 ids/targets and the fp32 scalar do not
    assert 2 * (bf16["activations"] - 16 - 4) == fp32["activations"] - 16 - 4


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_accumulated_gradient_equals_the_big_batch(k):
    torch.manual_seed(0)
    model = DecoderOnly(BASE)
    x, y = torch.randint(0, 37, (7, 9)), torch.randint(0, 37, (7, 9))
    y[0, 3:] = E.IGNORE_INDEX
    y[5, :] = E.IGNORE_INDEX  # one micro-batch may hold no counted token at all
    big = E.lm_loss(model, x, y)
    big.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad.fill_(3.0)  # stale gradients must not leak in
    loss = E.accumulate_gradients(model, x, y, k)
    assert loss == pytest.approx(big.item(), abs=1e-6)
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g, atol=1e-7, rtol=1e-5)


def test_checkpointed_model_has_the_same_gradients_and_saves_less():
    torch.manual_seed(0)
    plain = DecoderOnly(BASE)
    ckpt = E.checkpointed(copy.deepcopy(plain))
    assert ckpt is E.checkpointed(ckpt) and all(isinstance(b, E.Checkpointed) for b in ckpt.blocks)
    x, y = torch.randint(0, 37, (2, 16)), torch.randint(0, 37, (2, 16))
    E.lm_loss(plain, x, y).backward()
    E.lm_loss(ckpt, x, y).backward()
    for p, q in zip(plain.parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    saved_plain, saved_ckpt = E.saved_activation_bytes(plain, x, y), E.saved_activation_bytes(ckpt, x, y)
    # only each block's input (B·T·d fp32) is kept for the checkpointed blocks
    per_layer_plain = (E.memory_estimate(BASE, 2, 16)["activations"]
                       - E.memory_estimate(dataclasses.replace(BASE, num_layers=1), 2, 16)["activations"])
    assert saved_plain - saved_ckpt == BASE.num_layers * (per_layer_plain - 2 * 16 * BASE.d_model * 4)
    with torch.no_grad():
        torch.testing.assert_close(ckpt(x), plain(x))


def test_minhash_estimates_jaccard_like_datasketch():
    datasketch = pytest.importorskip("datasketch")
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(400)]
    errors, ds_errors = [], []
    for trial in range(20):
        a = set(rng.choice(words, 120, replace=False))
        b = set(list(a)[: 40 + 3 * trial]) | set(rng.choice(words, 60, replace=False))
        exact = E.jaccard(a, b)
        ours = float((E.minhash(a, 256, seed=trial) == E.minhash(b, 256, seed=trial)).mean())
        ma, mb = datasketch.MinHash(num_perm=256, seed=trial), datasketch.MinHash(num_perm=256, seed=trial)
        ma.update_batch([s.encode() for s in a])
        mb.update_batch([s.encode() for s in b])
        errors.append(ours - exact)
        ds_errors.append(mb.jaccard(ma) - exact)
    # unbiased, and as precise as datasketch: standard error √(J(1−J)/256) ≤ 0.031
    assert abs(np.mean(errors)) < 0.02 and np.std(errors) < 0.05
    assert np.std(errors) < 1.5 * np.std(ds_errors) + 0.01


def test_minhash_is_deterministic_and_identical_sets_agree():
    s = E.shingles("To be, or not to be: that is the question")
    assert (E.minhash(s) == E.minhash(set(s))).all()
    assert E.shingles("Ab  c", 2) == E.shingles("ab c", 2) == {"ab", "b ", " c"}


def test_dedup_finds_exact_and_near_duplicates_by_hand():
    base = "Now is the winter of our discontent made glorious summer by this sun of York"
    docs = [base, "Something completely different, about ships and the sea and sailors.",
            base.upper().replace(" ", "  "),              # exact after normalisation
            base.replace("glorious", "glorius"),          # a one-letter edit: near duplicate
            "Friends, Romans, countrymen, lend me your ears; I come to bury Caesar."]
    result = E.dedup(docs, threshold=0.7)
    assert result.exact == [(0, 2)]
    assert [(i, j) for i, j, _ in result.near] == [(0, 3)]
    assert result.keep == [0, 1, 4]


def test_gpu_days_worked_example():
    # 6 · 6e9 · 1e12 FLOPs on A100s at 40 % of 312 TFLOP/s
    assert E.gpu_days(6 * 6e9 * 1e12, utilisation=0.4) == pytest.approx(3.6e22 / (312e12 * 0.4) / 86400)


@pytest.mark.parametrize("call, match", [
    (lambda: E.count_parameters({"d_model": 8}), "config must be a ModelConfig"),
    (lambda: E.flops_per_token(BASE, 0), "T must be a positive int"),
    (lambda: E.memory_estimate(BASE, 0, 4), "batch must be a positive int"),
    (lambda: E.memory_estimate(BASE, 1, 4, optimizer="adam"), "optimizer must be one of"),
    (lambda: E.memory_estimate(BASE, 1, 4, dtype=torch.int8), "dtype must be one of"),
    (lambda: E.memory_estimate(dataclasses.replace(BASE, dropout=0.1), 1, 4), "dropout=0"),
    (lambda: E.training_flops(BASE, 4, 0), "tokens must be > 0"),
    (lambda: E.gpu_days(1e20, utilisation=1.5), r"utilisation must be in \(0, 1\]"),
    (lambda: E.accumulate_gradients(DecoderOnly(BASE), torch.zeros(2, 3, dtype=torch.long),
                                    torch.zeros(2, 4, dtype=torch.long), 1), "same shape"),
    (lambda: E.accumulate_gradients(DecoderOnly(BASE), torch.zeros(2, 3, dtype=torch.long),
                                    torch.zeros(2, 3, dtype=torch.long), 3), r"k must be an int in \[1, batch=2\]"),
    (lambda: E.checkpointed(torch.nn.Linear(2, 2)), "must have a .blocks ModuleList"),
    (lambda: E.minhash(set()), "non-empty"),
    (lambda: E.dedup("just one string"), "docs must be a list of strings"),
    (lambda: E.dedup(["a"], threshold=0), r"threshold must be in \(0, 1\]"),
    (lambda: E.dedup(["a"], num_perm=100, bands=32), "divisible by bands"),
])
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
