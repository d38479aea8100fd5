"""nbgrader on this repo: solutions/ is the source, labs/ the release, one assignment per chapter.

Run nbgrader from the repo root with the venv's bin/ on PATH (it runs alembic).
`python -m grader release` is the reproducible way to regenerate labs/ (see grader/release.py).
"""
import os
import sys

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import GetGrades

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _here)
from grader.feedback import HideHiddenTests  # noqa: E402

c = get_config()  # noqa: F821
c.CourseDirectory.root = _here
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_here, "grader", "gradebook.db")
c.Execute.timeout = 60  # seconds per cell
# feedback must never show hidden tests (in the source or in tracebacks)
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]
