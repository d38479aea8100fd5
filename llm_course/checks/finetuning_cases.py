"""Cases for lab 10 (fine-tuning): the learner's LoRA layer, classification head and metrics
are compared with ``llm_course.finetuning``; classic mistakes are recognised by recomputing them."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from llm_course import finetuning as ref
from llm_course.checks.engine import Case, Reason, compare_tensor, piece, randn
from llm_course.checks.remote import same_object

# --- 10.lora -----------------------------------------------------------------------------------

B_NOT_ZERO = ("at initialisation the output differs from the base layer's: B must start at zero (A random) "
              "so that training starts from the pretrained model")
BASE_TRAINABLE = "the base layer's weight or bias is still trainable: freeze it (requires_grad_(False))"


def _linear(gen: torch.Generator, d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(randn(gen, d_out, d_in) / d_in ** 0.5)
        if bias:
            layer.bias.copy_(randn(gen, d_out))
    return layer


def _build(cls, base: nn.Linear, r: int, alpha: float, **kwargs) -> tuple[nn.Module | None, Reason]:
    try:
        return cls(base, r=r, alpha=alpha, **kwargs), None
    except NotImplementedError:
        raise
    except Exception as err:
        return None, f"LoRALinear(base, r={r}, alpha={alpha}) could not be built: {type(err).__name__}: {err}"


def _lora_params(layer: nn.Module, r: int, d_in: int, d_out: int) -> tuple[Tensor | None, Tensor | None, Reason]:
    a, b = getattr(layer, "lora_A", None), getattr(layer, "lora_B", None)
    for name, p, shape in (("lora_A", a, (r, d_in)), ("lora_B", b, (d_out, r))):
        if not isinstance(p, nn.Parameter):
            return None, None, f"self.{name} should be an nn.Parameter, got {type(p).__name__}"
        if tuple(p.shape) != shape:
            hint = " (A is (r, in_features), B is (out_features, r))" if tuple(p.shape) == shape[::-1] else ""
            return None, None, f"self.{name} has shape {tuple(p.shape)}, expected {shape}{hint}"
    return a, b, None


def _init_case(name: str, gen: torch.Generator, d_in: int, d_out: int, r: int, alpha: float) -> Case:
    base = _linear(gen, d_in, d_out)
    x = randn(gen, 5, d_in)

    def run(cls) -> Reason:
        expected = base(x).detach()
        layer, reason = _build(cls, base, r, alpha)
        if reason:
            return reason
        a, b, reason = _lora_params(layer, r, d_in, d_out)
        if reason:
            return reason
        if torch.count_nonzero(a.detach()) == 0:
            return "lora_A is all zeros: A starts random (Kaiming), only B starts at zero — else no gradient reaches B"
        if not same_object(getattr(layer, "base", None), base):
            return "self.base should be the nn.Linear that was passed in"
        reason = compare_tensor(layer(x), expected, "the output at initialisation", atol=1e-6)
        if reason:
            return B_NOT_ZERO if torch.count_nonzero(b.detach()) else reason
        if any(p.requires_grad for p in base.parameters()):
            return BASE_TRAINABLE
        if not (a.requires_grad and b.requires_grad):
            return "lora_A and lora_B must be trainable (requires_grad=True)"
        layer(x).pow(2).sum().backward()
        a, b, _ = _lora_params(layer, r, d_in, d_out)  # read again: a layer in another process sends copies
        if a.grad is None or b.grad is None:
            return "no gradient reached lora_A or lora_B: use them in forward without .detach() or torch.no_grad()"
        return None

    return Case(name, run)


def _with_random_lora(gen: torch.Generator, cls, base: nn.Linear, r: int, alpha: float, **kwargs):
    """The learner's layer and the reference, both with the same non-zero A and B."""
    a, b = randn(gen, r, base.in_features), randn(gen, base.out_features, r)
    layer, reason = _build(cls, base, r, alpha, **kwargs)
    if reason:
        return None, None, reason
    pa, pb, reason = _lora_params(layer, r, base.in_features, base.out_features)
    if reason:
        return None, None, reason
    with torch.no_grad():
        pa.copy_(a)
        pb.copy_(b)
    reference = ref.LoRALinear(_copy_linear(base), r=r, alpha=alpha, **kwargs)
    with torch.no_grad():
        reference.lora_A.copy_(a)
        reference.lora_B.copy_(b)
    return layer, reference, None


def _wrapped_weight(layer: nn.Module, base: nn.Linear) -> Tensor:
    """base.weight as the layer holds it now (the init case checks that layer.base is base; a
    layer in another process holds a copy of ours, which merge() changes, not ours)."""
    return getattr(layer, "base", base).weight.detach()


