"""Export an autograde results folder as a gradebook table::

    python -m grader export csv RESULTS_DIR [--out FILE]     # default FILE: RESULTS_DIR/export.csv

``RESULTS_DIR`` is what ``python -m grader autograde`` wrote: one ``<key>.json`` per submission,
where ``<key>`` is the student (flat folder) or ``<student>__<assignment>__<notebook>``
(nbgrader's ``submitted/`` layout). The CSV has one row per student: the points of every graded
piece (column ``<grade_id>``, or ``<assignment>/<grade_id>`` when the folder holds several
assignments), ``score``, ``max_score`` and ``notes`` (why a submission could not be graded, which
cells timed out or crashed). A student with no result for an assignment others have, or whose
notebook could not be read, gets 0 for its pieces and the full ``max_score``, so totals compare.
The file is written atomically: a spreadsheet never opens half of it.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from .course import GraderError

#: Statuses worth a note in the table (a failed check is the ordinary case and says nothing new).
NOTED = {"error", "timeout", "kernel_died"}
SUBMISSION_ITEM = "(submission)"  # the item grader.batch records when a notebook could not be graded


def load_results(folder: str | Path) -> list[tuple[str, str, dict[str, Any]]]:
    """``(student, assignment, result)`` for every ``<key>.json`` in ``folder``, sorted by key."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GraderError(f"results folder {str(folder)!r} does not exist or is not a directory")
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise GraderError(f"{str(path)!r} is not a readable result: {e}") from None
        if not (isinstance(result, dict) and isinstance(result.get("items"), list)):
            continue  # not a grade result (some other JSON file the instructor put there)
        parts = path.stem.split("__")
        student, assignment = (parts[0], parts[1]) if len(parts) == 3 else (path.stem, "")
        found.append((student, assignment, result))
    if not found:
        raise GraderError(f"no grade results (*.json from `python -m grader autograde`) in {str(folder)!r}")
    return found


def table(results: list[tuple[str, str, dict[str, Any]]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(header, rows): one row per student, a column per (assignment, graded piece)."""
    pieces: dict[tuple[str, str], float] = {}  # (assignment, grade_id) → max points, in notebook order
    for _, assignment, res in results:
        for it in res["items"]:
            if it["grade_id"] != SUBMISSION_ITEM and it["status"] != "manual":
                key = (assignment, it["grade_id"])
                pieces[key] = max(pieces.get(key, 0.0), float(it["max_points"]))
    several = len({a for a, _ in pieces}) > 1
    column = {key: f"{key[0]}/{key[1]}" if several else key[1] for key in pieces}
    max_of = {a: sum(m for (a2, _), m in pieces.items() if a2 == a) for a, _ in pieces}
    rows: dict[str, dict[str, Any]] = {}
    for student, assignment, res in results:
        row = rows.setdefault(student, {"student": student, "notes": [], "assignments": set(),
                                        **{column[k]: 0.0 for k in pieces}})
        row["assignments"].add(assignment)
        for it in res["items"]:
            key = (assignment, it["grade_id"])
            if key in column:
                row[column[key]] += float(it["points"])  # summed: several notebooks per assignment
            if it["status"] in NOTED:
                where = "" if it["grade_id"] == SUBMISSION_ITEM else f"{it['grade_id']}: "
                row["notes"].append(f"{where}{it['status']}"
                                    + (f" ({it['message']})" if it["grade_id"] == SUBMISSION_ITEM else ""))
    header = ["student", *column.values(), "score", "max_score", "notes"]
    out = []
    for student in sorted(rows):
        row = rows[student]
        score = sum(row[c] for c in column.values())
        out.append({**{c: row[c] for c in header[:-3]}, "score": score,
                    "max_score": sum(max_of.values()), "notes": "; ".join(row["notes"])})
    return header, out


def _number(value: Any) -> Any:
    return f"{value:g}" if isinstance(value, float) else value


def export_csv(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the table for ``folder`` to ``out`` (default ``folder/export.csv``); return the path."""
    from llm_course.files import atomic_write

    header, rows = table(load_results(folder))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _number(v) for k, v in row.items()} for row in rows)
    path = Path(out) if out is not None else Path(folder) / "export.csv"
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(buf.getvalue())
    return path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``export csv RESULTS_DIR [--out FILE]`` on the grader's command line."""
    p = subparsers.add_parser("export", help="export autograde results (csv)")
    kinds = p.add_subparsers(dest="format", required=True, metavar="FORMAT")
    c = kinds.add_parser("csv", help="one row per student: points per piece, total")
    c.add_argument("results", type=Path, metavar="RESULTS_DIR", help="the --out folder of `autograde`")
    c.add_argument("--out", type=Path, metavar="FILE", help="CSV file to write (default: RESULTS_DIR/export.csv)")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        path = export_csv(args.results, args.out)
    except GraderError as e:
        print(f"grader: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
