"""``python -m grader``: release labs, grade one submission, autograde a folder.

Usage::

    python -m grader sync [--check]
    python -m grader release [ASSIGNMENT ...] [--check] [--no-db]
    python -m grader grade NOTEBOOK [--assignment A] [--json] [--timeout S] [--cell-timeout S]
                                    [--feedback FILE.html] [--memory-mb MB]
    python -m grader autograde DIR [--assignment A] [--out OUTDIR] [--workers N]
                                   [--timeout S] [--cell-timeout S] [--memory-mb MB]
    python -m grader gradescope LAB [--out ZIP] [--cell-timeout S] [--timeout S] [--memory-mb MB]
                                    [--hidden-visibility V]
    python -m grader export csv RESULTS_DIR [--out FILE]

``--root`` (before the command) points at another course directory (default: this repo).
Exit status: 0 on success, 1 when ``release --check`` finds differences, 2 on bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import export, gradescope
from .course import REPO_ROOT, Course, GraderError
from .grade import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMEOUT


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grader", description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=REPO_ROOT,
                   help="course root holding solutions/ and labs/ (default: %(default)s)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("sync", help="regenerate the solution cells of solutions/ from llm_course")
    s.add_argument("--check", action="store_true", help="do not write: exit 1 and name the stale notebooks")

    r = sub.add_parser("release", help="generate labs/ from solutions/ with nbgrader")
    r.add_argument("assignments", nargs="*", metavar="ASSIGNMENT", help="e.g. 06-attention (default: all)")
    r.add_argument("--check", action="store_true",
                   help="do not write: exit 1 and name the files if labs/ differs from a fresh release")
    r.add_argument("--no-db", action="store_true", help="do not record the assignment in the gradebook")

    def timing(q: argparse.ArgumentParser) -> None:
        q.add_argument("--assignment", metavar="A", help="assignment id (default: inferred from the notebook)")
        q.add_argument("--timeout", type=_positive, default=DEFAULT_TIMEOUT, metavar="S",
                       help="seconds for a whole submission (default: %(default)g)")
        q.add_argument("--cell-timeout", type=_positive, default=DEFAULT_CELL_TIMEOUT, metavar="S",
                       help="seconds for one cell before it is interrupted (default: %(default)g)")
        q.add_argument("--memory-mb", type=_count, default=None, metavar="MB",
                       help="address-space limit for the kernel (default: none)")

    g = sub.add_parser("grade", help="grade one submitted notebook")
    g.add_argument("notebook", type=Path, metavar="NOTEBOOK")
    timing(g)
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    g.add_argument("--feedback", type=Path, metavar="FILE", help="write HTML feedback here")

    a = sub.add_parser("autograde", help="grade every submission in a folder")
    a.add_argument("folder", type=Path, metavar="DIR")
    timing(a)
    a.add_argument("--out", type=Path, metavar="OUTDIR", help="results folder (default: DIR/graded)")
    a.add_argument("--workers", type=_count, default=max(1, (os.cpu_count() or 2) // 2), metavar="N",
                   help="parallel worker processes (default: %(default)s)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    gradescope.add_parser(sub)
    export.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.root / "solutions").is_dir():
        print(f"grader: error: --root {str(args.root)!r} has no solutions/ directory", file=sys.stderr)
        return 2
    course = Course(args.root.resolve())
    try:
        return COMMANDS[args.command](args, course)
    except GraderError as e:
        print(f"grader: error: {e}", file=sys.stderr)
        return 2


def _sync(args: argparse.Namespace, course: Course) -> int:
    from .solutions import sync_all

    stale = sync_all(course.root, check=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path.relative_to(course.root)}")
    if args.check and stale:
        print("solution cells differ from llm_course (run `python -m grader sync`)", file=sys.stderr)
        return 1
    return 0


def _release(args: argparse.Namespace, course: Course) -> int:
    from . import release

    if args.check:
        diffs = release.check(course, args.assignments or None)
        if diffs:
            print("labs/ differs from a fresh release of solutions/ (run `python -m grader release`):",
                  file=sys.stderr)
            for d in diffs:
                print(f"  {d}", file=sys.stderr)
            return 1
        print("labs/ is up to date")
        return 0
    for a in args.assignments:
        course.check_assignment(a)
    db = None if args.no_db else f"sqlite:///{course.root / 'grader' / 'gradebook.db'}"
    if db:
        (course.root / "grader").mkdir(exist_ok=True)
    for path in release.release(course, args.assignments or None, db_url=db):
        print(path.relative_to(course.root))
    return 0


def _grade(args: argparse.Namespace, course: Course) -> int:
    from .grade import grade_notebook

    result = grade_notebook(args.notebook, course, assignment=args.assignment, cell_timeout=args.cell_timeout,
                            timeout=args.timeout, feedback_html=args.feedback, memory_mb=args.memory_mb)
    if args.json:
        print(json.dumps(result))
    else:
        for item in result["items"]:
            line = f"{item['grade_id']:<24} {item['status']:<12} {item['points']:g}/{item['max_points']:g}"
            print(line + (f"  {item['message']}" if item["message"] else ""))
        print(f"score: {result['score']:g} / {result['max_score']:g}")
    return 0


def _autograde(args: argparse.Namespace, course: Course) -> int:
    from .batch import autograde

    summary = autograde(args.folder, course, assignment=args.assignment, out=args.out, workers=args.workers,
                        cell_timeout=args.cell_timeout, timeout=args.timeout, memory_mb=args.memory_mb,
                        progress=not args.quiet)
    print(f"graded {len(summary['graded'])}, skipped {len(summary['skipped'])} already graded; "
          f"summary in {summary['csv']}")
    return 0


COMMANDS = {"sync": _sync, "release": _release, "grade": _grade, "autograde": _autograde,
            "gradescope": lambda args, course: gradescope.run(args),
            "export": lambda args, course: export.run(args)}
