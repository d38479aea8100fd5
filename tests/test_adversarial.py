"""Submissions that try to fool the grader get exactly what their honest work deserves.

Every attack is built from lab 06: the released notebook with the reference answers typed
in (the honest baseline, 13/13), then one piece left as the stub (``MultiHeadAttention``,
4 points, or ``causal_mask``, 1 point) and a trick that tries to win those points back, or
a trick that must not cost the honest work anything. One autograde batch (two workers)
grades them all; each test reads its result. Attacks that only the sandbox stops (the
disk, the network, fork/thread bombs) are skipped where Linux namespaces are unavailable.
"""
from __future__ import annotations

import copy
import http.server
import json
import os
import threading
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from grader import sandbox
from grader.batch import autograde
from grader.cells import grade_id
from grader.course import Course

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "06-attention" / "lab06-attention.ipynb"
RELEASED = ROOT / "labs" / "06-attention" / "lab06-attention.ipynb"
FULL, NO_MHA, NO_MASK = 13.0, 9.0, 12.0
CELL_TIMEOUT = 20
SANDBOX = sandbox.available()
PIDS_CGROUP = SANDBOX and sandbox._make_cgroup("probe-adversarial") is not None
if PIDS_CGROUP:
    sandbox._kill_cgroup(sandbox.PIDS_ROOT / "llm-grader" / "probe-adversarial")


