"""Serve every script the book needs from the site itself (no CDN), so it works offline.

Out of the box four things in a Jupyter Book page load JavaScript from CDNs and are blank
offline: MathJax, ipywidgets (require.js + @jupyter-widgets/html-manager), plotly figures
and bertviz (require.js + d3 + jQuery). This extension:

* copies the files from ``node_modules/`` (installed by ``npm ci`` from the committed
  ``package-lock.json``) and ``plotly.min.js`` from the plotly Python package into
  ``<outdir>/_vendor/`` when the build finishes. Not a source ``_static/`` folder: Jupyter
  Book would add every script there to every page;
* points ``mathjax_path`` and myst-nb's ``nb_ipywidgets_js`` at those copies;
* per page: adds ``plotly.min.js`` only where a plotly figure is, ``require.js`` where a
  bertviz view is, and on every page a one-line global ``window.LLM_COURSE_VENDOR`` (the
  absolute URL of ``_vendor/``) that :mod:`llm_course.plots` uses to point bertviz's
  ``require.config`` at the local d3 and jQuery;
* sets ``LLM_COURSE_BOOK=1`` for the kernels that execute the pages (if not already set),
  which makes :mod:`llm_course.plots` render plotly figures as HTML that uses the page's
  ``Plotly``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)

VENDOR_DIR = "_vendor"
# Sphinx prefixes relative script paths with "_static/"; step out of it to _vendor/.
_FROM_STATIC = f"../{VENDOR_DIR}/"

REQUIRE_JS = "requirejs/require.js"
WIDGETS_JS = "html-manager/embed-amd.js"
MATHJAX_JS = "mathjax/tex-mml-chtml.js"
PLOTLY_JS = "plotly/plotly.min.js"

# Markers that the rendered body of a page contains when it needs a library.
PLOTLY_MARKER = 'class="plotly-graph-div"'
BERTVIZ_MARKER = "llm-course-bertviz"

_FONT_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")


def _sources(node_modules: Path) -> list[tuple[Path, str]]:
    """(source file or folder, destination under _vendor/) for every vendored asset."""
    import plotly

    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    widgets = node_modules / "@jupyter-widgets" / "html-manager" / "dist"
    items: list[tuple[Path, str]] = [
        (node_modules / "requirejs" / "require.js", REQUIRE_JS),
        (widgets / "embed-amd.js", WIDGETS_JS),
        # MathJax loads its fonts and TeX extensions relative to its own script.
        (node_modules / "mathjax" / "es5", "mathjax"),
        # bertviz asks require.js for "d3" and "jquery" (see llm_course.plots).
        (node_modules / "d3" / "dist" / "d3.min.js", "d3/d3.min.js"),
        (node_modules / "jquery" / "dist" / "jquery.min.js", "jquery/jquery.min.js"),
        (plotly_js, PLOTLY_JS),
    ]
    # The widget CSS bundles Font Awesome; webpack loads the fonts next to embed-amd.js.
    if widgets.is_dir():
        items += [
            (f, f"html-manager/{f.name}") for f in sorted(widgets.iterdir())
            if f.suffix in _FONT_SUFFIXES
        ]
    return items


def _copy_if_changed(src: Path, dst: Path) -> None:
    if dst.exists():
        s, d = src.stat(), dst.stat()
        if s.st_size == d.st_size and int(s.st_mtime) == int(d.st_mtime):
            return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _node_modules(app: Sphinx) -> Path:
    configured = app.config.offline_assets_node_modules
    root = Path(configured) if configured else Path(app.confdir) / "node_modules"
    return root if root.is_absolute() else Path(app.confdir) / root


def check_sources(app: Sphinx) -> None:
    """Fail early, with the fix, if `npm ci` has not been run."""
    if app.builder.format != "html":
        return
    missing = [str(src) for src, _ in _sources(_node_modules(app)) if not src.exists()]
    if missing:
        raise ExtensionError(
            "offline_assets: vendored JavaScript is missing (run `npm ci` in the repository "
            "root, or `make book`): " + ", ".join(missing)
        )


def copy_assets(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / VENDOR_DIR
    for src, dest in _sources(_node_modules(app)):
        if src.is_dir():
            for f in src.rglob("*"):
                if f.is_file():
                    _copy_if_changed(f, out / dest / f.relative_to(src))
        else:
            _copy_if_changed(src, out / dest)


def configure(app: Sphinx, config: Any) -> None:
    config.mathjax_path = _FROM_STATIC + MATHJAX_JS
    # require.js first, then the widget manager (same as myst-nb's default, but local).
    # Third-party widget modules (none are used) would be looked up under /_vendor/npm/
    # on this site instead of jsDelivr, so even they never leave the site.
    config.nb_ipywidgets_js = {
        _FROM_STATIC + REQUIRE_JS: {},
        _FROM_STATIC + WIDGETS_JS: {"data-jupyter-widgets-cdn": f"/{VENDOR_DIR}/npm/"},
    }
    os.environ.setdefault("LLM_COURSE_BOOK", "1")


def add_page_assets(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    if app.builder.format != "html":
        return
    vendor_url = context["pathto"](f"{VENDOR_DIR}/", 1)
    app.add_js_file(
        None,
        body=f"window.LLM_COURSE_VENDOR = new URL({json.dumps(vendor_url)}, document.baseURI).href;",
        priority=1,
    )
    body = context.get("body", "")
    if PLOTLY_MARKER in body:
        app.add_js_file(_FROM_STATIC + PLOTLY_JS, priority=400)
    if BERTVIZ_MARKER in body:
        # Same entry as myst-nb's widget loader, so Sphinx adds require.js at most once.
        app.add_js_file(_FROM_STATIC + REQUIRE_JS, priority=500)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("offline_assets_node_modules", "", "env")
    # After myst-nb's own config handlers (default priority 500).
    app.connect("config-inited", configure, priority=900)
    app.connect("builder-inited", check_sources)
    app.connect("html-page-context", add_page_assets)
    app.connect("build-finished", copy_assets)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
