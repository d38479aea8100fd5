"""Cases for lab 01 (recurrent networks). Each piece compares the learner's code with
``llm_course.rnn`` and recognises the classic mistakes by recomputing them."""

from __future__ import annotations

import torch
from torch import Tensor

from llm_course import rnn as ref
from llm_course.checks.engine import Case, Reason, compare_gradients, compare_tensor, piece, randn


def _weights(gen: torch.Generator, d_in: int, d_h: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(weight_ih, weight_hh, bias_ih, bias_hh) at a scale where tanh is neither linear nor saturated."""
    return (0.6 * randn(gen, d_h, d_in), 0.6 * randn(gen, d_h, d_h), 0.5 * randn(gen, d_h), 0.5 * randn(gen, d_h))


# --- 01.rnn_cell -----------------------------------------------------------------------


def _cell_variant(x, h, w_ih, w_hh, b_ih, b_hh, *, act=torch.tanh, swap=False, transpose=True, bias_hh=True,
                  bias_ih=True, use_h=True):
    """The reference cell with one deliberate mistake."""
    if swap:  # W_hh applied to the input, W_ih to the state
        w_ih, w_hh = w_hh, w_ih
    mm = (lambda a, w: a @ w.T) if transpose else (lambda a, w: a @ w)
    pre = mm(x, w_ih) + (mm(h, w_hh) if use_h else 0)
    pre = pre + (b_ih if bias_ih else 0) + (b_hh if bias_hh else 0)
    return act(pre)


CELL_MISTAKES = {
    "tanh is missing: the new state must be tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)": dict(act=lambda t: t),
    "wrong nonlinearity: an Elman RNN uses tanh (not sigmoid)": dict(act=torch.sigmoid),
    "wrong nonlinearity: an Elman RNN uses tanh (not relu)": dict(act=torch.relu),
    "W_hh was applied to x and W_ih to h: weight_ih reads the input, weight_hh the previous state": dict(swap=True),
    "the weights were not transposed: use x @ weight_ih.T (weights are stored (d_h, d_in), as in torch.nn.RNN)":
        dict(transpose=False),
    "bias_hh is missing (torch.nn.RNN has two biases, b_ih and b_hh; add both)": dict(bias_hh=False),
    "bias_ih is missing (torch.nn.RNN has two biases, b_ih and b_hh; add both)": dict(bias_ih=False),
    "the previous state h is ignored: the cell must read its memory through weight_hh": dict(use_h=False),
}


def _cell_case(name: str, gen: torch.Generator, batch: int, d_in: int, d_h: int) -> Case:
    x, h = randn(gen, batch, d_in), 0.8 * randn(gen, batch, d_h).tanh()
    w = _weights(gen, d_in, d_h)

    def run(fn) -> Reason:
        got = fn(x.clone(), h.clone(), *(t.clone() for t in w))
        mistakes = []
        for hint, kw in CELL_MISTAKES.items():
            try:
                mistakes.append((hint, _cell_variant(x, h, *w, **kw)))
            except RuntimeError:  # this mistake cannot even run at these sizes
                pass
        reason = compare_tensor(got, ref.rnn_cell(x, h, *w), "the new hidden state", known_mistakes=mistakes)
        if reason and isinstance(got, Tensor) and got.shape == (batch, d_h) and got.abs().max() >= 1:
            reason += " (some entries lie outside (-1, 1): is tanh applied last?)"
        return reason

    return Case(name, run)


@piece("01.rnn_cell", "Elman RNN cell")
def rnn_cell_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _cell_case("batch 3, d_in 4, d_h 5", gen, 3, 4, 5),
        _cell_case("d_in = d_h = 6 (square weights)", gen, 2, 6, 6),
        _cell_case("one sequence, d_in 7, d_h 3", gen, 1, 7, 3),
    ]
    if extended:
        cases += [_cell_case("batch 8, d_in 16, d_h 16", gen, 8, 16, 16),
                  _cell_case("batch 5, d_in 3, d_h 12", gen, 5, 3, 12)]
    return cases


# --- 01.rnn ---------------------------------------------------------------------------


def _rnn_variant(x, w, h0, lengths, *, carry=True, mask_state=True, zero_pads=True, final="state", shift=False):
    """The reference unrolled RNN with one deliberate mistake."""
    batch, T, _ = x.shape
    h = x.new_zeros(batch, w[1].shape[0]) if h0 is None else h0
    lengths = torch.full((batch,), T) if lengths is None else lengths
    outputs = []
    for t in range(T):
        h_new = ref.rnn_cell(x[:, t], h if carry else (x.new_zeros(h.shape) if h0 is None else h0), *w)
        keep = (t < lengths)[:, None]
        prev = h
        h = torch.where(keep, h_new, h) if mask_state else h_new
        out = h_new if not shift else prev  # shift: stores the state *before* the step
        outputs.append(out * keep if zero_pads else h)
    outputs = torch.stack(outputs, dim=1)
    h_n = {"state": h, "last_column": outputs[:, -1]}[final]
    return outputs, h_n


RNN_MISTAKES = {
    "the hidden state is not carried: every step must start from the previous step's state": dict(carry=False),
    "padded steps updated the state: where t >= lengths[b], keep the old state (torch.where)":
        dict(mask_state=False, zero_pads=False),
    "padded steps updated the state (the outputs at padded steps are 0, but the state kept changing)":
        dict(mask_state=False),
    "outputs at padded positions must be zero (you store the carried state there)": dict(zero_pads=False),
    "returned the state at step T-1 instead of the state at each sequence's last real step": dict(final="last_column"),
    "outputs are shifted by one step: outputs[:, t] must be the state *after* reading x[:, t]": dict(shift=True),
}


def _rnn_case(name: str, gen: torch.Generator, batch: int, T: int, d_in: int, d_h: int, *,
              lengths: list[int] | None = None, with_h0: bool = False) -> Case:
    x = randn(gen, batch, T, d_in)
    w = _weights(gen, d_in, d_h)
    h0 = 0.8 * randn(gen, batch, d_h).tanh() if with_h0 else None
    lengths_t = None if lengths is None else torch.tensor(lengths)

    def run(fn) -> Reason:
        kwargs = {}
        if h0 is not None:
            kwargs["h0"] = h0.clone()
        if lengths_t is not None:
            kwargs["lengths"] = lengths_t.clone()
        result = fn(x.clone(), *(t.clone() for t in w), **kwargs)
        if not isinstance(result, tuple) or len(result) != 2:
            return f"should return a tuple (outputs, h_n), got {type(result).__name__}"
        outputs, h_n = result
        exp_out, exp_h = ref.rnn(x, *w, h0=h0, lengths=lengths_t)
        if isinstance(outputs, Tensor) and tuple(outputs.shape) == (T, batch, d_h) and T != batch:
            return "outputs are time-major (T, batch, d_h): stack the steps along dim=1 → (batch, T, d_h)"
        variants = [(hint, _rnn_variant(x, w, h0, lengths_t, **kw)) for hint, kw in RNN_MISTAKES.items()]
        if h0 is not None:
            variants.append(("h0 was ignored: start from the given initial state, zeros only when h0 is None",
                             _rnn_variant(x, w, None, lengths_t)))
        return (compare_tensor(outputs, exp_out, "outputs", known_mistakes=[(h, o) for h, (o, _) in variants])
                or compare_tensor(h_n, exp_h, "the final state h_n", known_mistakes=[(h, s) for h, (_, s) in variants]))

    return Case(name, run)


def _rnn_gradient_case(gen: torch.Generator) -> Case:
    x, w = randn(gen, 3, 5, 4), _weights(gen, 4, 6)
    lengths = torch.tensor([5, 2, 4])

    def grads(fn) -> list:
        leaves = [t.clone().requires_grad_() for t in (x, *w)]
        outputs, h_n = fn(*leaves, lengths=lengths.clone())
        ((outputs * torch.linspace(-1, 1, outputs.numel()).view_as(outputs)).sum() + h_n.sum()).backward()
        return [leaf.grad for leaf in leaves]

    def run(fn) -> Reason:
        names = ("x", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return compare_gradients(zip(names, grads(fn), grads(ref.rnn)))

    return Case("gradients flow back through time (masked batch)", run)


@piece("01.rnn", "unrolled RNN with masking")
def rnn_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    T = 5 + int(torch.randint(0, 3, (), generator=gen))
    cases = [
        _rnn_case("no padding, h0 = zeros", gen, 2, 4, 3, 5),
        _rnn_case("given h0", gen, 3, 4, 5, 4, with_h0=True),
        _rnn_case(f"padded batch, lengths [{T}, 3, 1] (masking!)", gen, 3, T, 4, 6, lengths=[T, 3, 1]),
    ]
    if extended:
        short = [2 + int(torch.randint(0, T - 2, (), generator=gen)) for _ in range(3)]
        cases += [
            _rnn_case("padded batch with h0", gen, 4, T, 3, 5, lengths=[T, *short], with_h0=True),
            _rnn_case("every sequence shorter than T", gen, 3, T + 2, 4, 4, lengths=short),
            _rnn_case("a sequence of length 0 keeps h0", gen, 2, 3, 2, 3, lengths=[0, 3], with_h0=True),
            _rnn_case("T = 1", gen, 2, 1, 3, 4),
            _rnn_gradient_case(gen),
        ]
    return cases


# --- 01.last_hidden --------------------------------------------------------------------


def _last_hidden_case(name: str, gen: torch.Generator, batch: int, T: int, d: int, lengths: list[int]) -> Case:
    outputs, lengths_t = randn(gen, batch, T, d), torch.tensor(lengths)
    rows = torch.arange(batch)

    def run(fn) -> Reason:
        got = fn(outputs.clone(), lengths_t.clone())
        mistakes = [
            ("took the output at step T-1 (outputs[:, -1]); use each sequence's last real step lengths[b]-1",
             outputs[:, -1]),
            ("took the first step outputs[:, 0]; the last real step is lengths[b]-1", outputs[:, 0]),
            ("mean over all T steps; a many-to-one read-out takes the state at the last real step",
             outputs.mean(1)),
        ]
        if max(lengths) < T:
            mistakes.append(("off by one: the last real step is lengths[b] - 1, not lengths[b]",
                             outputs[rows, lengths_t]))
        if isinstance(got, Tensor) and tuple(got.shape) == (batch, batch, d):
            return ("shape (batch, batch, d): outputs[:, lengths - 1] pairs every row with every length; "
                    "index rows and steps together, outputs[torch.arange(batch), lengths - 1]")
        return compare_tensor(got, ref.last_hidden(outputs, lengths_t), "the last hidden states",
                              known_mistakes=mistakes)

    return Case(name, run)


@piece("01.last_hidden", "many-to-one read-out: the last real hidden state")
def last_hidden_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [
        _last_hidden_case("lengths [5, 2, 4], T = 5", gen, 3, 5, 4, [5, 2, 4]),
        _last_hidden_case("all shorter than T: lengths [3, 1], T = 6", gen, 2, 6, 3, [3, 1]),
    ]
    if extended:
        T = 6 + int(torch.randint(0, 6, (), generator=gen))
        lengths = torch.randint(1, T + 1, (5,), generator=gen).tolist()
        cases += [_last_hidden_case(f"random lengths, T = {T}", gen, 5, T, 7, lengths),
                  _last_hidden_case("no padding: lengths all T", gen, 3, 4, 2, [4, 4, 4]),
                  _last_hidden_case("one step, T = 1", gen, 2, 1, 3, [1, 1])]
    return cases