def _copy_linear(base: nn.Linear) -> nn.Linear:
    clone = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
    clone.load_state_dict(base.state_dict())
    return clone


def _forward_mistakes(reference: ref.LoRALinear, x: Tensor) -> list[tuple[str, Tensor]]:
    base_out = reference.base(x).detach()
    low_rank = (x @ reference.lora_A.T @ reference.lora_B.T).detach()
    r, alpha = reference.r, reference.alpha
    return [
        ("the LoRA path is scaled by r/alpha; the scale is alpha/r", base_out + (r / alpha) * low_rank),
        ("the LoRA path is not scaled: multiply it by alpha/r", base_out + low_rank),
        ("the LoRA path is scaled by alpha alone; the scale is alpha/r", base_out + alpha * low_rank),
        ("the output is only the LoRA path: add it to the base layer's output", reference.scale * low_rank),
        ("the output is only the base layer's: the LoRA path (x·Aᵀ·Bᵀ) is missing", base_out),
    ]


def _forward_case(name: str, gen: torch.Generator, shape: tuple[int, ...], d_out: int, r: int, alpha: float,
                  bias: bool = True) -> Case:
    d_in = shape[-1]
    base = _linear(gen, d_in, d_out, bias)
    x = randn(gen, *shape)

    def run(cls) -> Reason:
        layer, reference, reason = _with_random_lora(gen, cls, base, r, alpha)
        if reason:
            return reason
        return compare_tensor(layer(x), reference(x).detach(), "the output", atol=1e-4,
                              known_mistakes=_forward_mistakes(reference, x))

    return Case(name, run)


def _merge_case(name: str, gen: torch.Generator, d_in: int, d_out: int, r: int, alpha: float) -> Case:
    base = _linear(gen, d_in, d_out)
    x = randn(gen, 4, d_in)

    def run(cls) -> Reason:
        layer, reference, reason = _with_random_lora(gen, cls, base, r, alpha)
        if reason:
            return reason
        w0 = base.weight.detach().clone()
        before = reference(x).detach()
        delta = (reference.lora_B @ reference.lora_A).detach()
        layer.merge()
        if getattr(layer, "merged", None) is not True:
            return "after merge() self.merged should be True"
        reason = compare_tensor(_wrapped_weight(layer, base), w0 + reference.scale * delta, "base.weight after merge()",
                                atol=1e-4, known_mistakes=[
                                    ("merge() added B·A without the alpha/r scale", w0 + delta),
                                    ("merge() added the update with scale r/alpha; the scale is alpha/r",
                                     w0 + delta * reference.r / reference.alpha),
                                    ("merge() did not change base.weight: add (alpha/r)·B·A to it", w0)])
        if reason:
            return reason
        reason = compare_tensor(layer(x), before, "the output after merge()", atol=1e-4, known_mistakes=[
            ("after merge() forward still adds the LoRA path: the update is counted twice",
             before + reference.scale * (x @ delta.T))])
        if reason:
            return reason
        layer.unmerge()
        if getattr(layer, "merged", None) is not False:
            return "after unmerge() self.merged should be False"
        reason = compare_tensor(_wrapped_weight(layer, base), w0, "base.weight after merge() then unmerge()", atol=1e-5)
        if reason:
            return reason + " — unmerge() must subtract exactly what merge() added"
        return compare_tensor(layer(x), before, "the output after merge() then unmerge()", atol=1e-4)

    return Case(name, run)


def _double_merge_case(gen: torch.Generator) -> Case:
    base = _linear(gen, 4, 4)

    def run(cls) -> Reason:
        layer, reason = _build(cls, base, 2, 4.0)
        if reason:
            return reason
        layer.merge()
        try:
            layer.merge()
        except RuntimeError:
            return None
        return "merging twice should raise RuntimeError (the update would be added twice)"

    return Case("merge() twice raises RuntimeError", run)


def _dropout_case(gen: torch.Generator) -> Case:
    base = _linear(gen, 6, 5)
    x = randn(gen, 3, 6)

    def run(cls) -> Reason:
        layer, reference, reason = _with_random_lora(gen, cls, base, 2, 4.0, dropout=0.5)
        if reason:
            return reason
        eval_out = reference.eval()(x).detach()
        reason = compare_tensor(layer.eval()(x), eval_out, "the output in eval mode with dropout=0.5", atol=1e-4)
        if reason:
            return reason
        if torch.allclose(layer.train()(x), eval_out):
            return "with dropout=0.5 in training mode the LoRA path should use self.dropout(x)"
        return None

    return Case("dropout (0.5) on the LoRA path only, off in eval mode", run)


