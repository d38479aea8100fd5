"""Run the learner's kernel in Linux namespaces: no network, a pruned view of the disk, few processes.

The kernel is started as ``unshare --user --map-root-user --mount --net --pid --fork
--kill-child sh -c SCRIPT -- <kernel command>``. SCRIPT, inside the new mount namespace:

* mounts an empty tmpfs over everything the learner's code must not read: the course's
  ``solutions/``, ``tests/``, ``grader/`` (its gradebook) and ``.git``, nbgrader's
  ``submitted/``/``autograded/``/``feedback/`` folders, the folder the submission came from
  (other learners' files), Jupyter's runtime folder (other kernels' connection keys) and
  the parent of all grading runs (other submissions being graded right now) — its own run
  folder is bind-mounted back;
* bind-mounts over ``llm_course/`` a copy in which the reference implementation of every
  piece this lab grades raises ``NotImplementedError("withheld during grading")``.

The kernel is PID 1 of its namespace, so when it ends every process it started ends too;
a pids cgroup (when ``/sys/fs/cgroup/pids`` is writable) caps processes + threads, so a
fork or thread bomb hits a wall instead of the machine. Without namespaces (not Linux,
no unshare, a container that forbids them) :func:`available` is False and the grader
runs the kernel as before, with a warning.
"""
from __future__ import annotations

import ast
import functools
import os
import shutil
import signal
import subprocess
import time
import uuid
import warnings
from pathlib import Path

from .course import REPO_ROOT

PIDS_ROOT = Path("/sys/fs/cgroup/pids")
MAX_TASKS = 256  # processes + threads in one kernel's sandbox (torch + ipykernel use ~30)
WITHHELD = 'raise NotImplementedError("withheld during grading")'
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "--kill-child"]

