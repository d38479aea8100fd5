"""Instructor tooling for the course: nbgrader wiring and the grading CLI.

``solutions/NN-slug/*.ipynb`` are nbgrader *source* notebooks (one assignment per
chapter directory) and ``labs/NN-slug/`` is their committed *release*.  The modules:

- :mod:`grader.course`   — where things live (course root, assignments, notebooks);
- :mod:`grader.cells`    — nbgrader cell metadata and hidden-test regions;
- :mod:`grader.release`  — ``labs/`` from ``solutions/``, deterministic, and ``--check``;
- :mod:`grader.assemble` — a submission with its test and locked cells restored;
- :mod:`grader.execute`  — runs a notebook cell by cell in a fresh kernel, robustly;
- :mod:`grader.feedback` — feedback that never shows hidden tests (JSON and HTML);
- :mod:`grader.grade`    — grades one submission;
- :mod:`grader.batch`    — grades a folder of submissions in parallel, resumably;
- :mod:`grader.cli`      — ``python -m grader release|grade|autograde``.
"""
from .course import Course, GraderError

__all__ = ["Course", "GraderError"]
