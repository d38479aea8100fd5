"""llm_course.compression against independent references: hand-computed cases, PyTorch's own
quantisers (torch.quantize_per_tensor / per_channel), torch.nn.utils.prune, F.kl_div, and the
Eckart–Young theorem for the truncated SVD; windowed perplexity against per-token log-probabilities
added up by hand."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from llm_course.compression import (QuantizedLinear, absmax_quantize, dequantize, distillation_loss,
                                    low_rank_factorize, magnitude_mask, magnitude_prune, model_size_bytes,
                                    pack_int4, perplexity, prune_ffn_neurons, quantize_model, rank_for_energy, sparsity_of,
                                    unpack_int4, zeropoint_quantize)
from llm_course.transformer import DecoderOnly, FeedForward, ModelConfig

pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per:UserWarning")


def _w(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- quantisation

def test_absmax_by_hand():
    x = torch.tensor([[0.3, -1.0, 0.25], [2.0, 0.0, -0.6]])
    codes, scale = absmax_quantize(x, 8, axis=0)  # one scale per row
    torch.testing.assert_close(scale, torch.tensor([[1 / 127], [2 / 127]]))
    # 0.3·127 = 38.1 → 38, 0.25·127 = 31.75 → 32; −0.6·63.5 = −38.1 → −38
    assert codes.tolist() == [[38, -127, 32], [127, 0, -38]]
    assert codes.dtype == torch.int8
    x = torch.tensor([[0.5, -1.1, 0.25], [2.0, 0.0, -0.6]])
    codes4, scale4 = absmax_quantize(x, 4, axis=None)
    assert scale4.shape == (1, 1) and scale4.item() == pytest.approx(2 / 7)
    assert codes4.tolist() == [[2, -4, 1], [7, 0, -2]]  # x / (2/7) = 1.75, −3.85, 0.875, 7, 0, −2.1


def test_zeropoint_by_hand():
    x = torch.tensor([-0.3, 0.0, 0.4, 1.0])  # range [−0.3, 1.0] over 255 steps
    codes, scale, zp = zeropoint_quantize(x, 8)
    assert scale.item() == pytest.approx(1.3 / 255)
    assert zp.item() == 59  # 0.3 / (1.3/255) = 58.85
    assert codes.tolist() == [0, 59, 59 + 78, 255]  # 0.4 / scale = 78.46; 1.0 / scale = 196.15
    assert dequantize(codes, scale, zp)[1].item() == 0.0  # the real zero is exact


@pytest.mark.parametrize("shape", [(16, 32), (5, 7)])
def test_absmax_per_channel_matches_torch(shape):
    w = _w(*shape)
    codes, scale = absmax_quantize(w, 8, axis=0)
    ref = torch.quantize_per_channel(w, scale.flatten().double(), torch.zeros(shape[0], dtype=torch.long), 0, torch.qint8)
    assert torch.equal(codes, ref.int_repr())
    torch.testing.assert_close(dequantize(codes, scale), ref.dequantize())


def test_absmax_per_tensor_matches_torch():
    w = 3 * _w(40, 24, seed=1)
    codes, scale = absmax_quantize(w, 8)
    ref = torch.quantize_per_tensor(w, scale.item(), 0, torch.qint8)
    assert torch.equal(codes, ref.int_repr())
    torch.testing.assert_close(dequantize(codes, scale), ref.dequantize())


@pytest.mark.parametrize("axis", [None, 0])
def test_zeropoint_matches_torch(axis):
    w = _w(12, 20, seed=2) + 0.7  # skewed: more positive than negative
    codes, scale, zp = zeropoint_quantize(w, 8, axis=axis)
    if axis is None:
        ref = torch.quantize_per_tensor(w, scale.item(), zp.item(), torch.quint8)
    else:
        ref = torch.quantize_per_channel(w, scale.flatten().double(), zp.flatten().long(), 0, torch.quint8)
    # torch multiplies by 1/scale where we divide: a rare exact tie may round the other way
    assert (codes.int() - ref.int_repr().int()).abs().max() <= 1
    assert (codes != ref.int_repr()).float().mean() < 0.01
    torch.testing.assert_close(dequantize(codes, scale, zp), ref.dequantize(), atol=scale.max().item() * 1.01, rtol=0)


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_round_trip_error_at_most_half_a_step(bits, symmetric):
    w = _w(32, 64, seed=bits)
    if symmetric:
        codes, scale = absmax_quantize(w, bits, axis=0)
        back = dequantize(codes, scale)
    else:
        codes, scale, zp = zeropoint_quantize(w, bits, axis=0)
        back = dequantize(codes, scale, zp)
    assert ((w - back).abs() <= scale / 2 + 1e-6).all()


def test_per_channel_beats_per_tensor_with_an_outlier_row():
    w = _w(8, 64, seed=3) * 0.02
    w[3] *= 100  # one row of large weights: a per-tensor scale wastes the grid on every other row
    per_tensor = dequantize(*absmax_quantize(w, 8))
    per_channel = dequantize(*absmax_quantize(w, 8, axis=0))
    err_t, err_c = (w - per_tensor).pow(2), (w - per_channel).pow(2)
    assert err_c.mean() <= err_t.mean()
    others = [i for i in range(8) if i != 3]  # the ordinary rows get a 100× finer grid
    assert err_c[others].mean() < err_t[others].mean() / 100


def test_zero_block_gets_unit_scale():
    w = torch.zeros(2, 4)
    w[1] = 1.0
    codes, scale = absmax_quantize(w, 8, axis=0)
    assert scale[0].item() == 1.0 and (codes[0] == 0).all()
    assert torch.equal(dequantize(codes, scale), w)


def test_pack_int4_round_trip():
    codes = torch.randint(0, 16, (6, 10), dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.shape == (6, 5) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4(packed), codes)
    assert packed[0, 0].item() == codes[0, 0].item() + 16 * codes[0, 1].item()


@pytest.mark.parametrize("kw", [dict(bits=8), dict(bits=8, per_tensor=True), dict(bits=4, group_size=16),
                                dict(bits=8, symmetric=False), dict(bits=4, group_size=8, symmetric=False)])
def test_quantized_linear_equals_linear_with_dequantized_weight(kw):
    lin = nn.Linear(32, 12)
    q = QuantizedLinear.from_linear(lin, **kw)
    w = q.dequantized_weight()
    x = _w(3, 5, 32, seed=4)
    torch.testing.assert_close(q(x), F.linear(x, w, lin.bias))
    step = (lin.weight - w).abs().max()
    assert step <= q.scale.max() / 2 + 1e-6
    # the same blocks through the standalone functions
    blocks = lin.weight.detach().reshape(-1, q.block_len)
    axis = None if q.per_tensor else 0
    if q.symmetric:
        expected = dequantize(*absmax_quantize(blocks, q.bits, axis))
    else:
        expected = dequantize(*zeropoint_quantize(blocks, q.bits, axis))
    torch.testing.assert_close(w, expected.reshape(w.shape))


def test_int4_packed_size_and_group_scales():
    lin = nn.Linear(64, 32, bias=False)
    q = QuantizedLinear.from_linear(lin, bits=4, group_size=16)
    assert q.codes.numel() == 64 * 32 // 2 and q.codes.dtype == torch.uint8
    assert q.scale.shape == (32 * 64 // 16, 1)
    assert model_size_bytes(q) == 64 * 32 // 2 + 4 * 32 * 64 // 16


def test_quantize_model_int8_is_about_4x_smaller_and_skips_lm_head():
    model = DecoderOnly(ModelConfig(vocab_size=50, d_model=256, num_heads=4, num_layers=1, max_len=16))
    fp32 = model_size_bytes(model)
    ids = torch.randint(0, 50, (2, 16))
    before = model(ids)
    names = quantize_model(model, bits=8)
    assert names and not any(n.endswith("lm_head") for n in names)
    assert isinstance(model.lm_head, nn.Linear)
    qls = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    lin_fp32 = sum(4 * m.in_features * m.out_features for m in qls)
    lin_q = sum(m.codes.numel() + 4 * m.scale.numel() for m in qls)
    assert lin_fp32 / lin_q > 3.9
    assert model_size_bytes(model) < fp32
    torch.testing.assert_close(model(ids), before, atol=0.05, rtol=0.05)


def test_model_size_counts_tied_weights_once():
    model = DecoderOnly(ModelConfig(vocab_size=50, d_model=32, num_heads=2, num_layers=1, max_len=8))
    assert model_size_bytes(model) == 4 * sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- pruning

@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.77, 0.999])
def test_magnitude_mask_matches_torch_prune(sparsity):
    lin = nn.Linear(30, 17)
    ours = magnitude_mask(lin.weight, sparsity)
    prune.l1_unstructured(lin, "weight", amount=sparsity)
    assert torch.equal(ours, lin.weight_mask.bool())


def test_magnitude_mask_exact_count_with_ties():
    w = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 1.0, 2.0])
    mask = magnitude_mask(w, 0.25)  # 2 of the 4 zeros; the earlier ones first
    assert mask.tolist() == [False, False, True, True, True, True, True, True]
    mask = magnitude_mask(w, 0.625)  # 5 = all zeros and the first |w| = 1
    assert (~mask).sum() == 5 and mask.tolist()[4:] == [False, True, True, True]


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_magnitude_prune_hits_target(scope):
    model = nn.Sequential(nn.Linear(20, 40), nn.ReLU(), nn.Linear(40, 10))
    with torch.no_grad():
        model[2].weight.mul_(10)  # larger weights: global pruning should spare this layer
    masks = magnitude_prune(model, 0.6, scope=scope, skip=())
    assert sparsity_of(model, skip=()) == pytest.approx(0.6, abs=1 / 1200)
    per_layer = [1 - m.float().mean().item() for m in masks.values()]
    if scope == "layer":
        assert per_layer == pytest.approx([0.6, 0.6], abs=1 / 400)
    else:
        assert per_layer[0] > 0.6 > per_layer[1]


def test_prune_ffn_neurons_removes_the_weakest_and_shrinks():
    torch.manual_seed(0)
    ffn = FeedForward(8, 16, activation="swiglu", bias=False)
    with torch.no_grad():
        ffn.down.weight[:, [2, 5, 11]] *= 0.01  # three nearly-dead neurons
    x = torch.randn(4, 8)
    before = ffn(x)
    keep = prune_ffn_neurons([ffn.up, ffn.gate], ffn.down, 3 / 16)
    assert ffn.up.weight.shape == (13, 8) and ffn.down.weight.shape == (8, 13)
    assert not {2, 5, 11} & set(keep.tolist())
    torch.testing.assert_close(ffn(x), before, atol=0.05, rtol=0)


# --------------------------------------------------------------------------- distillation

@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (2.0, 0.9), (4.0, 0.0), (0.5, 1.0)])
def test_distillation_loss_by_hand(T, alpha):
    s, t = _w(3, 5, 11, seed=5), 2 * _w(3, 5, 11, seed=6)
    y = torch.randint(0, 11, (3, 5))
    kl = F.kl_div(F.log_softmax(s / T, -1).flatten(0, 1), F.log_softmax(t / T, -1).flatten(0, 1),
                  reduction="batchmean", log_target=True)
    ce = F.cross_entropy(s.flatten(0, 1), y.flatten())
    torch.testing.assert_close(distillation_loss(s, t, y, T, alpha), alpha * T * T * kl + (1 - alpha) * ce)


def test_distillation_loss_zero_kl_when_student_equals_teacher():
    s = _w(4, 7, seed=7)
    y = torch.randint(0, 7, (4,))
    assert distillation_loss(s, s.clone(), y, T=3.0, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_gradients_reach_the_student_only():
    s = _w(6, 9, seed=8).requires_grad_()
    t = _w(6, 9, seed=9).requires_grad_()
    distillation_loss(s, t, torch.randint(0, 9, (6,)), T=2.0, alpha=0.7).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    # the soft part's gradient w.r.t. the logits is T·(p_s − p_t)/N ·T²/T² … = (p_s^T − p_t^T)·T/N
    s2 = s.detach().clone().requires_grad_()
    distillation_loss(s2, t, torch.zeros(6, dtype=torch.long), T=2.0, alpha=1.0).backward()
    expected = (F.softmax(s2.detach() / 2, -1) - F.softmax(t.detach() / 2, -1)) * 2 / 6
    torch.testing.assert_close(s2.grad, expected)


# --------------------------------------------------------------------------- low rank

@pytest.mark.parametrize("rank", [1, 5, 12])
def test_low_rank_error_is_the_discarded_singular_values(rank):
    lin = nn.Linear(20, 12)
    S = torch.linalg.svdvals(lin.weight.detach().double())
    f = low_rank_factorize(lin, rank=rank)
    assert f[0].weight.shape == (rank, 20) and f[1].weight.shape == (12, rank)
    W_r = (f[1].weight @ f[0].weight).double()
    err = (lin.weight.double() - W_r)
    assert torch.linalg.matrix_norm(err).item() ** 2 == pytest.approx((S[rank:] ** 2).sum().item(), rel=1e-4, abs=1e-5)
    if rank < 12:
        assert torch.linalg.matrix_norm(err, ord=2).item() == pytest.approx(S[rank].item(), rel=1e-4)
    x = _w(3, 20)
    torch.testing.assert_close(f(x), F.linear(x, W_r.float(), lin.bias), atol=1e-5, rtol=1e-4)


def test_rank_for_energy():
    S = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert rank_for_energy(S, 9 / 14) == 1
    assert rank_for_energy(S, 0.7) == 2
    assert rank_for_energy(S, 1.0) == 3
    assert low_rank_factorize(nn.Linear(6, 6), energy=1.0)[0].out_features == 6


# --------------------------------------------------------------------------- windowed perplexity

class Bigram(nn.Module):
    """logits_t = table[x_t]: the prediction of token t + 1 depends on token t only."""

    def __init__(self, vocab=7):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, x):
        return self.table(x)


class Trigram(Bigram):
    """logits_t = table[x_t] + prev[x_{t−1}] (nothing before a window's first token): a receptive
    field of two tokens, so any window that holds both gives the full-sequence answer."""

    def __init__(self, vocab=7):
        super().__init__(vocab)
        self.prev = nn.Embedding(vocab, vocab)

    def forward(self, x):
        shifted = F.pad(self.prev(x)[:, :-1], (0, 0, 1, 0))
        return self.table(x) + shifted


def _bigram_nll_by_hand(model, ids, targets):
    """Sum of −log p(ids[t] | ids[t−1]) over the target positions, one softmax row at a time."""
    logp = torch.log_softmax(model.table.weight.detach().double(), -1)
    return sum(-logp[ids[t - 1], ids[t]].item() for t in targets)


@pytest.mark.parametrize("n, window, stride, targets", [
    (10, 4, None, [1, 2, 3, 5, 6, 7, 8, 9]),  # windows at 0, 4 and 6 (moved back to end at 10): 4 unscored
    (10, 4, 2, range(1, 10)),                  # sliding: every token after the first, once
    (10, 16, None, range(1, 10)),              # one window longer than the text
    (23, 5, 3, range(1, 23)),
])
def test_perplexity_scores_each_target_once(n, window, stride, targets):
    torch.manual_seed(0)
    model, ids = Bigram(), torch.randint(0, 7, (n,))
    ppl, count = perplexity(model, ids, window, stride, batch_size=2)
    assert count == len(targets)
    assert ppl == pytest.approx(math.exp(_bigram_nll_by_hand(model, ids, targets) / len(targets)), rel=1e-5)


def test_sliding_window_equals_full_context_for_a_short_memory_model():
    torch.manual_seed(1)
    model, ids = Trigram(), torch.randint(0, 7, (100,))
    full = F.cross_entropy(model(ids[None])[0, :-1], ids[1:]).item()
    # window − stride ≥ 2: every scored prediction sees both tokens it depends on
    ppl, count = perplexity(model, ids, window=16, stride=8, batch_size=3)
    assert count == 99 and ppl == pytest.approx(math.exp(full), rel=1e-5)
    # without overlap, predictions at a window's start lose their context: a different number
    assert perplexity(model, ids, window=16)[0] != pytest.approx(math.exp(full), rel=1e-3)


def test_perplexity_of_a_gpt_and_a_hugging_face_style_output():
    torch.manual_seed(2)
    model = DecoderOnly(ModelConfig(11, d_model=16, num_heads=2, num_layers=1, max_len=32)).eval()
    ids = torch.randint(0, 11, (64,))
    with torch.no_grad():
        x = ids.view(2, 32)
        expected = math.exp(F.cross_entropy(model(x)[:, :-1].flatten(0, 1), x[:, 1:].flatten()).item())
    assert perplexity(model, ids, 32) == (pytest.approx(expected, rel=1e-5), 62)

    class HF(nn.Module):  # transformers models return an object with .logits
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return SimpleNamespace(logits=self.inner(x))

    assert perplexity(HF(), ids, 32)[0] == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- bad input

def test_bad_inputs_name_the_argument():
    w = _w(4, 8)
    with pytest.raises(ValueError, match="bits"):
        absmax_quantize(w, 3)
    with pytest.raises(ValueError, match="bits"):
        QuantizedLinear.from_linear(nn.Linear(8, 4), bits=2)
    with pytest.raises(ValueError, match="bits"):
        zeropoint_quantize(w, 16)
    with pytest.raises(ValueError, match="group_size"):
        QuantizedLinear.from_linear(nn.Linear(8, 4), bits=4, group_size=3)
    with pytest.raises(ValueError, match="group_size"):
        quantize_model(nn.Sequential(nn.Linear(10, 4)), bits=4, group_size=4)
    with pytest.raises(ValueError, match="axis"):
        absmax_quantize(w, 8, axis=2)
    with pytest.raises(ValueError, match="x must be"):
        absmax_quantize(torch.arange(4), 8)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="sparsity"):
            magnitude_mask(w, bad)
    with pytest.raises(ValueError, match="scope"):
        magnitude_prune(nn.Linear(3, 3), 0.5, scope="row")
    s, y = _w(2, 5), torch.zeros(2, dtype=torch.long)
    for T in (0, -1.0):
        with pytest.raises(ValueError, match="T "):
            distillation_loss(s, s, y, T=T)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, s, y, alpha=1.5)
    with pytest.raises(ValueError, match="teacher_logits"):
        distillation_loss(s, _w(2, 6), y)
    with pytest.raises(ValueError, match="targets"):
        distillation_loss(s, s, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="rank"):
        low_rank_factorize(nn.Linear(4, 4), rank=5)
    with pytest.raises(ValueError, match="exactly one"):
        low_rank_factorize(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="energy"):
        rank_for_energy(torch.ones(3), 0.0)
    for bad_ids in (torch.ones(1, dtype=torch.long), torch.ones(2, 5, dtype=torch.long), torch.rand(8)):
        with pytest.raises(ValueError, match="ids"):
            perplexity(Bigram(), bad_ids, 4)
    with pytest.raises(ValueError, match="window"):
        perplexity(Bigram(), torch.ones(8, dtype=torch.long), 1)
    for bad in (0, 5):
        with pytest.raises(ValueError, match="stride"):
            perplexity(Bigram(), torch.ones(8, dtype=torch.long), 4, stride=bad)
    with pytest.raises(ValueError, match="batch_size"):
        perplexity(Bigram(), torch.ones(8, dtype=torch.long), 4, batch_size=0)
