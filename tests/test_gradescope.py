"""The Gradescope autograder: the zip, and results.json checked against Gradescope's specification.

End to end, the zip is unpacked into a scratch folder laid out as Gradescope lays out
/autograder (source/, submission/, results/) and its own ``run_autograder`` is executed:
lab 06 (reference → full marks, stub → 0) and the tiny fixture lab (a hidden-test failure,
a missing notebook).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import nbformat
import pytest

from grader import gradescope
from grader.cells import grade_id
from grader.course import Course

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Course(REPO / "tests" / "fixtures" / "grader")

# Written from Gradescope's "Autograder Specifications" (results.json output format).
_VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
_FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}
RESULTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "anyOf": [{"required": ["score"]}, {"required": ["tests"]}],  # score is required unless every test has one
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string"},
        "output_format": _FORMAT,
        "test_output_format": _FORMAT,
        "test_name_format": _FORMAT,
        "visibility": _VISIBILITY,
        "stdout_visibility": _VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["score", "max_score"],
                "properties": {
                    "score": {"type": "number"},
                    "max_score": {"type": "number", "minimum": 0},
                    "status": {"enum": ["passed", "failed"]},
                    "name": {"type": "string"},
                    "name_format": _FORMAT,
                    "number": {"type": ["string", "number"]},
                    "output": {"type": "string"},
                    "output_format": _FORMAT,
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "visibility": _VISIBILITY,
                    "extra_data": {"type": "object"},
                },
            },
        },
        "leaderboard": {
            "type": "array",
            "items": {"type": "object", "required": ["name", "value"],
                      "properties": {"name": {"type": "string"}, "value": {"type": ["number", "string"]},
                                     "order": {"enum": ["asc", "desc"]}}},
        },
    },
}


def validate(results: dict) -> None:
    jsonschema.Draft202012Validator(RESULTS_SCHEMA).validate(results)
    for t in results["tests"]:  # what the schema cannot say
        assert 0 <= t["score"] <= t["max_score"], t


def test_schema_rejects_what_gradescope_would():
    ok = {"tests": [{"name": "a", "score": 1, "max_score": 1, "status": "passed", "visibility": "visible"}]}
    validate(ok)
    for bad in ({"tests": [{"score": 1}]},  # no max_score
                {"tests": [{**ok["tests"][0], "visibility": "later"}]},
                {"tests": [{**ok["tests"][0], "status": "ok"}]},
                {**ok, "scor": 1}, {"output": "no score, no tests"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(RESULTS_SCHEMA).validate(bad)


# --- results from a grader result dict (no kernel) ----------------------------------------

CONFIG = {"lab": "00-demo", "notebook": "demo.ipynb", "cell_timeout": 3, "timeout": 60, "memory_mb": None,
          "tests": [{"grade_id": "a_tests", "name": "a_tests", "max_score": 2.0},
                    {"grade_id": "b_tests", "name": "b_tests", "max_score": 3.0},
                    {"grade_id": "c_tests", "name": "c_tests", "max_score": 1.0},
                    {"grade_id": "d_tests", "name": "d_tests", "max_score": 1.0}]}


def item(gid, status, message="", points=0.0, max_points=1.0):
    return {"grade_id": gid, "points": points, "max_points": max_points, "status": status, "message": message}


def test_hidden_failures_are_shown_after_the_due_date():
    result = {"score": 2.0, "max_score": 7.0, "items": [
        item("a_tests", "passed", points=2.0, max_points=2.0),
        item("b_tests", "failed", "AssertionError: 06.x: 3/4 cases passed (in a hidden test)", max_points=3.0),
        item("c_tests", "failed", "AssertionError: 0/2 cases passed (at line 1: check(\"06.c\", c).assert_passed())"),
        item("d_tests", "timeout", "the cell ran longer than 3 s and was interrupted"),
    ]}
    res = gradescope.to_results(result, CONFIG, 1.4)
    validate(res)
    by_name = {t["name"]: t for t in res["tests"]}
    assert {n: t["visibility"] for n, t in by_name.items()} == {
        "a_tests": "visible", "b_tests": "after_due_date", "c_tests": "visible", "d_tests": "after_due_date"}
    assert {n: (t["score"], t["max_score"], t["status"]) for n, t in by_name.items()} == {
        "a_tests": (2.0, 2.0, "passed"), "b_tests": (0.0, 3.0, "failed"),
        "c_tests": (0.0, 1.0, "failed"), "d_tests": (0.0, 1.0, "failed")}
    assert "0/2 cases passed" in by_name["c_tests"]["output"]
    assert res["stdout_visibility"] == "hidden" and "score" not in res  # Gradescope sums the tests


def test_an_explicit_hidden_flag_from_the_grader_wins():
    assert gradescope.visibility(item("x", "failed", "(at line 2: f())") | {"hidden": True}) == "after_due_date"
    assert gradescope.visibility(item("x", "timeout") | {"hidden": False}) == "visible"


# --- the zip ------------------------------------------------------------------------------

def build(course: Course, lab: str, out: Path) -> Path:
    """Through the command-line entry points, as ``python -m grader gradescope`` will call them."""
    parser = argparse.ArgumentParser()
    gradescope.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["gradescope", lab, "--out", str(out), "--cell-timeout", "120"])
    args.root = course.root
    assert gradescope.run(args) == 0
    return out


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zips")
    return {"06-attention": build(Course(REPO), "06-attention", tmp / "06.zip"),
            "00-demo": build(FIXTURE, "00-demo", tmp / "demo.zip")}


def test_zip_layout_and_permissions(zips, tmp_path):
    with zipfile.ZipFile(zips["06-attention"]) as z:
        names = set(z.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in z.infolist()}
        config = json.loads(z.read("gradescope.json"))
    assert {"setup.sh", "run_autograder", "gradescope.json", "requirements.txt",
            "course/pyproject.toml", "course/llm_course/attention.py", "course/grader/grade.py",
            "course/solutions/06-attention/lab06-attention.ipynb"} <= names
    assert modes["setup.sh"] == modes["run_autograder"] == 0o755
    assert not [n for n in names if "__pycache__" in n or n.endswith((".db", ".pyc"))]
    assert not [n for n in names if n.startswith("course/solutions/") and "06-attention" not in n]
    assert config["lab"] == "06-attention" and config["cell_timeout"] == 120
    assert [t["grade_id"] for t in config["tests"]] == [
        "sdpa_tests", "causal_mask_tests", "padding_mask_tests", "split_heads_tests", "merge_heads_tests", "mha_tests"]
    assert sum(t["max_score"] for t in config["tests"]) == 13
    again = build(Course(REPO), "06-attention", tmp_path / "again.zip")
    assert again.read_bytes() == zips["06-attention"].read_bytes(), "the same repo must build the same zip"


def test_bad_lab_is_a_clear_error(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    gradescope.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["gradescope", "99-nope", "--out", str(tmp_path / "x.zip")])
    assert gradescope.run(args) == 2
    assert "unknown assignment '99-nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


# --- run_autograder end to end ------------------------------------------------------------

def gradescope_dir(zip_path: Path, root: Path, submission: nbformat.NotebookNode | None, name: str) -> Path:
    """/autograder as Gradescope lays it out: source/ (the zip), submission/, results/."""
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root / "source")
    for script in ("run_autograder", "setup.sh"):  # extractall drops permissions; Gradescope keeps them
        path = root / "source" / script
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    if submission is not None:
        nbformat.write(submission, root / "submission" / name)
    return root


def start(root: Path) -> subprocess.Popen:
    env = {**os.environ, "GRADESCOPE_ROOT": str(root), "GRADESCOPE_PYTHON": sys.executable,
           "LLM_COURSE_QUICK": "1"}
    return subprocess.Popen([str(root / "run_autograder")], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, root: Path) -> dict:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    results = json.loads((root / "results" / "results.json").read_text())
    validate(results)
    return results


def test_lab06_reference_full_marks_and_stub_zero(zips, tmp_path):
    ref = gradescope_dir(zips["06-attention"], tmp_path / "ref",
                         nbformat.read(REPO / "solutions/06-attention/lab06-attention.ipynb", as_version=4),
                         "lab06-attention.ipynb")
    stub = gradescope_dir(zips["06-attention"], tmp_path / "stub",
                          nbformat.read(REPO / "labs/06-attention/lab06-attention.ipynb", as_version=4),
                          "my renamed copy.ipynb")  # learners rename files; the only notebook is graded
    procs = {"ref": start(ref), "stub": start(stub)}  # both at once: two cores
    ref_res, stub_res = finish(procs["ref"], ref), finish(procs["stub"], stub)
    assert sum(t["score"] for t in ref_res["tests"]) == sum(t["max_score"] for t in ref_res["tests"]) == 13
    assert all(t["status"] == "passed" and t["visibility"] == "visible" for t in ref_res["tests"])
    assert sum(t["score"] for t in stub_res["tests"]) == 0 and len(stub_res["tests"]) == 6
    assert all(t["status"] == "failed" and "NotImplementedError" in t["output"] for t in stub_res["tests"])
    assert all(t["visibility"] == "visible" for t in stub_res["tests"])  # the visible check failed
    hidden_seeds = ["6061", "7027", "1283", "3119", "9001", "4242"]
    text = json.dumps([ref_res, stub_res])
    assert not [s for s in hidden_seeds if f"seed={s}" in text]


def _demo(**answers: str) -> nbformat.NotebookNode:
    nb = nbformat.read(FIXTURE.release / "00-demo" / "demo.ipynb", as_version=4)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def test_hidden_failure_and_missing_notebook_on_the_fixture_lab(zips, tmp_path):
    hidden = gradescope_dir(zips["00-demo"], tmp_path / "hidden",
                            _demo(add="def add(a, b):\n    return 3", mul="def mul(a, b):\n    return a * b"),
                            "demo.ipynb")
    empty = gradescope_dir(zips["00-demo"], tmp_path / "empty", None, "")
    (empty / "submission" / "notes.txt").write_text("forgot the notebook")
    procs = {"hidden": start(hidden), "empty": start(empty)}
    res, none = finish(procs["hidden"], hidden), finish(procs["empty"], empty)
    tests = {t["name"]: t for t in res["tests"]}
    assert {n: (t["score"], t["visibility"]) for n, t in tests.items()} == {
        "test_add": (0.0, "after_due_date"), "test_mul": (3.0, "visible")}
    assert "in a hidden test" in tests["test_add"]["output"]
    for secret in ("SECRET-HIDDEN", "add(40, 2)", "add(-7, 19)"):
        assert secret not in json.dumps(res)
    assert "could not be graded" in none["output"] and "demo.ipynb" in none["output"]
    assert all(t["score"] == 0 and t["visibility"] == "visible" for t in none["tests"])


def test_cli_builds_the_zip(tmp_path):
    """``python -m grader gradescope`` (wired into grader/cli.py by the grading-core owner)."""
    out = tmp_path / "demo.zip"
    proc = subprocess.run([sys.executable, "-m", "grader", "--root", str(FIXTURE.root), "gradescope", "00-demo",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "run_autograder" in zipfile.ZipFile(out).namelist()
