"""Gradescope autograder for a lab: build the zip here, grade inside Gradescope's container.

Build (instructor, in this repo)::

    python -m grader gradescope 06-attention [--out gradescope-06-attention.zip]

The zip (upload it as the assignment's autograder) holds, at its root::

    setup.sh              Gradescope runs it once when it builds the image: a venv with the
                          pinned requirements and the course package installed
    run_autograder        Gradescope runs it for every submission
    gradescope.json       which lab, limits, test names (written here, read by run_autograder)
    requirements*.txt     the repo's pinned environment
    course/               a course root holding only what grading needs: llm_course/, grader/,
                          pyproject.toml, solutions/<lab>/ (the instructor notebook with its
                          hidden tests) and the lab's released data files

Run (inside the container, or locally in a scratch folder laid out the same way)::

    GRADESCOPE_ROOT=/tmp/ag python -m grader.gradescope      # default root: /autograder

reads ``ROOT/submission/*.ipynb``, grades a copy of it with :func:`grader.grade.grade_notebook`
against ``ROOT/source/course``, and writes ``ROOT/results/results.json`` in Gradescope's format:
one test per graded cell, ``score``/``max_score``/``status``. A graded cell holds a visible check
(the learner can run it) and hidden tests; a cell that passed, or failed in its visible part, is
shown at once; a cell that failed in a hidden test (or whose failure cannot be placed) is shown
``after_due_date`` (``--hidden-visibility`` changes that), so the feedback never tells a learner
before the deadline which hidden case caught them. Gradescope sums the tests' scores (no
top-level ``score`` is written). Manually graded cells are not part of the autograder.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from . import cells as C
from .course import REPO_ROOT, Course, GraderError, read_notebook

DEFAULT_ROOT = "/autograder"
ROOT_ENV_VAR = "GRADESCOPE_ROOT"
CONFIG = "gradescope.json"
#: Gradescope's visibility values, from most to least visible to a learner.
VISIBILITIES = ("visible", "after_published", "after_due_date", "hidden")
#: Where the grader places a failure inside a test cell (see grader.feedback.error_location).
_IN_HIDDEN = "(in a hidden test)"
_AT_VISIBLE_LINE = re.compile(r"\(at line \d+(: .*)?\)\s*$", re.S)
_WHEN = {"visible": "now too", "after_published": "when grades are published",
         "after_due_date": "after the due date", "hidden": "to the instructor only"}
_CHECK_CALL = re.compile(r"""check\(\s*["']([^"']+)["']""")
#: Zip entries get a fixed timestamp so that the same repo state builds the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP = {"__pycache__", ".ipynb_checkpoints", ".work"}

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (it has internet).
# It makes /autograder/venv with the course's pinned environment and the course package.
set -euo pipefail
SRC=/autograder/source
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q python3 python3-venv python3-pip
# the pins in requirements.txt need Python >= 3.11; older base images get it from apt
PY=python3
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    apt-get install -y -q python3.11 python3.11-venv
    PY=python3.11
fi
"$PY" -m venv /autograder/venv
PIP="/autograder/venv/bin/python -m pip"
$PIP install --quiet --upgrade pip
# the CPU build of torch first: an unpinned index would pull a multi-GB CUDA build
TORCH=$(grep -E '^torch==' "$SRC/requirements.txt" || true)
if [ -n "$TORCH" ]; then
    $PIP install --quiet "$TORCH" --index-url https://download.pytorch.org/whl/cpu
fi
$PIP install --quiet -r "$SRC/requirements.txt"
if [ -s "$SRC/requirements-nodeps.txt" ]; then
    $PIP install --quiet --no-deps -r "$SRC/requirements-nodeps.txt"
fi
$PIP install --quiet --no-deps "$SRC/course"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission; it writes $ROOT/results/results.json.
# GRADESCOPE_ROOT (default /autograder) lets a test run it in a scratch folder laid out the
# same way (source/, submission/, results/); GRADESCOPE_PYTHON picks the interpreter.
set -euo pipefail
ROOT="${GRADESCOPE_ROOT:-/autograder}"
PY="${GRADESCOPE_PYTHON:-/autograder/venv/bin/python}"
case "$PY" in /*) ;; */*) PY="$PWD/$PY" ;; esac  # a relative path must survive the cd below
[ -x "$PY" ] || PY=python3
export GRADESCOPE_ROOT="$ROOT"
export PYTHONPATH="$ROOT/source/course${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
exec "$PY" -m grader.gradescope
"""


# --------------------------------------------------------------------------- build the zip
def lab_config(course: Course, lab: str, cell_timeout: float, timeout: float, memory_mb: int | None,
               hidden_visibility: str = "after_due_date") -> dict[str, Any]:
    """What ``run_autograder`` needs to know: the lab, its notebook, limits, a name per test."""
    notebooks = course.source_notebooks(lab)
    if len(notebooks) != 1:
        raise GraderError(f"lab {lab!r} has {len(notebooks)} source notebooks; the Gradescope "
                          "autograder grades exactly one notebook per submission")
    source = read_notebook(notebooks[0], "source notebook")
    tests: list[dict[str, Any]] = []
    for cell in source.cells:
        if C.is_test(cell) and C.grade_id(cell):
            gid = C.grade_id(cell)
            m = _CHECK_CALL.search(cell.source)
            tests.append({"grade_id": gid, "name": f"{gid} ({m.group(1)})" if m else gid,
                          "max_score": C.points(cell)})
    if not tests:
        raise GraderError(f"lab {lab!r} has no autograded test cells (nbgrader 'grade' cells)")
    if hidden_visibility not in VISIBILITIES:
        raise GraderError(f"hidden_visibility must be one of {VISIBILITIES}, got {hidden_visibility!r}")
    return {"lab": lab, "notebook": notebooks[0].name, "cell_timeout": cell_timeout, "timeout": timeout,
            "memory_mb": memory_mb, "hidden_visibility": hidden_visibility, "tests": tests}


def _course_files(course: Course, lab: str) -> list[tuple[Path, str]]:
    """(file, name in the zip) for everything grading ``lab`` needs, under ``course/``."""
    files: list[tuple[Path, str]] = []

    def tree(top: Path, include=lambda p: True, base: Path = course.root) -> None:
        for p in sorted(top.rglob("*")):
            rel = p.relative_to(base)
            if p.is_file() and not _SKIP & set(rel.parts) and p.suffix not in (".pyc", ".db") and include(p):
                files.append((p, f"course/{rel.as_posix()}"))

    # the code is this repository's (whatever course root the lab comes from)
    for package in ("llm_course", "grader"):
        tree(REPO_ROOT / package, base=REPO_ROOT)
    for name in ("pyproject.toml", "README.md"):  # setuptools reads README.md (pyproject's readme)
        files.append((REPO_ROOT / name, f"course/{name}"))
    tree(course.source / lab)
    if (course.release / lab).is_dir():  # data files the lab ships next to its notebook
        tree(course.release / lab, include=lambda p: p.suffix != ".ipynb")
    return files


def build_zip(course: Course, lab: str, out: str | Path, cell_timeout: float = 60.0, timeout: float = 600.0,
              memory_mb: int | None = None, hidden_visibility: str = "after_due_date") -> Path:
    """Write the autograder zip for ``lab`` to ``out`` (atomically; same inputs, same bytes)."""
    from llm_course.files import atomic_write

    config = lab_config(course, lab, cell_timeout, timeout, memory_mb, hidden_visibility)
    entries: list[tuple[str, bytes, int]] = [
        ("setup.sh", SETUP_SH.encode(), 0o755),
        ("run_autograder", RUN_AUTOGRADER.encode(), 0o755),
        (CONFIG, (json.dumps(config, indent=1) + "\n").encode(), 0o644),
    ]
    for name in ("requirements.txt", "requirements-nodeps.txt"):
        path = REPO_ROOT / name
        entries.append((name, path.read_bytes() if path.is_file() else b"", 0o644))
    entries += [(name, path.read_bytes(), 0o644) for path, name in _course_files(course, lab)]
    with atomic_write(out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = (0o100000 | mode) << 16  # a regular file with these permissions
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    os.chmod(out, 0o644)  # the temporary file atomic_write renames is private (0600)
    return Path(out)


# --------------------------------------------------------------------------- results.json
def visibility(item: dict[str, Any], hidden_visibility: str = "after_due_date") -> str:
    """``visible`` for a passed cell or one that failed in its visible part, else ``hidden_visibility``.

    The grader reports one verdict per cell. A failure message ends with ``(in a hidden test)``
    or ``(at line N: …)`` (a visible line); timeouts and crashes carry no location and could have
    happened in a hidden test, so they are treated as hidden. (If the grader's items one day
    carry ``"hidden": bool``, that wins.)
    """
    if item["status"] == "passed":
        return "visible"
    if isinstance(item.get("hidden"), bool):
        return hidden_visibility if item["hidden"] else "visible"
    message = str(item.get("message") or "")
    if message.rstrip().endswith(_IN_HIDDEN) or not _AT_VISIBLE_LINE.search(message):
        return hidden_visibility
    return "visible"


def _output(item: dict[str, Any]) -> str:
    if item["status"] == "passed":
        return "All checks passed, visible and hidden."
    status = {"failed": "A check failed", "error": "An error was raised", "timeout": "Time limit reached",
              "kernel_died": "The kernel died"}.get(item["status"], item["status"])
    message = str(item.get("message") or "").strip()
    return f"{status}.\n\n{message}" if message else f"{status}."


def to_results(result: dict[str, Any], config: dict[str, Any], execution_time: float,
               note: str = "") -> dict[str, Any]:
    """Gradescope's results.json for one graded submission (``grade_notebook``'s dict)."""
    hidden_vis = config.get("hidden_visibility", "after_due_date")
    items = {it["grade_id"]: it for it in result["items"]}
    tests = []
    for number, spec in enumerate(config["tests"], start=1):
        item = items.get(spec["grade_id"]) or {  # nothing was graded (no notebook): say so openly
            "grade_id": spec["grade_id"], "points": 0.0, "max_points": spec["max_score"],
            "status": "error", "message": "not graded (see the message at the top)", "hidden": False}
        tests.append({
            "name": spec["name"], "number": str(number),
            "score": float(item["points"]), "max_score": float(spec["max_score"]),
            "status": "passed" if item["status"] == "passed" else "failed",
            "output": _output(item), "visibility": visibility(item, hidden_vis),
        })
    # the same words whatever happened, so this text never hints at a hidden result
    lines = ([note] if note else []) + [
        "One test per graded piece. A piece that passed, or failed a visible check, is shown now; "
        "a piece that failed a hidden test is shown " + _WHEN[hidden_vis] + "."]
    return {"execution_time": int(round(execution_time)), "output": "\n\n".join(lines),
            "output_format": "text", "visibility": "visible", "stdout_visibility": "hidden",
            "tests": tests}


def find_submission(folder: Path, notebook: str) -> Path:
    """The submitted notebook: the one named like the lab's, else the only ``.ipynb`` there."""
    found = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    same = [p for p in found if p.name == notebook]
    if same:
        return same[0]
    if len(found) == 1:
        return found[0]
    names = ", ".join(p.name for p in found) or "none"
    raise GraderError(f"expected one notebook named {notebook!r} in the submission; found: {names}")


def run_autograder(root: str | Path | None = None) -> dict[str, Any]:
    """Grade ``ROOT/submission`` and write ``ROOT/results/results.json``; returns that dict."""
    from llm_course.files import atomic_write

    from .grade import grade_notebook

    start = time.monotonic()
    root = Path(root or os.environ.get(ROOT_ENV_VAR) or DEFAULT_ROOT)
    if not (root / "source" / CONFIG).is_file():
        raise GraderError(f"no {root / 'source' / CONFIG}: {str(root)!r} is not laid out as Gradescope's "
                          f"/autograder (source/ = the unzipped autograder); set {ROOT_ENV_VAR}")
    config = json.loads((root / "source" / CONFIG).read_text(encoding="utf-8"))
    course = Course((root / "source" / "course").resolve())
    note = ""
    try:
        submitted = find_submission(root / "submission", config["notebook"])
        with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
            # grade a copy under the lab's own name: what the learner called it does not matter,
            # and nothing the run writes lands next to the original submission
            copy = Path(tmp) / config["lab"] / config["notebook"]
            copy.parent.mkdir()
            shutil.copyfile(submitted, copy)
            result = grade_notebook(copy, course, assignment=config["lab"],
                                    cell_timeout=config["cell_timeout"], timeout=config["timeout"],
                                    memory_mb=config.get("memory_mb"))
    except GraderError as e:  # the submission's fault: every test fails with the reason
        note = f"Your submission could not be graded: {e}"
        result = {"score": 0.0, "max_score": 0.0, "items": []}
    results = to_results(result, config, time.monotonic() - start, note)
    with atomic_write(root / "results" / "results.json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
    return results


# --------------------------------------------------------------------------- command line
def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``gradescope LAB [--out ZIP]`` on the grader's command line."""
    from .grade import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMEOUT

    p = subparsers.add_parser("gradescope", help="build a Gradescope autograder zip for one lab")
    p.add_argument("lab", metavar="LAB", help="assignment id, e.g. 06-attention")
    p.add_argument("--out", type=Path, metavar="ZIP", help="where to write the zip (default: ./gradescope-LAB.zip)")
    p.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, metavar="S",
                   help="seconds for one cell on Gradescope (default: %(default)g)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                   help="seconds for a whole submission (default: %(default)g; Gradescope's own limit is set "
                        "in the assignment's settings)")
    p.add_argument("--memory-mb", type=int, default=None, metavar="MB", help="memory limit for the kernel")
    p.add_argument("--hidden-visibility", choices=VISIBILITIES, default="after_due_date",
                   help="when learners see a piece that failed a hidden test (default: %(default)s)")
    return p


def run(args: argparse.Namespace) -> int:
    course = Course(Path(getattr(args, "root", None) or REPO_ROOT).resolve())
    try:
        if args.cell_timeout <= 0 or args.timeout <= 0:
            raise GraderError("--cell-timeout and --timeout must be positive numbers of seconds")
        if args.memory_mb is not None and args.memory_mb < 1:
            raise GraderError(f"--memory-mb must be at least 1, got {args.memory_mb}")
        course.check_assignment(args.lab)
        out = build_zip(course, args.lab, args.out or Path(f"gradescope-{args.lab}.zip"),
                        cell_timeout=args.cell_timeout, timeout=args.timeout, memory_mb=args.memory_mb,
                        hidden_visibility=args.hidden_visibility)
    except GraderError as e:
        print(f"grader: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (upload it as the Gradescope assignment's autograder)")
    return 0


def main() -> int:
    """Entry point of ``run_autograder``: grade, write results.json, print a line for the instructor."""
    try:
        results = run_autograder()
    except GraderError as e:  # the autograder's setup is broken, not the submission
        print(f"grader: error: {e}", file=sys.stderr)
        return 2
    for t in results["tests"]:
        print(f"{t['name']:<40} {t['status']:<7} {t['score']:g}/{t['max_score']:g}  [{t['visibility']}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
