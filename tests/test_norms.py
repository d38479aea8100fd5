"""llm_course.norms against PyTorch's own layers: outputs, gradients, running statistics, eval mode."""

import pytest
import torch
from torch import nn

from llm_course.norms import BatchNorm, LayerNorm, RMSNorm


def _randomise(*modules: nn.Module, seed: int = 0) -> None:
    """Give several modules the same non-trivial affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for name, p in modules[0].named_parameters():
        value = torch.randn(p.shape, generator=g)
        with torch.no_grad():
            for m in modules:
                dict(m.named_parameters())[name].copy_(value)


@pytest.mark.parametrize("shape", [(8, 5), (4, 6, 5)])
@pytest.mark.parametrize("momentum", [0.1, 0.7])
def test_batchnorm_matches_torch_over_several_steps(shape, momentum):
    ours, theirs = BatchNorm(5, eps=1e-3, momentum=momentum), nn.BatchNorm1d(5, eps=1e-3, momentum=momentum)
    _randomise(ours, theirs)
    # torch wants channels in dim 1: (N, C) or (N, C, L)
    to_torch = (lambda t: t) if len(shape) == 2 else (lambda t: t.transpose(1, 2))
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x = 3 * torch.randn(shape, generator=g) + 2
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        y_ours, y_theirs = ours(a), to_torch(theirs(to_torch(b)))
        torch.testing.assert_close(y_ours, y_theirs, atol=1e-5, rtol=1e-4)
        w = torch.randn(shape, generator=g)
        (y_ours * w).sum().backward()
        (y_theirs * w).sum().backward()
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.running_mean, theirs.running_mean)
        torch.testing.assert_close(ours.running_var, theirs.running_var)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, atol=1e-4, rtol=1e-4)
    ours.eval(), theirs.eval()
    x = torch.randn(shape, generator=g)
    stored = ours.running_mean.clone()
    torch.testing.assert_close(ours(x), to_torch(theirs(to_torch(x))), atol=1e-5, rtol=1e-4)
    assert torch.equal(ours.running_mean, stored), "eval mode must not update the running statistics"


def test_batchnorm_hand_computed():
    # one feature, values 1 and 3: mean 2, biased var 1 → outputs -1/√(1+eps), +1/√(1+eps); unbiased var 2
    bn = BatchNorm(1, eps=0.0, momentum=0.5)
    y = bn(torch.tensor([[1.0], [3.0]]))
    assert torch.allclose(y, torch.tensor([[-1.0], [1.0]]))
    assert torch.allclose(bn.running_mean, torch.tensor([1.0]))          # 0.5·0 + 0.5·2
    assert torch.allclose(bn.running_var, torch.tensor([1.5]))           # 0.5·1 + 0.5·2


def test_batchnorm_batch_of_one_like_torch():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="more than 1 value per feature"):
        BatchNorm(3)(torch.randn(1, 3))
    assert BatchNorm(3).eval()(torch.randn(1, 3)).shape == (1, 3)         # eval: running statistics
    assert BatchNorm(3)(torch.randn(1, 4, 3)).shape == (1, 4, 3)          # 4 positions = 4 values per feature


@pytest.mark.parametrize("shape", [(7,), (4, 7), (2, 5, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_matches_torch(shape, bias):
    ours, theirs = LayerNorm(7, eps=1e-4, bias=bias), nn.LayerNorm(7, eps=1e-4, bias=bias)
    _randomise(ours, theirs)
    x = 5 * torch.randn(shape) + 3
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.testing.assert_close(ours(a), theirs(b))
    w = torch.randn(shape)
    (ours(a) * w).sum().backward()
    (theirs(b) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("eps", [None, 1e-6, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rmsnorm_matches_torch(eps, dtype):
    ours, theirs = RMSNorm(9, eps=eps).to(dtype), nn.RMSNorm(9, eps=eps).to(dtype)
    _randomise(ours, theirs)
    x = (0.3 * torch.randn(3, 4, 9) + 0.1).to(dtype)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.testing.assert_close(ours(a), theirs(b))
    (ours(a) ** 2).sum().backward()
    (theirs(b) ** 2).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)


def test_rmsnorm_hand_computed_and_no_centring():
    x = torch.tensor([3.0, 4.0])                  # mean(x²) = 12.5
    assert torch.allclose(RMSNorm(2, eps=0.0)(x), x / 12.5 ** 0.5)
    shifted = torch.randn(4, 6) + 10               # RMSNorm ≠ LayerNorm when the mean is far from 0 ...
    assert not torch.allclose(RMSNorm(6)(shifted), LayerNorm(6, bias=False)(shifted), atol=1e-2)
    centred = shifted - shifted.mean(-1, keepdim=True)   # ... and equal (up to eps) when it is 0
    torch.testing.assert_close(RMSNorm(6, eps=1e-5)(centred), LayerNorm(6, eps=1e-5, bias=False)(centred))


def test_layernorm_does_not_depend_on_the_batch():
    x = torch.randn(5, 8)
    ln = LayerNorm(8)
    torch.testing.assert_close(ln(x)[:1], ln(x[:1]))


@pytest.mark.parametrize("make,match", [
    (lambda: BatchNorm(0), "num_features must be a positive int"),
    (lambda: BatchNorm(3, momentum=1.5), "momentum must be"),
    (lambda: BatchNorm(3, eps=-1.0), "eps must be"),
    (lambda: LayerNorm(2.5), "d must be a positive int"),
    (lambda: RMSNorm(4, eps="small"), "eps must be"),
])
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer,x,match", [
    (BatchNorm(4), torch.randn(2, 3), r"x must be a float tensor of shape \(\.\.\., 4\)"),
    (BatchNorm(4), torch.randn(2, 3, 4, 4), "x must have shape"),
    (LayerNorm(4), torch.randn(3, 5), r"LayerNorm input x .* \(\.\.\., 4\)"),
    (LayerNorm(4), torch.ones(2, 4, dtype=torch.long), "float tensor"),
    (RMSNorm(4), [1.0, 2.0, 3.0, 4.0], "RMSNorm input x"),
])
def test_bad_inputs_name_the_argument(layer, x, match):
    with pytest.raises(ValueError, match=match):
        layer(x)
