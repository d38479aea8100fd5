"""Test-wide settings: notebooks and pages run in quick mode, offline."""

import os

# Every notebook kernel started by the tests (nbval, the grader, the book build) inherits these.
os.environ.setdefault("LLM_COURSE_QUICK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# pytest runs two workers on two cores; a torch that also starts a thread per core in each of
# them (and in each kernel they launch) oversubscribes the CPU and runs several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Notebooks under fixtures/ are inputs of the grader tests, not notebooks for nbval to run.
collect_ignore_glob = ["fixtures/*"]
