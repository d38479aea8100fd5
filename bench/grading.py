"""Grading speed: ``python -m grader autograde`` against ``nbgrader autograde``, same 20 submissions, one run.

    python bench/grading.py [--workers 2] [--keep DIR]

The 20 lab-06 submissions: the reference notebook, the untouched student notebook (stub), a
learner who typed the reference answers, one learner per mutant in tests/mutants/lab06.py
(15), and two who finished only part of the lab. They are written once into an nbgrader
course directory (``submitted/<student>/06-attention/``, the repo's nbgrader_config.py), and
both tools grade those same files: ours with ``--workers`` processes, nbgrader with its own
(serial) autograde. Only the grading commands are timed (nbgrader's generate_assignment,
which it needs first, is not). Prints both wall times, the ratio (target: ours ≥ 2× faster
on this 2-core machine) and whether the scores agree, listing any submission whose do not.
Results go to bench/out/grading.json through bench/results.py. Both tools grade in quick mode
(LLM_COURSE_QUICK=1: the lab's closing cells train less), because our grader always does.

Wall time depends on whoever else uses the machine, so the load average before the run is
printed, and so is each tool's CPU time per submission (all its processes, kernels included),
which load changes much less. The CPU time is read from a cpuacct cgroup made for each run
(cgroup v1 ``/sys/fs/cgroup/cpuacct`` or v2 ``cpu.stat``, where this user may create one;
otherwise it is reported as not measured).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from grader.cells import grade_id  # noqa: E402
from results import row, save  # noqa: E402
from tests.mutants import lab06  # noqa: E402

LAB = "06-attention"
TARGET = 2.0
HONEST = ("reference", "stub", "learner", "partial_masks", "partial_heads")


def submissions() -> dict[str, nbformat.NotebookNode]:
    """student → notebook: reference, stub, learner, 15 mutants, 2 partial learners (20)."""
    reference = nbformat.read(ROOT / lab06.NOTEBOOK, as_version=4)
    stub_path = ROOT / lab06.NOTEBOOK.replace("solutions/", "labs/", 1)
    # what a learner types: the reference answer without nbgrader's markers
    answers = {grade_id(c): "\n".join(line for line in c.source.splitlines() if "### " not in line)
               for c in reference.cells if grade_id(c) in lab06.PIECES}

    def learner(chosen: dict[str, str]) -> nbformat.NotebookNode:
        nb = nbformat.read(stub_path, as_version=4)
        for cell in nb.cells:
            if grade_id(cell) in chosen:
                cell.source = chosen[grade_id(cell)]
        return nb

    subs = {"reference": reference, "stub": nbformat.read(stub_path, as_version=4), "learner": learner(answers)}
    for i, m in enumerate(lab06.MUTANTS):
        subs[f"mutant{i:02d}"] = learner({**answers, m.grade_id: m.apply(answers[m.grade_id])})
    subs["partial_masks"] = learner({g: answers[g] for g in ("sdpa", "causal_mask", "padding_mask")})
    subs["partial_heads"] = learner({g: answers[g] for g in ("split_heads", "merge_heads")})
    return subs


def course_dir(tmp: Path, subs: dict[str, nbformat.NotebookNode]) -> Path:
    """An nbgrader course laid out like this repo, holding only lab 06 and the submissions."""
    course = tmp / "course"
    shutil.copytree(ROOT / "solutions" / LAB, course / "solutions" / LAB)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    (course / "grader").mkdir()
    notebook = Path(lab06.NOTEBOOK).name
    for student, nb in subs.items():
        (course / "submitted" / student / LAB).mkdir(parents=True)
        nbformat.write(nb, course / "submitted" / student / LAB / notebook)
    return course


CGROUP_V1 = Path("/sys/fs/cgroup/cpuacct")
CGROUP_V2 = Path("/sys/fs/cgroup")


def _new_cgroup(name: str) -> Path | None:
    """A fresh CPU-accounting cgroup, or None where this user may not make one."""
    for root in (CGROUP_V1, CGROUP_V2):
        usage = "cpuacct.usage" if root == CGROUP_V1 else "cpu.stat"
        if not (root / usage).exists() and not (root / "cgroup.procs").exists():
            continue
        group = root / f"bench-grading-{name}-{os.getpid()}"
        try:
            group.mkdir()
        except OSError:
            continue
        if (group / usage).exists():
            return group
        group.rmdir()
    return None


def _cpu_seconds(group: Path) -> float:
    if (group / "cpuacct.usage").exists():
        return int((group / "cpuacct.usage").read_text()) / 1e9
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
    return int(stat["usage_usec"]) / 1e6


def timed(cmd: list[str], cwd: Path, env: dict[str, str], name: str) -> tuple[float, float | None]:
    """(wall seconds, CPU seconds of the command and every process it started, or None)."""
    group = _new_cgroup(name)

    def join() -> None:  # in the child, before exec: everything it starts inherits the cgroup
        try:
            (group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass  # not allowed after all: usage stays 0, reported as not measured

    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          preexec_fn=join if group else None)
    seconds = time.perf_counter() - start
    cpu = (_cpu_seconds(group) or None) if group else None
    if group:
        try:
            group.rmdir()
        except OSError:  # a process still in it (a kernel being reaped): left for the system
            pass
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="our worker processes (default: cores)")
    ap.add_argument("--keep", type=Path, help="grade in this folder and keep it (default: a temporary one)")
    args = ap.parse_args()

    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-grading-"))
    subs = submissions()
    course = course_dir(tmp, subs)
    # our grader runs every kernel in quick mode whatever the environment says; nbgrader must too,
    # or the comparison would time a full-size closing demo against a quick one
    os.environ["LLM_COURSE_QUICK"] = "1"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT)}  # nbgrader_config.py imports grader.feedback
    nbgrader = [sys.executable, "-m", "nbgrader"]
    timed([*nbgrader, "generate_assignment", LAB, "--force"], course, env, "setup")  # setup, not timed

    load = os.getloadavg()[0]  # what others were doing just before (our own runs raise it)
    ours_s, ours_cpu = timed([sys.executable, "-m", "grader", "--root", str(ROOT), "autograde",
                              str(course / "submitted"), "--assignment", LAB, "--out", str(tmp / "ours"),
                              "--workers", str(args.workers), "--quiet"], ROOT, env, "ours")
    peer_s, peer_cpu = timed([*nbgrader, "autograde", LAB, "--force"], course, env, "nbgrader")

    from nbgrader.api import Gradebook

    notebook = Path(lab06.NOTEBOOK).stem
    ours = {s: json.loads((tmp / "ours" / f"{s}__{LAB}__{notebook}.json").read_text())["score"] for s in subs}
    with Gradebook(f"sqlite:///{course / 'grader' / 'gradebook.db'}") as gb:
        peer = {s: float(gb.find_submission(LAB, s).score) for s in subs}
    differ = {s: (ours[s], peer[s]) for s in subs if ours[s] != peer[s]}
    honest_identical = not [s for s in HONEST if s in differ]

    ratio = peer_s / ours_s
    n = len(subs)

    def per_sub(cpu: float | None) -> str:
        return "CPU not measured" if cpu is None else f"{cpu:6.1f} s CPU, {cpu / n:.2f} s CPU per submission"

    print(f"{n} lab-{LAB[:2]} submissions, quick mode: {os.environ.get('LLM_COURSE_QUICK') == '1'}, "
          f"{os.cpu_count()} cores, load average before the run {load:.1f}")
    print(f"  python -m grader autograde --workers {args.workers}: {ours_s:7.1f} s  ({per_sub(ours_cpu)})")
    print(f"  nbgrader autograde:                     {peer_s:7.1f} s  ({per_sub(peer_cpu)})")
    print(f"  ratio (nbgrader / ours): {ratio:.2f}×  (target ≥ {TARGET:g}×: {'met' if ratio >= TARGET else 'MISSED'})")
    print(f"  scores identical on honest submissions ({', '.join(HONEST)}): {honest_identical}")
    for s, (a, b) in differ.items():
        print(f"  differs: {s}: ours {a:g}, nbgrader {b:g}")
    if not differ:
        print(f"  all {len(subs)} scores identical")
    path = save("grading", [row(f"{len(subs)} lab-06 submissions, autograde", ours=ours_s, peer=peer_s,
                                peer_name="nbgrader autograde", unit="s", higher_is_better=False, target=TARGET,
                                peak_mb=None, workers=args.workers, honest_scores_identical=honest_identical,
                                ours_cpu_s=ours_cpu, peer_cpu_s=peer_cpu, load_before=round(load, 2),
                                differing={s: {"ours": a, "nbgrader": b} for s, (a, b) in differ.items()})],
                meta={"submissions": len(subs), "quick": os.environ.get("LLM_COURSE_QUICK") == "1"})
    print(f"  saved {path}")
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
