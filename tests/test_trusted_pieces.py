"""The pieces that used to be judged inside the learner's kernel cannot be fooled from there.

Nine pieces needed more than "call it, compare the result" (process-wide RNG state, a crash
inside ``torch.save``, object identity, a reference KVCache passed in, a generator filling
the caller's dict lazily, thousands of calls); they are now judged in the grader like every
other piece (``grader/trusted.py``). For each lab that has one, a submission with honest
answers everywhere except those pieces, which hold a classic mistake from the lab's mutant
catalogue (or an identity trick) AND code that makes any check run in the kernel pass
(``Report.passed`` forced true, ``torch.allclose``/``torch.equal`` always true). Graded for
real (``grade_notebook``: sandbox, withheld references): the honest pieces keep their
points, the attacked ones get none, and the feedback names the mistake.

Ungraded cells (the labs' demos) are deleted from the submissions to keep this quick; a
learner may do that too.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import nbformat
import pytest

from grader import cells as C
from grader.grade import grade_notebook
from grader.trusted import IN_KERNEL, check_calls

ROOT = Path(__file__).resolve().parents[1]

#: Appended to an attacked solution cell: would make any check run in the kernel pass.
FOOL_THE_KERNEL = """
import torch as _torch
import llm_course.checks.engine as _engine
_engine.Report.passed = property(lambda self: True)
_engine.Report.assert_passed = lambda self: None
_torch.allclose = lambda *args, **kwargs: True
_torch.equal = lambda *args, **kwargs: True
"""

#: A LoRA layer that wraps a COPY of the base layer it was given (passes every numeric case).
COPIES_BASE = """
_HonestLoRA = LoRALinear

class LoRALinear(_HonestLoRA):
    def __init__(self, base, *args, **kwargs):
        import copy
        super().__init__(copy.deepcopy(base), *args, **kwargs)
"""

# lab -> {grade_id of the attacked piece: (mutant name, or a source to append; phrase the feedback must hold)}
ATTACKS = {
    "lab02": {"sample": ("greedy instead of sampling", "greedy")},
    "lab09": {"train_step": ("forgets zero_grad", "not cleared"),
              "save_checkpoint": ("non-atomic save (writes straight onto the path)", "not atomic"),
              "load_checkpoint": ("RNG state not restored", "RNG state was not restored")},
    "lab10": {"lora": (COPIES_BASE, "self.base should be the nn.Linear that was passed in")},
    "lab11": {"accumulate": ("zeroes gradients inside the accumulation loop", "zeroed inside the loop")},
    "lab12": {"cached_forward": ("cache does not advance the position offset", "offset did not advance"),
              "generate_cached": ("loop generates one token too few", "new tokens for")},
    "lab15": {"sse": ("streaming buffers everything until the end", "buffers")},
}


def _answer(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if "### " not in line)


def _submission(lab, attacks: dict) -> nbformat.NotebookNode:
    """The released notebook, graded cells only, reference answers typed in, some attacked."""
    solution = nbformat.read(ROOT / lab.NOTEBOOK, as_version=4)
    answers = {C.grade_id(c): _answer(c.source) for c in solution.cells if C.grade_id(c) in lab.PIECES}
    mutants = {m.name: m for m in lab.MUTANTS}
    for gid, (how, _) in attacks.items():
        answers[gid] = (mutants[how].apply(answers[gid]) if how in mutants else answers[gid] + how) \
            + FOOL_THE_KERNEL
    nb = nbformat.read(ROOT / lab.NOTEBOOK.replace("solutions/", "labs/", 1), as_version=4)
    nb.cells = [c for c in nb.cells if C.grade_id(c)]
    for cell in nb.cells:
        if C.grade_id(cell) in answers:
            cell.source = answers[C.grade_id(cell)]
    return nb


def test_no_piece_is_judged_in_the_kernel():
    assert IN_KERNEL == {}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_kernel_cannot_fool_the_moved_pieces(name, tmp_path):
    lab = importlib.import_module(f"tests.mutants.{name}")
    attacks = ATTACKS[name]
    path = tmp_path / Path(lab.NOTEBOOK).name
    nbformat.write(_submission(lab, attacks), path)
    result = grade_notebook(path, assignment=Path(lab.NOTEBOOK).parent.name, cell_timeout=120)

    # which test cells check an attacked piece (from the source notebook, not the submission)
    attacked = {lab.PIECES[gid][0]: phrase for gid, (_, phrase) in attacks.items()}
    source = nbformat.read(ROOT / lab.NOTEBOOK, as_version=4)
    piece_of = {C.grade_id(c): calls[0].piece for c in source.cells
                if C.is_grade(c) and (calls := check_calls(c.source))}
    items = {it["grade_id"]: it for it in result["items"]}
    assert result["max_score"] == lab.MAX_SCORE
    for gid, item in items.items():
        if piece_of.get(gid) in attacked:
            assert item["points"] == 0, item
            assert attacked[piece_of[gid]] in item["message"], item
        else:
            assert item["points"] == item["max_points"], item
    assert {piece_of.get(gid) for gid in items} >= set(attacked), "every attacked piece has a test cell"


# --- the worker's new requests, against a plain subprocess (no kernel, no sandbox) ----------

WORKER_SETUP = """
import time
import torch

