"""llm_course.transformer against torch.nn.TransformerEncoderLayer (copied weights) and hand checks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llm_course.attention import padding_mask
from llm_course.transformer import FeedForward, TransformerBlock, swiglu_hidden_size


def torch_layer_from(block: TransformerBlock, d_ff: int) -> nn.TransformerEncoderLayer:
    """A torch encoder layer holding exactly the block's weights."""
    layer = nn.TransformerEncoderLayer(block.d_model, block.attn.num_heads, d_ff, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=block.prenorm)
    a = block.attn
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        layer.self_attn.out_proj.load_state_dict(a.out_proj.state_dict())
        layer.linear1.load_state_dict(block.ffn.up.state_dict())
        layer.linear2.load_state_dict(block.ffn.down.state_dict())
        layer.norm1.load_state_dict(block.norm1.state_dict())
        layer.norm2.load_state_dict(block.norm2.state_dict())
    return layer.eval()


def _block(prenorm: bool, seed: int = 0) -> TransformerBlock:
    torch.manual_seed(seed)
    block = TransformerBlock(16, 4, d_ff=48, prenorm=prenorm)
    with torch.no_grad():  # non-trivial norms, so that mixing up norm1 / norm2 would show
        for p in (*block.norm1.parameters(), *block.norm2.parameters()):
            p.add_(0.3 * torch.randn(p.shape))
    return block.eval()


@pytest.mark.parametrize("prenorm", [True, False])
@pytest.mark.parametrize("mask_kind", [None, "causal", "padding"])
def test_block_matches_torch_encoder_layer(prenorm, mask_kind):
    block = _block(prenorm)
    layer = torch_layer_from(block, 48)
    x = torch.randn(3, 6, 16)
    if mask_kind == "causal":
        ours = block(x, is_causal=True)
        theirs = layer(x, src_mask=nn.Transformer.generate_square_subsequent_mask(6), is_causal=True)
    elif mask_kind == "padding":
        lengths = torch.tensor([6, 4, 2])
        ours = block(x, mask=padding_mask(lengths, 6))
        # torch: True = ignore this key
        theirs = layer(x, src_key_padding_mask=torch.arange(6) >= lengths[:, None])
        real = (torch.arange(6) < lengths[:, None])[..., None]
        ours, theirs = ours * real, theirs * real  # padded queries' outputs are not compared
    else:
        ours, theirs = block(x), layer(x)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_block_gradients_match_torch():
    block = _block(True).train()
    layer = torch_layer_from(block, 48).train()
    x = torch.randn(2, 5, 16)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    w = torch.randn(2, 5, 16)
    (block(a) * w).sum().backward()
    (layer(b) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(block.ffn.up.weight.grad, layer.linear1.weight.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(block.norm1.weight.grad, layer.norm1.weight.grad, atol=1e-5, rtol=1e-4)


def test_causal_flag_and_argument_agree_and_do_not_peek():
    block = _block(True)
    causal = TransformerBlock(16, 4, d_ff=48, causal=True).eval()
    causal.load_state_dict(block.state_dict())
    x = torch.randn(2, 7, 16)
    torch.testing.assert_close(causal(x), block(x, is_causal=True))
    x2 = x.clone()
    x2[:, 5:] = torch.randn(2, 2, 16)
    torch.testing.assert_close(causal(x2)[:, :5], causal(x)[:, :5])  # the future does not change the past


def test_rms_and_swiglu_block_runs_and_uses_rmsnorm():
    from llm_course.norms import RMSNorm

    block = TransformerBlock(32, 4, norm="rms", activation="swiglu", dropout=0.1)
    assert isinstance(block.norm1, RMSNorm) and block.ffn.d_ff == swiglu_hidden_size(32)
    assert block(torch.randn(2, 3, 32)).shape == (2, 3, 32)


def test_feedforward_matches_hand_written_mlps():
    x = torch.randn(2, 4, 8)
    gelu = FeedForward(8, 20)
    expected = F.linear(F.gelu(F.linear(x, gelu.up.weight, gelu.up.bias)), gelu.down.weight, gelu.down.bias)
    torch.testing.assert_close(gelu(x), expected)
    torch.testing.assert_close(gelu(x), nn.Sequential(gelu.up, nn.GELU(), gelu.down)(x))
    sw = FeedForward(8, 20, activation="swiglu")
    h = F.silu(x @ sw.gate.weight.T + sw.gate.bias) * (x @ sw.up.weight.T + sw.up.bias)
    torch.testing.assert_close(sw(x), h @ sw.down.weight.T + sw.down.bias)
    # position-wise: each token alone gives the same output
    torch.testing.assert_close(sw(x)[:, 2], sw(x[:, 2]))


def test_default_sizes_and_two_thirds_rule():
    assert FeedForward(64).d_ff == 256
    assert swiglu_hidden_size(4096, multiple_of=256) == 11008    # LLaMA-7B's FFN size
    d = 96
    gelu, sw = FeedForward(d, bias=False), FeedForward(d, activation="swiglu", bias=False)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(gelu) == 8 * d * d and n(sw) == 3 * d * swiglu_hidden_size(d) == 8 * d * d


@pytest.mark.parametrize("make,match", [
    (lambda: FeedForward(8, activation="relu"), "activation must be one of"),
    (lambda: FeedForward(0), "d_model must be a positive int"),
    (lambda: FeedForward(8, d_ff=-3), "d_ff must be a positive int"),
    (lambda: FeedForward(8, dropout=1.0), "dropout must be"),
    (lambda: TransformerBlock(16, 4, norm="batch"), "norm must be one of"),
    (lambda: TransformerBlock(16, 3), "divisible by num_heads"),
    (lambda: TransformerBlock(16, 4, dropout=-0.1), "dropout must be"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"TransformerBlock input x must have shape \(batch, T, d_model\) with d_model=16"):
        TransformerBlock(16, 4)(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="TransformerBlock input x"):
        TransformerBlock(16, 4)(torch.randn(5, 16))
    with pytest.raises(ValueError, match="FeedForward input x"):
        FeedForward(16)(torch.randn(2, 15))
