"""Fine-tuning a pretrained model: freezing, LoRA, a classification head, and evaluation.

Three ways to adapt a pretrained network to a task, from cheapest to dearest:

* **frozen backbone + head**: every pretrained weight keeps ``requires_grad=False``; only a
  small ``ClassificationHead`` on top is trained (``mark_trainable``);
* **LoRA** (Hu et al., 2021): chosen ``nn.Linear`` layers become ``LoRALinear`` — the frozen
  weight W plus a trainable low-rank update (alpha/r)·B·A (``apply_lora``);
* **full fine-tuning**: every parameter is trained.

``count_trainable`` counts what each choice trains; ``classification_report`` and
``evaluate`` measure the result (accuracy, macro-F1, confusion matrix).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_course.attention import _describe
from llm_course.transformer import _check_dropout

POOLINGS = ("mean", "cls")


# --- LoRA --------------------------------------------------------------------------------------


def _check_rank(r: object) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ValueError(f"r (the LoRA rank) must be a positive int, got {_describe(r)}")


def _check_alpha(alpha: object) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha must be a positive number, got {_describe(alpha)}")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (LoRA, Hu et al. 2021).

        y = base(x) + (alpha / r) · dropout(x) Aᵀ Bᵀ          A: (r, in), B: (out, r)

    The base weight W (out, in) and bias are frozen. A starts random (Kaiming-uniform, as
    ``nn.Linear`` and ``peft``), B starts at zero, so at initialisation the layer computes
    exactly what the base layer computes and training starts from the pretrained model.
    Only r·(in + out) numbers are trained instead of in·out. Dividing by r keeps the update's
    size roughly independent of the rank, so alpha need not be re-tuned when r changes.

    ``merge()`` folds the update into the weight, W ← W + (alpha/r)·B·A, so inference costs
    nothing extra; ``unmerge()`` takes it out again. In float32 a merge/unmerge round trip
    restores W up to rounding (≈1e-7 relative), not bit for bit.

    Shapes: x (..., in_features) → (..., out_features).
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be an nn.Linear, got {_describe(base)}")
        _check_rank(r)
        _check_alpha(alpha)
        _check_dropout(dropout)
        self.base = base
        self.r, self.alpha, self.scale = r, alpha, alpha / r
        base.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)
        self.merged = False

    def forward(self, x: Tensor) -> Tensor:
        if self.merged:  # the update already lives inside base.weight
            return self.base(x)
        return self.base(x) + self.scale * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)

    def delta_weight(self) -> Tensor:
        """The update (alpha/r)·B·A, shape (out_features, in_features)."""
        return self.scale * (self.lora_B @ self.lora_A)

    def merge(self) -> None:
        """W ← W + (alpha/r)·B·A; afterwards forward is a single matrix multiply."""
        if self.merged:
            raise RuntimeError("merge(): this LoRALinear is already merged; call unmerge() first")
        with torch.no_grad():
            self.base.weight += self.delta_weight()
        self.merged = True

    def unmerge(self) -> None:
        """W ← W − (alpha/r)·B·A: undo ``merge()`` (e.g. to keep training A and B)."""
        if not self.merged:
            raise RuntimeError("unmerge(): this LoRALinear is not merged; call merge() first")
        with torch.no_grad():
            self.base.weight -= self.delta_weight()
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, merged={self.merged}"


def apply_lora(model: nn.Module, target_names: Iterable[str], r: int = 8, alpha: float = 16.0,
               dropout: float = 0.0, layer_cls: type[nn.Module] | None = None) -> list[str]:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose own name is in ``target_names``.

    A module's own name is the last part of its dotted path: ``"query"`` matches
    ``encoder.layer.0.attention.self.query`` in every layer. Afterwards only the LoRA matrices
    are trainable. ``layer_cls`` (default ``LoRALinear``) is the wrapper, built as
    ``layer_cls(linear, r=r, alpha=alpha, dropout=dropout)`` — a lab passes the learner's.
    Returns the dotted paths of the wrapped modules.
    """
    layer_cls = layer_cls or LoRALinear
    if isinstance(target_names, str):
        raise TypeError(f"target_names must be a list of module names, got the string {target_names!r}")
    targets = set(target_names)
    if not targets:
        raise ValueError("target_names must name at least one module, got an empty list")
    _check_rank(r)
    _check_alpha(alpha)
    matches = [(name, module) for name, module in model.named_modules()
               if name.rsplit(".", 1)[-1] in targets and not isinstance(module, layer_cls)]
    unknown = targets - {name.rsplit(".", 1)[-1] for name, _ in matches}
    if unknown:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"target_names {sorted(unknown)} match no module of the model; "
                         f"its nn.Linear names are {linears}")
    for name, module in matches:
        if not isinstance(module, nn.Linear):
            raise TypeError(f"target_names: {name!r} is a {type(module).__name__}, LoRA wraps nn.Linear only")
    model.requires_grad_(False)
    for name, module in matches:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer_cls(module, r=r, alpha=alpha, dropout=dropout))
    return [name for name, _ in matches]