def draw(p, g):
    return int(torch.multinomial(p, 1, generator=g))

def slow(seconds):
    time.sleep(seconds)

def stream(pieces, usage):
    for p in pieces:
        usage["n"] = usage.get("n", 0) + 1
        yield p
    usage["done"] = True

def keep(x):
    global kept
    kept = x
    return x

def rng_draw():
    return torch.rand(3)
"""


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    import socket
    import subprocess
    import sys
    import time

    from grader.rpc import Connection, worker_source

    path = tmp_path_factory.mktemp("rpc") / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    code = f"{worker_source()}\n{WORKER_SETUP}\nserve({str(path)!r}, globals())\n"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=path.parent)
    sock, _ = server.accept()
    connection = Connection(sock, time.monotonic() + 60, lambda: None)
    yield connection
    connection.close()
    proc.wait(timeout=30)
    server.close()


def test_many_calls_in_one_request_share_their_generator(conn):
    import torch

    from llm_course.checks.remote import call_many

    p = torch.tensor([0.1, 0.2, 0.3, 0.4])
    local, remote = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    expected = [int(torch.multinomial(p, 1, generator=local)) for _ in range(200)]
    before = conn.kernel_s
    draw = conn.lookup("draw")
    assert call_many(draw, [((p, remote), {})] * 100) == expected[:100]  # one call, 100 times
    assert call_many(draw, [((p.clone(), remote), {}) for _ in range(100)]) == expected[100:]
    assert torch.equal(remote.get_state(), local.get_state())  # the kernel's draws came back
    assert conn.kernel_s - before < 5


def test_a_generator_fills_the_callers_dict_as_it_goes(conn):
    usage: dict = {}
    events = conn.lookup("stream")(["a", "b"], usage)
    assert next(events) == "a" and usage == {"n": 1}
    assert list(events) == ["b"] and usage == {"n": 2, "done": True}


def test_identity_rng_and_time_are_answered_by_the_worker(conn):
    import time

    import torch

    from llm_course.checks.remote import global_rng_state, same_object, set_global_rng_state

    layer = torch.nn.Linear(2, 2)
    keep = conn.lookup("keep")
    assert same_object(keep(layer), layer) and not same_object(keep(torch.nn.Linear(2, 2)), layer)
    draw = conn.lookup("rng_draw")
    set_global_rng_state(draw, torch.manual_seed(3).get_state())
    assert torch.equal(draw(), torch.rand(3))
    assert torch.equal(global_rng_state(draw), torch.get_rng_state())
    # only the kernel's time counts against the limit, not the grader's own work
    before = conn.kernel_s
    time.sleep(0.3)
    conn.lookup("slow")(0.2)
    assert 0.2 <= conn.kernel_s - before < 0.45
