"""Run the learner's kernel in Linux namespaces: no network, a pruned view of the disk, few processes.

The kernel is started as ``unshare --user --map-root-user --mount --net --pid --fork
--kill-child --mount-proc sh -c SCRIPT -- <kernel command>``. SCRIPT, inside the new mount
namespace:

* mounts an empty tmpfs over everything the learner's code must not read: the course's
  ``solutions/``, ``tests/``, ``grader/`` (its gradebook) and ``.git``, nbgrader's
  ``submitted/``/``autograded/``/``feedback/`` folders, the folder the submission came from
  (other learners' files), Jupyter's runtime folder (other kernels' connection keys) and
  the parent of all grading runs (other submissions being graded right now); ``/tmp`` and
  ``/dev/shm`` become private, empty tmpfs; its own run folder is bind-mounted back;
* bind-mounts over ``llm_course/`` a copy in which the reference implementation of every
  piece this lab grades raises ``NotImplementedError("withheld during grading")``;
* lays a private overlay over the course's cache folder (reads from it, writes discarded);
* remounts every other mount read-only: the learner's code, whose user id is the grader's,
  must not change the course, the virtual environment or the home folder (a ``.pth`` file in
  site-packages would run in the grader itself; a changed kernel spec or IPython startup file
  would run in the next learner's kernel), nor move itself out of its pids cgroup;
* starts the kernel with no capabilities (``setpriv``): as root of its user namespace it
  could otherwise simply unmount the tmpfs over ``solutions/`` or the redacted library, or
  remount the disk read-write. Mounts copied into any namespace it creates are locked.

The kernel's ``/proc`` is its own (``--mount-proc``): it sees only its own processes.
The kernel is PID 1 of its namespace, so when it ends every process it started ends too;
a pids cgroup (when ``/sys/fs/cgroup/pids`` is writable) caps processes + threads, so a
fork or thread bomb hits a wall instead of the machine. Without namespaces (not Linux,
no unshare/setpriv, a container that forbids them) :func:`available` is False and the grader
runs the kernel as before, with a warning.
"""
from __future__ import annotations

import ast
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

from .course import REPO_ROOT

PIDS_ROOT = Path("/sys/fs/cgroup/pids")
MAX_TASKS = 256  # processes + threads in one kernel's sandbox (torch + ipykernel use ~30)
WITHHELD = 'raise NotImplementedError("withheld during grading")'
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "--kill-child",
           "--mount-proc"]

