"""The grading tools on a tiny fixture assignment (tests/fixtures/grader, assignment 00-demo).

One batch (2 workers) grades every adversarial submission; the other tests read its results.
"""
from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.batch import autograde
from grader.cells import grade_id
from grader.course import Course, GraderError
from grader.grade import grade_notebook
from grader.release import check, release

ROOT = Path(__file__).resolve().parent / "fixtures" / "grader"
COURSE = Course(ROOT)
SOURCE = ROOT / "solutions" / "00-demo" / "demo.ipynb"
LAB = ROOT / "labs" / "00-demo" / "demo.ipynb"
SECRETS = ["SECRET-HIDDEN", "add(40, 2)", "add(-7, 19)", "secret_case", "(7, 6)", "math.prod"]
GOOD = {"add": "def add(a, b):\n    return a + b", "mul": "def mul(a, b):\n    return a * b"}
CELL_TIMEOUT = 3


def lab_with(**changes: str | None) -> nbformat.NotebookNode:
    """The released lab with cells replaced by grade_id (``None`` deletes the cell)."""
    nb = nbformat.read(LAB, as_version=4)
    changes = {**GOOD, **changes}
    cells = []
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid in changes:
            if changes[gid] is None:
                continue
            cell.source = changes[gid]
        cells.append(cell)
    nb.cells = cells
    return nb