_SCRIPT = r"""
set -e
run="$1"; stage="$2"; runs="$3"; shift 3
while [ "$1" != "--hide" ]; do shift; done; shift
while [ "$1" != "--lib" ]; do mount -t tmpfs -o size=64k,mode=755 none "$1"; shift; done; shift
if [ "$1" != "--cmd" ]; then mount --bind "$1" "$2"; shift 2; fi; shift
mount --bind "$run" "$stage"
mount -t tmpfs -o size=64k,mode=755 none "$runs"
mkdir -p "$run"
mount --bind "$stage" "$run"
exec "$@"
"""


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """True if this machine lets us create the namespaces (checked once per process)."""
    if os.environ.get("LLM_GRADER_NO_SANDBOX") == "1" or shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run([*UNSHARE, "sh", "-c", "mount -t tmpfs none /mnt 2>/dev/null || "
                                "mount -t tmpfs none /tmp"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def warn_unavailable() -> None:
    warnings.warn("Linux namespaces are unavailable (unshare failed): the learner's kernel runs WITHOUT "
                  "the sandbox (it can reach the network and read files the grader can read). "
                  "Grading still happens outside the kernel.", RuntimeWarning, stacklevel=3)


def runs_root() -> Path:
    """The parent of every grading run's folder (hidden from each kernel)."""
    root = Path(os.environ.get("LLM_GRADER_RUNS", "/tmp/llm-grader-runs"))
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


def hidden_paths(course_root: Path, submission: Path, extra: list[Path] = ()) -> list[Path]:
    """Existing folders the kernel must not see (deduplicated, none containing another)."""
    from jupyter_core.paths import jupyter_runtime_dir

    submission = submission.resolve()
    wanted = [course_root / name for name in ("solutions", "source", "tests", "grader", ".git",
                                               "submitted", "autograded", "feedback")]
    wanted += [submission.parent, Path(jupyter_runtime_dir()), *extra]
    # nbgrader's submitted/<student>/<assignment>/x.ipynb: hide the whole submitted/ tree
    if len(submission.parents) > 3 and submission.parents[2].name in ("submitted", "autograded"):
        wanted.append(submission.parents[2])
    found = sorted({p.resolve() for p in wanted if p.is_dir()}, key=lambda p: len(p.parts))
    keep: list[Path] = []
    for p in found:
        if p == Path("/") or any(p.is_relative_to(k) for k in keep):
            continue
        if runs_root().is_relative_to(p) or Path(REPO_ROOT / "llm_course").is_relative_to(p):
            continue  # never hide the sandbox's own run folder or the library
        keep.append(p)
    return keep


def redacted_library(sources: list[str], dest: Path) -> Path:
    """Copy ``llm_course`` to ``dest`` with each ``module:name`` in ``sources`` withheld.

    A piece that a helper of its own module calls (a function the lab does not grade) is
    left in place: withholding it would break honest learners who use that helper (the
    static import check in ``assemble.reference_uses`` still applies to it).
    """
    lib = REPO_ROOT / "llm_course"
    shutil.copytree(lib, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    by_file: dict[Path, set[str]] = {}
    for ref in sources:
        module, _, name = ref.partition(":")
        parts = module.split(".")
        if parts[0] != "llm_course" or not name:
            continue
        path = dest.joinpath(*parts[1:]).with_suffix(".py")
        by_file.setdefault(path, set()).add(name)
    for path, names in by_file.items():
        if path.is_file():
            names = names - _used_by_helpers(path.read_text(encoding="utf-8"), names)
            path.write_text(withhold(path.read_text(encoding="utf-8"), names), encoding="utf-8")
    return dest


def _used_by_helpers(source: str, names: set[str]) -> set[str]:
    """Which of ``names`` a top-level function/class of ``source`` that is not withheld uses."""
    used: set[str] = set()
    for top in ast.parse(source).body:
        if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and top.name not in names:
            used |= {n.id for n in ast.walk(top) if isinstance(n, ast.Name)} & names
    return used


def withhold(source: str, names: set[str]) -> str:
    """``source`` with the top-level functions/classes in ``names`` replaced by stubs that raise."""
    lines = source.split("\n")
    nodes = [n for n in ast.parse(source).body
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name in names]
    for node in sorted(nodes, key=lambda n: n.lineno, reverse=True):
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
        if isinstance(node, ast.ClassDef):
            bases = ", ".join(ast.get_source_segment(source, b) or "object" for b in node.bases)
            stub = [f"class {node.name}({bases}):",
                    f"    def __init__(self, *args, **kwargs):",
                    f"        {WITHHELD}"]
        else:
            stub = [f"def {node.name}(*args, **kwargs):", f"    {WITHHELD}"]
        lines[start:node.end_lineno] = stub
    return "\n".join(lines)


class Sandbox:
    """One kernel's sandbox: its run folder, the kernel command prefix, and its pids cgroup."""

    def __init__(self, course_root: Path, submission: Path, withheld: list[str], hide: list[Path] = ()):
        self.id = uuid.uuid4().hex[:12]
        self.run = runs_root() / self.id
        self.work = self.run / "work"
        self.ipc = self.run / "ipc"
        for d in (self.work, self.ipc):
            d.mkdir(parents=True)
        self.enabled = available()
        self.withheld = list(withheld)
        self.cgroup: Path | None = None
        self.stage = Path("/tmp") / f"llm-grader-stage-{self.id}"
        if not self.enabled:
            warn_unavailable()
            return
        self.stage.mkdir()
        lib = redacted_library(withheld, self.run / "lib")
        self.hide = hidden_paths(course_root, submission, list(hide))
        self.lib = (lib, REPO_ROOT / "llm_course")
        self.cgroup = _make_cgroup(self.id)

    def prefix(self) -> list[str]:
        """Put in front of the kernel command."""
        if not self.enabled:
            return []
        args = [str(self.run), str(self.stage), str(runs_root()), "--hide", *map(str, self.hide),
                "--lib", str(self.lib[0]), str(self.lib[1]), "--cmd"]
        return [*UNSHARE, "sh", "-c", _SCRIPT, "sandbox", *args]

    def preexec(self, memory_mb: int | None):
        """Runs in the kernel's process before exec: join the cgroup, cap the address space."""
        import resource

        cgroup = self.cgroup
        limit = int(memory_mb) * 1024 * 1024 if memory_mb else None

        def setup() -> None:
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))
            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        return setup if (cgroup is not None or limit) else None

    def close(self) -> None:
        """Kill whatever is left in the cgroup, remove it and the run folder."""
        if self.cgroup is not None:
            _kill_cgroup(self.cgroup)
        shutil.rmtree(self.run, ignore_errors=True)
        if self.stage.is_dir():
            try:
                self.stage.rmdir()
            except OSError:
                pass


def _make_cgroup(run_id: str) -> Path | None:
    try:
        group = PIDS_ROOT / "llm-grader" / run_id
        group.mkdir(parents=True)
        (group / "pids.max").write_text(str(MAX_TASKS))
        return group
    except OSError:
        return None


def _kill_cgroup(group: Path) -> None:
    for _ in range(50):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)
    try:
        group.rmdir()
    except OSError:
        pass
