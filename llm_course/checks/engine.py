"""The feedback engine every lab uses: run a learner's function on cases, explain failures.

A *piece* is one graded thing a lab asks for ("06.sdpa"). Its cases live in a module of
this package, registered with ``@piece``. ``check(piece_id, candidate)`` runs them and
returns a ``Report`` that prints as a small table (HTML in a notebook): case, passed, and
for a failure the reason in the learner's terms ("shape (2, 4, 5), expected (2, 4, 8)",
"rows of the weights do not sum to 1", "off by a factor ≈ √d_k"). Reasons describe what
is wrong, never the expected numbers: the check must not hand out the answer.

Visible checks use ``seed=0``; the hidden tests in an instructor's notebook call the same
pieces with other seeds and ``extended=True`` (more sizes and edge cases).
"""

from __future__ import annotations

import html
import math
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

Reason = str | None  # None = the case passed


@dataclass(frozen=True)
class Case:
    """One check: ``run(candidate)`` returns None when it passes, else the reason why not."""

    name: str
    run: Callable[[Any], Reason]


@dataclass(frozen=True)
class Piece:
    id: str
    title: str
    make_cases: Callable[[torch.Generator, bool], list[Case]]  # (generator, extended) -> cases


@dataclass
class CaseResult:
    name: str
    passed: bool
    reason: str = ""


@dataclass
class Report:
    """What ``check`` returns: one row per case. Truthy when every case passed."""

    piece: str
    title: str
    results: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def n_passed(self) -> int:
        return sum(r.passed for r in self.results)

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> str:
        head = f"{self.piece} {self.title}: {self.n_passed}/{len(self.results)} cases passed"
        fails = [f"  ✗ {r.name}: {r.reason}" for r in self.results if not r.passed]
        return "\n".join([head, *fails])

    def assert_passed(self) -> None:
        """Raise AssertionError listing the failed cases (what the autograder cells call)."""
        if not self.passed:
            raise AssertionError(self.summary())

    def __str__(self) -> str:
        lines = [f"{self.piece} — {self.title}"]
        for r in self.results:
            lines.append(f"  {'✓' if r.passed else '✗'} {r.name}" + (f": {r.reason}" if r.reason else ""))
        verdict = "all passed" if self.passed else f"{self.n_passed}/{len(self.results)} passed"
        return "\n".join([*lines, f"  → {verdict}"])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        verdict = "all cases passed" if self.passed else f"{self.n_passed}/{len(self.results)} cases passed"
        heading = (f"<b>{html.escape(self.piece)}</b> — {html.escape(self.title)}: "
                   f"<span style='color:{verdict_colour(self.passed)}'><b>{verdict}</b></span>")
        rows = [[html.escape(r.name), "✅" if r.passed else "❌", html.escape(r.reason)] for r in self.results]
        return html_table("llm-course-check", heading, ["case", "passed", "why not"], rows, centred={1})


def verdict_colour(passed: bool) -> str:
    return "#1a7f37" if passed else "#cf222e"


