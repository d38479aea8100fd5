"""A lab's progress at a glance: every visible check of the lab, summarised in one table.

The last cell of each lab calls ``progress`` with the lab's pieces, in notebook order::

    progress([("06.sdpa", "scaled_dot_product_attention", "1. Scaled dot-product attention"),
              ...], globals())

Pieces are named, not passed as objects, so that the cell also works when the learner has
not run (or has deleted) the cell that defines one: that piece is reported as "not defined
yet" instead of the whole cell failing with a NameError. Each piece runs through the same
``check`` as its visible check cell (seed 0), so the table can never disagree with the
cells above it, and like them it shows reasons, never expected values.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from llm_course.checks.engine import PIECES, _load_case_modules, check, html_table, verdict_colour

NOT_IMPLEMENTED = "not implemented yet"  # how the engine words a NotImplementedError


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class PieceProgress:
    piece: str
    title: str
    section: str
    passed: int
    total: int
    status: str  # "done" | "not started" | "not defined" | "failing"
    first_failure: str = ""  # "case: reason" of the first failing case

    @property
    def hint(self) -> str:
        where = f"section “{self.section}”" if self.section else f"the check(\"{self.piece}\", …) cell"
        if self.status == "done":
            return ""
        if self.status == "not defined":
            return f"scroll up to {where} and run the cell that defines it"
        if self.status == "not started":
            return f"scroll up to {where} and replace `raise NotImplementedError()`"
        return f"scroll up to {where}; first failure: {self.first_failure}"


@dataclass(frozen=True)
class Progress:
    """What ``progress`` returns: one row per piece; prints as a table (HTML in a notebook)."""

    rows: tuple[PieceProgress, ...]

    @property
    def done(self) -> int:
        return sum(r.status == "done" for r in self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows) and self.done == len(self.rows)

    def headline(self) -> str:
        if self:
            return f"All {len(self.rows)} pieces pass their visible checks — well done."
        return f"{self.done} of {len(self.rows)} pieces pass their visible checks."

    def __str__(self) -> str:
        lines = [self.headline()]
        for r in self.rows:
            mark = "✓" if r.status == "done" else "✗"
            line = f"  {mark} {r.piece:<24} {r.passed}/{r.total}  {r.title}"
            lines.append(line + (f"\n      → {r.hint}" if r.hint else ""))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        heading = f"<b style='color:{verdict_colour(bool(self))}'>{html.escape(self.headline())}</b>"
        rows = [["✅" if r.status == "done" else "❌", f"<code>{html.escape(r.piece)}</code>", html.escape(r.title),
                 f"{r.passed} / {r.total}", html.escape(r.hint)] for r in self.rows]
        return html_table("llm-course-progress", heading, ["", "piece", "what", "cases passed", "next step"],
                          rows, centred={3})


def progress(pieces: Sequence[tuple[str, str, str]], namespace: Mapping[str, Any]) -> Progress:
    """Run the visible check of every ``(piece_id, name, section)`` on ``namespace[name]``.

    ``namespace`` is the notebook's ``globals()``; ``section`` is the heading of the part of
    the lab where the piece is written (shown in the hint for a piece that is not done).
    """
    if isinstance(pieces, (str, bytes)) or not all(len(p) == 3 for p in pieces):
        raise TypeError("pieces must be a list of (piece_id, name, section) tuples")
    rows = []
    for piece_id, name, section in pieces:
        if name not in namespace:
            _load_case_modules()
            if piece_id not in PIECES:
                raise ValueError(f"unknown piece_id {piece_id!r}")
            total = len(PIECES[piece_id].make_cases(torch.Generator().manual_seed(0), False))
            rows.append(PieceProgress(piece_id, PIECES[piece_id].title, section, 0, total,
                                      "not defined"))
            continue
        report = check(piece_id, namespace[name])
        fails = [r for r in report.results if not r.passed]
        if not fails:
            status, first = "done", ""
        elif all(r.reason.startswith(NOT_IMPLEMENTED) for r in fails) and report.n_passed == 0:
            status, first = "not started", ""
        else:
            status, first = "failing", _shorten(f"{fails[0].name}: {fails[0].reason}")
        rows.append(PieceProgress(piece_id, report.title, section, report.n_passed,
                                  len(report.results), status, first))
    return Progress(tuple(rows))
