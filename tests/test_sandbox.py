"""The sandbox itself, without a kernel: what the learner's code may and may not do to the disk.

Each case runs a shell command under ``Sandbox.prefix()`` (as the kernel would run) and
checks what it could do. ~1 s in all; skipped where Linux namespaces are unavailable.
"""
import subprocess
import sys
from pathlib import Path

import pytest

from grader import sandbox
from grader.course import REPO_ROOT

pytestmark = pytest.mark.skipif(not sandbox.available(), reason="Linux namespaces are unavailable here")
SUBMISSION = REPO_ROOT / "labs" / "06-attention" / "lab06-attention.ipynb"


def in_sandbox(script: str) -> subprocess.CompletedProcess:
    box = sandbox.Sandbox(REPO_ROOT, SUBMISSION, ["llm_course.attention:MultiHeadAttention"])
    try:
        return subprocess.run([*box.prefix(), "sh", "-c", script], cwd=box.work, capture_output=True, text=True,
                              timeout=60, preexec_fn=box.preexec(None))
    finally:
        box.close()


def test_unmounting_reveals_nothing():
    """As root of its user namespace the kernel could unmount what hides the solutions; it has no capabilities."""
    out = in_sandbox(f"umount -l {REPO_ROOT / 'solutions'}; umount -l {REPO_ROOT / 'llm_course'}; "
                     f"unshare --user --mount sh -c 'umount -l {REPO_ROOT / 'solutions'}'; "
                     f"ls {REPO_ROOT / 'solutions'}; grep -c withheld {REPO_ROOT / 'llm_course' / 'attention.py'}")
    assert out.stdout.split() == ["1"], out


@pytest.mark.parametrize("target", [REPO_ROOT / "labs", Path(sys.prefix), Path.home(), Path("/sys/fs/cgroup/pids")])
def test_disk_outside_the_run_folder_is_read_only(target):
    """No .pth file in site-packages, no changed release or kernel spec, no escape from the pids cgroup."""
    probe = target / "cgroup.procs" if target.name == "pids" else target / "sandbox-write-probe"
    out = in_sandbox(f"echo $$ > {probe} && echo WROTE")
    assert "WROTE" not in out.stdout, out
    if probe.name == "sandbox-write-probe":
        assert not probe.exists()


def test_private_tmp_proc_and_a_writable_working_folder():
    out = in_sandbox("touch here /tmp/scratch && echo OK; ls /tmp; ls /proc | grep -c '^[0-9]'")
    lines = out.stdout.split()
    assert lines[0] == "OK" and "scratch" in lines, out
    assert int(lines[-1]) < 10, out  # its own processes only, not the machine's
