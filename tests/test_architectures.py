"""llm_course.transformer, chapter 08: the three models, parameter counting, pretraining objectives.

Independent references: PyTorch's own parameter count, torch.nn.TransformerDecoderLayer and
torch.nn.TransformerEncoder with copied weights, released models' reported counts, and
properties (causality, bidirectionality, padding invariance, reconstruction) checked directly.
"""

import itertools
import random

import pytest
import torch
from torch import nn

from llm_course.transformer import (ACTIVATIONS, ARCHITECTURES, CHATGLM_6B, GPT3_175B, IGNORE_INDEX, MODELS, NORMS,
                                    PUBLISHED, DecoderBlock, DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig,
                                    chatglm_6b_parameters, mask_tokens, parameter_breakdown, parameter_count,
                                    span_corrupt)


def numel(model: nn.Module, skip=lambda name: False) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not skip(name))


def random_configs(n: int, seed: int = 0):
    rng = random.Random(seed)
    for norm, act, tie, pre in itertools.product(NORMS, ACTIVATIONS, (True, False), (True, False)):
        for _ in range(n):
            heads = rng.randint(1, 4)
            yield ModelConfig(vocab_size=rng.randint(2, 300), d_model=heads * 2 * rng.randint(1, 4), num_heads=heads,
                              num_layers=rng.randint(1, 3), max_len=rng.randint(1, 40),
                              d_ff=rng.choice([None, rng.randint(1, 50)]), norm=norm, activation=act,
                              tie_weights=tie, prenorm=pre)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_formula_equals_pytorch_count(architecture):
    for config in random_configs(2, seed=ARCHITECTURES.index(architecture)):
        model = MODELS[architecture](config)
        assert parameter_count(config, architecture) == numel(model), config


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_rotary_and_bias_free_variants_match_the_model_without_those_tensors(architecture):
    # No table and no biases = the same model minus pos_emb and every tensor named *.bias.
    for config in random_configs(1, seed=7):
        model = MODELS[architecture](config)
        assert parameter_count(config, architecture, positions="rotary") == numel(model, lambda n: n == "pos_emb.weight")
        assert parameter_count(config, architecture, bias=False) == numel(model, lambda n: n.endswith(".bias"))


def test_breakdown_terms_match_the_modules_they_name():
    config = ModelConfig(vocab_size=50, d_model=16, num_heads=2, num_layers=3, max_len=12, tie_weights=False)
    model, parts = EncoderDecoder(config), parameter_breakdown(config, "encoder-decoder")
    attention = sum(numel(m) for name, m in model.named_modules() if name.endswith(("attn", "cross_attn")))
    ffn = sum(numel(m) for name, m in model.named_modules() if name.endswith("ffn"))
    assert parts["attention"] == attention and parts["feed-forward"] == ffn
    assert parts["embedding"] == numel(model.tok_emb) and parts["output layer"] == numel(model.lm_head)


def test_published_counts():
    for m in PUBLISHED.values():  # GPT-2's totals as the released checkpoints report them
        if m.reported:
            assert m.count() == m.reported, m.name
    assert chatglm_6b_parameters() == CHATGLM_6B.count() == 6_173_286_400
    # ChatGLM-6B with a separate lm_head would be 6.71B: the README says 6.2B
    assert parameter_count(CHATGLM_6B.config.__class__(**{**CHATGLM_6B.config.__dict__, "tie_weights": False}),
                           positions="rotary") == 6_707_929_088
    llama_7b = ModelConfig(32000, 4096, 32, 32, 2048, d_ff=11008, norm="rms", activation="swiglu", tie_weights=False)
    assert parameter_count(llama_7b, positions="rotary", bias=False) == 6_738_415_616  # as transformers reports it
    total = GPT3_175B.count()
    assert abs(total / 175e9 - 1) < 0.005           # "175B"
    assert GPT3_175B.config.d_model == 12288        # the notes' 12,288 dimensions
    c = GPT3_175B.config
    assert 0.99 < 12 * c.num_layers * c.d_model ** 2 / total < 1.0