SCRATCH = "size=512m,mode=1777"  # the kernel's private /tmp and /dev/shm
SCRATCH_DIRS = (Path("/tmp"), Path("/dev/shm"))
_SCRIPT = r"""
set -e
runs="$1"; work="$(pwd)"; shift 2  # then --keep
# a handle (fd 3, 4, ...) on each folder to show again once what holds it is covered: the
# run folder, and the course or Python installation if they live under /tmp
n=3; keep=""
while [ "$1" != "--hide" ]; do eval "exec $n<\"\$1\""; keep="$keep $n:$1"; n=$((n + 1)); shift; done; shift
while [ "$1" != "--lib" ]; do mount -t tmpfs -o size=64k,mode=755 none "$1"; shift; done; shift
if [ "$1" != "--cow" ]; then mount --bind "$1" "$2"; shift 2; fi; shift
cow=""
while [ "$1" != "--ro" ]; do cow="$cow $1"; shift; done; shift
mount -t tmpfs -o size=64k,mode=755 none "$runs"
mount -t tmpfs -o SCRATCH none /tmp
mount -t tmpfs -o SCRATCH none /dev/shm
for k in $keep; do
    mkdir -p "${k#*:}"
    mount --no-canonicalize --rbind "/proc/self/fd/${k%%:*}" "${k#*:}"  # the folder under the tmpfs
    eval "exec ${k%%:*}<&-"
done
# the course's cache: read from the real one, writes land in the private /tmp (an overlay), so a
# kernel can neither poison it for the others nor fail where the library caches what it computed
i=0
for d in $cow; do
    i=$((i + 1)); mkdir -p "/tmp/.grader-cow/$i/upper" "/tmp/.grader-cow/$i/work"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=/tmp/.grader-cow/$i/upper,workdir=/tmp/.grader-cow/$i/work" \
        "$d" 2>/dev/null || true
done
cd "$work"
# everything but the run folder and the scratch space read-only (a mount that refuses, such as
# /proc's sub-mounts with locked flags, stays as it is; the checks below fail loudly instead)
run="${keep# 3:}"; run="${run%% *}"
for mp in $(cut -d' ' -f5 /proc/self/mountinfo); do
    case " $run /tmp /dev/shm $cow " in *" $mp "*) ;; *) mount -o remount,bind,ro "$mp" 2>/dev/null || true ;; esac
done
while [ "$1" != "--cmd" ]; do
    if [ -w "$1" ]; then echo "sandbox: $1 is still writable" >&2; exit 1; fi
    shift
done; shift
exec setpriv --bounding-set=-all --inh-caps=-all --no-new-privs "$@"
""".replace("SCRATCH", SCRATCH)


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """True if this machine lets us create the namespaces (checked once per process)."""
    if os.environ.get("LLM_GRADER_NO_SANDBOX") == "1" or not (shutil.which("unshare") and shutil.which("setpriv")):
        return False
    try:
        # what SCRIPT needs: a tmpfs, a read-only remount of the root, and setpriv
        probe = subprocess.run([*UNSHARE, "sh", "-c", "mount -t tmpfs none /tmp && mount -o remount,bind,ro / && "
                                "setpriv --bounding-set=-all --inh-caps=-all --no-new-privs true"],
                               capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def warn_unavailable() -> None:
    warnings.warn("Linux namespaces are unavailable (unshare or setpriv failed): the learner's kernel runs WITHOUT "
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


def python_prefixes() -> list[Path]:
    """The Python installation the kernel runs from (a virtual environment and its base)."""
    return sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()})


def read_only_checks() -> list[Path]:
    """Folders the sandbox verifies are read-only before it starts the kernel (it refuses to
    start one otherwise): the root, the course, the Python installation, the home folder."""
    dirs = {Path("/"), REPO_ROOT, *python_prefixes(), Path.home()}
    return sorted(d for d in dirs if d.is_dir())


def copy_on_write() -> list[Path]:
    """Folders the kernel sees through a private overlay: the course's cache (``cache_dir()``),
    where the library keeps what it computed once (dequantised SmolLM2, sentence embeddings)."""
    from llm_course.pretrained import cache_dir

    folder = cache_dir().resolve()
    return [folder] if folder.is_dir() and not _under_scratch([folder]) and " " not in str(folder) else []


def _under_scratch(paths: list[Path]) -> list[Path]:
    """Those of ``paths`` that the kernel's private /tmp or /dev/shm would cover (outermost only)."""
    inside = sorted({p.resolve() for p in paths if any(p.resolve().is_relative_to(s) for s in SCRATCH_DIRS)},
                    key=lambda p: len(p.parts))
    keep: list[Path] = []
    for p in inside:
        if not any(p.is_relative_to(k) for k in keep):
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
        if not self.enabled:
            warn_unavailable()
            return
        lib = redacted_library(withheld, self.run / "lib")
        self.hide = hidden_paths(course_root, submission, list(hide))
        self.lib = (lib, REPO_ROOT / "llm_course")
        self.cgroup = _make_cgroup(self.id)

    def prefix(self) -> list[str]:
        """Put in front of the kernel command."""
        if not self.enabled:
            return []
        args = [str(runs_root()), "--keep", str(self.run), *map(str, _under_scratch([REPO_ROOT, *python_prefixes()])),
                "--hide", *map(str, self.hide),
                "--lib", str(self.lib[0]), str(self.lib[1]), "--cow", *map(str, copy_on_write()),
                "--ro", *map(str, read_only_checks()), "--cmd"]
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
