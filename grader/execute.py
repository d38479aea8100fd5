"""Run a notebook cell by cell in a fresh kernel, surviving loops, crashes and dead kernels.

Each code cell gets a per-cell time limit (capped by what is left of a per-notebook limit).
A cell that runs too long is interrupted and execution goes on; if the kernel does not
come back (a loop that swallows KeyboardInterrupt) or dies (``os._exit``, a segfault,
memory exhaustion), that cell and every later one are recorded as ``kernel_died``.
"""
from __future__ import annotations

import json
import os
import re
import resource
import socket
import subprocess
import uuid
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty

from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_output
from traitlets.config import Config
from jupyter_core.utils import run_sync

from . import trusted as T
from .rpc import Connection, worker_source
from .sandbox import Sandbox

#: Seconds a kernel gets to answer a trivial request after an interrupt.
RECOVERY_S = 5
#: Bytes of output kept per cell (the rest is dropped with a notice).
MAX_CELL_OUTPUT = 200_000
#: Run silently in each kernel before the first cell: cut stdout/stderr at the source, so a
#: cell printing gigabytes neither floods the message channel nor exhausts the kernel's memory.
_CAP_OUTPUT = """
def _grader_cap_output(limit):
    import sys

    def install(*args, **kwargs):
        # runs at the start of every cell, after IPython wrapped the streams to record their
        # output in memory (which is what exhausts a kernel printing gigabytes): wrap on top
        used = [0]
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            def capped(text, *a, write=stream.write, **k):
                used[0] += len(text)
                if used[0] <= limit:
                    return write(text, *a, **k)
                if used[0] - len(text) <= limit:
                    write(f"\\n[grader: output cut after {limit} characters]\\n")
                return len(text)
            stream.write = capped
    get_ipython().events.register("pre_run_cell", install)
_grader_cap_output(MAX_CHARS)
del _grader_cap_output
"""
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
                 kernel_name: str = "python3", memory_mb: int | None = None,
                 trusted: dict[int, list[T.CheckCall]] | None = None,
                 sandbox: "Sandbox | None" = None) -> dict[int, CellRun]:
    """Execute ``nb`` in place (outputs are stored in it); return ``{cell index: CellRun}`` for code cells.

    Cells in ``trusted`` (index -> their check calls) are not executed as code: the grader
    runs their checks itself against the kernel's objects (see ``trusted.py``). With a
    ``sandbox`` the kernel starts inside it (see ``sandbox.py``).
    """
    if sandbox is not None:
        return _run(nb, workdir, str(sandbox.ipc), cell_timeout, total_timeout, kernel_name, memory_mb,
                    trusted or {}, sandbox)
    with tempfile.TemporaryDirectory(prefix="grader-ipc-") as sockets:
        return _run(nb, workdir, sockets, cell_timeout, total_timeout, kernel_name, memory_mb, trusted or {}, None)


class _CappedClient(NotebookClient):
    """Keeps at most MAX_CELL_OUTPUT bytes of output per cell (a cell printing 1 GB must not fill the grader)."""

    def output(self, outs, msg, display_id, cell_index):  # type: ignore[override]
        size = len(json.dumps(msg.get("content", {}), default=str))
        used = self._output_bytes.get(cell_index, 0) if hasattr(self, "_output_bytes") else 0
        if not hasattr(self, "_output_bytes"):
            self._output_bytes: dict[int, int] = {}
        self._output_bytes[cell_index] = used + size
        if used + size > MAX_CELL_OUTPUT and msg.get("msg_type") != "error":
            if used <= MAX_CELL_OUTPUT:
                outs.append(new_output("stream", name="stderr",
                                       text=f"\n[grader: output beyond {MAX_CELL_OUTPUT // 1000} kB was dropped]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)


def _manager_class(prefix: list[str]):
    from jupyter_client.manager import AsyncKernelManager

    class SandboxedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):  # type: ignore[override]
            return [*prefix, *super().format_kernel_cmd(extra_arguments)]

    return SandboxedKernelManager


def _run(nb: NotebookNode, workdir: Path, sockets: str, cell_timeout: float, total_timeout: float,
         kernel_name: str, memory_mb: int | None, trusted: dict[int, list[T.CheckCall]],
         sandbox: "Sandbox | None") -> dict[int, CellRun]:
    runs: dict[int, CellRun] = {}
    extra = {"kernel_manager_class": _manager_class(sandbox.prefix())} if sandbox and sandbox.enabled else {}
    client = _CappedClient(
        nb, timeout=max(1, int(cell_timeout)), kernel_name=kernel_name, allow_errors=True,
        # on timeout nbclient interrupts the kernel and hands back this reply (a marker we look for)
        interrupt_on_timeout=True, error_on_timeout=dict(_TIMEOUT_REPLY),
        record_timing=False, startup_timeout=60, shutdown_kernel="immediate",
        resources={"metadata": {"path": str(workdir)}},
        # no IPython history database: later cells cannot read earlier inputs from disk
        extra_arguments=["--HistoryManager.enabled=False"],
        # Unix sockets, not TCP ports: no port races between parallel workers, nothing on the network
        config=Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel"),
                                         "connection_file": str(Path(sockets) / "kernel.json")}}),
        **extra,
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
    limiter = sandbox.preexec(memory_mb) if sandbox is not None else _memory_limiter(memory_mb)
    if limiter is not None:
        kwargs["preexec_fn"] = limiter
    count = 0
    with client.setup_kernel(**kwargs):
        _wait_reply(client, client.kc.execute(_CAP_OUTPUT.replace("MAX_CHARS", str(MAX_CELL_OUTPUT)), silent=True, store_history=False), 30)
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
            if i in trusted:
                count += 1
                withheld = frozenset(sandbox.withheld) if sandbox is not None and sandbox.enabled else frozenset()
                runs[i], dead_reason = _run_trusted(client, workdir, cell, trusted[i], limit, count, withheld)
                continue
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
            count = max(count, cell.get("execution_count") or 0)
            if content.get("status") == "ok" and err is None:
                runs[i] = CellRun("ok")
            else:
                src = content if content.get("status") == "error" else (err or {})
                runs[i] = CellRun("error", ename=str(src.get("ename", "") or "Error"),
                                  evalue=str(src.get("evalue", "")),
                                  traceback=[strip_ansi(t) for t in src.get("traceback", [])])
    return runs


