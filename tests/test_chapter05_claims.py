"""Numbers stated in the prose of book/05-embeddings-positions.md, recomputed.

The page computes its tables in its own cells; this file guards what the prose, the summary
and the exercise hints state as text, so that an edit to the library or the packaged model
cannot silently make the text wrong.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llm_course.attention import MultiHeadAttention
from llm_course.positional import apply_rope, sinusoidal_encoding


@pytest.fixture(scope="module")
def minilm():
    from llm_course.pretrained import load_minilm
    return load_minilm()


def neighbours(W_unit, tokenizer, word, k=8):
    vocab = tokenizer.get_vocab()
    top = (W_unit @ W_unit[vocab[word]]).topk(k + 1).indices.tolist()[1:]
    return tokenizer.convert_ids_to_tokens(top)


def test_embedding_share_of_parameters(minilm):
    model, _ = minilm
    n_total = sum(p.numel() for p in model.parameters())
    assert 30522 * 384 / n_total == pytest.approx(0.516, abs=0.002)       # "about half"
    assert 50257 * 12288 == 617_558_016                                   # "about 618 M"
    assert 50257 * 12288 / 175e9 == pytest.approx(0.0035, abs=0.0001)     # "0.35 %"


def test_nearest_neighbours_named_in_the_prose(minilm):
    model, tok = minilm
    W = F.normalize(model.embeddings.word_embeddings.weight.detach(), dim=-1)
    assert {"queen", "monarch", "prince"} <= set(neighbours(W, tok, "king"))
    assert {"walk", "walks", "walking"} <= set(neighbours(W, tok, "walked"))
    assert {"four", "two", "five"} <= set(neighbours(W, tok, "three"))
    assert {"london", "cairo"} <= set(neighbours(W, tok, "paris"))
    assert "bad" in neighbours(W, tok, "good")


def test_learned_position_table_claims(minilm):
    model, _ = minilm
    P = model.embeddings.position_embeddings.weight.detach()
    assert P.shape == (512, 384)
    S = F.normalize(P, dim=-1) @ F.normalize(P, dim=-1).T
    mean = {k: S.diagonal(k).mean().item() for k in (1, 2, 5, 100)}
    assert mean[1] > 0.8 and mean[2] < mean[5] and mean[100] < 0.3         # band, texture, decay
    norms = P.norm(dim=-1)
    assert 4 < norms[0] / norms[1:].median() < 6                          # "about five times longer"


def test_permutation_equivariance():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x, perm = torch.randn(1, 6, 16), torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        assert torch.allclose(mha(x[:, perm])[0], mha(x)[0][:, perm], atol=1e-6)


def test_exercise_hints():
    # exercise 4: longest wavelength with the i/d exponent vs 2i/d, d = 64
    assert 2 * math.pi * 10000 ** (31 / 64) == pytest.approx(540, rel=0.02)
    assert 2 * math.pi * 10000 ** (62 / 64) == pytest.approx(47_000, rel=0.01)
    # exercise 5: interleaving the halves converts the split-halves layout
    d = 8
    index = torch.stack((torch.arange(d // 2), torch.arange(d // 2) + d // 2), 1).flatten()
    x = torch.randn(5, d)
    halves = torch.cat((x[..., 0::2], x[..., 1::2]), -1)                  # x laid out as halves
    assert torch.equal(halves[..., index], x)
    # exercise 6: rotating by −θ gives a function of n − m
    q, k = torch.randn(1, 16), torch.randn(1, 16)
    neg = (apply_rope(q, -torch.tensor([7])) @ apply_rope(k, -torch.tensor([2])).T).item()
    pos = (apply_rope(q, torch.tensor([2])) @ apply_rope(k, torch.tensor([7])).T).item()
    assert neg == pytest.approx(pos, abs=1e-4)


def test_sinusoid_first_pair_has_wavelength_two_pi():
    pe = sinusoidal_encoding(8, 64)
    assert torch.allclose(pe[:, 0], torch.arange(8.0).sin(), atol=1e-6)
