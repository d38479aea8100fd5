"""The course layout: nbgrader source notebooks in ``solutions/``, the release in ``labs/``."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

#: The repository root (the parent of this package): the default course root.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Assignment ids are chapter directory names such as ``06-attention``.
ASSIGNMENT_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]*$")


class GraderError(Exception):
    """A user-facing error: the message names the bad argument and what was expected."""


@dataclass(frozen=True)
class Course:
    """An nbgrader course directory: ``root/solutions`` (source) and ``root/labs`` (release)."""

    root: Path = REPO_ROOT
    source_dir: str = "solutions"
    release_dir: str = "labs"

    @property
    def source(self) -> Path:
        return self.root / self.source_dir

    @property
    def release(self) -> Path:
        return self.root / self.release_dir

    def assignments(self) -> list[str]:
        """All assignment ids: directories of ``solutions/`` that hold a notebook."""
        if not self.source.is_dir():
            return []
        return sorted(
            p.name for p in self.source.iterdir()
            if p.is_dir() and ASSIGNMENT_RE.match(p.name) and any(p.glob("*.ipynb"))
        )

    def check_assignment(self, assignment: str) -> str:
        """Return ``assignment`` if it exists, else raise a :class:`GraderError` listing the known ones."""
        known = self.assignments()
        if assignment not in known:
            raise GraderError(
                f"unknown assignment {assignment!r}: expected one of {known or '(none)'} "
                f"(directories of {self.source} that contain a notebook)"
            )
        return assignment

    def source_notebooks(self, assignment: str) -> list[Path]:
        """The source notebooks of one assignment, sorted by name."""
        self.check_assignment(assignment)
        return sorted((self.source / assignment).glob("*.ipynb"))


def read_notebook(path: Path, what: str = "notebook") -> NotebookNode:
    """Read a notebook as nbformat v4, with errors that name the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise GraderError(f"{what} {str(path)!r} does not exist")
    if not path.is_file():
        raise GraderError(f"{what} {str(path)!r} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GraderError(f"{what} {str(path)!r} is not UTF-8 text: {e}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise GraderError(f"{what} {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(raw, dict) or "cells" not in raw:
        raise GraderError(f"{what} {str(path)!r} is JSON but not a notebook (no 'cells' list)")
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as e:  # nbformat raises several types for malformed notebooks
        raise GraderError(f"{what} {str(path)!r} is not a readable notebook: {e}") from None
    return nb
