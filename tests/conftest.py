"""Test-wide settings: notebooks and pages run in quick mode, offline."""

import os

# Every notebook kernel started by the tests (nbval, the grader, the book build) inherits these.
os.environ.setdefault("LLM_COURSE_QUICK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
