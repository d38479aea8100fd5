"""CSV export of autograde results, and nbgrader's own autograde + generate_feedback on the repo's config.

Real results come from one small batch on the fixture lab (tests/fixtures/grader, 00-demo).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader import export
from grader.batch import autograde
from grader.cells import grade_id
from grader.course import Course, GraderError

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "grader"
LAB = FIXTURE / "labs" / "00-demo" / "demo.ipynb"
SECRETS = ["SECRET-HIDDEN", "add(40, 2)", "add(-7, 19)"]


def demo(add: str = "return a + b", mul: str = "return a * b") -> nbformat.NotebookNode:
    nb = nbformat.read(LAB, as_version=4)
    for cell in nb.cells:
        if grade_id(cell) in ("add", "mul"):
            cell.source = f"def {grade_id(cell)}(a, b):\n    {add if grade_id(cell) == 'add' else mul}"
    return nb


def rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def call(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    export.add_parser(parser.add_subparsers(dest="command"))
    return export.run(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subs")
    nbformat.write(demo(), folder / "alice.ipynb")
    nbformat.write(demo(add="return 3"), folder / "bob.ipynb")  # fails a hidden test of add
    (folder / "carol.ipynb").write_text("{not json", encoding="utf-8")
    out = folder / "graded"
    autograde(folder, Course(FIXTURE), assignment="00-demo", out=out, workers=2, cell_timeout=10, progress=False)
    return out


def test_csv_from_a_real_batch(graded, tmp_path):
    target = tmp_path / "grades" / "lab00.csv"
    assert call("export", "csv", str(graded), "--out", str(target)) == 0
    with open(target, encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == ["student", "test_add", "test_mul", "score", "max_score", "notes"]
    got = rows(target)
    assert {s: (r["test_add"], r["test_mul"], r["score"], r["max_score"]) for s, r in got.items()} == {
        "alice": ("2", "3", "5", "5"), "bob": ("0", "3", "3", "5"), "carol": ("0", "0", "0", "5")}
    assert "not valid JSON" in got["carol"]["notes"] and got["alice"]["notes"] == ""
    # the batch's own grades.csv agrees on every total
    batch = rows(graded / "grades.csv")
    assert {s: float(r["score"]) for s, r in batch.items()} == {s: float(r["score"]) for s, r in got.items()}
    assert not [s for s in SECRETS if s in target.read_text()]


def test_default_output_and_several_assignments(tmp_path):
    def result(items):
        return {"score": sum(i[1] for i in items), "max_score": sum(i[2] for i in items),
                "items": [{"grade_id": g, "points": p, "max_points": m, "status": s, "message": ""}
                          for g, p, m, s in items]}

    files = {
        "ann__01-x__lab01": result([("a", 1.0, 1.0, "passed"), ("b", 0.0, 2.0, "timeout")]),
        "ann__02-y__lab02": result([("a", 0.5, 4.0, "failed")]),
        "ben__01-x__lab01": result([("a", 1.0, 1.0, "passed"), ("b", 2.0, 2.0, "passed"),
                                    ("essay", 0.0, 3.0, "manual")]),
    }
    for key, res in files.items():
        (tmp_path / f"{key}.json").write_text(json.dumps(res))
    path = export.export_csv(tmp_path)
    assert path == tmp_path / "export.csv"
    got = rows(path)
    assert list(got["ann"]) == ["student", "01-x/a", "01-x/b", "02-y/a", "score", "max_score", "notes"]
    assert (got["ann"]["score"], got["ann"]["max_score"], got["ann"]["notes"]) == ("1.5", "7", "b: timeout")
    assert (got["ben"]["02-y/a"], got["ben"]["score"], got["ben"]["max_score"]) == ("0", "3", "7")


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no grade results"),
    (lambda d: (d / "x.json").write_text("{oops"), "not a readable result"),
])
def test_bad_results_folders(tmp_path, capsys, make, message):
    make(tmp_path)
    assert call("export", "csv", str(tmp_path)) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(GraderError, match="does not exist"):
        export.export_csv(tmp_path / "missing")


def test_nbgrader_autograde_and_generate_feedback_work_with_the_repo_config(tmp_path):
    """nbgrader's own workflow on a course laid out like this repo, with the repo's nbgrader_config.py."""
    course = tmp_path / "course"
    shutil.copytree(FIXTURE / "solutions", course / "solutions")
    shutil.copy(REPO / "nbgrader_config.py", course / "nbgrader_config.py")
    (course / "grader").mkdir()  # the gradebook goes here (nbgrader_config.py)
    (course / "submitted" / "alice" / "00-demo").mkdir(parents=True)
    nbformat.write(demo(add="return 3"), course / "submitted" / "alice" / "00-demo" / "demo.ipynb")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO)}  # nbgrader_config.py imports grader.feedback

    def nbgrader(*args: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    nbgrader("generate_assignment", "00-demo", "--force")
    nbgrader("autograde", "00-demo", "--force")
    nbgrader("generate_feedback", "00-demo", "--force")
    html = (course / "feedback" / "alice" / "00-demo" / "demo.html").read_text(encoding="utf-8")
    assert "(hidden tests)" in html  # grader.feedback.HideHiddenTests ran inside nbgrader
    assert not [s for s in SECRETS if s in html]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'grader' / 'gradebook.db'}") as gb:
        assert gb.find_submission("00-demo", "alice").score == 3  # test_mul (3) passed, test_add (2) failed