@piece("10.lora", "LoRA linear layer: init, forward, merge/unmerge")
def lora_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    d = 6 + int(torch.randint(0, 4, (), generator=gen))
    cases = [
        _init_case(f"init: B = 0, A random, base frozen (in {d}, out 5, r 2)", gen, d, 5, 2, 4.0),
        _forward_case(f"forward (batch 4, in {d}) → out 5, r 2, alpha 4", gen, (4, d), 5, 2, 4.0),
        _forward_case("forward on (batch, T, in) input, r 4, alpha 1", gen, (2, 3, 8), 6, 4, 1.0),
        _merge_case("merge() then unmerge(): same outputs, weight restored", gen, d, 7, 3, 6.0),
    ]
    if extended:
        cases += [
            _init_case("init with r 8 > out_features 3", gen, 10, 3, 8, 16.0),
            _forward_case("forward, r 1, alpha 3, base without bias", gen, (5, 4), 4, 1, 3.0, bias=False),
            _forward_case("forward, r 8, alpha 16", gen, (3, 16), 12, 8, 16.0),
            _merge_case("merge/unmerge, r 1, alpha 0.5", gen, 5, 5, 1, 0.5),
            _double_merge_case(gen),
            _dropout_case(gen),
        ]
    return cases


# --- 10.head -----------------------------------------------------------------------------------


def _lengths_mask(lengths: list[int], T: int) -> Tensor:
    return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).long()


def _head_case(name: str, gen: torch.Generator, pooling: str, lengths: list[int] | None, T: int, d: int,
               classes: int, bool_mask: bool = False) -> Case:
    hidden = randn(gen, len(lengths) if lengths else 2, T, d)
    mask = None if lengths is None else _lengths_mask(lengths, T)
    if mask is not None:
        hidden = hidden.masked_fill(~mask.bool()[..., None], 7.0)  # padding vectors that would show
        mask = mask.bool() if bool_mask else mask
    weights = {"weight": randn(gen, classes, d), "bias": randn(gen, classes)}

    def run(cls) -> Reason:
        try:
            head = cls(d, classes, pooling=pooling, dropout=0.0)
        except NotImplementedError:
            raise
        except Exception as err:
            return f"ClassificationHead({d}, {classes}, pooling={pooling!r}) could not be built: {err}"
        reference = ref.ClassificationHead(d, classes, pooling=pooling, dropout=0.0)
        proj = getattr(head, "proj", None)
        if not isinstance(proj, nn.Linear):
            return "self.proj should be the nn.Linear(d_model, num_classes) made in __init__"
        with torch.no_grad():
            for module in (proj, reference.proj):
                module.weight.copy_(weights["weight"])
                module.bias.copy_(weights["bias"])
        lin = reference.proj
        known = [
            ("mean pooling averaged over the padding too: average only the positions where mask is 1",
             lin(hidden.mean(1))),
            ("[CLS] pooling took the last position; [CLS] is the first token (position 0)", lin(hidden[:, -1])),
            ("mean pooling summed the real tokens but did not divide by their number", lin(
                (hidden * (mask if mask is not None else torch.ones(hidden.shape[:2])).float()[..., None]).sum(1))),
            ("pooled the wrong way: mean pooling was asked for, not [CLS] (position 0)", lin(hidden[:, 0])),
        ]
        return compare_tensor(head.eval()(hidden, mask), reference.eval()(hidden, mask).detach(), "the logits",
                              atol=1e-4, known_mistakes=known)

    return Case(name, run)


@piece("10.head", "classification head: pooling, dropout, linear")
def head_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _head_case("mean pooling, 3 sequences with padding (0/1 mask)", gen, "mean", [5, 2, 3], 5, 8, 3),
        _head_case("[CLS] pooling, with padding", gen, "cls", [4, 1], 4, 6, 2),
        _head_case("mean pooling, mask=None (no padding)", gen, "mean", None, 4, 6, 3),
    ]
    if extended:
        cases += [
            _head_case("mean pooling, bool mask", gen, "mean", [1, 6, 3, 2], 6, 5, 4, bool_mask=True),
            _head_case("mean pooling, one real token each", gen, "mean", [1, 1], 3, 4, 2),
            _head_case("[CLS] pooling, mask=None", gen, "cls", None, 3, 4, 5),
        ]
    return cases


# --- 10.confusion / 10.report ------------------------------------------------------------------