def with_extra_cell(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


SUBMISSIONS = {
    "reference": nbformat.read(SOURCE, as_version=4),
    "stub": nbformat.read(LAB, as_version=4),
    "good": lab_with(),
    "loop": lab_with(add="def add(a, b):\n    while True:\n        pass"),
    "stubborn": lab_with(add="def add(a, b):\n    while True:\n        try:\n            while True:\n                pass\n"
                             "        except BaseException:\n            pass"),
    "raises": lab_with(mul="def mul(a, b):\n    raise ValueError('no mul today')"),
    "exits": lab_with(mul="import os\nos._exit(1)"),
    "edits_test": lab_with(add="def add(a, b):\n    return 0", test_add="pass"),
    "deletes_test": lab_with(add="def add(a, b):\n    return 0", test_add=None),
    "hidden_fail": lab_with(add="def add(a, b):\n    return 3"),
    "leaker": with_extra_cell(lab_with(), "import inspect\nprint(In)\nprint('\\n'.join(''.join(In)))\n"
                                          "from IPython.display import HTML\nHTML('<pre>' + In[4] + '</pre>')"),
}
#: expected (score, {grade_id: status}) out of 5 autograded points
EXPECTED = {
    "reference": (5, {"test_add": "passed", "test_mul": "passed", "explain": "manual"}),
    "stub": (0, {"test_add": "error", "test_mul": "error"}),
    "good": (5, {"test_add": "passed", "test_mul": "passed"}),
    "loop": (3, {"test_add": "timeout", "test_mul": "passed"}),
    "stubborn": (0, {"test_add": "timeout", "test_mul": "kernel_died"}),
    "raises": (2, {"test_add": "passed", "test_mul": "error"}),
    "exits": (2, {"test_add": "passed", "test_mul": "kernel_died"}),
    "edits_test": (3, {"test_add": "failed", "test_mul": "passed"}),
    "deletes_test": (3, {"test_add": "failed", "test_mul": "passed"}),
    "hidden_fail": (3, {"test_add": "failed", "test_mul": "passed"}),
    "leaker": (5, {"test_add": "passed", "test_mul": "passed"}),
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    for name, nb in SUBMISSIONS.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    (folder / "broken.ipynb").write_text("{not json", encoding="utf-8")
    out = folder / "graded"
    summary = autograde(folder, COURSE, assignment="00-demo", out=out, workers=2,
                        cell_timeout=CELL_TIMEOUT, timeout=60, progress=False)
    return folder, out, summary


def result(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


# --- release ---------------------------------------------------------------------------

def test_committed_release_is_fresh():
    assert check(COURSE) == []


def test_release_is_deterministic(tmp_path):
    a = release(COURSE, ["00-demo"], dest=tmp_path / "a")
    b = release(COURSE, ["00-demo"], dest=tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b] == [LAB.read_bytes()]


def test_check_names_differing_files(tmp_path, capsys):
    import shutil

    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    shutil.copytree(ROOT / "labs", tmp_path / "labs")
    nb = nbformat.read(tmp_path / "labs" / "00-demo" / "demo.ipynb", as_version=4)
    nb.cells[1].source += "\n# hand edit"
    nbformat.write(nb, tmp_path / "labs" / "00-demo" / "demo.ipynb")
    (tmp_path / "labs" / "00-demo" / "stray.txt").write_text("x")
    rc, _, err = call_main(capsys, "--root", str(tmp_path), "release", "--check")
    assert rc == 1
    assert "labs/00-demo/demo.ipynb (differs)" in err
    assert "labs/00-demo/stray.txt" in err


def test_release_has_no_solutions_or_hidden_tests():
    text = LAB.read_text()
    for secret in SECRETS + ["return a + b", "return a * b", "BEGIN SOLUTION", "HIDDEN TESTS", "Because integer addition"]:
        assert secret not in text
    nb = nbformat.read(LAB, as_version=4)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code")
    assert nb.metadata["kernelspec"]["name"] == "python3"


# --- grading ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scores(batch, name):
    _, out, _ = batch
    res = result(out, name)
    score, statuses = EXPECTED[name]
    assert res["score"] == score and res["max_score"] == 5
    got = {it["grade_id"]: it["status"] for it in res["items"]}
    assert {k: got[k] for k in statuses} == statuses
    assert set(res) == {"score", "max_score", "items"}
    assert all(set(it) == {"grade_id", "points", "max_points", "status", "message"} for it in res["items"])


def test_restored_cells_are_reported(batch):
    _, out, _ = batch
    msgs = {n: {it["grade_id"]: it["message"] for it in result(out, n)["items"]} for n in ("edits_test", "deletes_test")}
    assert "edited" in msgs["edits_test"]["test_add"]
    assert "deleted" in msgs["deletes_test"]["test_add"]
    assert "restored" not in json.dumps(result(out, "good")) and "restored" not in json.dumps(result(out, "reference"))


def test_messages_locate_failures_without_quoting_hidden_tests(batch):
    _, out, _ = batch
    add = next(it for it in result(out, "hidden_fail")["items"] if it["grade_id"] == "test_add")
    assert add["message"] == "AssertionError (in a hidden test)"
    stub = next(it for it in result(out, "stub")["items"] if it["grade_id"] == "test_add")
    assert "NotImplementedError" in stub["message"] and "line 1" in stub["message"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_feedback_never_shows_hidden_tests(batch, name):
    _, out, _ = batch
    for path in (out / f"{name}.json", out / f"{name}.html"):
        text = path.read_text()
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {path.name}"
    assert "(hidden tests)" in (out / f"{name}.html").read_text()


def test_batch_survives_bad_input_and_writes_csv(batch):
    _, out, summary = batch
    assert result(out, "broken")["items"][0]["status"] == "error"
    assert "not valid JSON" in result(out, "broken")["items"][0]["message"]
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert set(rows) == set(SUBMISSIONS) | {"broken"}
    assert float(rows["reference"]["score"]) == 5 and float(rows["reference"]["max_score"]) == 5


def test_batch_resumes(batch):
    folder, out, _ = batch
    again = autograde(folder, COURSE, assignment="00-demo", out=out, workers=2, progress=False)
    assert again["graded"] == [] and len(again["skipped"]) == len(SUBMISSIONS) + 1
    (out / "good.json").unlink()  # an interrupted run that never wrote this one
    nbformat.write(lab_with(mul="def mul(a, b):\n    return 0"), folder / "raises.ipynb")  # resubmitted
    third = autograde(folder, COURSE, assignment="00-demo", out=out, workers=2, progress=False)
    assert third["graded"] == ["good", "raises"]
    assert result(out, "raises")["score"] == 2 and result(out, "good")["score"] == 5


def test_infers_assignment_and_grades_nbgrader_layout(tmp_path):
    nb_dir = tmp_path / "submitted" / "alice" / "00-demo"
    nb_dir.mkdir(parents=True)
    nbformat.write(lab_with(), nb_dir / "demo.ipynb")
    res = grade_notebook(nb_dir / "demo.ipynb", COURSE, feedback_html=tmp_path / "fb.html")
    assert res["score"] == 5 and (tmp_path / "fb.html").is_file()
    summary = autograde(tmp_path / "submitted", COURSE, out=tmp_path / "out", workers=1, progress=False)
    assert summary["graded"] == ["alice__00-demo__demo"]


# --- CLI -------------------------------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)


def call_main(capsys, *args: str) -> tuple[int, str, str]:
    """``python -m grader ARGS`` in-process: (exit status, stdout, stderr)."""
    from grader.cli import main

    try:
        rc = main(list(args))
    except SystemExit as e:  # argparse rejects bad values itself
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_grade_json():
    proc = run_cli("--root", str(ROOT), "grade", str(SOURCE), "--json", "--cell-timeout", "10")
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["score"] == res["max_score"] == 5


def test_cli_release_check_passes(capsys):
    rc, out, err = call_main(capsys, "--root", str(ROOT), "release", "--check")
    assert rc == 0, err


@pytest.mark.parametrize("args, needle", [
    (["grade", "missing.ipynb"], "'missing.ipynb' does not exist"),
    (["grade", str(ROOT / "solutions")], "is not a file"),
    (["grade", __file__], "is not valid JSON"),
    (["grade", str(LAB), "--assignment", "99-nope"], "unknown assignment '99-nope'"),
    (["release", "99-nope"], "unknown assignment '99-nope'"),
    (["autograde", "no-such-dir"], "'no-such-dir' does not exist"),
    (["grade", str(LAB), "--timeout", "-1"], "--timeout"),
    (["autograde", ".", "--workers", "0"], "--workers"),
])
def test_cli_errors_name_the_argument(args, needle, capsys):
    rc, _, err = call_main(capsys, "--root", str(ROOT), *args)
    assert rc == 2
    assert needle in err


def test_grade_errors_are_grader_errors(tmp_path):
    (tmp_path / "x.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(GraderError, match="--assignment"):
        grade_notebook(tmp_path / "x.ipynb", COURSE)


def test_memory_limit_stops_a_memory_bomb(tmp_path):
    nbformat.write(lab_with(mul="bomb = bytearray(4 * 1024**3)\ndef mul(a, b):\n    return a * b"), tmp_path / "bomb.ipynb")
    res = grade_notebook(tmp_path / "bomb.ipynb", COURSE, memory_mb=1500)
    statuses = {it["grade_id"]: it["status"] for it in res["items"]}
    assert res["score"] == 2 and statuses["test_mul"] == "error"


# --- trusted grading: the pieces, without a kernel ---------------------------------------------

def test_wire_rebuilds_plain_values_and_rejects_the_rest():
    import torch

    from grader import wire

    value = {"a": [1, 2.5, float("nan"), None, True], ("k", 1): (b"raw", torch.arange(6).view(2, 3))}
    blobs: list[bytes] = []
    node = wire.encode(value, blobs, lambda o: pytest.fail(f"unexpected {o!r}"))
    back = wire.decode(json.loads(json.dumps(node)), blobs, lambda n, sub: pytest.fail("no tags"))
    assert back["a"][:2] == [1, 2.5] and back["a"][2] != back["a"][2] and back["a"][3:] == [None, True]
    assert back[("k", 1)][0] == b"raw" and torch.equal(back[("k", 1)][1], torch.arange(6).view(2, 3))

    class Sneaky(torch.Tensor):  # a subclass arrives as a plain tensor: its behaviour stays behind
        pass

    blobs = []
    t = wire.decode(wire.encode(torch.ones(2).as_subclass(Sneaky), blobs, None), blobs, None)
    assert type(t) is torch.Tensor
    bad = [{"t": "tensor", "b": 0, "dtype": "float32", "shape": [3]},  # 4 bytes for 3 floats
           {"t": "tensor", "b": 0, "dtype": "object", "shape": [1]},
           {"t": "pickle", "b": 0}, ["raw list"], {"t": "dict", "k": [{"t": "list", "v": []}], "v": [1]}]
    for node in bad:
        with pytest.raises(wire.WireError):
            wire.decode(node, [b"\0\0\0\0"], lambda n, sub: (_ for _ in ()).throw(wire.WireError("tag")))


def test_check_calls_parses_test_cells_and_refuses_anything_else():
    from grader.trusted import check_calls

    src = ('check("06.sdpa", f).assert_passed()\n### BEGIN HIDDEN TESTS\n'
           'check("06.sdpa", f, seed=7, extended=True).assert_passed()\n### END HIDDEN TESTS')
    calls = check_calls(src)
    assert [(c.piece, c.name, c.seed, c.extended, c.asserted, c.hidden) for c in calls] == [
        ("06.sdpa", "f", 0, False, True, False), ("06.sdpa", "f", 7, True, True, True)]
    for other in ["assert f(1) == 2", 'check("06.sdpa", f)\nprint(1)', 'check("06.sdpa", g(f))', "x = 1", ""]:
        assert check_calls(other) is None


def test_withheld_library_keeps_signatures_but_not_the_code():
    from grader.sandbox import withhold

    src = "import torch\n\n@decorator\ndef f(x):\n    return x + 1\n\nclass M(torch.nn.Module):\n    def forward(self):\n        return 1\n\ndef g():\n    return f(2)\n"
    out = withhold(src, {"f", "M"})
    ns: dict = {"decorator": lambda fn: fn}
    exec(out, ns)
    with pytest.raises(NotImplementedError, match="withheld"):
        ns["f"](1)
    with pytest.raises(NotImplementedError, match="withheld"):
        ns["M"]()
    assert "return x + 1" not in out and "def g():" in out


def test_reordered_test_cells_go_back_in_place():
    from grader.assemble import assemble

    source = nbformat.read(SOURCE, as_version=4)
    nb = lab_with()
    tests = [i for i, c in enumerate(nb.cells) if grade_id(c) and grade_id(c).startswith("test_")]
    moved = nb.cells.pop(tests[-1])
    nb.cells.insert(0, moved)
    merged = assemble(nb, source)
    order = [grade_id(c) for c in merged.nb.cells if grade_id(c)]
    assert order == [grade_id(c) for c in source.cells if grade_id(c)]
    assert merged.restored.get(grade_id(moved)) == "reordered"
    assert "reordered" not in assemble(lab_with(), source).restored.values()


def test_importing_the_reference_is_found():
    from grader.assemble import reference_uses
    from nbformat.v4 import new_code_cell, new_notebook

    ref = ["llm_course.attention:causal_mask"]
    for src in ["from llm_course.attention import causal_mask",
                "from llm_course.attention import *",
                "import llm_course.attention as A\nmask = A.causal_mask",
                "from llm_course import attention\nf = getattr(attention, 'causal_mask')",
                "import importlib\nf = importlib.import_module('llm_course.attention').causal_mask"]:
        assert "causal_mask" in reference_uses(new_notebook(cells=[new_code_cell(src)]), ref), src
    for src in ["from llm_course.attention import padding_mask", "def causal_mask(T):\n    return T"]:
        assert not reference_uses(new_notebook(cells=[new_code_cell(src)]), ref), src
