"""Build the whole book (Sphinx warnings are errors) and check that it is self-contained.

Slow: a cold build executes every chapter page (in quick mode, set by conftest). Its
execution cache is ``_build/.jupyter_cache-quick`` in the repository, kept apart from the
full-size cache of `make book`, so a warm rebuild only renders.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")

# A <script src> or <link href> that leaves the site (http:, https: or protocol-relative).
OFFSITE = re.compile(
    r"""<(?:script\b[^>]*\bsrc|link\b[^>]*\bhref)\s*=\s*["'](?:https?:)?//""", re.I
)
VENDORED = [
    "plotly/plotly.min.js",
    "requirejs/require.js",
    "html-manager/embed-amd.js",
    "mathjax/tex-mml-chtml.js",
    "mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
    "d3/d3.min.js",
    "jquery/jquery.min.js",
]
CHAPTER = "book/06-attention.html"
LAB = "labs/06-attention/lab06-attention.html"

pytestmark = pytest.mark.slow


def pages(html: Path):
    """The built pages (not theme templates under _static/ or vendored files)."""
    for page in sorted(html.rglob("*.html")):
        if page.relative_to(html).parts[0] not in ("_static", "_vendor", "_sources"):
            yield page


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[Path, str]:
    if not (ROOT / "node_modules" / "requirejs").is_dir():
        pytest.fail("node_modules/ is missing: run `npm ci` (or `make book` / `make test`)")
    out = tmp_path_factory.mktemp("book")
    env = {**os.environ, "LLM_COURSE_BOOK": "1"}
    cmd = [str(JUPYTER_BOOK) if JUPYTER_BOOK.exists() else "jupyter-book",
           "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "build succeeded" in log, log[-6000:]
    return out / "_build" / "html", log


@pytest.fixture(scope="module")
def html(build) -> Path:
    return build[0]


def test_pages_exist(html: Path):
    assert (html / "book" / "intro.html").is_file()
    assert (html / CHAPTER).is_file()
    assert (html / LAB).is_file()


def test_solutions_never_built(html: Path):
    for path in html.rglob("*"):
        assert "solutions" not in path.relative_to(html).parts, path
    for page in html.rglob("*.html"):
        assert "### BEGIN SOLUTION" not in page.read_text(encoding="utf-8"), page


def test_no_offsite_scripts_or_styles(html: Path):
    bad = []
    for page in html.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        bad += [f"{page.relative_to(html)}: {m.group(0)}" for m in OFFSITE.finditer(text)]
    assert not bad, "\n".join(bad[:20])


def test_vendored_files(html: Path):
    missing = [f for f in VENDORED if not (html / "_vendor" / f).is_file()]
    assert not missing, missing
    # not in _static/: Jupyter Book would put every script there on every page
    assert not (html / "_static" / "_vendor").exists()


def test_pages_load_local_libraries(html: Path):
    for page in pages(html):
        text = page.read_text(encoding="utf-8")
        rel = page.relative_to(html)
        if "plotly-graph-div" in text:
            assert re.search(r'<script src="[^"]*_vendor/plotly/plotly\.min\.js', text), rel
        if "application/vnd.jupyter.widget-state+json" in text:
            assert re.search(r'<script src="[^"]*_vendor/requirejs/require\.js', text), rel
            assert re.search(r'<script[^>]*src="[^"]*_vendor/html-manager/embed-amd\.js', text), rel
        if 'class="math' in text:
            assert re.search(r'<script[^>]*src="[^"]*_vendor/mathjax/tex-mml-chtml\.js', text), rel
        if "<body" in text:  # not the root index.html redirect stub
            assert "window.LLM_COURSE_VENDOR" in text, rel


def test_chapter_has_executed_figures(html: Path):
    text = (html / CHAPTER).read_text(encoding="utf-8")
    assert "plotly-graph-div" in text, "no plotly figure rendered on the chapter page"


def test_labs_and_solutions_never_executed(build):
    executed = re.findall(r"^(\S+): Executed notebook", build[1], re.M)
    assert not [p for p in executed if "/labs/" in p or "/solutions/" in p], executed


def test_lab_page_is_the_student_version(html: Path):
    text = (html / LAB).read_text(encoding="utf-8")
    assert "YOUR CODE HERE" in text or "NotImplementedError" in text
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    # never executed: no output areas in the lab page
    assert 'class="cell_output' not in text


def test_warm_rebuild_is_fast(html: Path, tmp_path: Path):
    """A second build that finds everything in the execution cache executes nothing."""
    out = html.parents[1]
    cmd = [str(JUPYTER_BOOK) if JUPYTER_BOOK.exists() else "jupyter-book",
           "build", str(ROOT), "--path-output", str(out), "--all"]
    env = {**os.environ, "LLM_COURSE_BOOK": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Executed notebook" not in log, "a warm rebuild re-executed a page"
    assert "Using cached notebook" in log
    shutil.rmtree(out / "_build" / "jupyter_execute", ignore_errors=True)