def html_table(css_class: str, heading: str, headers: list[str], rows: list[list[str]],
               centred: set[int] = frozenset()) -> str:
    """A report as notebooks show it: ``heading`` over a table. Cells are HTML, already escaped;
    the columns numbered in ``centred`` are centred (marks and counts)."""
    def cell(i: int, value: str) -> str:
        return f"<td style='text-align:center'>{value}</td>" if i in centred else f"<td>{value}</td>"

    body = "".join("<tr>" + "".join(cell(i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    head = "".join(f"<th>{h}</th>" for h in headers)
    return (f"<div class='{css_class}'>{heading}"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


PIECES: dict[str, Piece] = {}


def piece(piece_id: str, title: str):
    """Register ``make_cases(gen, extended) -> list[Case]`` as the cases of ``piece_id``."""

    def register(make_cases: Callable[[torch.Generator, bool], list[Case]]):
        previous = PIECES.get(piece_id)
        # Re-importing the same module (after it once failed to import) re-registers: fine.
        if previous and previous.make_cases.__module__ != make_cases.__module__:
            raise ValueError(f"piece {piece_id!r} is registered twice")
        PIECES[piece_id] = Piece(piece_id, title, make_cases)
        return make_cases

    return register


def check(piece_id: str, candidate: Any, *, seed: int = 0, extended: bool = False) -> Report:
    """Run ``candidate`` (the learner's function or class) through the cases of ``piece_id``.

    >>> check("06.causal_mask", causal_mask)      # doctest: +SKIP
    """
    broken = _load_case_modules()
    if piece_id not in PIECES:
        known = ", ".join(sorted(PIECES))
        also = f" (these case modules failed to import: {broken})" if broken else ""
        raise ValueError(f"unknown piece_id {piece_id!r}; known pieces: {known}{also}")
    spec = PIECES[piece_id]
    gen = torch.Generator().manual_seed(seed)
    report = Report(piece_id, spec.title)
    for case in spec.make_cases(gen, extended):
        report.results.append(_run_case(case, candidate))
    return report


def _run_case(case: Case, candidate: Any) -> CaseResult:
    try:
        reason = case.run(candidate)
    except NotImplementedError as err:
        reason = ("uses the library's reference implementation, which is withheld during grading: "
                  "write it yourself" if "withheld during grading" in str(err) else
                  "not implemented yet (the function still raises NotImplementedError)")
    except Exception as err:  # the learner's exception is feedback, not a crash of the check
        if getattr(err, "grader_reason", None):  # a grading limit (time, dead kernel): say just that
            return CaseResult(case.name, False, str(err.grader_reason))
        # a call the grader ran in the learner's kernel reports where it broke there
        where = getattr(err, "learner_frame", None)
        where = _learner_frame(err) if where is None else where
        reason = f"raised {type(err).__name__}: {err}" + (f" (at {where})" if where else "")
    return CaseResult(case.name, reason is None, reason or "")


def _learner_frame(err: BaseException) -> str:
    """The innermost traceback line that is not inside llm_course or torch: where it broke."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if "llm_course" not in f.filename and "/torch/" not in f.filename]
    return f"line {frames[-1].lineno}: {frames[-1].line}" if frames and frames[-1].line else ""


def _load_case_modules() -> dict[str, str]:
    """Import every ``*_cases`` module of this package; importing one registers its pieces.

    Done on first use, not at import, so that ``from llm_course.checks import check`` stays
    cheap and a case module can import the engine without a cycle. A module that fails to
    import does not stop the others (one lab's checks never break another's); its error is
    returned, and reported if a piece that is then missing is asked for.
    """
    import importlib
    import pkgutil

    import llm_course.checks as package

    broken = {}
    for module in pkgutil.iter_modules(package.__path__):
        if module.name.endswith("_cases"):
            try:
                importlib.import_module(f"{package.__name__}.{module.name}")
            except Exception as err:  # reported by check() only if its piece is missing
                broken[module.name] = f"{type(err).__name__}: {err}"
    return broken


# --- comparing a learner's output with the reference -------------------------------------

def compare_tensor(
    got: Any,
    expected: Tensor,
    what: str,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    known_mistakes: Iterable[tuple[str, Tensor]] = (),
) -> Reason:
    """None if ``got`` matches ``expected``; else a reason phrased for the learner.

    ``known_mistakes`` pairs a hint with the output that mistake would produce; if the
    learner's output matches one, that hint is the reason (e.g. "scores not divided by √d_k").
    """
    if not isinstance(got, Tensor):
        return f"{what} should be a torch.Tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if got.dtype != expected.dtype and not (got.is_floating_point() and expected.is_floating_point()):
        return f"{what} has dtype {got.dtype}, expected {expected.dtype}"
    got = got.detach().to("cpu")
    if expected.dtype == torch.bool:
        if torch.equal(got, expected):
            return None
        for hint, wrong in known_mistakes:
            if torch.equal(got, wrong):
                return hint
        return f"{what} is wrong at {int((got != expected).sum())} of {got.numel()} positions"
    got_f, exp_f = got.double(), expected.detach().double()
    if torch.isnan(got_f).any() and not torch.isnan(exp_f).any():
        return f"{what} contains NaN"
    if torch.allclose(got_f, exp_f, atol=atol, rtol=rtol):
        return None
    for hint, wrong in known_mistakes:
        if tuple(wrong.shape) == tuple(got.shape) and torch.allclose(got_f, wrong.double(), atol=atol, rtol=rtol):
            return hint
    factor = _constant_factor(got_f, exp_f)
    if factor is not None:
        return f"{what} is off by a constant factor ≈ {factor:.3g}"
    err = (got_f - exp_f).abs().max().item()
    return f"{what} differs from the reference by up to {err:.3g}"


def compare_gradients(named: Iterable[tuple[str, Tensor | None, Tensor]], *, atol: float = 1e-4) -> Reason:
    """None if every learner gradient matches the reference's; else why the first one does not.

    ``named`` yields ``(name, learner_grad, reference_grad)``; a ``None`` learner gradient
    means the computation graph was cut on the way to that tensor.
    """
    for name, got, expected in named:
        if got is None:
            return (f"no gradient reached {name}: avoid .detach(), .numpy(), .item(), torch.no_grad() "
                    "or in-place writes")
        reason = compare_tensor(got, expected, f"the gradient of {name}", atol=atol)
        if reason:
            return reason
    return None


def _constant_factor(got: Tensor, expected: Tensor) -> float | None:
    """c if got ≈ c·expected for one constant c (≠ 1), else None."""
    denom = (expected * expected).sum()
    if denom == 0:
        return None
    c = ((got * expected).sum() / denom).item()
    if math.isclose(c, 1.0, rel_tol=1e-3) or not torch.allclose(got, c * expected, atol=1e-5, rtol=1e-4):
        return None
    return c


def randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=gen)