def _config(**kw):
    return ModelConfig(**{**dict(vocab_size=40, d_model=16, num_heads=4, num_layers=2, max_len=20), **kw})


def test_decoder_only_is_causal():
    torch.manual_seed(0)
    model = DecoderOnly(_config()).eval()
    ids = torch.randint(0, 40, (2, 12))
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 3) % 40
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_encoder_only_is_bidirectional():
    torch.manual_seed(0)
    model = EncoderOnly(_config()).eval()
    ids = torch.randint(0, 40, (1, 10))
    changed = ids.clone()
    changed[0, 9] = (changed[0, 9] + 1) % 40
    assert not torch.allclose(model(ids)[:, 0], model(changed)[:, 0]), "the first token must see the last"


@pytest.mark.parametrize("prenorm", [True, False])
def test_encoder_decoder_source_padding_does_not_matter(prenorm):
    torch.manual_seed(0)
    model = EncoderDecoder(_config(prenorm=prenorm)).eval()
    src, tgt = torch.randint(0, 40, (1, 5)), torch.randint(0, 40, (1, 6))
    alone = model(src, tgt)
    padded = torch.cat([src, torch.randint(0, 40, (1, 4))], 1)       # 4 junk tokens after the source
    mask = torch.tensor([[True] * 5 + [False] * 4])
    torch.testing.assert_close(model(padded, tgt, mask), alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(model(padded, tgt), alone, atol=1e-4), "without the mask the padding leaks in"


def _rough(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return module.eval()


def _copy_attention(theirs: nn.MultiheadAttention, ours) -> None:
    theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
    theirs.out_proj.load_state_dict(ours.out_proj.state_dict())


@pytest.mark.parametrize("prenorm", [True, False])
def test_decoder_block_matches_torch_decoder_layer(prenorm):
    torch.manual_seed(1)
    block = _rough(DecoderBlock(16, 4, d_ff=40, prenorm=prenorm))
    layer = nn.TransformerDecoderLayer(16, 4, 40, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=prenorm).eval()
    with torch.no_grad():
        _copy_attention(layer.self_attn, block.attn)
        _copy_attention(layer.multihead_attn, block.cross_attn)
        layer.linear1.load_state_dict(block.ffn.up.state_dict())
        layer.linear2.load_state_dict(block.ffn.down.state_dict())
        for theirs, ours in ((layer.norm1, block.norm1), (layer.norm2, block.norm_cross), (layer.norm3, block.norm2)):
            theirs.load_state_dict(ours.state_dict())
    x, memory = torch.randn(3, 6, 16), torch.randn(3, 5, 16)
    lengths = torch.tensor([5, 3, 1])
    real = torch.arange(5) < lengths[:, None]
    ours = block(x, memory, memory_mask=real[:, None, None, :])
    theirs = layer(x, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(6), tgt_is_causal=True,
                   memory_key_padding_mask=~real)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("prenorm", [True, False])
def test_encoder_only_matches_torch_transformer_encoder(prenorm):
    torch.manual_seed(2)
    config = _config(prenorm=prenorm, d_ff=24, num_layers=3)
    model = _rough(EncoderOnly(config))
    layer = nn.TransformerEncoderLayer(16, 4, 24, dropout=0.0, activation="gelu", batch_first=True, norm_first=prenorm)
    final = nn.LayerNorm(16) if prenorm else None
    encoder = nn.TransformerEncoder(layer, 3, norm=final, enable_nested_tensor=False).eval()
    with torch.no_grad():
        for theirs, ours in zip(encoder.layers, model.blocks):
            _copy_attention(theirs.self_attn, ours.attn)
            theirs.linear1.load_state_dict(ours.ffn.up.state_dict())
            theirs.linear2.load_state_dict(ours.ffn.down.state_dict())
            theirs.norm1.load_state_dict(ours.norm1.state_dict())
            theirs.norm2.load_state_dict(ours.norm2.state_dict())
        if prenorm:
            final.load_state_dict(model.final_norm.state_dict())
    ids = torch.randint(0, 40, (2, 7))
    lengths = torch.tensor([7, 4])
    real = torch.arange(7) < lengths[:, None]
    ours = model.encode(ids, mask=real[:, None, None, :])
    theirs = encoder(model.embed(ids), src_key_padding_mask=~real)
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-4)


def test_mask_tokens_proportions_and_labels():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 1000, (200, 500), generator=g)
    inputs, labels = mask_tokens(ids, mask_id=1000, vocab_size=1001, generator=g)
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])
    assert abs(chosen.float().mean().item() - 0.15) < 0.005
    as_mask = (inputs[chosen] == 1000).float().mean().item()
    unchanged = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(as_mask - 0.8) < 0.01 and abs(unchanged - 0.1) < 0.01   # and ≈ 10% random tokens


