"""nbgrader cell metadata and hidden-test regions (the same rules as nbgrader's preprocessors)."""
from __future__ import annotations

from typing import Any

from nbformat import NotebookNode

BEGIN_HIDDEN = "BEGIN HIDDEN TESTS"
END_HIDDEN = "END HIDDEN TESTS"
HIDDEN_PLACEHOLDER = "# (hidden tests)"


def nbgrader_meta(cell: NotebookNode) -> dict[str, Any]:
    """The cell's ``nbgrader`` metadata, or ``{}``."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def grade_id(cell: NotebookNode) -> str | None:
    gid = nbgrader_meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def is_grade(cell: NotebookNode) -> bool:
    return bool(nbgrader_meta(cell).get("grade"))


def is_solution(cell: NotebookNode) -> bool:
    return bool(nbgrader_meta(cell).get("solution"))


def is_locked(cell: NotebookNode) -> bool:
    return bool(nbgrader_meta(cell).get("locked"))


def is_test(cell: NotebookNode) -> bool:
    """An autograder test cell: graded code cell that is not a solution."""
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


def is_manual(cell: NotebookNode) -> bool:
    """A manually graded answer (graded solution cell, or a graded markdown cell)."""
    return is_grade(cell) and (is_solution(cell) or cell.cell_type != "code")


def is_restored(cell: NotebookNode) -> bool:
    """Cells the learner may not change: tests and locked non-solution cells."""
    return grade_id(cell) is not None and (is_test(cell) or (is_locked(cell) and not is_solution(cell)))


def points(cell: NotebookNode) -> float:
    try:
        return float(nbgrader_meta(cell).get("points") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def split_hidden(source: str) -> tuple[list[str], list[str]]:
    """Split a cell's source into (visible lines, hidden lines), as ClearHiddenTests does.

    A line containing ``BEGIN HIDDEN TESTS`` opens a region, ``END HIDDEN TESTS`` closes it;
    the marker lines themselves count as hidden.
    """
    visible: list[str] = []
    hidden: list[str] = []
    inside = False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            inside = True
            hidden.append(line)
        elif END_HIDDEN in line:
            inside = False
            hidden.append(line)
        elif inside:
            hidden.append(line)
        else:
            visible.append(line)
    return visible, hidden


def released_source(source: str) -> str:
    """The source as nbgrader releases it: hidden-test regions removed."""
    return "\n".join(split_hidden(source)[0])


def feedback_source(source: str) -> str:
    """The source shown in feedback: each hidden region replaced by a one-line placeholder."""
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        if BEGIN_HIDDEN in line:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + HIDDEN_PLACEHOLDER)
        elif END_HIDDEN in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def hidden_line_numbers(source: str) -> set[int]:
    """1-based line numbers of the cell that lie in a hidden region (markers included)."""
    numbers: set[int] = set()
    inside = False
    for i, line in enumerate(source.split("\n"), start=1):
        if BEGIN_HIDDEN in line:
            inside = True
        if inside:
            numbers.add(i)
        if END_HIDDEN in line:
            inside = False
    return numbers
