"""Build the notebook that gets executed: the submission with tests and locked cells restored.

Every autograder test cell and every locked cell comes from the SOURCE notebook in
``solutions/`` (so hidden tests are injected and a learner's edit to a test is undone);
solution cells and the learner's own extra cells come from the submission. Points and
flags always come from the source, never from the submission's metadata.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from nbformat import NotebookNode

from . import cells as C
from .solutions import strip_solution


@dataclass
class Assembled:
    """The notebook to run and what was restored: ``{grade_id: "edited" | "deleted" | "duplicated"}``."""

    nb: NotebookNode
    restored: dict[str, str] = field(default_factory=dict)


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def assemble(submission: NotebookNode, source: NotebookNode) -> Assembled:
    """Merge ``submission`` with ``source``; neither argument is modified."""
    src_cells = {C.grade_id(c): c for c in source.cells if C.grade_id(c)}
    restorable = {gid for gid, c in src_cells.items() if C.is_restored(c)}
    nb = copy.deepcopy(submission)
    restored: dict[str, str] = {}
    out: list[NotebookNode] = []
    seen: set[str] = set()

    for cell in nb.cells:
        gid = C.grade_id(cell)
        if gid is not None and gid in src_cells and gid in seen:
            # a duplicated graded cell: drop duplicated tests/locked cells, demote other copies
            if gid in restorable:
                restored.setdefault(gid, "duplicated")
                continue
            cell.metadata.pop("nbgrader", None)
            out.append(cell)
            continue
        if gid is not None and gid in restorable:
            seen.add(gid)
            src = src_cells[gid]
            if cell.cell_type != src.cell_type or _norm(cell.source) not in (
                    _norm(C.released_source(src.source)), _norm(src.source)):
                restored[gid] = "edited"
            out.append(_fresh_copy(src))
            continue
        if gid is not None and gid in src_cells:
            seen.add(gid)
            # take the learner's text but the source's nbgrader metadata (points, flags)
            cell.metadata["nbgrader"] = copy.deepcopy(src_cells[gid].metadata["nbgrader"])
            if cell.cell_type != src_cells[gid].cell_type:
                cell = _retyped(cell, src_cells[gid].cell_type)
            out.append(cell)
            continue
        if gid is not None:
            # nbgrader metadata the source does not know (invented by the learner): plain cell
            cell.metadata.pop("nbgrader", None)
        out.append(cell)

    # re-insert deleted restorable cells after the nearest preceding source cell that is present
    for pos, src in enumerate(source.cells):
        gid = C.grade_id(src)
        if gid is None or gid not in restorable or gid in seen:
            continue
        anchor = _anchor_index(out, source.cells[:pos])
        out.insert(anchor, _fresh_copy(src))
        seen.add(gid)
        restored[gid] = "deleted"

    # solution cells the learner deleted: put back the released stub so ids stay complete
    for pos, src in enumerate(source.cells):
        gid = C.grade_id(src)
        if gid is None or gid in seen:
            continue
        stub = _fresh_copy(src)
        stub.source = strip_solution(src.source)
        out.insert(_anchor_index(out, source.cells[:pos]), stub)
        seen.add(gid)

    nb.cells = out
    return Assembled(nb=nb, restored=restored)


def _anchor_index(out: list[NotebookNode], before: list[NotebookNode]) -> int:
    """Index just after the last cell of ``out`` whose grade_id is one of ``before``'s."""
    wanted = [C.grade_id(c) for c in before if C.grade_id(c)]
    for gid in reversed(wanted):
        for i, cell in enumerate(out):
            if C.grade_id(cell) == gid:
                return i + 1
    return 0


def _fresh_copy(src: NotebookNode) -> NotebookNode:
    cell = copy.deepcopy(src)
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    return cell


def _retyped(cell: NotebookNode, cell_type: str) -> NotebookNode:
    from nbformat.v4 import new_code_cell, new_markdown_cell

    new = (new_code_cell if cell_type == "code" else new_markdown_cell)(cell.source, metadata=cell.metadata)
    if "id" in cell:
        new.id = cell.id
    return new

