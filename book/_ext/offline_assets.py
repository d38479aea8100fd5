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

import hashlib
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
PLOTLY_MARKER = "plotly-graph-div"
BERTVIZ_MARKER = "llm-course-bertviz"

WIDGET_STATE_TYPE = "application/vnd.jupyter.widget-state+json"

# ipywidgets typesets labels with the MathJax 2 API (MathJax.Hub.Queue); Sphinx loads
# MathJax 3, which has no Hub, so every widget would throw in the console. This gives any
# object assigned to window.MathJax a Hub whose Queue typesets with MathJax 3.
MATHJAX_HUB_SHIM = """(function () {
  function typeset(el, tries) {
    var M = window.MathJax;
    if (M && M.typesetPromise) { M.typesetPromise([el]).catch(function () {}); }
    else if (tries > 0) { setTimeout(function () { typeset(el, tries - 1); }, 200); }
  }
  function addHub(mj) {
    if (mj && typeof mj === "object" && !mj.Hub) {
      mj.Hub = { Queue: function () {
        for (var i = 0; i < arguments.length; i++) {
          var a = arguments[i];
          if (Array.isArray(a) && a[0] === "Typeset" && a[2]) { typeset(a[2], 50); }
        }
      } };
    }
    return mj;
  }
  var current = addHub(window.MathJax);
  Object.defineProperty(window, "MathJax", { configurable: true, enumerable: true,
    get: function () { return current; }, set: function (v) { current = addHub(v); } });
})();"""

# The widget manager's webpack bundle loads its Font Awesome fonts from the folder require.js
# resolves its AMD module id ("@jupyter-widgets/html-manager/dist/libembed-amd") to: by
# default the page's own folder (book/@jupyter-widgets/..., a 404). A global `require`
# defined before require.js loads is its initial config: map that id to the vendored copy.
REQUIRE_WIDGETS_PATH = (
    'var require = {paths: {"@jupyter-widgets/html-manager/dist": '
    'window.LLM_COURSE_VENDOR + "html-manager"}};'
)

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


def _anchor_patterns(patterns: list[str], root: Path, max_depth: int = 8) -> list[str]:
    """Execution-exclude patterns that mean what they say, relative to the book root.

    myst-nb tests ``PurePosixPath(absolute_path).match(pattern)``: a relative pattern is
    matched from the right and ``**`` means one folder, so ``labs/**`` would not exclude
    ``labs/06-attention/lab.ipynb``. Each relative pattern becomes absolute patterns
    under ``root``, with ``**`` expanded to 0..max_depth folders.
    """
    out: list[str] = []
    for pattern in patterns:
        if pattern.startswith("/"):
            out.append(pattern)
            continue
        head, sep, tail = pattern.partition("**")
        if not sep:
            out.append(f"{root.as_posix()}/{pattern}")
            continue
        tail = tail.lstrip("/") or "*"
        for depth in range(max_depth + 1):
            out.append(f"{root.as_posix()}/{head}{'*/' * depth}{tail}")
    return list(dict.fromkeys(out))