def lora_layers(model: nn.Module) -> list[nn.Module]:
    """Every module of ``model`` that has ``merge``/``unmerge`` and a ``lora_A`` (ours or a learner's)."""
    return [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "merge")]


def mark_trainable(model: nn.Module, prefixes: Iterable[str] = ()) -> int:
    """Freeze every parameter of ``model`` except those whose name starts with one of ``prefixes``.

    ``mark_trainable(clf, ["head."])`` is "frozen backbone + head"; ``prefixes=[""]`` trains
    everything. Returns the number of trainable parameters.
    """
    if isinstance(prefixes, str):
        raise TypeError(f"prefixes must be a list of name prefixes, got the string {prefixes!r}")
    prefixes = tuple(prefixes)
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise ValueError(f"prefixes: no parameter name starts with {prefix!r}")
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(prefixes))
    return count_trainable(model)[0]


def count_trainable(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a tied weight is counted once."""
    params = list({id(p): p for p in model.parameters()}.values())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# --- a classification head ---------------------------------------------------------------------


class ClassificationHead(nn.Module):
    """Turn an encoder's token vectors into class logits: pool → dropout → linear.

    pooling="mean": the average of the vectors of the real tokens (mask True / 1), never the
    padding; pooling="cls": the vector at position 0 (BERT's ``[CLS]`` token). Attributes:
    ``dropout``, ``proj`` (``nn.Linear(d_model, num_classes)``).

    Shapes: hidden (batch, T, d_model), mask (batch, T) bool or 0/1, or None (no padding)
    → logits (batch, num_classes).
    """

    def __init__(self, d_model: int, num_classes: int, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        for name, value in (("d_model", d_model), ("num_classes", num_classes)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {_describe(value)}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        _check_dropout(dropout)
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, num_classes)

    def pool(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        """One vector per sequence: (batch, T, d_model) → (batch, d_model)."""
        _check_hidden(hidden, mask, self.proj.in_features)
        if self.pooling == "cls":
            return hidden[:, 0]
        if mask is None:
            return hidden.mean(1)
        m = mask.to(hidden.dtype).unsqueeze(-1)  # (batch, T, 1): 1 = real token
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)

    def forward(self, hidden: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.proj(self.dropout(self.pool(hidden, mask)))


def _check_hidden(hidden: object, mask: object, d_model: int) -> None:
    if not isinstance(hidden, Tensor) or hidden.dim() != 3 or hidden.shape[-1] != d_model:
        raise ValueError(f"hidden must be a float tensor of shape (batch, T, {d_model}), got {_describe(hidden)}")
    if mask is not None and (not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(hidden.shape[:2])):
        raise ValueError(f"mask must be a tensor of shape {tuple(hidden.shape[:2])} (batch, T), "
                         f"got {_describe(mask)}")


class EncoderClassifier(nn.Module):
    """A Hugging Face encoder (e.g. MiniLM) with a ``ClassificationHead`` on its last layer.

    forward(ids (batch, T), mask (batch, T)) → logits (batch, num_classes). Parameter names
    start with ``encoder.`` or ``head.``, which is what ``mark_trainable`` selects on.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.head(hidden, mask)


# --- evaluation --------------------------------------------------------------------------------


def _check_labels(y_true: object, y_pred: object, num_classes: object) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive int, got {_describe(num_classes)}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(f"{name} must be a 1-D integer tensor of class ids, got {_describe(y)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"{name} must hold class ids in [0, num_classes={num_classes})")
    if y_true.shape != y_pred.shape or y_true.numel() == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and the same length, got "
                         f"{y_true.numel()} and {y_pred.numel()}")


def confusion_matrix(y_true: Tensor, y_pred: Tensor, num_classes: int) -> Tensor:
    """C[i, j] = how many examples of true class i were predicted as class j (rows = truth).

    Same convention as ``sklearn.metrics.confusion_matrix``. Returns int64 (num_classes, num_classes).
    """
    _check_labels(y_true, y_pred, num_classes)
    flat = y_true.long() * num_classes + y_pred.long()  # one bin per (true, predicted) pair
    return torch.bincount(flat, minlength=num_classes ** 2).view(num_classes, num_classes)


def classification_report(y_true: Tensor, y_pred: Tensor, num_classes: int) -> dict:
    """Accuracy, per-class F1, macro-F1 and the confusion matrix of a set of predictions.

    For class c: precision = TP/(TP+FP) (column c), recall = TP/(TP+FN) (row c),
    F1 = 2PR/(P+R), taken as 0 when a denominator is 0 (sklearn's ``zero_division=0``).
    Macro-F1 is the plain mean of the per-class F1 — every class counts the same, however
    rare — whereas accuracy (= micro-F1 for single-label tasks) weights classes by frequency.

    Returns {"accuracy": float, "macro_f1": float, "f1": Tensor (num_classes,),
    "confusion": Tensor (num_classes, num_classes)}.
    """
    _check_labels(y_true, y_pred, num_classes)
    cm = confusion_matrix(y_true, y_pred, num_classes).double()
    tp = cm.diagonal()
    precision = tp / cm.sum(0).clamp(min=1)
    recall = tp / cm.sum(1).clamp(min=1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros_like(tp))
    return {"accuracy": (tp.sum() / cm.sum()).item(), "macro_f1": f1.mean().item(), "f1": f1,
            "confusion": cm.long()}


@torch.no_grad()
def predict(model: Callable[..., Tensor], batches: Iterable[tuple[Tensor, ...]]) -> tuple[Tensor, Tensor]:
    """(y_true, y_pred) of ``model`` over ``batches`` of (inputs..., labels), on the CPU.

    The last element of each batch is the labels; the rest is passed to ``model``, which
    returns logits (batch, num_classes). An ``nn.Module`` is put in eval mode (no dropout)
    and restored to its previous mode afterwards.
    """
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    try:
        truth, preds = [], []
        for *inputs, labels in batches:
            preds.append(model(*inputs).argmax(-1).cpu())
            truth.append(labels.cpu())
    finally:
        if was_training:
            model.train()
    if not truth:
        raise ValueError("batches is empty: nothing to evaluate")
    return torch.cat(truth), torch.cat(preds)


def evaluate(model: Callable[..., Tensor], batches: Iterable[tuple[Tensor, ...]], num_classes: int) -> dict:
    """``classification_report`` of ``model``'s predictions over ``batches`` (see ``predict``)."""
    return classification_report(*predict(model, batches), num_classes)


# --- data and measurement helpers --------------------------------------------------------------

SENTIMENT_LABELS = ("negative", "neutral", "positive")
VAL_POOL = 5000  # the first 5000 tweets of the fixed shuffle are never trained on


@functools.lru_cache(maxsize=8)
def tweet_splits(n_train: int, n_val: int, max_len: int = 48, seed: int = 0
                 ) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """Disjoint random subsets of ``english_sentiment()``, tokenised for MiniLM (cached).

    One fixed shuffle (``seed``) of the 38k tweets: validation = its first ``n_val`` tweets,
    train = ``n_train`` tweets after the first ``VAL_POOL``, so the held-out set never depends
    on ``n_train``. Returns {"train": (ids, mask, labels), "val": ...}; ids and mask are
    (N, max_len) int64 (right-padded, truncated), labels index ``SENTIMENT_LABELS``.
    """
    from llm_course.data import english_sentiment
    from llm_course.pretrained import load_minilm

    data = english_sentiment()
    if not 0 < n_val <= VAL_POOL or not 0 < n_train <= len(data) - VAL_POOL:
        raise ValueError(f"need 0 < n_val <= {VAL_POOL} and 0 < n_train <= {len(data) - VAL_POOL}, "
                         f"got n_val={n_val}, n_train={n_train}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    _, tokenizer = load_minilm()
    out = {}
    for split, idx in (("val", order[:n_val]), ("train", order[VAL_POOL:VAL_POOL + n_train])):
        enc = tokenizer([data[i][0] for i in idx], padding="max_length", truncation=True,
                        max_length=max_len, return_tensors="pt")
        labels = torch.tensor([SENTIMENT_LABELS.index(data[i][1]) for i in idx])
        out[split] = (enc["input_ids"], enc["attention_mask"], labels)
    return out



def batches_by_length(ids: Tensor, mask: Tensor, labels: Tensor, batch_size: int,
                      shuffle_gen: torch.Generator | None = None) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Cut padded (N, T) token ids into batches of similar length, trimmed to their longest row.

    Sorting by length before batching removes most padding, which is most of the cost on a
    CPU. With ``shuffle_gen`` the order of the batches is shuffled (for training).
    """
    lengths = mask.sum(1)
    order = torch.argsort(lengths, stable=True)
    out = []
    for chunk in order.split(batch_size):
        T = int(lengths[chunk].max())
        out.append((ids[chunk, :T], mask[chunk, :T], labels[chunk]))
    if shuffle_gen is not None:
        out = [out[i] for i in torch.randperm(len(out), generator=shuffle_gen).tolist()]
    return out


def saved_activation_bytes(model: nn.Module, loss_fn: Callable[[], Tensor]) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``loss_fn()``.

    The parameters of ``model`` are not counted (they exist anyway) and a tensor saved twice
    counts once. This is the activation memory a training step needs on top of weights,
    gradients and optimizer state — measured, not estimated. A layer whose weight is frozen
    and whose input needs no gradient saves nothing.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[tuple, int] = {}

    def pack(t: Tensor) -> Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[(ptr, t.storage_offset(), tuple(t.shape))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn()
    return sum(seen.values())


def training_state_bytes(model: nn.Module, optimizer_states_per_param: int = 2) -> int:
    """Bytes of weights + gradients + optimizer state (AdamW keeps 2 numbers per trainable parameter)."""
    params = list({id(p): p for p in model.parameters()}.values())
    weights = sum(p.numel() * p.element_size() for p in params)
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    return weights + trainable * (1 + optimizer_states_per_param)


def cross_entropy_step(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: tuple[Tensor, ...],
                       labels: Tensor) -> float:
    """One optimisation step of ``F.cross_entropy(model(*inputs), labels)``; returns the loss."""
    loss = F.cross_entropy(model(*inputs), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()
