"""Lab 06 end to end through the real grader: labs/ is fresh, the reference scores full marks,
the untouched student notebook scores 0, and a submission carrying any one catalogued mistake
loses points. One batch (two workers) grades them all; the tests read its results."""

import json
from pathlib import Path

import nbformat
import pytest

from grader.batch import autograde
from grader.cells import grade_id
from grader.course import Course
from grader.release import check
from tests.mutants.lab06 import MUTANTS, PIECES

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "solutions/06-attention/lab06-attention.ipynb"
LAB = ROOT / "labs/06-attention/lab06-attention.ipynb"
MAX_SCORE = 13


def _learner_answers() -> dict[str, str]:
    """The reference answer of each piece, as a learner would type it (no nbgrader markers)."""
    nb = nbformat.read(SOURCE, as_version=4)
    return {grade_id(c): "\n".join(line for line in c.source.splitlines() if "### " not in line)
            for c in nb.cells if grade_id(c) in PIECES}


def _submission(answers: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(LAB, as_version=4)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    answers = _learner_answers()
    subs = {"reference": nbformat.read(SOURCE, as_version=4), "stub": nbformat.read(LAB, as_version=4),
            "learner": _submission(answers)}
    for i, m in enumerate(MUTANTS):
        subs[f"mutant{i:02d}"] = _submission({**answers, m.grade_id: m.apply(answers[m.grade_id])})
    for name, nb in subs.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    out = folder / "graded"
    autograde(folder, Course(ROOT), assignment="06-attention", out=out, workers=2, cell_timeout=60,
              progress=False)
    return {name: json.loads((out / f"{name}.json").read_text()) for name in subs}


def test_labs_are_a_fresh_release_of_solutions():
    assert check(Course(ROOT)) == [], "labs/ is stale: run `make labs`"


def test_reference_and_a_correct_learner_score_full_marks(results):
    for name in ("reference", "learner"):
        assert results[name]["max_score"] == MAX_SCORE
        assert results[name]["score"] == MAX_SCORE, results[name]["items"]


def test_untouched_student_notebook_scores_zero(results):
    assert results["stub"]["score"] == 0
    assert all(item["status"] in ("failed", "error") for item in results["stub"]["items"])


@pytest.mark.parametrize("index", range(len(MUTANTS)), ids=[m.name for m in MUTANTS])
def test_each_mutant_loses_points_on_its_piece_only(results, index):
    mutant = MUTANTS[index]
    res = results[f"mutant{index:02d}"]
    lost = {item["grade_id"] for item in res["items"] if item["points"] < item["max_points"]}
    assert res["score"] < MAX_SCORE, f"{mutant.name} kept full marks"
    # MultiHeadAttention calls the learner's other pieces, so a broken piece may also cost the mha tests.
    assert lost <= {f"{mutant.grade_id}_tests", "mha_tests"}, f"{mutant.name} lost points elsewhere: {lost}"
    assert f"{mutant.grade_id}_tests" in lost


def test_feedback_names_the_mistake_but_not_the_hidden_seeds(results):
    hidden_seeds = ["6061", "7027", "1283", "3119", "9001", "4242"]
    text = json.dumps(results)
    assert not any(seed in text for seed in hidden_seeds)
    sdpa = next(i for i in results["mutant00"]["items"] if i["grade_id"] == "sdpa_tests")
    assert "√d_k" in sdpa["message"]
