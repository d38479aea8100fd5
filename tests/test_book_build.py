"""Build the whole book (Sphinx warnings are errors) and check that it is self-contained.

Slow: a cold build executes every chapter page (in quick mode, set by conftest). Its
execution cache is ``_build/.jupyter_cache-quick`` in the repository, kept apart from the
full-size cache of `make book`, so a warm rebuild only renders.

The build goes to ``_build/test-book/`` and is made once per test run: ``build_book()`` is
shared with ``tests/test_browser.py``, across pytest-xdist workers too (a file lock, and a
stamp holding the run's id). Setting ``LLM_COURSE_TEST_BOOK`` to a built ``_build/html``
folder tests that build instead of making one.
"""

from __future__ import annotations

import fcntl
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


BUILD_DIR = ROOT / "_build" / "test-book"
PREBUILT_ENV_VAR = "LLM_COURSE_TEST_BOOK"


def _jupyter_book() -> str:
    return str(JUPYTER_BOOK) if JUPYTER_BOOK.exists() else "jupyter-book"


def build_book() -> tuple[Path, str]:
    """(the built ``html`` folder, the build log): built once per test run, shared by files.

    Each run starts from an empty output folder, so that every page is read again and a
    warning in an unchanged page still fails the build (an incremental Sphinx build would
    not repeat it); the notebooks' outputs come from the execution cache.
    """
    if os.environ.get(PREBUILT_ENV_VAR):
        html = Path(os.environ[PREBUILT_ENV_VAR])
        log = html.parents[1] / "build.log"
        return html, log.read_text() if log.is_file() else ""
    if not (ROOT / "node_modules" / "requirejs").is_dir():
        pytest.fail("node_modules/ is missing: run `npm ci` (or `make book` / `make test`)")
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid-{os.getpid()}"
    html, log_file, stamp = BUILD_DIR / "_build" / "html", BUILD_DIR / "build.log", BUILD_DIR / "run-id"
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        run, _, status = stamp.read_text().partition(" ") if stamp.is_file() else ("", "", "")
        if run == run_id:  # built (or failed) earlier in this test run: never build twice
            log = log_file.read_text()
            assert status == "ok", "the book build failed earlier in this run:\n" + log[-6000:]
            return html, log
        stamp.unlink(missing_ok=True)
        shutil.rmtree(BUILD_DIR / "_build", ignore_errors=True)
        env = {**os.environ, "LLM_COURSE_BOOK": "1"}
        cmd = [_jupyter_book(), "build", str(ROOT), "--path-output", str(BUILD_DIR),
               "-W", "-n", "--keep-going"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        log = proc.stdout + proc.stderr
        log_file.write_text(log)
        ok = proc.returncode == 0 and "build succeeded" in log
        stamp.write_text(f"{run_id} {'ok' if ok else 'failed'}")
        assert ok, log[-6000:]
    return html, log


@pytest.fixture(scope="module")
def build() -> tuple[Path, str]:
    return build_book()


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
    if os.environ.get(PREBUILT_ENV_VAR):
        pytest.skip(f"{PREBUILT_ENV_VAR} is set: testing a given build, not building")
    # Into a folder of its own: the shared build stays as it was for the browser test.
    cmd = [_jupyter_book(), "build", str(ROOT), "--path-output", str(tmp_path), "--all"]
    env = {**os.environ, "LLM_COURSE_BOOK": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "Executed notebook" not in log, "a warm rebuild re-executed a page"
    assert "Using cached notebook" in log
    shutil.rmtree(tmp_path / "_build", ignore_errors=True)


def test_intro_has_a_clickable_course_map(html: Path):
    """The landing page's map: an accessible SVG whose 16 boxes link to the 16 chapters."""
    text = (html / "book" / "intro.html").read_text(encoding="utf-8")
    svg = re.search(r'<svg[^>]*class="llm-course-map".*?</svg>', text, re.S)
    assert svg, "no course map on the landing page"
    assert 'role="img"' in svg.group(0) and "<title" in svg.group(0) and "<desc" in svg.group(0)
    links = re.findall(r'<a href="([0-9]{2}-[^"]+\.html)" aria-label="Chapter [0-9]{2}: [^"]+"', svg.group(0))
    chapters = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]-*.md"))
    assert sorted(link[:-5] for link in links) == chapters
