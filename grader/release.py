"""Generate ``labs/`` from ``solutions/`` with nbgrader, then normalise it so it is deterministic.

The release is nbgrader's ``GenerateAssignment`` (solutions and hidden tests removed, cells
locked, checksums added), followed by :func:`normalise`: no outputs, no execution counts,
a fixed kernelspec, volatile metadata dropped, stable cell ids, nbformat's canonical JSON.
Regenerating into a temporary directory and comparing bytes is :func:`check`.
"""
from __future__ import annotations

import filecmp
import logging
import shutil
import tempfile
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .cells import grade_id
from .course import Course, GraderError

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}
#: Notebook metadata that depends on who saved it last; never released.
VOLATILE_NB_KEYS = {"widgets", "vscode", "toc", "varInspector", "celltoolbar", "execution", "papermill", "colab"}
#: Cell metadata kept in the release (nbgrader's and the ones that change how a cell behaves).
KEPT_CELL_KEYS = {"nbgrader", "tags", "deletable", "editable", "slideshow"}


def normalise(nb: NotebookNode) -> NotebookNode:
    """Make a released notebook deterministic and clean (in place; also returned)."""
    meta = {k: v for k, v in nb.metadata.items() if k not in VOLATILE_NB_KEYS}
    meta["kernelspec"] = dict(KERNELSPEC)
    meta["language_info"] = dict(LANGUAGE_INFO)
    nb.metadata = nbformat.from_dict(meta)
    nb.nbformat, nb.nbformat_minor = 4, 5
    seen: set[str] = set()
    for i, cell in enumerate(nb.cells):
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.metadata.items() if k in KEPT_CELL_KEYS})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if "attachments" in cell and not cell.attachments:
            del cell["attachments"]
        cid = cell.get("id") or grade_id(cell) or f"cell-{i}"
        if cid in seen:
            cid = f"cell-{i}"
        seen.add(cid)
        cell.id = cid
    return nb


def _generate(course: Course, assignment: str, release_root: Path, db_url: str | None) -> None:
    """Run nbgrader's GenerateAssignment for one assignment into ``release_root/assignment``."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    cfg = Config()
    cfg.CourseDirectory.root = str(course.root)
    cfg.CourseDirectory.source_directory = course.source_dir
    cfg.CourseDirectory.release_directory = str(release_root)
    cfg.CourseDirectory.assignment_id = assignment
    if db_url:
        cfg.CourseDirectory.db_url = db_url
    cfg.GenerateAssignment.no_database = db_url is None
    cfg.SaveCells.enabled = db_url is not None
    cfg.BaseConverter.force = True
    log = logging.getLogger("grader.nbgrader")
    coursedir = CourseDirectory(config=cfg, log=log)
    converter = GenerateAssignment(coursedir=coursedir, config=cfg, log=log)
    try:
        converter.start()
    except Exception as e:  # NbGraderException and metadata errors from the preprocessors
        raise GraderError(f"nbgrader could not release assignment {assignment!r}: {e}") from e


def release(course: Course, assignments: list[str] | None = None, dest: Path | None = None,
            db_url: str | None = None) -> list[Path]:
    """Release ``assignments`` (all when empty) into ``dest`` (default ``course.release``).

    ``db_url`` is the gradebook to record the assignment in (``None``: no database).
    Returns the written notebook paths.
    """
    names = assignments or course.assignments()
    if not names:
        raise GraderError(f"no assignments found in {course.source}")
    for a in names:
        course.check_assignment(a)
    dest = Path(dest) if dest is not None else course.release
    written: list[Path] = []
    for a in names:
        _generate(course, a, dest.resolve(), db_url)
        for path in sorted((dest / a).rglob("*.ipynb")):
            if ".ipynb_checkpoints" in path.parts:
                continue
            nb = normalise(nbformat.read(path, as_version=4))
            nbformat.write(nb, path)
            written.append(path)
    return written


def check(course: Course, assignments: list[str] | None = None) -> list[str]:
    """Release into a temporary directory and list the files that differ from the committed release.

    Returns paths relative to the course root (missing, extra or different files); ``[]`` = clean.
    """
    names = assignments or course.assignments()
    diffs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="grader-release-") as tmp:
        fresh = Path(tmp) / "labs"
        release(course, names, dest=fresh, db_url=None)
        for a in names:
            diffs += _compare_dirs(fresh / a, course.release / a, f"{course.release_dir}/{a}")
    return diffs


def _compare_dirs(fresh: Path, committed: Path, label: str) -> list[str]:
    def files(root: Path) -> set[str]:
        if not root.is_dir():
            return set()
        return {p.relative_to(root).as_posix() for p in root.rglob("*")
                if p.is_file() and ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts}

    a, b = files(fresh), files(committed)
    out = [f"{label}/{f} (missing from the committed release)" for f in sorted(a - b)]
    out += [f"{label}/{f} (not in a fresh release)" for f in sorted(b - a)]
    out += [f"{label}/{f} (differs)" for f in sorted(a & b)
            if not filecmp.cmp(fresh / f, committed / f, shallow=False)]
    return out


def remove_stale(course: Course, dest: Path | None = None) -> list[Path]:
    """Delete release directories whose assignment no longer exists in ``solutions/``."""
    dest = Path(dest) if dest is not None else course.release
    known = set(course.assignments())
    stale = [p for p in dest.iterdir() if p.is_dir() and p.name not in known] if dest.is_dir() else []
    for p in stale:
        shutil.rmtree(p)
    return stale
