"""Grade one submitted notebook: restore tests, execute in a sandboxed kernel, score, give feedback.

How a verdict is reached (see DESIGN.md's threat model):

* ``assemble`` restores the instructor's test/locked cells (edited, deleted, duplicated or
  moved ones are put back and reported) and injects the hidden tests;
* the notebook runs in a fresh kernel inside a sandbox (``sandbox.py``: no network, no
  solutions/tests/other submissions on disk, this lab's reference code withheld, a pids cap);
* every cell that only calls ``check(...)`` is judged in THIS process (``trusted.py``): the
  cases and comparisons run here against stand-ins for the learner's objects (``rpc.py``),
  so nothing the learner's code does to its own process changes the verdict;
* a piece whose reference implementation the submission imports earns nothing for it.

The result is a plain dict (the ``--json`` output)::

    {"score": float, "max_score": float,
     "items": [{"grade_id", "points", "max_points", "status", "message"}]}

``status`` is ``passed``, ``failed`` (an AssertionError), ``error`` (any other exception),
``timeout``, ``kernel_died`` or ``manual`` (needs a human; not counted in ``max_score``).
A test cell that had to be restored from the source says so at the start of its message.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from . import cells as C
from .assemble import assemble, reference_uses
from .course import Course, GraderError, read_notebook
from .execute import run_notebook
from .sandbox import Sandbox
from .solutions import META_KEY
from .trusted import check_calls, in_kernel_names
from .feedback import error_message, fingerprints, redact, sanitize, write_html

PROGRESS_CELL = "progress"  # grade_id of each lab's last, ungraded cell
DEFAULT_CELL_TIMEOUT = 60.0
DEFAULT_TIMEOUT = 600.0
RESTORE_NOTES = {
    "edited": "test cell was edited; the original was restored",
    "deleted": "test cell was deleted; the original was restored",
    "duplicated": "test cell was duplicated; the copies were removed",
    "reordered": "test cell was moved; it was put back in its place",
}


def find_source(course: Course, submission: NotebookNode, path: Path,
                assignment: str | None = None) -> tuple[str, Path]:
    """Which source notebook ``submission`` answers: ``(assignment, source path)``.

    With ``assignment`` given, its notebook of the same file name wins, else the one that
    shares most grade ids. Without it, the parent directory name (nbgrader's
    ``submitted/<student>/<assignment>/`` layout) is tried, then every assignment.
    """
    if assignment is not None:
        candidates = [assignment]
        course.check_assignment(assignment)
    elif path.parent.name in course.assignments():
        candidates = [path.parent.name]
    else:
        candidates = course.assignments()
    ids = {C.grade_id(c) for c in submission.cells} - {None}
    best: tuple[int, str, Path] | None = None
    for a in candidates:
        for src_path in course.source_notebooks(a):
            if assignment is not None and src_path.name == path.name:
                return a, src_path
            src = read_notebook(src_path, "source notebook")
            overlap = len(ids & ({C.grade_id(c) for c in src.cells} - {None}))
            if best is None or overlap > best[0]:
                best = (overlap, a, src_path)
    if best is None or best[0] == 0:
        if assignment is not None and best is not None:
            return best[1], best[2]  # a submission that deleted every graded cell still gets graded
        raise GraderError(
            f"cannot tell which assignment {str(path)!r} belongs to: it shares no nbgrader grade_id "
            f"with any source notebook; pass --assignment (one of {course.assignments()})"
        )
    return best[1], best[2]


def withheld_sources(source: NotebookNode) -> list[str]:
    """``module:name`` of the library object behind each solution cell of the source notebook
    (except pieces still judged in the kernel, whose in-kernel check needs the reference)."""
    legacy = set().union(*(in_kernel_names(c.source) for c in source.cells if c.cell_type == "code"))
    refs = []
    for cell in source.cells:
        meta = cell.get("metadata", {}).get(META_KEY, {})
        if isinstance(meta, dict) and isinstance(meta.get("source"), str) \
                and meta["source"].partition(":")[2] not in legacy:
            refs.append(meta["source"])
    return refs


def _item(cell: NotebookNode, status: str, message: str, passed: bool) -> dict[str, Any]:
    max_points = C.points(cell)
    return {"grade_id": C.grade_id(cell), "points": max_points if passed else 0.0,
            "max_points": max_points, "status": status, "message": message}


def score(nb: NotebookNode, runs: dict, restored: dict[str, str],
          borrowed: dict[str, str] | None = None) -> dict[str, Any]:
    """Score the executed (unsanitized) notebook; messages are already free of hidden text.

    ``borrowed`` maps the name of a graded piece whose reference implementation the learner
    imported to the evidence: every test cell checking that name gets no credit.
    """
    prints = fingerprints(nb)
    items: list[dict[str, Any]] = []
    for i, cell in enumerate(nb.cells):
        if not C.is_grade(cell) or C.grade_id(cell) is None:
            continue
        if C.is_manual(cell):
            items.append(_item(cell, "manual", "needs manual grading", passed=False))
            continue
        run = runs.get(i)
        if run is None or run.status == "not_run":
            status, message = "error", "the cell was not run"
        elif run.status == "ok":
            status, message = "passed", ""
        elif run.status == "error":
            status = "failed" if run.ename == "AssertionError" else "error"
            message = error_message(cell, run.ename, run.evalue, run.traceback, prints)
        else:
            status, message = run.status, run.detail
        calls = check_calls(cell.source) or []
        used = [borrowed[c.name] for c in calls if borrowed and c.name in borrowed]
        if used:
            status = "failed"
            message = (f"no credit: the submission uses the reference implementation ({used[0]}); "
                       "write it yourself")
        note = RESTORE_NOTES.get(restored.get(C.grade_id(cell), ""), "")
        if note:
            message = f"{note}. {message}".strip() if message else note
        items.append(_item(cell, status, redact(message, prints), passed=status == "passed"))
    auto = [it for it in items if it["status"] != "manual"]
    return {"score": float(sum(it["points"] for it in auto)),
            "max_score": float(sum(it["max_points"] for it in auto)),
            "items": items}


def grade_notebook(path: str | Path, course: Course | None = None, assignment: str | None = None,
                   cell_timeout: float = DEFAULT_CELL_TIMEOUT, timeout: float = DEFAULT_TIMEOUT,
                   feedback_html: str | Path | None = None, memory_mb: int | None = None) -> dict[str, Any]:
    """Grade the notebook at ``path``; optionally write HTML feedback to ``feedback_html``."""
    course = course or Course()
    path = Path(path)
    if cell_timeout <= 0:
        raise GraderError(f"--cell-timeout must be positive, got {cell_timeout}")
    if timeout <= 0:
        raise GraderError(f"--timeout must be positive, got {timeout}")
    submission = read_notebook(path, "submitted notebook")
    assignment, src_path = find_source(course, submission, path, assignment)
    source = read_notebook(src_path, "source notebook")
    merged = assemble(submission, source)
    nb = merged.nb
    for cell in nb.cells:
        # the self-learner's progress table repeats the checks above, which are judged in this
        # process; run in the sandbox it could only report the withheld reference as missing
        if C.grade_id(cell) == PROGRESS_CELL:
            cell.source = "# progress table: not run while grading (the checks above are graded instead)"
    # the batch's output folder holds other learners' results: hidden too
    sandbox = Sandbox(course.root, path, withheld_sources(source),
                      hide=[Path(feedback_html).resolve().parent] if feedback_html is not None else [])
    try:
        work = sandbox.work
        # the working directory holds only the submission and the lab's released data files
        shutil.copyfile(path, work / path.name)
        release_dir = course.release / assignment
        if release_dir.is_dir():
            for extra in release_dir.iterdir():
                if extra.is_file() and extra.suffix != ".ipynb":
                    shutil.copyfile(extra, work / extra.name)
        # every cell that only calls check(...) is judged in this process (see trusted.py)
        trusted = {i: calls for i, cell in enumerate(nb.cells)
                   if cell.cell_type == "code" and (calls := check_calls(cell.source))}
        runs = run_notebook(nb, work, cell_timeout=cell_timeout, total_timeout=timeout, memory_mb=memory_mb,
                            trusted=trusted, sandbox=sandbox)
    finally:
        sandbox.close()
    result = score(nb, runs, merged.restored, reference_uses(nb, withheld_sources(source)))
    if feedback_html is not None:
        sanitize(nb)
        write_html(nb, result, f"{path.stem} ({assignment})", feedback_html)
    return result
