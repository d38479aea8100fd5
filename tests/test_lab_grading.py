"""Every lab end to end through the real grader (one batch per lab, two workers):

* labs/ is a fresh release of solutions/;
* the reference notebook and a learner who typed the reference answers score full marks;
* the untouched student notebook scores 0;
* one mutant per graded piece loses points on that piece (the whole catalogue is checked in
  process by test_lab_mutants.py; this proves the nbgrader round trip does the same).
"""

import json
from pathlib import Path

import nbformat
import pytest

from grader.batch import autograde
from grader.cells import grade_id
from grader.course import Course
from grader.release import check
from tests.mutants import catalogues

ROOT = Path(__file__).resolve().parents[1]
LABS = catalogues()


def _learner_answers(lab) -> dict[str, str]:
    """The reference answer of each piece, as a learner would type it (no nbgrader markers)."""
    nb = nbformat.read(ROOT / lab.NOTEBOOK, as_version=4)
    return {grade_id(c): "\n".join(line for line in c.source.splitlines() if "### " not in line)
            for c in nb.cells if grade_id(c) in lab.PIECES}


def _released(lab) -> Path:
    return ROOT / lab.NOTEBOOK.replace("solutions/", "labs/", 1)


def _submission(lab, answers: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(_released(lab), as_version=4)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def _one_mutant_per_piece(lab):
    seen: dict = {}
    for m in lab.MUTANTS:
        seen.setdefault(m.grade_id, m)
    return list(seen.values())


@pytest.fixture(scope="module", params=LABS, ids=lambda lab: lab.__name__.rsplit(".", 1)[-1])
def graded(request, tmp_path_factory):
    lab = request.param
    folder = tmp_path_factory.mktemp("submissions")
    answers = _learner_answers(lab)
    subs = {"reference": nbformat.read(ROOT / lab.NOTEBOOK, as_version=4),
            "stub": nbformat.read(_released(lab), as_version=4),
            "learner": _submission(lab, answers)}
    mutants = _one_mutant_per_piece(lab)
    for i, m in enumerate(mutants):
        subs[f"mutant{i:02d}"] = _submission(lab, {**answers, m.grade_id: m.apply(answers[m.grade_id])})
    for name, nb in subs.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    out = folder / "graded"
    autograde(folder, Course(ROOT), out=out, workers=2, cell_timeout=120, progress=False)
    results = {name: json.loads((out / f"{name}.json").read_text()) for name in subs}
    return lab, mutants, results


def test_labs_are_a_fresh_release_of_solutions():
    assert check(Course(ROOT)) == [], "labs/ is stale: run `make labs`"


def test_reference_and_a_correct_learner_score_full_marks(graded):
    lab, _, results = graded
    for name in ("reference", "learner"):
        assert results[name]["max_score"] == lab.MAX_SCORE
        assert results[name]["score"] == lab.MAX_SCORE, results[name]["items"]


def test_untouched_student_notebook_scores_zero(graded):
    _, _, results = graded
    assert results["stub"]["score"] == 0
    assert all(item["status"] in ("failed", "error") for item in results["stub"]["items"])


def test_mutants_lose_points_on_their_piece(graded):
    lab, mutants, results = graded
    for i, mutant in enumerate(mutants):
        res = results[f"mutant{i:02d}"]
        lost = {item["grade_id"] for item in res["items"] if item["points"] < item["max_points"]}
        assert res["score"] < lab.MAX_SCORE, f"{mutant.name} kept full marks"
        assert f"{mutant.grade_id}_tests" in lost, f"{mutant.name} lost points only on {lost}"


def test_feedback_never_shows_hidden_test_code(graded):
    lab, _, results = graded
    nb = nbformat.read(ROOT / lab.NOTEBOOK, as_version=4)
    hidden = [line.strip() for c in nb.cells for line in c.source.split("### BEGIN HIDDEN TESTS")[1:]
              for line in line.split("### END HIDDEN TESTS")[0].splitlines() if line.strip()]
    assert hidden, "every lab has hidden tests"
    text = json.dumps(results, ensure_ascii=False)
    assert not [line for line in hidden if line in text]
