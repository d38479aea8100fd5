"""llm_course.attention against independent references: PyTorch's own ops and hand-computed cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from llm_course.attention import (
    MultiHeadAttention,
    causal_mask,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    split_heads,
)


def test_hand_computed_case():
    # One query, two keys. Scores q·k/√2 = [1/√2, 0]; softmax → weights [σ, 1-σ] with σ = sigmoid(1/√2).
    q = torch.tensor([[1.0, 1.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    v = torch.tensor([[10.0, 0.0], [0.0, 20.0]])
    out, w = scaled_dot_product_attention(q, k, v)
    s = 1 / (1 + math.exp(-1 / math.sqrt(2)))
    assert torch.allclose(w, torch.tensor([[s, 1 - s]]))
    assert torch.allclose(out, torch.tensor([[10 * s, 20 * (1 - s)]]))


@pytest.mark.parametrize("shape_q,shape_k,d_v", [((5, 8), (7, 8), 3), ((2, 3, 5, 8), (2, 3, 6, 8), 4),
                                                  ((2, 2, 3, 4, 16), (2, 2, 3, 9, 16), 16)])
def test_matches_torch_sdpa(shape_q, shape_k, d_v):
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(*shape_q, generator=g), torch.randn(*shape_k, generator=g)
    v = torch.randn(*shape_k[:-1], d_v, generator=g)
    out, w = scaled_dot_product_attention(q, k, v)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-5)
    assert torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]))


@pytest.mark.parametrize("kind", ["causal", "padding", "both"])
def test_masks_match_torch_sdpa(kind):
    g = torch.Generator().manual_seed(1)
    B, H, T, d = 3, 2, 6, 8
    q, k, v = (torch.randn(B, H, T, d, generator=g) for _ in range(3))
    lengths = torch.tensor([6, 3, 1])
    mask = {"causal": causal_mask(T), "padding": padding_mask(lengths, T),
            "both": causal_mask(T) & padding_mask(lengths, T)}[kind]
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5)
    assert (w.masked_select(~mask.expand_as(w)) == 0).all(), "masked keys must get exactly zero weight"


def test_causal_mask_matches_torch_is_causal():
    q, k, v = torch.randn(3, 2, 7, 4).unbind(0)
    out, _ = scaled_dot_product_attention(q, k, v, causal_mask(7))
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6)
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def test_padding_mask_shape_and_values():
    m = padding_mask(torch.tensor([2, 0, 3]), 3)
    assert m.shape == (3, 1, 1, 3) and m.dtype == torch.bool
    assert m[:, 0, 0].tolist() == [[True, True, False], [False, False, False], [True, True, True]]


def test_split_merge_are_inverse_and_match_manual_indexing():
    x = torch.randn(2, 5, 12)
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    assert torch.equal(heads[1, 2, 4], x[1, 4, 8:12])  # head h holds features h·d_head … (h+1)·d_head
    assert torch.equal(merge_heads(heads), x)


def _copy_into_torch_mha(ours: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    theirs = torch.nn.MultiheadAttention(ours.d_model, ours.num_heads, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)
    return theirs


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("masking", [None, "causal", "padding"])
def test_mha_matches_torch_multihead_attention(need_weights, masking):
    torch.manual_seed(0)
    ours = MultiHeadAttention(16, 4).eval()
    theirs = _copy_into_torch_mha(ours).eval()
    x = torch.randn(3, 6, 16)
    lengths = torch.tensor([6, 4, 2])
    if masking == "causal":
        got, w = ours(x, is_causal=True, need_weights=need_weights)
        # torch's attn_mask uses True = NOT allowed, the opposite convention
        exp, exp_w = theirs(x, x, x, attn_mask=~causal_mask(6), average_attn_weights=False)
    elif masking == "padding":
        got, w = ours(x, mask=padding_mask(lengths, 6), need_weights=need_weights)
        exp, exp_w = theirs(x, x, x, key_padding_mask=~padding_mask(lengths, 6)[:, 0, 0],
                            average_attn_weights=False)
    else:
        got, w = ours(x, need_weights=need_weights)
        exp, exp_w = theirs(x, x, x, average_attn_weights=False)
    assert torch.allclose(got, exp, atol=1e-5)
    if need_weights:
        assert torch.allclose(w, exp_w, atol=1e-5)
    else:
        assert w is None


def test_mha_cross_attention_matches_torch():
    torch.manual_seed(0)
    ours = MultiHeadAttention(8, 2).eval()
    theirs = _copy_into_torch_mha(ours).eval()
    x, ctx = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    got, _ = ours(x, context=ctx)
    exp, _ = theirs(x, ctx, ctx)
    assert torch.allclose(got, exp, atol=1e-5)


def test_mha_fused_and_explicit_paths_agree_with_gradients():
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4)
    x = torch.randn(2, 9, 32, requires_grad=True)
    mask = padding_mask(torch.tensor([9, 5]), 9)
    fused, _ = mha(x, mask=mask, is_causal=True)
    (g_fused,) = torch.autograd.grad(fused.square().sum(), x)
    explicit, _ = mha(x, mask=mask, is_causal=True, need_weights=True)
    (g_explicit,) = torch.autograd.grad(explicit.square().sum(), x)
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert torch.allclose(g_fused, g_explicit, atol=1e-4)


def test_mha_parameter_count_is_four_d_model_squared_plus_biases():
    d = 64
    assert sum(p.numel() for p in MultiHeadAttention(d, 8).parameters()) == 4 * d * d + 4 * d
    assert sum(p.numel() for p in MultiHeadAttention(d, 8, bias=False).parameters()) == 4 * d * d


@pytest.mark.parametrize("call,match", [
    (lambda: scaled_dot_product_attention(torch.randn(2, 4), torch.randn(3, 5), torch.randn(3, 2)), "same last dim d_k"),
    (lambda: scaled_dot_product_attention(torch.randn(2, 4), torch.randn(3, 4), torch.randn(5, 2)), "number of positions"),
    (lambda: scaled_dot_product_attention(torch.randn(4), torch.randn(3, 4), torch.randn(3, 2)), r"q must have shape"),
    (lambda: scaled_dot_product_attention(torch.randn(2, 4), torch.randn(3, 4), torch.randn(3, 2),
                                          torch.ones(2, 4, dtype=torch.bool)), "mask of shape"),
    (lambda: scaled_dot_product_attention(torch.randn(2, 4), torch.randn(3, 4), torch.randn(3, 2),
                                          torch.ones(2, 3)), "mask must be a bool"),
    (lambda: scaled_dot_product_attention([[1.0]], torch.randn(3, 4), torch.randn(3, 2)), "q must be a torch.Tensor"),
    (lambda: causal_mask(0), "T must be a positive int"),
    (lambda: causal_mask(2.5), "T must be a positive int"),
    (lambda: padding_mask(torch.tensor([1.0, 2.0]), 3), "lengths must be a 1-D integer"),
    (lambda: padding_mask(torch.tensor([4]), 3), r"lengths must lie in \[0, T=3\]"),
    (lambda: split_heads(torch.randn(1, 2, 10), 3), "not divisible by num_heads"),
    (lambda: MultiHeadAttention(10, 3), "d_model=10 must be divisible by num_heads=3"),
    (lambda: MultiHeadAttention(0, 1), "d_model must be a positive int"),
    (lambda: MultiHeadAttention(8, 2, dropout=1.5), "dropout must be in"),
    (lambda: MultiHeadAttention(8, 2)(torch.randn(2, 3, 4)), r"x must have shape \(batch, T, d_model=8\)"),
    (lambda: MultiHeadAttention(8, 2)(torch.randn(2, 3, 8), context=torch.randn(3, 3, 8)), "batch sizes differ"),
    (lambda: MultiHeadAttention(8, 2)(torch.randn(2, 3, 8), mask=torch.ones(4, 4, dtype=torch.bool)), "mask of shape"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
