"""llm_course.positional against independent references: nn.Embedding, one-hot products,
the formulas evaluated with Python's math module, complex multiplication, and the
RoPE/sinusoid code of Hugging Face's GPT-J and Llama."""

import math

import pytest
import torch
import torch.nn.functional as F

from llm_course.positional import (
    LearnedPositionalEmbedding,
    TokenEmbedding,
    apply_rope,
    inverse_frequencies,
    rope_cache,
    rope_scores,
    sinusoidal_encoding,
    token_embedding,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ token embedding
def test_lookup_equals_one_hot_times_matrix():
    W = torch.randn(11, 6, generator=gen())
    ids = torch.randint(0, 11, (3, 5), generator=gen(1))
    one_hot = F.one_hot(ids, 11).float()
    assert torch.allclose(token_embedding(ids, W), one_hot @ W)
    assert torch.equal(token_embedding(ids, W), F.embedding(ids, W))


def test_padding_and_scale_match_nn_embedding():
    ref = torch.nn.Embedding(9, 8, padding_idx=2)
    mine = TokenEmbedding(9, 8, padding_idx=2)
    mine.load_state_dict(ref.state_dict())
    ids = torch.tensor([[2, 0, 5, 2], [8, 2, 1, 3]])
    assert torch.equal(mine(ids), ref(ids))
    assert (mine(ids)[ids == 2] == 0).all()
    # gradients: the padding row gets none, exactly as nn.Embedding
    mine(ids).pow(2).sum().backward()
    ref(ids).pow(2).sum().backward()
    assert torch.allclose(mine.weight.grad, ref.weight.grad)
    assert (mine.weight.grad[2] == 0).all()
    scaled = TokenEmbedding(9, 8, padding_idx=2, scale=True)
    scaled.load_state_dict(ref.state_dict())
    assert torch.allclose(scaled(ids), math.sqrt(8) * ref(ids))


def test_scale_multiplies_by_sqrt_d():
    W = torch.randn(5, 16, generator=gen())
    ids = torch.tensor([0, 4, 1])
    assert torch.allclose(token_embedding(ids, W, scale=True), 4.0 * W[ids])
    assert torch.equal(token_embedding(ids, W, padding_idx=4, scale=True)[1], torch.zeros(16))


@pytest.mark.parametrize("ids,err,match", [
    (torch.tensor([0.0, 1.0]), TypeError, "integer tensor"),
    (torch.tensor([True, False]), TypeError, "integer tensor"),
    ([0, 1], TypeError, "integer tensor"),
    (torch.tensor([0, 5]), ValueError, r"\[0, vocab_size=5\)"),
    (torch.tensor([-1]), ValueError, "vocab_size"),
])
def test_token_embedding_bad_ids(ids, err, match):
    with pytest.raises(err, match=match):
        token_embedding(ids, torch.randn(5, 3))


def test_token_embedding_module_bad_args():
    with pytest.raises(ValueError, match="padding_idx"):
        TokenEmbedding(4, 3, padding_idx=4)
    with pytest.raises(ValueError, match="d_model"):
        TokenEmbedding(4, 0)


# ------------------------------------------------------------------ frequencies and sinusoids
def test_inverse_frequencies_hand_values():
    assert torch.allclose(inverse_frequencies(4), torch.tensor([1.0, 0.01], dtype=torch.float64))
    assert torch.allclose(inverse_frequencies(6, base=64.0), torch.tensor([1.0, 0.25, 1 / 16], dtype=torch.float64))


def test_sinusoidal_matches_the_paper_formula():
    T, d = 13, 10
    expected = torch.tensor([[math.sin(pos / 10000 ** (j / d)) if j % 2 == 0 else math.cos(pos / 10000 ** ((j - 1) / d))
                              for j in range(d)] for pos in range(T)])
    pe = sinusoidal_encoding(T, d)
    assert pe.dtype == torch.float32 and pe.shape == (T, d)
    assert torch.allclose(pe, expected, atol=1e-6)


def test_sinusoidal_matches_gptj_after_deinterleaving():
    # GPT-J's table stores [all sines | all cosines]; ours interleaves (sin, cos) pairs.
    from transformers.models.gptj.modeling_gptj import create_sinusoidal_positions
    pe = sinusoidal_encoding(50, 16)
    assert torch.allclose(torch.cat((pe[:, 0::2], pe[:, 1::2]), dim=1), create_sinusoidal_positions(50, 16), atol=1e-5)


def test_shifted_sinusoid_is_a_rotation_of_the_original():
    T, d, k = 40, 8, 7
    pe = sinusoidal_encoding(T + k, d).double()
    theta = inverse_frequencies(d)
    c, s = torch.cos(k * theta), torch.sin(k * theta)
    # each (sin a, cos a) pair → (sin(a + kθ), cos(a + kθ)) = [[c, s], [-s, c]] · (sin a, cos a)
    R = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        R[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c[i], s[i]], [-s[i], c[i]]])
    assert torch.allclose(pe[:T] @ R.T, pe[k:], atol=1e-6)


@pytest.mark.parametrize("T,d,match", [(0, 4, "T must be a positive int"), (4, 5, "d must be even"),
                                       (4, 2.0, "d must be a positive int")])
def test_sinusoidal_bad_sizes(T, d, match):
    with pytest.raises(ValueError, match=match):
        sinusoidal_encoding(T, d)


def test_bad_base():
    with pytest.raises(ValueError, match="base must be"):
        inverse_frequencies(4, base=1.0)


