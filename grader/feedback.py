"""Feedback that never shows hidden tests.

Three layers, applied to the executed notebook (which holds the hidden tests in its test
cells) before anything is written:

1. the source of every cell with a hidden region shows the visible part and a
   ``# (hidden tests)`` placeholder instead of the region;
2. every error output keeps only ``ExceptionType: message`` plus where it failed ("in a
   hidden test", or the visible line) — traceback frames, which quote source lines, are
   dropped (a bare ``assert x == secret`` has an empty message, so nothing is left to leak);
3. every remaining output, and every message, is scanned for the text of any hidden line
   (whitespace ignored, so ``print(In)`` or printing it a character per line is caught);
   an output that contains one is replaced by a notice.

Layer 3 cannot catch hidden text that learner code deliberately encodes (reverses,
base64-encodes) before printing: code that runs after a hidden test in the same kernel can
read it (``In``, ``inspect``), which is why results are scored from the execute replies and
feedback should not be returned before the deadline when that matters.
:class:`HideHiddenTests` applies the same rules inside ``nbgrader generate_feedback``.
"""
from __future__ import annotations

import html
import json
import re
from typing import Any

from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from traitlets import Bool

from . import cells as C
from .execute import strip_ansi

REDACTED = "[output removed: it contained hidden-test text]"
#: Hidden lines shorter than this (without whitespace) are too generic to scan for (``)``, ``else:``).
MIN_FINGERPRINT = 6
MAX_OUTPUT_CHARS = 20_000
_WS = re.compile(r"\s+")
_CELL_FRAME = re.compile(r"Cell In\s*\[(\d+)\],\s*line (\d+)")


def fingerprints(nb: NotebookNode) -> set[str]:
    """Whitespace-free text of every hidden line (marker lines excluded) in ``nb``."""
    prints: set[str] = set()
    for cell in nb.cells:
        for line in C.split_hidden(cell.source)[1]:
            if C.BEGIN_HIDDEN in line or C.END_HIDDEN in line:
                continue
            fp = _WS.sub("", line)
            if len(fp) >= MIN_FINGERPRINT:
                prints.add(fp)
    return prints


def leaks(text: str, prints: set[str]) -> bool:
    """True if ``text`` contains any hidden line (ignoring whitespace; HTML entities decoded)."""
    if not prints or not text:
        return False
    flat = _WS.sub("", strip_ansi(text))
    flat_unescaped = _WS.sub("", html.unescape(strip_ansi(text)))
    return any(fp in flat or fp in flat_unescaped for fp in prints)


def redact(text: str, prints: set[str]) -> str:
    return REDACTED if leaks(text, prints) else text


def error_location(cell: NotebookNode, traceback: list[str]) -> str:
    """Where in ``cell`` an error was raised, without quoting hidden lines."""
    count = cell.get("execution_count")
    line_no = None
    for entry in traceback:
        for m in _CELL_FRAME.finditer(strip_ansi(entry)):
            if count is not None and int(m.group(1)) == int(count):
                line_no = int(m.group(2))
    if line_no is None:
        return ""
    if line_no in C.hidden_line_numbers(cell.source):
        return "in a hidden test"
    lines = cell.source.split("\n")
    text = lines[line_no - 1].strip() if 0 < line_no <= len(lines) else ""
    return f"at line {line_no}: {text}" if text else f"at line {line_no}"


def error_message(cell: NotebookNode, ename: str, evalue: str, traceback: list[str], prints: set[str]) -> str:
    """``ExceptionType: message (where)`` with hidden text redacted."""
    msg = f"{ename}: {evalue}" if evalue else ename
    msg = redact(msg, prints)
    where = error_location(cell, traceback)
    return f"{msg} ({where})" if where else msg


def _clean_output(cell: NotebookNode, out: NotebookNode, prints: set[str]) -> NotebookNode:
    kind = out.get("output_type")
    if kind == "error":
        message = error_message(cell, out.get("ename", ""), out.get("evalue", ""), out.get("traceback", []), prints)
        out.traceback = [message]
        out.evalue = redact(out.get("evalue", ""), prints)
        return out
    if kind == "stream":
        text = out.get("text", "")
        if leaks(text, prints):
            out.text = REDACTED + "\n"
        elif len(text) > MAX_OUTPUT_CHARS:
            out.text = text[:MAX_OUTPUT_CHARS] + f"\n[... {len(text) - MAX_OUTPUT_CHARS} characters cut]\n"
        return out
    data = out.get("data", {})
    for value in list(data.values()):
        if isinstance(value, str):
            text = value
        elif isinstance(value, list):
            text = "".join(map(str, value))
        else:
            text = json.dumps(value)
        if leaks(text, prints):
            out.data = {"text/plain": REDACTED}
            out.metadata = {}
            break
    return out


def sanitize(nb: NotebookNode) -> NotebookNode:
    """Apply the three layers to ``nb`` in place (call it on the executed notebook)."""
    prints = fingerprints(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [_clean_output(cell, o, prints) for o in cell.get("outputs", [])]
    # sources last: error locations above need the original line numbers
    for cell in nb.cells:
        if C.split_hidden(cell.source)[1]:
            cell.source = C.feedback_source(cell.source)
    return nb


class HideHiddenTests(Preprocessor):
    """nbconvert preprocessor for ``nbgrader generate_feedback``: see :func:`sanitize`."""

    enabled = Bool(True, help="run this preprocessor (on by default)").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        return sanitize(nb), resources


def summary_markdown(result: dict[str, Any], title: str) -> str:
    """A Markdown table of the result, shown at the top of the HTML feedback."""
    rows = ["| piece | status | points | message |", "|---|---|---|---|"]
    for item in result["items"]:
        msg = str(item.get("message") or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{item['grade_id']}` | {item['status']} | {item['points']:g} / {item['max_points']:g} | {msg} |")
    return f"# Feedback: {title}\n\n**Score: {result['score']:g} / {result['max_score']:g}**\n\n" + "\n".join(rows)


def write_html(nb: NotebookNode, result: dict[str, Any], title: str, path) -> None:
    """Write the (already sanitized) notebook as HTML with a score table on top."""
    import copy

    from nbconvert import HTMLExporter
    from nbformat.v4 import new_markdown_cell

    nb = copy.deepcopy(nb)
    nb.cells.insert(0, new_markdown_cell(summary_markdown(result, title)))
    nb.metadata.pop("widgets", None)
    body, _ = HTMLExporter().from_notebook_node(nb)
    with open(path, "w", encoding="utf-8") as f:
        f.write(body)
