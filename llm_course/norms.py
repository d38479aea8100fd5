"""Normalisation layers: BatchNorm, LayerNorm, RMSNorm (chapter 07).

All three rescale activations to a standard size, then let the network rescale them with
learned parameters. They differ in *which numbers share one mean and variance*:

    x: (batch, features) or (batch, T, features) — features always LAST

    BatchNorm  one mean/variance per feature, over every sample (and position) in the batch
    LayerNorm  one mean/variance per sample (per token), over its features
    RMSNorm    like LayerNorm, but no mean: divide by the root-mean-square of the features

Note the layout: ``torch.nn.BatchNorm1d`` wants channels in dim 1, (N, C) or (N, C, L);
``BatchNorm`` here keeps features last, as every tensor in a transformer does, so a
(batch, T, features) input is ``BatchNorm1d`` on ``x.transpose(1, 2)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:80]


def _check_features(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {_describe(value)}")


def _check_eps(eps: object, *, allow_none: bool = False) -> None:
    if eps is None and allow_none:
        return
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"eps must be a float ≥ 0, got {_describe(eps)}")


def _check_last_dim(x: object, d: int, layer: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1 or x.shape[-1] != d:
        raise ValueError(f"{layer} input x must be a float tensor of shape (..., {d}), got {_describe(x)}")


class BatchNorm(nn.Module):
    """Batch normalisation (Ioffe & Szegedy, 2015), features last.

    Training: each feature is normalised with the mean and the *biased* variance (÷n) of the
    n = batch (· T) values it has in this batch, and the running statistics move towards them:

        running_mean ← (1 − momentum)·running_mean + momentum·mean
        running_var  ← (1 − momentum)·running_var  + momentum·var·n/(n − 1)   (unbiased)

    Eval (``model.eval()``): the running statistics are used and nothing is updated, so one
    sample's output no longer depends on the rest of its batch. Same conventions and
    defaults as ``torch.nn.BatchNorm1d`` (without ``momentum=None``'s cumulative average).

    Shapes: x (batch, features) or (batch, T, features) → same shape.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        _check_features("num_features", num_features)
        _check_eps(eps)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be a float in [0, 1], got {_describe(momentum)}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        # buffers: saved in state_dict and moved by .to(device), but not trained
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        dims = tuple(range(x.dim() - 1))  # every axis except the features: batch (and time)
        if self.training:
            n = x.numel() // x.shape[-1]  # values per feature
            mean = x.mean(dims)
            var = x.var(dims, unbiased=False)  # the batch's own spread: ÷n
            with torch.no_grad():  # the running statistics are bookkeeping, not part of the graph
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                # stored unbiased (÷(n−1)): it estimates the variance of the whole data set
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / (n - 1))
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() not in (2, 3):
            raise ValueError(f"BatchNorm input x must have shape (batch, features) or (batch, T, features), "
                             f"got {_describe(x)}")
        _check_last_dim(x, self.num_features, "BatchNorm")
        if self.training and x.numel() // x.shape[-1] < 2:
            # one value per feature: its variance is 0 and (x − mean) is 0 — the output would be
            # just the bias, whatever the input. PyTorch raises here too.
            raise ValueError(f"BatchNorm in training mode needs more than 1 value per feature, got x of "
                             f"shape {tuple(x.shape)}; use a larger batch or call .eval()")

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class LayerNorm(nn.Module):
    """Layer normalisation (Ba, Kiros & Hinton, 2016) over the last dim.

    Each vector x (one token's d features) becomes (x − mean) / √(var + ε) · weight + bias,
    with the biased variance (÷d). Every token is normalised on its own, so the output does
    not depend on the batch, on other positions or on padding, and training and eval agree.
    Same maths and defaults as ``torch.nn.LayerNorm(d)``.

    Shapes: x (..., d) → (..., d).
    """

    def __init__(self, d: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        _check_features("d", d)
        _check_eps(eps)
        self.d, self.eps = d, eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        _check_last_dim(x, self.d, "LayerNorm")
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        y = (x - mean) / torch.sqrt(var + self.eps) * self.weight
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"{self.d}, eps={self.eps}, bias={self.bias is not None}"


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang & Sennrich, 2019), as in LLaMA.

    x / √(mean(x²) + ε) · weight: no mean is subtracted and there is no bias — cheaper than
    LayerNorm, and in practice as good. ε sits *inside* the square root. ``eps=None`` (the
    default, as in ``torch.nn.RMSNorm``) means ``torch.finfo(x.dtype).eps``; LLaMA uses 1e-5
    or 1e-6.

    Shapes: x (..., d) → (..., d).
    """

    def __init__(self, d: int, eps: float | None = None):
        super().__init__()
        _check_features("d", d)
        _check_eps(eps, allow_none=True)
        self.d, self.eps = d, eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        _check_last_dim(x, self.d, "RMSNorm")
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return x / rms * self.weight

    def extra_repr(self) -> str:
        return f"{self.d}, eps={self.eps}"