def _labels(gen: torch.Generator, n: int, k: int, accuracy: float = 0.6, never: int | None = None):
    # unbalanced classes (class c is about twice as frequent as class c+1), as in real data
    y_true = torch.multinomial(0.5 ** torch.arange(k, dtype=torch.float64), n, replacement=True, generator=gen)
    noise = torch.randint(0, k, (n,), generator=gen)
    if never is not None:  # a class the model never predicts (precision 0/0)
        noise = torch.where(noise == never, (noise + 1) % k, noise)
    y_pred = torch.where(torch.rand(n, generator=gen) < accuracy, y_true, noise)
    if never is not None:
        y_pred = torch.where(y_pred == never, (y_pred + 1) % k, y_pred)
    return y_true, y_pred


def _confusion_case(name: str, gen: torch.Generator, n: int, k: int, **kwargs) -> Case:
    y_true, y_pred = _labels(gen, n, k, **kwargs)

    def run(fn) -> Reason:
        expected = ref.confusion_matrix(y_true, y_pred, k)
        return compare_tensor(fn(y_true.clone(), y_pred.clone(), k), expected, "the confusion matrix", known_mistakes=[
            ("the confusion matrix is transposed: rows are the TRUE classes, columns the predicted ones",
             expected.T.contiguous())])

    return Case(name, run)


@piece("10.confusion", "confusion matrix")
def confusion_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _confusion_case("3 classes, 40 examples", gen, 40, 3),
        _confusion_case("4 classes, one never predicted", gen, 30, 4, never=2),
    ]
    if extended:
        cases += [
            _confusion_case("2 classes, 7 examples", gen, 7, 2),
            _confusion_case("5 classes, 200 examples, all correct", gen, 200, 5, accuracy=1.0),
            _confusion_case("1 example", gen, 1, 3),
        ]
    return cases


def _report_mistakes(y_true: Tensor, y_pred: Tensor, k: int, expected: dict) -> list[tuple[str, Tensor]]:
    f1 = expected["f1"]
    support = torch.bincount(y_true, minlength=k).double()
    return [
        ("macro_f1 equals the accuracy (that is micro-F1): macro-F1 is the plain mean of the per-class F1 scores",
         torch.tensor(expected["accuracy"])),
        ("macro_f1 is weighted by class frequency (that is 'weighted' F1): macro-F1 gives every class the same "
         "weight", (f1 * support).sum() / support.sum()),
    ]


def _report_case(name: str, gen: torch.Generator, n: int, k: int, **kwargs) -> Case:
    y_true, y_pred = _labels(gen, n, k, **kwargs)

    def run(fn) -> Reason:
        expected = ref.classification_report(y_true, y_pred, k)
        got = fn(y_true.clone(), y_pred.clone(), k)
        if not isinstance(got, dict):
            return f"should return a dict, got {type(got).__name__}"
        missing = {"accuracy", "macro_f1", "f1", "confusion"} - set(got)
        if missing:
            return f"the returned dict misses the key(s) {sorted(missing)}"
        for key in ("accuracy", "macro_f1"):
            if not isinstance(got[key], (float, int)) or isinstance(got[key], bool):
                return f"{key!r} should be a Python float (use .item()), got {type(got[key]).__name__}"
        reason = compare_tensor(torch.as_tensor(got["accuracy"], dtype=torch.float64),
                                torch.tensor(expected["accuracy"], dtype=torch.float64), "'accuracy'")
        if reason:
            return reason
        reason = compare_tensor(got["f1"], expected["f1"], "the per-class F1 ('f1')", known_mistakes=[
            ("per-class F1 is NaN or wrong for a class with no predictions: when TP+FP = 0 take its F1 as 0",
             expected["f1"])])
        if reason:
            if isinstance(got["f1"], Tensor) and torch.isnan(got["f1"].double()).any():
                return "per-class F1 contains NaN: a class with no predictions (TP+FP = 0) gets precision 0, F1 0"
            return reason
        reason = compare_tensor(torch.as_tensor(got["macro_f1"], dtype=torch.float64),
                                torch.tensor(expected["macro_f1"], dtype=torch.float64), "'macro_f1'",
                                known_mistakes=_report_mistakes(y_true, y_pred, k, expected))
        if reason:
            return reason
        return compare_tensor(got["confusion"], expected["confusion"], "'confusion'", known_mistakes=[
            ("the confusion matrix is transposed: rows are the TRUE classes", expected["confusion"].T.contiguous())])

    return Case(name, run)


@piece("10.report", "accuracy, per-class F1, macro-F1")
def report_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _report_case("3 unbalanced classes, 60 examples", gen, 60, 3),
        _report_case("4 classes, one never predicted (0/0 precision)", gen, 40, 4, never=1),
    ]
    if extended:
        cases += [
            _report_case("2 classes, 9 examples", gen, 9, 2, accuracy=0.3),
            _report_case("5 classes, 300 examples", gen, 300, 5),
            _report_case("all correct", gen, 20, 3, accuracy=1.0),
        ]
    return cases