# ------------------------------------------------------------------ learned positions
def test_learned_positions_add_rows_and_reject_unseen_positions():
    pos = LearnedPositionalEmbedding(6, 4)
    x = torch.randn(2, 3, 4)
    assert torch.allclose(pos(x), x + pos.weight[:3])
    assert torch.allclose(pos(x, offset=3), x + pos.weight[3:6])
    pos(x).sum().backward()
    assert (pos.weight.grad[:3] == 2).all() and (pos.weight.grad[3:] == 0).all()
    with pytest.raises(ValueError, match="beyond max_len=6"):
        pos(torch.randn(1, 7, 4))
    with pytest.raises(ValueError, match="beyond max_len=6"):
        pos(x, offset=4)
    with pytest.raises(ValueError, match="d_model=4"):
        pos(torch.randn(1, 3, 5))


# ------------------------------------------------------------------ RoPE
def rope_complex(x, positions, base=10000.0):
    """Independent reference: pairs (2i, 2i+1) as complex numbers, multiplied by e^{i·pos·θ_i}."""
    d = x.shape[-1]
    theta = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    rot = torch.polar(torch.ones_like(theta), positions.double()[..., None] * theta)
    return torch.view_as_real(z * rot).flatten(-2).to(x.dtype)


@pytest.mark.parametrize("shape,base", [((7, 8), 10000.0), ((2, 3, 9, 16), 10000.0), ((4, 5, 6), 500000.0)])
def test_rope_matches_complex_multiplication(shape, base):
    x = torch.randn(*shape, generator=gen())
    positions = torch.arange(shape[-2])
    assert torch.allclose(apply_rope(x, base=base), rope_complex(x, positions, base), atol=1e-5)


def test_rope_matches_gptj_interleaved_and_llama_after_permuting():
    from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_rope
    from transformers.models.gptj.modeling_gptj import create_sinusoidal_positions
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_rope
    B, T, H, d = 2, 11, 3, 8
    x = torch.randn(B, T, H, d, generator=gen())
    table = create_sinusoidal_positions(T, d)                   # (T, d): [sin | cos]
    sin, cos = table[None, :, : d // 2].expand(B, -1, -1), table[None, :, d // 2:].expand(B, -1, -1)
    mine = apply_rope(x.transpose(1, 2))                        # (B, H, T, d)
    assert torch.allclose(mine, gptj_rope(x, sin, cos).transpose(1, 2), atol=1e-5)
    # Llama (split halves) = ours after moving dims (0, 2, 4, …, 1, 3, 5, …) into halves
    halves = torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))
    cos_h, sin_h = (torch.cat((t, t), dim=-1)[None] for t in rope_cache(torch.arange(T), d))
    q_llama, _ = llama_rope(x.transpose(1, 2)[..., halves], x.transpose(1, 2)[..., halves], cos_h, sin_h)
    assert torch.allclose(mine[..., halves], q_llama, atol=1e-5)
    assert not torch.allclose(mine, q_llama, atol=1e-3)        # the conventions are not interchangeable


def test_rope_keeps_norms_and_position_zero():
    x = torch.randn(3, 12, 10, generator=gen())
    y = apply_rope(x)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.equal(y[:, 0], x[:, 0])


def test_rope_scores_depend_only_on_the_offset():
    g = gen(3)
    q, k = torch.randn(1, 16, generator=g), torch.randn(1, 16, generator=g)
    for m, n in [(0, 3), (5, 8), (100, 103), (57, 60)]:
        s = rope_scores(q, k, torch.tensor([m]), torch.tensor([n])).item()
        assert s == pytest.approx(rope_scores(q, k, torch.tensor([0]), torch.tensor([3])).item(), abs=1e-4)
    # and not only on |m − n|: the offset has a sign
    a = rope_scores(q, k, torch.tensor([3]), torch.tensor([0])).item()
    b = rope_scores(q, k, torch.tensor([0]), torch.tensor([3])).item()
    assert abs(a - b) > 1e-3


def test_rope_positions_broadcast_per_sequence_and_accept_floats():
    x = torch.randn(2, 5, 8, generator=gen())
    positions = torch.tensor([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]])
    y = apply_rope(x, positions)
    assert torch.allclose(y[1], rope_complex(x[1], positions[1]), atol=1e-5)
    assert torch.allclose(apply_rope(x, positions.float() / 2), rope_complex(x, positions.float() / 2), atol=1e-5)


def test_rope_keeps_dtype():
    x = torch.randn(4, 8, dtype=torch.float64)
    assert apply_rope(x).dtype == torch.float64
    assert apply_rope(x.to(torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize("x,positions,err,match", [
    (torch.randn(4, 7), None, ValueError, "d_head even"),
    (torch.randn(8), None, ValueError, r"\(\.\.\., T, d_head\)"),
    (torch.ones(4, 8, dtype=torch.long), None, TypeError, "floating-point"),
    (torch.randn(4, 8), torch.zeros(4, dtype=torch.bool), TypeError, "positions must be"),
    (torch.randn(4, 8), torch.arange(5), ValueError, "do not broadcast"),
])
def test_rope_bad_inputs(x, positions, err, match):
    with pytest.raises(err, match=match):
        apply_rope(x, positions)


def test_rope_cache_shapes_and_errors():
    cos, sin = rope_cache(torch.arange(6), 8)
    assert cos.shape == sin.shape == (6, 4) and cos.dtype == torch.float32
    assert torch.allclose(cos ** 2 + sin ** 2, torch.ones(6, 4))
    with pytest.raises(ValueError, match="d_head must be even"):
        rope_cache(torch.arange(6), 7)
    with pytest.raises(TypeError, match="positions"):
        rope_cache([0, 1], 8)