def _reset_if_library_changed(cache: Path, library: Path, environment: Path) -> None:
    """Empty the execution cache when any ``llm_course`` source changed since it was filled.

    jupyter-cache keys on a page's own code, not on the library the page calls: without
    this, a library change would leave the book showing outputs of the old code. Sphinx's
    saved environment is dropped too, so that every page is read (and executed) again.
    """
    sources = sorted(library.rglob("*.py"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    stamp = cache.with_name(cache.name + ".llm_course.sha256")
    if stamp.exists() and stamp.read_text() == digest:
        return
    shutil.rmtree(cache, ignore_errors=True)
    environment.unlink(missing_ok=True)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest)


def configure(app: Sphinx, config: Any) -> None:
    # A relative execution cache is relative to the book, not to the caller's directory,
    # so `make book` and the tests (which build elsewhere) share one cache. The cache keys on
    # a page's code only, so quick-mode outputs (LLM_COURSE_QUICK=1: tests) get their own
    # cache; otherwise `make book` after `make test` would publish the shrunken figures.
    cache = config.nb_execution_cache_path
    if cache and not Path(cache).is_absolute():
        cache = Path(app.confdir) / cache
    if cache and os.environ.get("LLM_COURSE_QUICK") == "1":
        cache = Path(cache).with_name(Path(cache).name + "-quick")
    if cache:
        _reset_if_library_changed(Path(cache), Path(app.confdir) / "llm_course",
                                  Path(app.doctreedir) / "environment.pickle")
        config.nb_execution_cache_path = str(cache)
    config.nb_execution_excludepatterns = _anchor_patterns(
        config.nb_execution_excludepatterns, Path(app.confdir)
    )
    config.mathjax_path = _FROM_STATIC + MATHJAX_JS
    # require.js first, then the widget manager (same as myst-nb's default, but local).
    # Third-party widget modules (none are used) would be looked up under /_vendor/npm/
    # on this site instead of jsDelivr, so even they never leave the site.
    config.nb_ipywidgets_js = {
        _FROM_STATIC + REQUIRE_JS: {},
        _FROM_STATIC + WIDGETS_JS: {"data-jupyter-widgets-cdn": f"/{VENDOR_DIR}/npm/"},
    }
    os.environ.setdefault("LLM_COURSE_BOOK", "1")


def _dedupe(scripts: list) -> None:
    """Drop repeated inline/linked scripts (Jupyter Book 1 adds sphinx-thebe's and
    sphinx-togglebutton's config twice: "Identifier 'THEBE_JS_URL' has already been
    declared" in the console of every page). Only this page's list is changed."""
    seen: set = set()
    unique = []
    for js in scripts:
        attrs = getattr(js, "attributes", {}) or {}
        name = str(getattr(js, "filename", js) or "")
        key = (name, tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def _colab_only_for_notebooks(context: dict[str, Any]) -> None:
    """Colab opens only .ipynb files: drop its launch button on MyST (.md) chapter pages.
    JupyterHub stays (JupyterLab + jupytext opens .md pages as notebooks)."""
    if context.get("page_source_suffix") == ".ipynb":
        return
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            group["buttons"] = [b for b in group.get("buttons", []) if b.get("text") != "Colab"]
    context["header_buttons"] = [
        g for g in context.get("header_buttons", [])
        if g.get("label") != "launch-buttons" or g.get("buttons")
    ]


def add_page_assets(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    if app.builder.format != "html":
        return
    # builder.add_js_file (as sphinx.ext.mathjax does): this page only, not the registry.
    add_js = app.builder.add_js_file
    vendor_url = context["pathto"](f"{VENDOR_DIR}/", 1)
    add_js(
        None,
        body=f"window.LLM_COURSE_VENDOR = new URL({json.dumps(vendor_url)}, document.baseURI).href;",
        priority=1,
    )
    scripts = context.get("script_files", [])
    _dedupe(scripts)
    has_widgets = any(
        getattr(js, "attributes", {}).get("type") == WIDGET_STATE_TYPE for js in scripts
    )
    if has_widgets:
        add_js(None, body=MATHJAX_HUB_SHIM, priority=1)
        add_js(None, body=REQUIRE_WIDGETS_PATH, priority=2)
    _colab_only_for_notebooks(context)
    body = context.get("body", "")
    # Widget state (e.g. an Output widget holding a figure) is an inline script in <head>.
    inline = "".join(
        str(getattr(js, "attributes", {}).get("body", "")) for js in context.get("script_files", [])
    )
    if PLOTLY_MARKER in body or PLOTLY_MARKER in inline:
        add_js(_FROM_STATIC + PLOTLY_JS, priority=400)
    if BERTVIZ_MARKER in body:
        # Same entry as myst-nb's widget loader, so Sphinx adds require.js at most once.
        add_js(_FROM_STATIC + REQUIRE_JS, priority=500)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("offline_assets_node_modules", "", "env")
    # After myst-nb's own config handlers (default priority 500).
    app.connect("config-inited", configure, priority=900)
    app.connect("builder-inited", check_sources)
    # After myst-nb's handler, which adds the widget state and loaders for the page.
    app.connect("html-page-context", add_page_assets, priority=600)
    app.connect("build-finished", copy_assets)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
