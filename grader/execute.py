"""Run a notebook cell by cell in a fresh kernel, surviving loops, crashes and dead kernels.

Each code cell gets a per-cell time limit (capped by what is left of a per-notebook limit).
A cell that runs too long is interrupted and execution goes on; if the kernel does not
come back (a loop that swallows KeyboardInterrupt) or dies (``os._exit``, a segfault,
memory exhaustion), that cell and every later one are recorded as ``kernel_died``.
"""
from __future__ import annotations

import os
import re
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from traitlets.config import Config
from jupyter_core.utils import run_sync

#: Seconds a kernel gets to answer a trivial request after an interrupt.
RECOVERY_S = 2
_TIMEOUT_REPLY = {"ename": "GraderCellTimeout", "evalue": "cell timed out", "traceback": []}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class CellRun:
    """What happened to one code cell."""

    status: str  # "ok" | "error" | "timeout" | "kernel_died" | "not_run"
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = field(default_factory=list)
    detail: str = ""


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _memory_limiter(memory_mb: int | None):
    if not memory_mb:
        return None
    limit = int(memory_mb) * 1024 * 1024

    def set_limit() -> None:  # runs in the kernel process before exec
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return set_limit


def run_notebook(nb: NotebookNode, workdir: Path, cell_timeout: float = 60, total_timeout: float = 600,
                 kernel_name: str = "python3", memory_mb: int | None = None) -> dict[int, CellRun]:
    """Execute ``nb`` in place (outputs are stored in it); return ``{cell index: CellRun}`` for code cells."""
    with tempfile.TemporaryDirectory(prefix="grader-ipc-") as sockets:
        return _run(nb, workdir, sockets, cell_timeout, total_timeout, kernel_name, memory_mb)


def _run(nb: NotebookNode, workdir: Path, sockets: str, cell_timeout: float, total_timeout: float,
         kernel_name: str, memory_mb: int | None) -> dict[int, CellRun]:
    runs: dict[int, CellRun] = {}
    client = NotebookClient(
        nb, timeout=max(1, int(cell_timeout)), kernel_name=kernel_name, allow_errors=True,
        # on timeout nbclient interrupts the kernel and hands back this reply (a marker we look for)
        interrupt_on_timeout=True, error_on_timeout=dict(_TIMEOUT_REPLY),
        record_timing=False, startup_timeout=60, shutdown_kernel="immediate",
        resources={"metadata": {"path": str(workdir)}},
        # no IPython history database: later cells cannot read earlier inputs from disk
        extra_arguments=["--HistoryManager.enabled=False"],
        # Unix sockets, not TCP ports: no port races between parallel workers, nothing on the network
        config=Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}}),
    )
    replies: list[dict] = []
    client.on_cell_executed = lambda **kw: replies.append(kw.get("execute_reply") or {})
    deadline = time.monotonic() + total_timeout
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    dead_reason = ""
    kwargs = {"cwd": str(workdir), "stderr": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
              # grading needs the answers, not full-size demos: each lab's closing demo runs in
              # quick mode (llm_course.device.quick_mode), keeping a submission within seconds
              "env": {**os.environ, "LLM_COURSE_QUICK": "1"}}
    limiter = _memory_limiter(memory_mb)
    if limiter is not None:
        kwargs["preexec_fn"] = limiter
    with client.setup_kernel(**kwargs):
        for i in code_cells:
            cell = nb.cells[i]
            if dead_reason:
                runs[i] = CellRun("kernel_died", detail=dead_reason)
                continue
            remaining = deadline - time.monotonic()
            if remaining < 1:
                runs[i] = CellRun("timeout", detail=f"not run: the submission used up its {total_timeout:g} s limit")
                continue
            limit = max(1, int(min(cell_timeout, remaining)))
            client.timeout = limit
            replies.clear()
            try:
                client.execute_cell(cell, i)
            except CellTimeoutError:  # only if nbclient did not interrupt (kept as a safety net)
                replies.append({"content": dict(_TIMEOUT_REPLY)})
            except DeadKernelError:
                dead_reason = "the kernel died (os._exit, a crash, or memory exhaustion)"
                runs[i] = CellRun("kernel_died", detail=dead_reason + " while running this cell")
                dead_reason += " in an earlier cell"
                continue
            except Exception as e:  # e.g. a broken channel: treat as a dead kernel
                dead_reason = f"the kernel stopped responding ({type(e).__name__})"
                runs[i] = CellRun("kernel_died", detail=dead_reason)
                continue
            if _timed_out(replies):
                runs[i] = CellRun("timeout", detail=f"ran longer than {limit} s and was interrupted")
                if not _responsive(client):
                    dead_reason = "the kernel did not respond after a cell was interrupted"
                continue
            # the execute reply is authoritative (IOPub outputs can arrive late or be forged by printing)
            content = replies[-1].get("content", {}) if replies else {}
            err = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
            if content.get("status") == "ok" and err is None:
                runs[i] = CellRun("ok")
            else:
                src = content if content.get("status") == "error" else (err or {})
                runs[i] = CellRun("error", ename=str(src.get("ename", "") or "Error"),
                                  evalue=str(src.get("evalue", "")),
                                  traceback=[strip_ansi(t) for t in src.get("traceback", [])])
    return runs


def _timed_out(replies: list[dict]) -> bool:
    return any(r.get("content", {}).get("ename") == _TIMEOUT_REPLY["ename"] for r in replies)


def _responsive(client: NotebookClient) -> bool:
    """After an interrupt: True if the kernel answers a trivial request within RECOVERY_S."""

    async def probe() -> bool:
        kc = client.kc
        msg_id = kc.execute("pass", store_history=False, silent=True)
        deadline = time.monotonic() + RECOVERY_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await kc.get_shell_msg(timeout=left)
            except Empty:
                return False
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return True
        return False

    try:
        return bool(run_sync(probe)())
    except Exception:
        return False
