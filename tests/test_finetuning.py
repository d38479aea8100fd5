"""llm_course.finetuning against independent references: the ``peft`` library's LoRA,
``sklearn.metrics``, a hand-written W + (alpha/r)·B·A, hand-computed cases; and bad input."""

import copy

import pytest
import torch
from torch import nn

from llm_course.finetuning import (ClassificationHead, LoRALinear, apply_lora, batches_by_length, predict,
                                   classification_report, confusion_matrix, count_trainable, evaluate,
                                   lora_layers, mark_trainable, saved_activation_bytes, training_state_bytes)

peft = pytest.importorskip("peft")
metrics = pytest.importorskip("sklearn.metrics")

# Tolerance of every float comparison here: float32 rounding of a few matrix products.
ATOL, RTOL = 1e-5, 1e-5


class TinyAttention(nn.Module):
    """Named like a Hugging Face BERT layer, so the same target names work for peft and us."""

    def __init__(self, d=12):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x):
        return self.norm(self.query(x) * self.key(x).sigmoid() + self.value(x))


def _random_lora_(layers, seed=0):
    """Give LoRA matrices non-zero values (B starts at zero, which would test nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a, b in layers:
            a.copy_(torch.randn(a.shape, generator=g))
            b.copy_(torch.randn(b.shape, generator=g))


@pytest.mark.parametrize("r,alpha", [(4, 8), (2, 1), (8, 32)])
def test_lora_matches_peft_before_and_after_merge(r, alpha):
    torch.manual_seed(0)
    base = nn.Sequential(TinyAttention(), TinyAttention())
    ours, theirs = copy.deepcopy(base), copy.deepcopy(base)
    wrapped = apply_lora(ours, ["query", "value"], r=r, alpha=alpha)
    theirs = peft.inject_adapter_in_model(
        peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=["query", "value"], lora_dropout=0.0), theirs)
    assert sorted(wrapped) == ["0.query", "0.value", "1.query", "1.value"]
    pairs = []
    for name in wrapped:
        mine, other = ours.get_submodule(name), theirs.get_submodule(name)
        assert mine.lora_A.shape == other.lora_A["default"].weight.shape == (r, 12)
        assert mine.lora_B.shape == other.lora_B["default"].weight.shape == (12, r)
        pairs.append((mine.lora_A, mine.lora_B))
    _random_lora_(pairs)
    with torch.no_grad():
        for name in wrapped:
            other = theirs.get_submodule(name)
            other.lora_A["default"].weight.copy_(ours.get_submodule(name).lora_A)
            other.lora_B["default"].weight.copy_(ours.get_submodule(name).lora_B)
    x = torch.randn(3, 5, 12)
    torch.testing.assert_close(ours(x), theirs(x), atol=ATOL, rtol=RTOL)
    for layer in lora_layers(ours):
        layer.merge()
    for name in wrapped:
        theirs.get_submodule(name).merge()
        torch.testing.assert_close(ours.get_submodule(name).base.weight,
                                   theirs.get_submodule(name).base_layer.weight, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ours(x), theirs(x), atol=ATOL, rtol=RTOL)


def test_lora_is_w_plus_scaled_ba_on_fixed_tensors():
    base = nn.Linear(3, 2)
    with torch.no_grad():
        base.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]]))
        base.bias.copy_(torch.tensor([0.5, -0.5]))
    layer = LoRALinear(base, r=1, alpha=3.0)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0], [-2.0]]))
    x = torch.tensor([[1.0, 1.0, 1.0]])
    # by hand: W x + b = [0.5, 2.5]; A x = 6; scale = 3 → B·6·3 = [18, −36]
    torch.testing.assert_close(layer(x), torch.tensor([[18.5, -33.5]]))
    torch.testing.assert_close(layer.delta_weight(), 3.0 * torch.tensor([[1.0, 2.0, 3.0], [-2.0, -4.0, -6.0]]))


def test_lora_starts_as_the_base_layer_and_only_lora_params_get_gradients():
    torch.manual_seed(0)
    base = nn.Linear(6, 4)
    x = torch.randn(5, 6)
    expected = base(x).detach()
    layer = LoRALinear(base, r=2, alpha=4)
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) == layer.lora_A.numel()
    torch.testing.assert_close(layer(x), expected, atol=0, rtol=0)  # B = 0: exactly the base output
    layer(x).pow(2).sum().backward()
    assert base.weight.grad is None and base.bias.grad is None
    assert layer.lora_A.grad is not None and layer.lora_B.grad is not None
    assert count_trainable(layer) == (2 * 6 + 4 * 2, 6 * 4 + 4 + 2 * 6 + 4 * 2)


def test_merge_unmerge_round_trip_is_exact_to_float32_rounding():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 8), r=4, alpha=8)
    _random_lora_([(layer.lora_A, layer.lora_B)])
    w0 = layer.base.weight.detach().clone()
    x = torch.randn(7, 16)
    before = layer(x).detach()
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), before, atol=ATOL, rtol=RTOL)
    layer.unmerge()
    torch.testing.assert_close(layer.base.weight, w0, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(layer(x), before, atol=ATOL, rtol=RTOL)


def test_merge_twice_and_unmerge_unmerged_raise():
    layer = LoRALinear(nn.Linear(4, 4), r=2)
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()


def test_lora_dropout_only_on_the_lora_path():
    torch.manual_seed(0)
    base = nn.Linear(8, 8)
    layer = LoRALinear(base, r=2, dropout=0.5).train()
    x = torch.randn(4, 8)
    torch.testing.assert_close(layer(x), base(x))  # B = 0: dropout cannot change anything
    _random_lora_([(layer.lora_A, layer.lora_B)])
    assert not torch.allclose(layer(x), layer.eval()(x))


@pytest.mark.parametrize("r", [0, -1, 2.5, True])
def test_bad_rank(r):
    with pytest.raises(ValueError, match="r "):
        LoRALinear(nn.Linear(3, 3), r=r)


def test_bad_alpha_and_base():
    with pytest.raises(ValueError, match="alpha"):
        LoRALinear(nn.Linear(3, 3), alpha=0)
    with pytest.raises(TypeError, match="base must be an nn.Linear"):
        LoRALinear(nn.Conv1d(3, 3, 1))


def test_apply_lora_freezes_everything_else_and_rejects_bad_targets():
    model = nn.Sequential(TinyAttention(), TinyAttention())
    apply_lora(model, ["value"], r=2, alpha=2)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["0.value.lora_A", "0.value.lora_B", "1.value.lora_A", "1.value.lora_B"]
    with pytest.raises(ValueError, match=r"target_names \['qeury'\] match no module.*query"):
        apply_lora(nn.Sequential(TinyAttention()), ["qeury"])
    with pytest.raises(TypeError, match="target_names: '0.norm' is a LayerNorm"):
        apply_lora(nn.Sequential(TinyAttention()), ["norm"])
    with pytest.raises(TypeError, match="target_names must be a list"):
        apply_lora(nn.Sequential(TinyAttention()), "query")
    with pytest.raises(ValueError, match="r "):
        apply_lora(nn.Sequential(TinyAttention()), ["query"], r=0)


def test_mark_trainable_and_count():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    assert mark_trainable(model, ["1."]) == 3 * 2 + 2
    assert count_trainable(model) == (8, 4 * 3 + 3 + 8)
    assert mark_trainable(model, [""]) == 23
    with pytest.raises(ValueError, match="prefixes: no parameter name starts with 'head.'"):
        mark_trainable(model, ["head."])


def test_head_mean_pooling_ignores_padding_and_cls_takes_position_0():
    torch.manual_seed(0)
    head = ClassificationHead(6, 3, pooling="mean", dropout=0.0)
    hidden = torch.randn(2, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    padded = hidden.clone()
    padded[0, 3:] = 100.0  # whatever sits at padded positions must not matter
    expected = head.proj(torch.stack([hidden[0, :3].mean(0), hidden[1].mean(0)]))
    torch.testing.assert_close(head(padded, mask), expected)
    torch.testing.assert_close(head(padded, mask.bool()), expected)
    torch.testing.assert_close(head(hidden), head.proj(hidden.mean(1)))
    cls = ClassificationHead(6, 3, pooling="cls", dropout=0.0)
    torch.testing.assert_close(cls(padded, mask), cls.proj(padded[:, 0]))


def test_head_bad_input():
    with pytest.raises(ValueError, match="pooling must be one of"):
        ClassificationHead(4, 2, pooling="max")
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        ClassificationHead(4, 0)
    head = ClassificationHead(4, 2)
    with pytest.raises(ValueError, match=r"hidden must be a float tensor of shape \(batch, T, 4\)"):
        head(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"mask must be a tensor of shape \(2, 3\)"):
        head(torch.randn(2, 3, 4), torch.ones(2, 4))


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    k = 2 + seed % 3
    y_true = torch.randint(0, k, (50 + seed,), generator=g)
    # mostly right, sometimes a class is never predicted (exercises zero_division)
    y_pred = torch.where(torch.rand(y_true.shape, generator=g) < 0.6, y_true,
                         torch.randint(0, max(1, k - 1), y_true.shape, generator=g))
    report = classification_report(y_true, y_pred, k)
    labels = list(range(k))
    assert report["accuracy"] == pytest.approx(metrics.accuracy_score(y_true, y_pred))
    assert report["macro_f1"] == pytest.approx(
        metrics.f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))
    assert report["f1"].tolist() == pytest.approx(
        metrics.f1_score(y_true, y_pred, average=None, labels=labels, zero_division=0).tolist())
    assert report["confusion"].tolist() == metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    assert confusion_matrix(y_true, y_pred, k).tolist() == report["confusion"].tolist()


def test_metrics_by_hand():
    y_true, y_pred = torch.tensor([0, 0, 0, 1, 2]), torch.tensor([0, 0, 1, 1, 1])
    r = classification_report(y_true, y_pred, 3)
    assert r["confusion"].tolist() == [[2, 1, 0], [0, 1, 0], [0, 1, 0]]
    # class 0: P=1, R=2/3 → F1=0.8; class 1: P=1/3, R=1 → 0.5; class 2: 0
    assert r["f1"].tolist() == pytest.approx([0.8, 0.5, 0.0])
    assert r["macro_f1"] == pytest.approx(1.3 / 3) and r["accuracy"] == pytest.approx(0.6)


def test_metrics_bad_input():
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="y_pred must be a 1-D integer tensor"):
        classification_report(torch.tensor([0, 1]), torch.tensor([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match=r"y_true must hold class ids in \[0, num_classes=2\)"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="same length"):
        classification_report(torch.tensor([0, 1]), torch.tensor([0]), 2)


def test_evaluate_restores_training_mode_and_matches_the_report():
    model = nn.Linear(3, 2).train()
    x = torch.randn(10, 3)
    y = torch.randint(0, 2, (10,))
    r = evaluate(model, [(x[:6], y[:6]), (x[6:], y[6:])], 2)
    assert model.training
    assert r["confusion"].tolist() == confusion_matrix(y, model(x).argmax(-1), 2).tolist()
    with pytest.raises(ValueError, match="batches is empty"):
        evaluate(model, [], 2)


def test_batches_by_length_trims_padding_and_keeps_every_row():
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    ids = torch.arange(12).view(3, 4) * mask
    batches = batches_by_length(ids, mask, torch.tensor([0, 1, 2]), batch_size=2)
    assert [b[0].shape for b in batches] == [(2, 2), (1, 4)]
    assert sorted(torch.cat([b[2] for b in batches]).tolist()) == [0, 1, 2]


def test_memory_accounting():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2))
    x = torch.randn(8, 10)
    full = saved_activation_bytes(model, lambda: model(x).sum())
    # the ReLU output (8×20) is the input of Linear 2 and is what ReLU's backward needs; the
    # input x of Linear 1 is saved for its weight gradient
    assert full >= 4 * (8 * 20 + 8 * 10)
    model.requires_grad_(False)
    assert saved_activation_bytes(model, lambda: model(x).sum()) == 0  # nothing needs a gradient
    assert training_state_bytes(model) == 4 * (10 * 20 + 20 + 20 * 2 + 2)
    model[2].requires_grad_(True)
    assert training_state_bytes(model) == 4 * (262 + 3 * 42)
