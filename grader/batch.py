"""Grade a folder of submissions in parallel worker processes, resumably.

Layouts: a flat folder (``DIR/alice.ipynb`` → student ``alice``) or nbgrader's
``DIR/<student>/<assignment>/<notebook>.ipynb`` (e.g. ``submitted/``). For each submission
OUTDIR gets ``<key>.json`` (the ``grade --json`` result) and ``<key>.html`` (feedback), then
``.done/<key>.sha256`` (the hash of the graded file). A rerun skips every submission whose
hash is recorded, so an interrupted batch resumes; a changed submission is graded again.
``grades.csv`` summarises all of them. One submission failing never stops the batch.
"""
from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import re
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .course import Course, GraderError
from .grade import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMEOUT, grade_notebook


@dataclass(frozen=True)
class Submission:
    path: Path
    student: str
    assignment: str | None
    notebook: str

    @property
    def key(self) -> str:
        """File-name-safe id, unique within a batch."""
        parts = [self.student] if self.assignment is None else [self.student, self.assignment, self.notebook]
        return re.sub(r"[^0-9A-Za-z_.-]+", "_", "__".join(parts))


def discover(folder: Path, course: Course) -> list[Submission]:
    """Submissions in ``folder``: flat ``*.ipynb`` files, or ``<student>/<assignment>/*.ipynb``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GraderError(f"submissions folder {str(folder)!r} does not exist or is not a directory")
    found = [Submission(p, p.stem, None, p.stem) for p in sorted(folder.glob("*.ipynb"))]
    known = set(course.assignments())
    for p in sorted(folder.glob("*/*/*.ipynb")):
        if ".ipynb_checkpoints" in p.parts:
            continue
        student, assignment = p.parent.parent.name, p.parent.name
        found.append(Submission(p, student, assignment if assignment in known else None, p.stem))
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _failed_result(message: str) -> dict[str, Any]:
    return {"score": 0.0, "max_score": 0.0,
            "items": [{"grade_id": "(submission)", "points": 0.0, "max_points": 0.0,
                       "status": "error", "message": message}]}


def _grade_one(sub: Submission, course: Course, assignment: str | None, out: Path, cell_timeout: float,
               timeout: float, memory_mb: int | None) -> tuple[Submission, dict[str, Any], bool]:
    """Worker: grade one submission and write its HTML; never raises.

    Returns ``(submission, result, final)``; ``final`` is False when the grader itself failed
    (twice: an infrastructure hiccup such as a kernel that would not start gets one retry), so
    that a rerun tries again instead of skipping it.
    """
    error: Exception | None = None
    for _ in range(2):
        try:
            result = grade_notebook(sub.path, course, assignment=sub.assignment or assignment,
                                    cell_timeout=cell_timeout, timeout=timeout,
                                    feedback_html=out / f"{sub.key}.html", memory_mb=memory_mb)
            return sub, result, True
        except GraderError as e:  # the submission's fault (not a notebook, unknown assignment): final
            return sub, _failed_result(str(e)), True
        except Exception as e:
            error = e
    return sub, _failed_result(f"the grader failed on this submission: {type(error).__name__}: {error}"), False


def _record(sub: Submission, result: dict[str, Any], digest: str | None, out: Path) -> None:
    """Write the result; mark it done (``digest``) unless the grader itself failed (so a rerun retries)."""
    tmp = out / f".{sub.key}.json.tmp"
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / f"{sub.key}.json")
    if digest is None:
        return
    (out / ".done").mkdir(exist_ok=True)
    (out / ".done" / f"{sub.key}.sha256").write_text(digest + "\n", encoding="utf-8")


def is_done(sub: Submission, out: Path) -> bool:
    marker = out / ".done" / f"{sub.key}.sha256"
    return (marker.is_file() and (out / f"{sub.key}.json").is_file()
            and marker.read_text(encoding="utf-8").strip() == sha256(sub.path))


def autograde(folder: str | Path, course: Course | None = None, assignment: str | None = None,
              out: str | Path | None = None, workers: int = 1, cell_timeout: float = DEFAULT_CELL_TIMEOUT,
              timeout: float = DEFAULT_TIMEOUT, memory_mb: int | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Grade every submission in ``folder``; returns ``{"graded": [...keys], "skipped": [...keys], "csv": path}``."""
    course = course or Course()
    if assignment is not None:
        course.check_assignment(assignment)
    if workers < 1:
        raise GraderError(f"--workers must be at least 1, got {workers}")
    subs = discover(Path(folder), course)
    if not subs:
        raise GraderError(f"no *.ipynb submissions in {str(folder)!r} (flat, or <student>/<assignment>/)")
    keys = [s.key for s in subs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise GraderError(f"submissions map to the same output name: {dupes}")
    out = Path(out) if out is not None else Path(folder) / "graded"
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in subs if not is_done(s, out)]
    skipped = [s.key for s in subs if s not in todo]
    graded: list[str] = []
    digests = {s.key: sha256(s.path) for s in todo}
    if not todo:
        return {"graded": [], "skipped": sorted(skipped), "csv": str(write_csv(subs, out))}
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=_pool_context(),
                             initializer=_share_cores, initargs=(threads,)) as pool:
        futures = {pool.submit(_grade_one, s, course, assignment, out, cell_timeout, timeout, memory_mb): s
                   for s in todo}
        # only now (the workers are forked): tqdm starts a monitor thread
        with tqdm(total=len(todo), desc="grading", unit="nb", disable=not progress) as bar:
            for fut in as_completed(futures):
                sub = futures[fut]
                digest: str | None = digests[sub.key]
                try:
                    _, result, final = fut.result()
                    if not final:
                        digest = None
                except Exception as e:  # the worker process itself died: record, but retry on rerun
                    result = _failed_result(f"the grading worker crashed: {type(e).__name__}: {e}")
                    digest = None
                _record(sub, result, digest, out)
                graded.append(sub.key)
                bar.set_postfix_str(f"{sub.key}: {result['score']:g}/{result['max_score']:g}")
                bar.update()
    csv_path = write_csv(subs, out)
    return {"graded": sorted(graded), "skipped": sorted(skipped), "csv": str(csv_path)}


def _pool_context() -> multiprocessing.context.BaseContext:
    """How worker processes start: forked from this process when that is safe, else spawned.

    A forked worker begins with PyTorch and the grader already imported (about 2 s of CPU that
    each spawned worker spends again, on cores the kernels need). Forking is safe only while
    this process runs no other Python thread (a lock held by one would stay held in the child),
    which is how the CLI calls it; under a threaded caller (pytest-xdist), spawn.
    """
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _share_cores(threads: int) -> None:
    """Give this worker and its kernels ``threads`` compute threads (kernels inherit the environment).

    Left alone, every kernel's torch starts one OpenMP thread per core, and two kernels on two
    cores then spin against each other: a batch ran 6× slower than grading one at a time.
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch  # already imported (a forked worker) or about to be: the trusted checks use it

    torch.set_num_threads(threads)


def write_csv(subs: list[Submission], out: Path) -> Path:
    """``grades.csv``: student, assignment, notebook, score, max_score (one row per submission)."""
    path = out / "grades.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "score", "max_score", "assignment", "notebook"])
        for s in sorted(subs, key=lambda s: s.key):
            res_path = out / f"{s.key}.json"
            if not res_path.is_file():
                continue
            res = json.loads(res_path.read_text(encoding="utf-8"))
            w.writerow([s.student, f"{res['score']:g}", f"{res['max_score']:g}", s.assignment or "", s.notebook])
    return path
