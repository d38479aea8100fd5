"""One source of truth: solution cells are the library's code, marked for nbgrader."""

from pathlib import Path

import pytest

from grader.solutions import solution_source, strip_solution, sync_all

ROOT = Path(__file__).resolve().parents[1]


def test_solution_cells_equal_the_library():
    stale = sync_all(ROOT, check=True)
    assert not stale, f"solution cells differ from llm_course; run `python -m grader sync`: {stale}"


def test_markers_wrap_the_body_after_docstring_and_guards():
    src = solution_source("llm_course.attention:causal_mask")
    before, _, rest = src.partition("### BEGIN SOLUTION")
    assert '"""' in before and '_check_positive_int("T", T)' in before, "docstring and guard stay given"
    assert "tril()" in rest and rest.rstrip().endswith("### END SOLUTION")


def test_class_marks_only_the_named_methods():
    src = solution_source("llm_course.attention:MultiHeadAttention", ["__init__", "forward"])
    assert src.count("### BEGIN SOLUTION") == 2
    stub = strip_solution(src)
    assert "def attend(" in stub and "self.q_proj = nn.Linear" not in stub
    assert stub.count("raise NotImplementedError()") == 2


def test_bad_references_are_named():
    with pytest.raises(ValueError, match="package.module:name"):
        solution_source("llm_course.attention.causal_mask")
    with pytest.raises(ValueError, match="no method"):
        solution_source("llm_course.attention:MultiHeadAttention", ["forwards"])