def test_span_corruption_reconstructs_the_text():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 10, 57, 200):
        ids = torch.randint(0, 100, (n,), generator=g)
        inputs, targets = span_corrupt(ids, first_sentinel=100, generator=g)
        # fill each sentinel of the input with the tokens that follow it in the target
        fill, current = {}, None
        for t in targets.tolist():
            if t >= 100:
                current = t
                fill[t] = []
            else:
                fill[current].append(t)
        rebuilt = [x for t in inputs.tolist() for x in (fill[t] if t >= 100 else [t])]
        assert rebuilt == ids.tolist()
        noise = len(targets) - len(fill)
        assert noise == min(max(1, round(n * 0.15)), n - 1)
        assert all(fill[s] for s in list(fill)[:-1]) and fill[max(fill)] == []  # spans non-empty, last sentinel ends


@pytest.mark.parametrize("call,error,match", [
    (lambda: DecoderOnly(_config())(torch.tensor([[0, 40]])), ValueError, r"ids must lie in \[0, vocab_size=40\)"),
    (lambda: DecoderOnly(_config())(torch.zeros(1, 21, dtype=torch.long)), ValueError, "exceeds max_len=20"),
    (lambda: DecoderOnly(_config())(torch.zeros(1, 3)), ValueError, "ids must be an integer tensor"),
    (lambda: EncoderOnly(_config())(torch.zeros(3, dtype=torch.long)), ValueError, r"shape \(batch, T\)"),
    (lambda: EncoderDecoder(_config())(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long),
                                       torch.ones(1, 4, dtype=torch.bool)), ValueError, "src_mask must be a bool"),
    (lambda: DecoderBlock(16, 4)(torch.randn(1, 2, 8), torch.randn(1, 2, 16)), ValueError, "DecoderBlock input x"),
    (lambda: DecoderOnly({"vocab_size": 10}), TypeError, "config must be a ModelConfig"),
    (lambda: _config(vocab_size=0), ValueError, "vocab_size must be a positive int"),
    (lambda: _config(num_heads=3), ValueError, "divisible by num_heads"),
    (lambda: _config(norm="batch"), ValueError, "norm must be one of"),
    (lambda: _config(dropout=1.5), ValueError, "dropout must be"),
    (lambda: parameter_count(_config(), "gpt"), ValueError, "architecture must be one of"),
    (lambda: parameter_count(_config(), positions="sinusoidal"), ValueError, "positions must be one of"),
    (lambda: parameter_count(_config(), bias=1), TypeError, "bias must be a bool"),
    (lambda: parameter_count({"d_model": 8}), TypeError, "config must be a ModelConfig"),
    (lambda: mask_tokens(torch.zeros(3), 1, 5), ValueError, "ids must be an integer tensor"),
    (lambda: mask_tokens(torch.zeros(3, dtype=torch.long), 5, 5), ValueError, "mask_id must be an int"),
    (lambda: mask_tokens(torch.zeros(3, dtype=torch.long), 1, 5, p=0), ValueError, "p must be a float"),
    (lambda: span_corrupt(torch.zeros(1, dtype=torch.long), 5), ValueError, "at least 2 tokens"),
    (lambda: span_corrupt(torch.zeros(5, dtype=torch.long), 5, noise_density=1), ValueError, "noise_density"),
    (lambda: span_corrupt(torch.zeros(5, dtype=torch.long), 5, mean_span=0.5), ValueError, "mean_span"),
])
def test_bad_inputs_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