def _run_trusted(client: NotebookClient, workdir: Path, cell: NotebookNode, calls: list[T.CheckCall],
                 limit: int, count: int, withheld: frozenset[str] = frozenset()) -> tuple[CellRun, str]:
    """Run a test cell's checks in the grader against the kernel's objects; (run, dead reason)."""
    path = workdir / f".grader-{uuid.uuid4().hex[:12]}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(min(15.0, limit))
    deadline = time.monotonic() + limit
    # runs on the kernel's main thread, in a fresh namespace; the lambda's globals() is the notebook's
    code = (f"(lambda g: (exec(compile({worker_source()!r}, '<grader-rpc>', 'exec'), g), "
            f"g['serve']({str(path)!r}, globals())))({{}})")
    try:
        msg_id = client.kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        try:
            sock, _ = server.accept()
        except OSError:
            alive = _alive(client)
            reason = "the kernel did not open the grading channel" + ("" if alive else " (it died)")
            return CellRun("error" if alive else "kernel_died", ename="GraderError", evalue=reason,
                           detail=reason), "" if alive else reason
        conn = Connection(sock, deadline, lambda: run_sync(client.km.interrupt_kernel)(), withheld)
        try:
            verdict = T.run_calls(conn, calls)
        finally:
            conn.close()
        _wait_reply(client, msg_id, RECOVERY_S)
    finally:
        server.close()
        path.unlink(missing_ok=True)
    T.write_outputs(cell, verdict, count)
    if conn.dead:
        dead = not _alive(client) or "did not respond" in conn.dead
        reason = f"{conn.dead} while running this cell"
        return CellRun("kernel_died", detail=reason), (conn.dead + " in an earlier cell") if dead else ""
    if conn.limit_hit:
        return CellRun("timeout", detail=f"ran longer than {limit} s and was interrupted"), ""
    if verdict.status == "ok":
        return CellRun("ok"), ""
    return CellRun("error", ename=verdict.ename, evalue=verdict.evalue,
                   traceback=[f"Cell In [{count}], line {verdict.line}"]), ""


def _alive(client: NotebookClient) -> bool:
    try:
        return bool(run_sync(client.km.is_alive)())
    except Exception:
        return False


def _wait_reply(client: NotebookClient, msg_id: str, timeout: float) -> bool:
    async def wait() -> bool:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await client.kc.get_shell_msg(timeout=left)
            except Empty:
                return False
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return True
        return False

    try:
        return bool(run_sync(wait)())
    except Exception:
        return False


def _timed_out(replies: list[dict]) -> bool:
    return any(r.get("content", {}).get("ename") == _TIMEOUT_REPLY["ename"] for r in replies)


def _responsive(client: NotebookClient) -> bool:
    """After an interrupt: True if the kernel answers a trivial request within RECOVERY_S."""
    try:
        msg_id = client.kc.execute("pass", store_history=False, silent=True)
    except Exception:
        return False
    return _wait_reply(client, msg_id, RECOVERY_S)