def honest() -> nbformat.NotebookNode:
    """The released lab with every answer typed in (no nbgrader markers)."""
    answers = {grade_id(c): "\n".join(l for l in c.source.splitlines() if "### " not in l)
               for c in nbformat.read(SOLUTION, as_version=4).cells
               if grade_id(c) and c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    nb = nbformat.read(RELEASED, as_version=4)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def index(nb, gid: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if grade_id(c) == gid)


def stub(nb, gid: str = "mha"):
    """Leave one piece as released (the stub)."""
    nb.cells[index(nb, gid)].source = nbformat.read(RELEASED, as_version=4).cells[index(nb, gid)].source
    return nb


def replace(nb, gid: str, source: str):
    nb.cells[index(nb, gid)].source = source
    return nb


def insert_before(nb, gid: str, source: str):
    nb.cells.insert(index(nb, gid), new_code_cell(source))
    return nb


def _server_with_reference() -> tuple[http.server.HTTPServer, int]:
    """A local web server handing out the reference MultiHeadAttention (the network attack's loot)."""
    answer = next(c.source for c in honest().cells if grade_id(c) == "mha").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


# name -> (build(folder, port) -> notebook, expected score, (grade_id, phrase in its message) | None, needs)
SWALLOW = """import time
class MultiHeadAttention(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        while True:
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass
"""
RIGGED = """class AlwaysEqual(torch.Tensor):
    def __eq__(self, other):
        return True
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (torch.equal, torch.allclose, torch.Tensor.__eq__):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})

def causal_mask(T, device=None):
    return torch.zeros(T, T, dtype=torch.bool).as_subclass(AlwaysEqual)
"""
STEAL = """import json
try:
    cells = json.load(open({path!r}))["cells"]
    exec(next("".join(c["source"]) for c in cells
              if c["metadata"].get("nbgrader", {{}}).get("grade_id") == "mha"))
except Exception as err:
    print("could not steal:", err)
"""
ATTACKS = {
    "honest": (lambda f, p: honest(), FULL, None, ""),
    "infinite_loop": (lambda f, p: insert_before(honest(), "sdpa_intro", "while True:\n    pass"), FULL, None, ""),
    "swallow_interrupt": (lambda f, p: replace(honest(), "mha", SWALLOW), NO_MHA, ("mha_tests", ""), ""),
    "memory_hog": (lambda f, p: insert_before(honest(), "sdpa_intro", "hog = bytearray(64 * 2**30)"), FULL, None, ""),
    "exit_kernel": (lambda f, p: replace(honest(), "mha", "import os\nclass MultiHeadAttention:\n"
                                          "    def __init__(self, *a, **k):\n        os._exit(1)"),
                    NO_MHA, ("mha_tests", "kernel"), ""),
    "patch_allclose": (lambda f, p: insert_before(stub(honest()), "mha_tests",
                                                  "torch.allclose = lambda *a, **k: True\n"
                                                  "torch.equal = lambda *a, **k: True\n"
                                                  "torch.Tensor.__eq__ = lambda self, other: True"),
                       NO_MHA, ("mha_tests", "not implemented"), ""),
    "patch_engine": (lambda f, p: insert_before(stub(honest()), "mha_tests",
                                                "import llm_course.checks.engine as E\n"
                                                "E.Report.passed = property(lambda self: True)\n"
                                                "E.Report.assert_passed = lambda self: None\n"
                                                "E.check = check = lambda *a, **k: E.Report('x', 'y')"),
                     NO_MHA, ("mha_tests", "not implemented"), ""),
    "patch_builtins": (lambda f, p: insert_before(stub(honest()), "mha_tests",
                                                  "import builtins\nbuiltins.all = lambda *a, **k: True\n"
                                                  "builtins.AssertionError = Warning"),
                       NO_MHA, ("mha_tests", "not implemented"), ""),
    "rigged_eq": (lambda f, p: replace(honest(), "causal_mask", RIGGED), NO_MASK, ("causal_mask_tests", ""), ""),
    "edit_test": (lambda f, p: replace(stub(honest()), "mha_tests", "pass"), NO_MHA, ("mha_tests", "edited"), ""),
    "delete_test": (lambda f, p: _delete(stub(honest()), "mha_tests"), NO_MHA, ("mha_tests", "deleted"), ""),
    "duplicate_test": (lambda f, p: _duplicate(stub(honest()), "sdpa_tests", after="mha_tests"),
                       NO_MHA, ("sdpa_tests", "duplicated"), ""),
    "reorder_test": (lambda f, p: _move(honest(), "mha_tests", before="mha"), FULL, ("mha_tests", "moved"), ""),
    "import_reference": (lambda f, p: replace(honest(), "mha", "from llm_course.attention import MultiHeadAttention"),
                         NO_MHA, ("mha_tests", "reference implementation"), ""),
    "import_reference_hidden": (lambda f, p: replace(honest(), "mha", "import importlib\nMultiHeadAttention = getattr("
                                                     "importlib.import_module('llm_' + 'course.atten' + 'tion'), "
                                                     "'MultiHead' + 'Attention')"),
                                NO_MHA, ("mha_tests", "withheld"), "sandbox"),
    "read_solutions": (lambda f, p: insert_before(stub(honest()), "mha_tests", STEAL.format(path=str(SOLUTION))),
                       NO_MHA, ("mha_tests", "not implemented"), "sandbox"),
    "read_other_learner": (lambda f, p: insert_before(stub(honest()), "mha_tests",
                                                      STEAL.format(path=str(f / "honest.ipynb"))),
                           NO_MHA, ("mha_tests", "not implemented"), "sandbox"),
    "network": (lambda f, p: insert_before(stub(honest()), "mha_tests",
                                           "import urllib.request\ntry:\n    exec(urllib.request.urlopen("
                                           f"'http://127.0.0.1:{p}/', timeout=3).read().decode())\n"
                                           "except Exception as err:\n    print('offline:', err)"),
                NO_MHA, ("mha_tests", "not implemented"), "sandbox"),
    "print_passed": (lambda f, p: insert_before(stub(honest()), "mha_tests",
                                                "print('mha_tests passed\\nAll tests passed: 13/13')"),
                     NO_MHA, ("mha_tests", "not implemented"), ""),
    "fork_bomb": (lambda f, p: insert_before(honest(), "sdpa_intro",
                                             "import os, time\nfor _ in range(1000):\n    try:\n"
                                             "        if os.fork() == 0:\n            time.sleep(600)\n"
                                             "            os._exit(0)\n    except OSError:\n        break"),
                  FULL, None, "pids"),
    "thread_bomb": (lambda f, p: insert_before(honest(), "use_intro",
                                               "import threading, time\nfor _ in range(5000):\n    try:\n"
                                               "        threading.Thread(target=time.sleep, args=(600,), daemon=True)"
                                               ".start()\n    except RuntimeError:\n        break"),
                    FULL, None, "pids"),
    "huge_output": (lambda f, p: insert_before(honest(), "sdpa_intro",
                                               "for _ in range(10**6):\n    print('x' * 10_000)"), FULL, None, ""),
}


def _delete(nb, gid):
    del nb.cells[index(nb, gid)]
    return nb


def _duplicate(nb, gid, after):
    nb.cells.insert(index(nb, after) + 1, copy.deepcopy(nb.cells[index(nb, gid)]))
    return nb


def _move(nb, gid, before):
    cell = nb.cells.pop(index(nb, gid))
    nb.cells.insert(index(nb, before), cell)
    return nb


def _enabled(needs: str) -> bool:
    return not needs or (SANDBOX if needs == "sandbox" else PIDS_CGROUP)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attacks")
    server, port = _server_with_reference()
    try:
        for name, (build, *_rest, needs) in ATTACKS.items():
            if _enabled(needs):
                nbformat.write(build(folder, port), folder / f"{name}.ipynb")
        out = folder / "graded"
        autograde(folder, Course(ROOT), out=out, workers=2, cell_timeout=CELL_TIMEOUT, timeout=300,
                  memory_mb=6000, progress=False)
    finally:
        server.shutdown()
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}, out


def test_there_are_at_least_twelve_attacks():
    assert len([a for a in ATTACKS if a != "honest"]) >= 12


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_gets_what_its_honest_work_deserves(graded, name):
    results, _ = graded
    _build, expected, where, needs = ATTACKS[name]
    if not _enabled(needs):
        pytest.skip(f"needs {needs}: Linux namespaces / a writable pids cgroup are unavailable here")
    res = results[name]
    assert res["max_score"] == FULL
    assert res["score"] == expected, res["items"]
    if where:
        gid, phrase = where
        item = next(it for it in res["items"] if it["grade_id"] == gid)
        assert item["message"], f"{gid} needs feedback"
        assert phrase.lower() in item["message"].lower(), item["message"]


def test_feedback_stays_small_when_a_cell_prints_gigabytes(graded):
    _, out = graded
    assert (out / "huge_output.html").stat().st_size < 3_000_000


def test_no_process_outlives_the_batch(graded):
    """Forked children of the bombs ran in their kernel's run folder, deleted when it ended."""
    if not SANDBOX:
        pytest.skip("Linux namespaces are unavailable here")
    leftovers = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(sandbox.runs_root()) in cwd and cwd.endswith("(deleted)"):
            leftovers.append((proc.name, cwd))
    assert not leftovers
