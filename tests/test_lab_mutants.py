"""Every lab, in process: the reference passes every case, the stub and each mutant fail.

Solution cells run the way the notebook runs them (after the given setup cells, in one
namespace), so these tests see exactly the code the learner's notebook would hold.
"""

from functools import lru_cache
from pathlib import Path

import nbformat
import pytest

from grader.cells import grade_id
from grader.solutions import strip_solution
from llm_course.checks import check
from tests.mutants import catalogues

ROOT = Path(__file__).resolve().parents[1]
LABS = catalogues()


@lru_cache(maxsize=None)
def cells(notebook: str) -> tuple[tuple[str, str], ...]:
    """(grade_id, source) of every nbgrader cell, in notebook order."""
    nb = nbformat.read(ROOT / notebook, as_version=4)
    return tuple((grade_id(c), c.source) for c in nb.cells if grade_id(c))


def namespace(lab, replace: dict[str, str] | None = None) -> dict:
    """Execute the lab's setup and solution cells in order, some of them replaced."""
    wanted = set(getattr(lab, "SETUP", ["setup"])) | set(lab.PIECES)
    sources = dict(cells(lab.NOTEBOOK))
    assert set(lab.PIECES) <= set(sources), "every graded piece must have a solution cell"
    ns: dict = {}
    for gid, source in cells(lab.NOTEBOOK):
        if gid in wanted:
            exec((replace or {}).get(gid, source), ns)
    return ns


def both_suites(lab, gid: str, ns: dict):
    piece_id, name = lab.PIECES[gid]
    return check(piece_id, ns[name]), check(piece_id, ns[name], seed=99, extended=True)


PIECE_CASES = [(lab, gid) for lab in LABS for gid in lab.PIECES]
PIECE_IDS = [f"{lab.__name__.rsplit('.', 1)[-1]}-{gid}" for lab, gid in PIECE_CASES]
MUTANT_CASES = [(lab, m) for lab in LABS for m in lab.MUTANTS]
MUTANT_IDS = [f"{lab.__name__.rsplit('.', 1)[-1]}-{m.name}" for lab, m in MUTANT_CASES]


@pytest.mark.parametrize("lab,gid", PIECE_CASES, ids=PIECE_IDS)
def test_reference_passes_visible_and_hidden_cases(lab, gid):
    visible, hidden = both_suites(lab, gid, namespace(lab))
    assert visible.passed and hidden.passed, hidden.summary()


@pytest.mark.parametrize("lab,gid", PIECE_CASES, ids=PIECE_IDS)
def test_stub_fails_every_case(lab, gid):
    sources = dict(cells(lab.NOTEBOOK))
    ns = namespace(lab, {g: strip_solution(sources[g]) for g in lab.PIECES})
    visible, _ = both_suites(lab, gid, ns)
    assert visible.n_passed == 0, visible.summary()
    assert all("not implemented" in r.reason for r in visible.results)


@pytest.mark.parametrize("lab", LABS, ids=lambda lab: lab.__name__.rsplit(".", 1)[-1])
def test_catalogue_has_at_least_five_mutants_covering_every_piece(lab):
    assert len(lab.MUTANTS) >= 5
    assert {m.grade_id for m in lab.MUTANTS} <= set(lab.PIECES)


@pytest.mark.parametrize("lab,mutant", MUTANT_CASES, ids=MUTANT_IDS)
def test_every_mutant_loses_points_with_a_specific_reason(lab, mutant):
    sources = dict(cells(lab.NOTEBOOK))
    ns = namespace(lab, {mutant.grade_id: mutant.apply(sources[mutant.grade_id])})
    visible, hidden = both_suites(lab, mutant.grade_id, ns)
    assert not (visible.passed and hidden.passed), f"{mutant.name} passes every case"
    reasons = " | ".join(r.reason for r in visible.results + hidden.results if not r.passed)
    assert mutant.hint in reasons, f"{mutant.name}: expected a reason mentioning {mutant.hint!r}, got {reasons}"
