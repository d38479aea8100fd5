"""Trusted verdicts: run a test cell's ``check(...)`` calls in the grader, not in the kernel.

A cell qualifies when every statement is ``check("<piece>", <name>[, seed=<int>][,
extended=<bool>])``, optionally followed by ``.assert_passed()`` (every autograder test cell
in solutions/ has that form). For such a cell the grader looks ``<name>`` up in the
learner's kernel and runs the engine's cases here with a stand-in for it (see ``rpc.py``):
inputs, reference answers and comparisons never touch the learner's process, so patched
``torch.allclose``, a rigged ``__eq__`` or a faked report cannot change the verdict.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import new_output

from . import cells as C
from .rpc import Connection


#: Pieces still judged inside the learner's kernel (the old, foolable way), with why. Their
#: reference implementations are not withheld in the sandbox (the in-kernel check needs them).
#: Empty: every piece's cases now run here. What used to keep one in the kernel is served by
#: the worker (``rpc_worker.py``): many calls in one request, torch's global RNG state, a
#: crash inside torch.save, "is this the object we sent", generators that fill a caller's
#: dict lazily, withheld reference objects (a KVCache) that stay in the grader.
IN_KERNEL: dict[str, str] = {}


@dataclass(frozen=True)
class CheckCall:
    piece: str
    name: str
    seed: int
    extended: bool
    asserted: bool  # ``.assert_passed()``: a failure is an error, as in the kernel
    line: int  # 1-based line of the call in the cell
    hidden: bool


def check_calls(source: str) -> list[CheckCall] | None:
    """The cell's check calls, or None if the cell does anything else."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    hidden = C.hidden_line_numbers(source)
    calls = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
            return None
        call, asserted = stmt.value, False
        if (isinstance(call.func, ast.Attribute) and call.func.attr == "assert_passed"
                and not call.args and not call.keywords and isinstance(call.func.value, ast.Call)):
            call, asserted = call.func.value, True
        parsed = _parse_check(call)
        if parsed is None:
            return None
        piece, name, seed, extended = parsed
        if piece in IN_KERNEL:
            return None
        calls.append(CheckCall(piece, name, seed, extended, asserted, stmt.lineno, stmt.lineno in hidden))
    return calls or None


def in_kernel_names(source: str) -> set[str]:
    """Names checked in ``source`` by pieces that are still judged in the kernel."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {parsed[1] for node in ast.walk(tree) if isinstance(node, ast.Call)
            and (parsed := _parse_check(node)) is not None and parsed[0] in IN_KERNEL}


def _parse_check(call: ast.Call) -> tuple[str, str, int, bool] | None:
    if not (isinstance(call.func, ast.Name) and call.func.id == "check" and len(call.args) == 2):
        return None
    piece, name = call.args
    if not (isinstance(piece, ast.Constant) and isinstance(piece.value, str) and isinstance(name, ast.Name)):
        return None
    options: dict[str, Any] = {"seed": 0, "extended": False}
    for kw in call.keywords:
        if kw.arg not in options or not isinstance(kw.value, ast.Constant):
            return None
        options[kw.arg] = kw.value.value
    if type(options["seed"]) is not int or type(options["extended"]) is not bool:
        return None
    return piece.value, name.id, options["seed"], options["extended"]


@dataclass
class Verdict:
    """What a trusted run of one cell found: ``status`` "ok" or "error" (ename/evalue/line)."""

    status: str
    ename: str = ""
    evalue: str = ""
    line: int = 0
    outputs: list = None  # type: ignore[assignment]
    limit: str = ""  # a time limit or dead kernel stopped it


def run_calls(conn: Connection, calls: list[CheckCall]) -> Verdict:
    """Run ``calls`` in order, as the cell would: stop at the first failed assertion."""
    from llm_course.checks import check

    outputs = []
    for call in calls:
        try:
            candidate = conn.lookup(call.name)
            report = check(call.piece, candidate, seed=call.seed, extended=call.extended)
        except Exception as err:
            reason = getattr(err, "grader_reason", None)
            ename = "GraderLimit" if reason else type(err).__name__
            evalue = reason or str(err)
            outputs.append(new_output("error", ename=ename, evalue=evalue, traceback=[]))
            return Verdict("error", ename, evalue, call.line, outputs, limit=str(reason or ""))
        limit = next((r.reason for r in report.results if r.reason == (conn.dead or conn.limit_hit or None)), "")
        if call.asserted and not report.passed:
            summary = report.summary()
            outputs.append(new_output("error", ename="AssertionError", evalue=summary, traceback=[]))
            return Verdict("error", "AssertionError", summary, call.line, outputs, limit=limit)
        if not call.asserted:
            outputs.append(new_output("display_data", data={"text/plain": str(report),
                                                             "text/html": report._repr_html_()}))
    return Verdict("ok", outputs=outputs)


def write_outputs(cell: NotebookNode, verdict: Verdict, count: int) -> None:
    """Show the trusted result in the cell, like the kernel would have (for the feedback)."""
    cell.execution_count = count
    for out in verdict.outputs or []:
        if out.output_type == "error":
            out.traceback = [f"Cell In [{count}], line {verdict.line}", f"{out.ename}: {out.evalue}"]
    cell.outputs = list(verdict.outputs or [])
