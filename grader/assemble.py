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
    """The notebook to run and what was restored: ``{grade_id: "edited" | "deleted" | "duplicated" | "reordered"}``."""

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

    out = _restore_order(out, source, restorable, restored)

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


def _restore_order(out: list[NotebookNode], source: NotebookNode, restorable: set[str],
                   restored: dict[str, str]) -> list[NotebookNode]:
    """Put test/locked cells back in the source's order if the learner moved them.

    A moved cell goes just before the next graded cell that follows it in the source (so
    the learner's own cells above it stay above it); cells whose neighbourhood changed are
    reported as "reordered".
    """
    rank = {C.grade_id(c): k for k, c in enumerate(source.cells) if C.grade_id(c)}
    ranks = [rank[g] for c in out if (g := C.grade_id(c)) in rank]
    if all(a < b for a, b in zip(ranks, ranks[1:])):
        return out
    before = _neighbours(out, rank)
    kept = [c for c in out if C.grade_id(c) not in restorable]
    moved = sorted((c for c in out if C.grade_id(c) in restorable), key=lambda c: rank[C.grade_id(c)])
    for cell in moved:
        later = [i for i, c in enumerate(kept) if rank.get(C.grade_id(c), -1) > rank[C.grade_id(cell)]]
        kept.insert(later[0] if later else len(kept), cell)
    after = _neighbours(kept, rank)
    for gid in restorable:
        if gid in before and before[gid] != after.get(gid):
            restored.setdefault(gid, "reordered")
    return kept


def _neighbours(cells: list[NotebookNode], rank: dict[str, int]) -> dict[str, tuple]:
    """For each graded cell: the graded cells just before and after it."""
    gids = [g for c in cells if (g := C.grade_id(c)) in rank]
    return {g: (gids[i - 1] if i else None, gids[i + 1] if i + 1 < len(gids) else None) for i, g in enumerate(gids)}


def reference_uses(nb: NotebookNode, withheld: list[str]) -> dict[str, str]:
    """Names of graded pieces whose reference implementation the learner's cells import.

    ``withheld`` holds ``llm_course.module:name`` of each piece. Static evidence in any cell
    that is not an instructor cell: ``from module import name`` (or ``*``), or importing
    ``module`` (``import``, ``from llm_course import module``, ``importlib.import_module``)
    and then touching ``.name`` or the string ``"name"``. Returns ``{name: evidence}``.
    (In the sandbox the reference also raises, which catches what this misses.)
    """
    import ast

    found: dict[str, str] = {}
    refs = [r.partition(":")[::2] for r in withheld]
    for cell in nb.cells:
        if cell.cell_type != "code" or C.is_restored(cell):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        nodes = list(ast.walk(tree))
        for module, name in refs:
            parent, _, leaf = module.rpartition(".")
            imports_module = False
            for n in nodes:
                if isinstance(n, ast.ImportFrom) and n.module == module:
                    if any(a.name in (name, "*") for a in n.names):
                        found.setdefault(name, f"from {module} import {name}")
                    imports_module = True
                elif isinstance(n, ast.ImportFrom) and n.module == parent and any(a.name == leaf for a in n.names):
                    imports_module = True
                elif isinstance(n, ast.Import) and any(a.name == module for a in n.names):
                    imports_module = True
                elif isinstance(n, ast.Constant) and n.value == module:
                    imports_module = True
            if imports_module and any(isinstance(n, ast.Attribute) and n.attr == name
                                      or isinstance(n, ast.Constant) and n.value == name for n in nodes):
                found.setdefault(name, f"imports {module} and uses its {name}")
    return found


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

