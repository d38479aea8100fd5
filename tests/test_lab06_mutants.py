"""Lab 06 grading, in process: the reference passes every case, the stub and each mutant fail.

Each solution cell is executed the way the notebook runs it (after the setup cell, in one
namespace), so these tests see exactly the code the learner's notebook would hold.
"""

import nbformat
import pytest

from llm_course.checks import check
from tests.mutants.lab06 import MUTANTS, NOTEBOOK, PIECES


@pytest.fixture(scope="module")
def cells():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    by_id = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells if "nbgrader" in c.metadata}
    assert set(PIECES) <= set(by_id), "every graded piece must have a solution cell"
    return by_id


def _namespace(cells, replace: dict[str, str] | None = None) -> dict:
    """Run the setup cell and every solution cell, in order, with some cells replaced."""
    ns: dict = {}
    exec(cells["setup"], ns)
    for grade_id in PIECES:
        exec((replace or {}).get(grade_id, cells[grade_id]), ns)
    return ns


def _both_suites(grade_id: str, ns: dict):
    piece_id, name = PIECES[grade_id]
    return check(piece_id, ns[name]), check(piece_id, ns[name], seed=99, extended=True)


@pytest.mark.parametrize("grade_id", PIECES)
def test_reference_passes_visible_and_hidden_cases(cells, grade_id):
    visible, hidden = _both_suites(grade_id, _namespace(cells))
    assert visible.passed and hidden.passed, hidden.summary()


@pytest.mark.parametrize("grade_id", PIECES)
def test_stub_fails_every_case(cells, grade_id):
    from grader.solutions import strip_solution  # the released (student) version of the cell
    ns = _namespace(cells, {g: strip_solution(cells[g]) for g in PIECES})
    visible, _ = _both_suites(grade_id, ns)
    assert visible.n_passed == 0, visible.summary()
    assert all("not implemented" in r.reason for r in visible.results)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_every_mutant_loses_points_with_a_specific_reason(cells, mutant):
    ns = _namespace(cells, {mutant.grade_id: mutant.apply(cells[mutant.grade_id])})
    visible, hidden = _both_suites(mutant.grade_id, ns)
    assert not (visible.passed and hidden.passed), f"{mutant.name} passes every case"
    reasons = " | ".join(r.reason for r in visible.results + hidden.results if not r.passed)
    assert mutant.hint in reasons, f"{mutant.name}: expected a reason mentioning {mutant.hint!r}, got {reasons}"
