"""Open every page of the built book in headless Chromium, the way a reader does.

Slow: uses the quick-mode build of ``tests/test_book_build.py`` (``build_book()``: one build
per test run, shared). The site is served on 127.0.0.1 by ``http.server`` in a thread and
every page is opened in one browser, in sequence. A page fails on:

* any failed request or HTTP status >= 400, and any request that leaves 127.0.0.1;
* any console error or uncaught page error;
* a plotly figure that has not drawn (no ``.main-svg``) or has no text alternative;
* an ipywidget whose view did not render (only its saved state, no widget DOM);
* a bertviz view with no SVG; math that MathJax left untypeset, or raw ``$$`` / ``\\(``;
* an exercise hint (dropdown) that is open when the page loads;
* an image without alt text;
* a link into the site whose page or ``#anchor`` does not exist.

Pages: every ``.html`` under the build except ``_static/``, ``_vendor/``, ``_sources/``,
``genindex.html``, ``search.html`` (tested on its own, with a query) and the root
``index.html`` (a redirect to ``book/intro.html``). A full-page screenshot of each goes to
``_build/screenshots/`` (``LLM_COURSE_SCREENSHOTS`` overrides) for a human to look at.
Needs Chromium at ``/usr/bin/chromium`` (Debian's ``chromium`` package); skipped without it.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.test_book_build import ROOT, build_book

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium itself makes requests (refused offline).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIP_DIRS = ("_static", "_vendor", "_sources")
SKIP_PAGES = ("genindex.html", "search.html", "index.html")
SCREENSHOTS = Path(os.environ.get("LLM_COURSE_SCREENSHOTS", ROOT / "_build" / "screenshots"))
REPO = "github.com/llm-foundations/llm-foundations"
RENDER_TIMEOUT_MS = 30_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]

# Everything a page is checked for, measured in the page after it has rendered.
INSPECT = r"""() => {
  const text = el => (el.textContent || "").trim().slice(0, 80);
  const plots = [...document.querySelectorAll(".plotly-graph-div")];
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const bertviz = [...document.querySelectorAll(".llm-course-bertviz")];
  const maths = [...document.querySelectorAll("span.math, div.math")];
  const hints = [...document.querySelectorAll(".admonition.dropdown, details.sd-dropdown")];
  const article = document.querySelector("article") || document.body;
  const prose = article.cloneNode(true);
  prose.querySelectorAll("pre, code, script, style, mjx-container, .highlight, textarea").forEach(e => e.remove());
  const raw = prose.textContent;
  return {
    plots: plots.length,
    plots_undrawn: plots.filter(p => !p.querySelector(".main-svg")).map(p => p.id),
    plots_unlabelled: plots.filter(p => {
      const f = p.closest("[aria-label]"); return !f || !f.getAttribute("aria-label").trim();
    }).map(p => p.id),
    widgets: views.length,
    widgets_unrendered: views.filter(s => {
      const area = s.parentElement.querySelector(".widget-subarea");
      return !(area && area.querySelector(".lm-Widget, .jupyter-widgets"));
    }).map(s => JSON.parse(s.textContent).model_id),
    bertviz: bertviz.length,
    bertviz_undrawn: bertviz.filter(b => !b.querySelector("svg")).map(text),
    math: maths.length,
    math_unrendered: maths.filter(m => !m.querySelector("mjx-container")).map(text),
    raw_math: ["$$", "\\(", "\\["].filter(t => raw.includes(t)),
    hints: hints.length,
    hints_shown: hints.filter(d => d.tagName === "DETAILS" ? d.open : !d.classList.contains("toggle-hidden"))
      .map(text),
    images_without_alt: [...document.images].filter(i => !(i.getAttribute("alt") || "").trim())
      .map(i => i.getAttribute("src")),
    links: [...document.querySelectorAll("a[href]")].map(a => new URL(a.getAttribute("href"), document.baseURI).href),
    ids: [...document.querySelectorAll("[id], a[name]")].map(e => e.id || e.getAttribute("name")),
  };
}"""

# Resolves when every figure, widget view and bertviz view has drawn, and MathJax is done.
RENDERED = r"""() => {
  const done = sel => [...document.querySelectorAll(sel)];
  const plots = done(".plotly-graph-div").every(p => p.querySelector(".main-svg"));
  const widgets = done('script[type="application/vnd.jupyter.widget-view+json"]').every(s => {
    const area = s.parentElement.querySelector(".widget-subarea");
    return area && area.querySelector(".lm-Widget, .jupyter-widgets");
  });
  const bertviz = done(".llm-course-bertviz").every(b => b.querySelector("svg"));
  const maths = done("span.math, div.math").every(m => m.querySelector("mjx-container"));
  return plots && widgets && bertviz && maths;
}"""


def pages(html: Path) -> list[Path]:
    return [
        p for p in sorted(html.rglob("*.html"))
        if p.relative_to(html).parts[0] not in SKIP_DIRS and p.relative_to(html).as_posix() not in SKIP_PAGES
    ]


@functools.lru_cache(maxsize=None)
def ids_in(page: Path) -> frozenset[str]:
    text = page.read_text(encoding="utf-8")
    return frozenset(re.findall(r'\b(?:id|name)="([^"]+)"', text))


@pytest.fixture(scope="module")
def site():
    """(html folder, base URL) of the built book, served on 127.0.0.1."""
    html, _ = build_book()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # one line per request would drown pytest's output
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield html, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watch:
    """Collects what a page did wrong on the network and in its console."""

    def __init__(self, page, base: str):
        self.problems: list[str] = []
        origin = base.rstrip("/")

        def on_request(req):
            if not req.url.startswith((origin + "/", "data:", "blob:", "about:")):
                self.problems.append(f"request leaves the site: {req.url}")

        page.on("request", on_request)
        page.on("requestfailed", lambda req: self.problems.append(f"request failed: {req.url} ({req.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console error: {m.text}"))
        page.on("pageerror", lambda err: self.problems.append(f"page error: {err}"))


def check_links(found: dict, page: Path, html: Path, base: str) -> list[str]:
    bad = []
    for url in sorted(set(found["links"])):
        parts = urlsplit(url)
        if not url.startswith(base):
            continue  # another site (GitHub, Colab, …): a link, not a request; not followed
        path = unquote(parts.path)[len(urlsplit(base).path):]
        target = html / (path or "index.html")
        if path.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            bad.append(f"broken link: {url}")
            continue
        if parts.fragment and target.suffix == ".html":
            ids = set(found["ids"]) if target == page else ids_in(target)
            if unquote(parts.fragment) not in ids:
                bad.append(f"broken anchor: {url}")
    return bad


def test_every_page_renders_in_a_browser(site, browser):
    html, base = site
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    report, counts = {}, {"pages": 0, "plots": 0, "widgets": 0, "bertviz": 0, "math": 0, "hints": 0}
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    for path in pages(html):
        rel = path.relative_to(html).as_posix()
        page = context.new_page()
        watch = Watch(page, base)
        page.goto(base + rel, wait_until="load", timeout=60_000)
        problems = watch.problems
        try:
            page.wait_for_function(RENDERED, timeout=RENDER_TIMEOUT_MS, polling=250)
        except Exception:  # reported in detail by INSPECT below
            problems.append(f"not everything rendered within {RENDER_TIMEOUT_MS / 1000:.0f} s")
        found = page.evaluate(INSPECT)
        for key in ("plots_undrawn", "plots_unlabelled", "widgets_unrendered", "bertviz_undrawn",
                    "math_unrendered", "raw_math", "hints_shown", "images_without_alt"):
            if found[key]:
                problems.append(f"{key}: {found[key][:5]}")
        problems += check_links(found, path, html, base)
        page.screenshot(path=str(SCREENSHOTS / (rel.replace("/", "__")[:-5] + ".png")), full_page=True)
        page.close()
        counts["pages"] += 1
        for key in ("plots", "widgets", "bertviz", "math", "hints"):
            counts[key] += found[key]
        if problems:
            report[rel] = problems
    context.close()
    print(f"\nbrowser: {counts}; screenshots in {SCREENSHOTS}")
    assert not report, "\n".join(f"{p}:\n  " + "\n  ".join(v[:12]) for p, v in report.items())
    assert counts["pages"] >= 34, counts  # intro, 16 chapters, 16 labs, glossary
    assert all(counts.values()), counts  # each kind of thing was seen at least once


def test_search_works_offline(site, browser):
    html, base = site
    page = browser.new_page()
    watch = Watch(page, base)
    page.goto(base + "search.html?q=attention", wait_until="load")
    page.wait_for_selector("ul.search li", timeout=RENDER_TIMEOUT_MS)
    hits = page.locator("ul.search li a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    page.close()
    assert not watch.problems, watch.problems
    assert any("06-attention" in h for h in hits), hits[:10]


def test_launch_and_download_buttons(site, browser):
    """Lab pages open in Colab and JupyterHub; every page offers its source for download."""
    html, base = site
    page = browser.new_page()
    for rel in ("labs/06-attention/lab06-attention.html", "book/06-attention.html"):
        page.goto(base + rel, wait_until="load")
        hrefs = page.locator("a[href]").evaluate_all("els => els.map(e => e.href)")
        downloads = [h for h in hrefs if "/_sources/" in h]
        assert downloads, f"{rel}: no download link"
        for h in downloads:
            assert (html / unquote(urlsplit(h).path).lstrip("/")).is_file(), h
        hub = [h for h in hrefs if "/hub/user-redirect/git-pull" in h]
        assert hub and REPO in unquote(hub[0]), f"{rel}: no JupyterHub button"
        colab = [h for h in hrefs if h.startswith("https://colab.research.google.com/github/")]
        if rel.startswith("labs/"):
            assert colab == [f"https://colab.research.google.com/github/{REPO.split('/', 1)[1]}/blob/main/labs/06-attention/lab06-attention.ipynb"], colab
        else:  # Colab opens notebooks only; the chapter pages are MyST markdown
            assert not colab, colab
    page.close()
