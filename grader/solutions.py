"""Keep the solution notebooks' answer cells identical to the library (one source of truth).

A solution cell that carries the metadata

    {"llm_course": {"source": "llm_course.attention:MultiHeadAttention",
                    "solve": ["__init__", "forward"]}}

is regenerated from that object's source code: the body of each function named in
``solve`` (for a plain function: its own body) is wrapped in nbgrader's
``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers. The docstring and the leading
guard clauses (``super().__init__()``, ``if …: raise …``, calls to ``validate_*`` or
``self._check*``) stay outside the markers, so the released lab keeps the signature, the
docstring and the input checks, and asks the learner for the lesson itself.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from pathlib import Path

import nbformat

META_KEY = "llm_course"


def solution_source(reference: str, solve: list[str] | None = None) -> str:
    """Source of ``module:name`` with the bodies in ``solve`` marked as the solution."""
    module_name, _, attr = reference.partition(":")
    if not attr:
        raise ValueError(f"reference must look like 'package.module:name', got {reference!r}")
    obj = getattr(importlib.import_module(module_name), attr)
    source = textwrap.dedent(inspect.getsource(obj))
    lines = source.splitlines()
    tree = ast.parse(source)
    top = tree.body[0]
    if isinstance(top, ast.ClassDef):
        targets = [n for n in top.body if isinstance(n, ast.FunctionDef) and n.name in (solve or [])]
    else:
        targets = [top]
    missing = set(solve or []) - {t.name for t in targets} if isinstance(top, ast.ClassDef) else set()
    if missing:
        raise ValueError(f"{reference} has no method(s) {sorted(missing)} to mark as solution")
    # Insert markers bottom-up so earlier line numbers stay valid.
    for func in sorted(targets, key=lambda f: f.lineno, reverse=True):
        body = list(func.body)
        while body[:-1] and (_is_docstring(body[0]) or _is_guard(body[0])):
            body.pop(0)
        first = body[0]
        start, end = first.lineno - 1, func.end_lineno  # 0-based start, exclusive end
        indent = " " * first.col_offset
        lines[start:end] = [f"{indent}### BEGIN SOLUTION", *lines[start:end], f"{indent}### END SOLUTION"]
    return "\n".join(lines)


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_guard(stmt: ast.stmt) -> bool:
    """super().__init__(…), `if …: raise …`, or a call to a validate_*/_check* helper."""
    if isinstance(stmt, ast.If):
        return not stmt.orelse and len(stmt.body) == 1 and isinstance(stmt.body[0], ast.Raise)
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        name = ast.unparse(stmt.value.func)
        return name == "super().__init__" or name.split(".")[-1].startswith(("validate_", "_check"))
    return False


def sync_notebook(path: Path, *, check: bool = False) -> bool:
    """Regenerate the library-backed cells of one notebook. Returns True if it was (or would be) changed."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        spec = cell.get("metadata", {}).get(META_KEY)
        if cell.cell_type != "code" or not spec:
            continue
        new = solution_source(spec["source"], spec.get("solve"))
        if cell.source != new:
            changed = True
            cell.source = new
    if changed and not check:
        nbformat.write(nb, path)
    return changed


def sync_all(root: Path, *, check: bool = False) -> list[Path]:
    """Sync every notebook under ``root/solutions``; return the ones that differ(ed)."""
    return [p for p in sorted((root / "solutions").glob("*/*.ipynb")) if sync_notebook(p, check=check)]


def strip_solution(source: str) -> str:
    """The student version of a solution cell, exactly as nbgrader's release makes it."""
    from nbgrader.preprocessors import ClearSolutions

    cell = nbformat.v4.new_code_cell(source)
    ClearSolutions()._replace_solution_region(cell, "python")
    return cell.source
