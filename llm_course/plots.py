"""Figures for the course: attention heatmaps, an attention explorer, bertviz views.

Everything here works in three places: JupyterLab, Colab, and the static HTML book (which
is built offline and must load no script from a CDN).

* **plotly in the book.** Executed headless, plotly 7 emits only its JSON mime type, which
  the book cannot show. When ``LLM_COURSE_BOOK=1`` (set by ``make book``), importing this
  module makes :class:`BookHtmlRenderer` plotly's default renderer: it emits ``text/html``
  that draws with the page's ``Plotly`` (the book serves ``plotly.min.js`` itself). In
  JupyterLab and Colab the variable is unset and plotly's own defaults stay.
* **knobs that work without a kernel.** :func:`attention_explorer` uses plotly's built-in
  dropdowns (layer, head), which keep working in the static page. ipywidgets are for live
  exploration in a notebook; in the book they render from their saved state, and only
  links made with ``ipywidgets.jslink`` (not Python callbacks) still act there.
* **bertviz.** :func:`head_view` and :func:`model_view` wrap bertviz and point its
  ``require.config`` at the book's own d3 and jQuery when the page defines
  ``window.LLM_COURSE_VENDOR`` (the book does), falling back to bertviz's CDN otherwise.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.io._base_renderers import MimetypeRenderer

BOOK_ENV_VAR = "LLM_COURSE_BOOK"
BOOK_RENDERER = "llm_course_book"
VENDOR_GLOBAL = "LLM_COURSE_VENDOR"

__all__ = [
    "BookHtmlRenderer",
    "use_book_renderer",
    "attention_heatmap",
    "attention_explorer",
    "head_view",
    "model_view",
]


# --------------------------------------------------------------------------- plotly renderer
class BookHtmlRenderer(MimetypeRenderer):
    """Render a figure as ``text/html`` that uses the page's global ``Plotly`` (no CDN).

    The HTML holds the figure's data and a call to ``Plotly.newPlot``; the page must load
    plotly.js itself (the book's ``offline_assets`` extension does, on pages with figures).
    """

    def __init__(self, config: dict | None = None):
        self.config = {"responsive": True, "displaylogo": False, **(config or {})}

    def to_mimebundle(self, fig_dict: dict) -> dict[str, str]:
        height = (fig_dict.get("layout") or {}).get("height") or 450
        markup = pio.to_html(
            fig_dict,
            config=self.config,
            include_plotlyjs=False,
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=f"{int(height)}px",
            validate=False,
        )
        # Alt text for screen readers (and the book's browser test): the figure's title.
        label = html.escape(figure_label(fig_dict), quote=True)
        return {"text/html": f'<div role="figure" aria-label="{label}">{markup}</div>'}


def figure_label(fig_dict: dict) -> str:
    """A short text alternative for a figure: its title, else its axis titles."""
    layout = fig_dict.get("layout") or {}

    def text(title: Any) -> str:
        raw = title.get("text", "") if isinstance(title, dict) else str(title or "")
        return " ".join(re.sub(r"<[^>]+>", " ", raw).split())  # titles may hold <br>, <b>

    title = text(layout.get("title"))
    if title:
        return title
    axes = [text((layout.get(k) or {}).get("title")) for k in sorted(layout) if re.fullmatch(r"[xy]axis\d*", k)]
    axes = [a for a in axes if a]
    return "Interactive figure" + (f": {' vs '.join(axes[:2])}" if axes else "")


pio.renderers[BOOK_RENDERER] = BookHtmlRenderer()


def use_book_renderer() -> None:
    """Make :class:`BookHtmlRenderer` plotly's default (what ``LLM_COURSE_BOOK=1`` does)."""
    pio.renderers.default = BOOK_RENDERER


if os.environ.get(BOOK_ENV_VAR) == "1":
    use_book_renderer()


# --------------------------------------------------------------------------- input checks
def _as_numpy(x: Any, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().to("cpu", dtype=torch.float32).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency of the course
        pass
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}") from err
    return arr


def _attention_stack(attentions: Any, name: str = "attentions") -> np.ndarray:
    """(layers, heads, T_q, T_k) from a tensor/array or a per-layer tuple (HF style)."""
    if isinstance(attentions, (tuple, list)):
        if not attentions:
            raise ValueError(f"{name} is empty; expected one (1, heads, T, T) tensor per layer")
        layers = []
        for i, a in enumerate(attentions):
            a = _as_numpy(a, f"{name}[{i}]")
            if a.ndim == 4 and a.shape[0] == 1:
                a = a[0]
            if a.ndim != 3:
                raise ValueError(
                    f"{name}[{i}] must have shape (1, heads, T, T) or (heads, T, T), "
                    f"got {a.shape}"
                )
            layers.append(a)
        shapes = {a.shape for a in layers}
        if len(shapes) != 1:
            raise ValueError(f"{name}: every layer must have the same shape, got {sorted(shapes)}")
        arr = np.stack(layers)
    else:
        arr = _as_numpy(attentions, name)
        if arr.ndim == 5 and arr.shape[1] == 1:
            arr = arr[:, 0]
    if arr.ndim != 4:
        raise ValueError(
            f"{name} must have shape (layers, heads, T_q, T_k) (or a tuple of per-layer "
            f"(1, heads, T, T) tensors), got shape {arr.shape}"
        )
    if 0 in arr.shape:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    return arr


def _check_tokens(tokens: Any, n: int, name: str, what: str) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {type(tokens).__name__}")
    if len(tokens) != n:
        raise ValueError(f"{name} has {len(tokens)} tokens but the attention has {n} {what}")
    return [str(t) for t in tokens]


# --------------------------------------------------------------------------- heatmaps
def _hover_text(query_tokens: list[str], key_tokens: list[str]) -> list[list[str]]:
    # plotly renders labels as HTML: "</s>" would vanish without escaping
    return [[html.escape(f"{q!r} → {k!r}", quote=False) for k in key_tokens] for q in query_tokens]


def _token_axes(fig: go.Figure, query_tokens: list[str], key_tokens: list[str]) -> None:
    # Numeric axes with token tick labels: a categorical axis would merge repeated tokens.
    fig.update_xaxes(
        title_text="key (attended to)",
        tickmode="array",
        tickvals=list(range(len(key_tokens))),
        ticktext=[html.escape(t, quote=False) for t in key_tokens],
        tickangle=-45,
        side="top",
        showgrid=False,
        zeroline=False,
        constrain="domain",
    )
    fig.update_yaxes(
        title_text="query (attending)",
        tickmode="array",
        tickvals=list(range(len(query_tokens))),
        ticktext=[html.escape(t, quote=False) for t in query_tokens],
        autorange="reversed",
        showgrid=False,
        zeroline=False,
        scaleanchor="x",
        constrain="domain",
    )


def _heatmap(z: np.ndarray, text: list[list[str]], visible: bool = True, name: str = "") -> go.Heatmap:
    return go.Heatmap(
        z=z,
        text=text,
        name=name,
        visible=visible,
        zmin=0.0,
        zmax=1.0,
        colorscale="Blues",
        colorbar=dict(title=dict(text="weight")),
        hovertemplate="%{text}<br>weight %{z:.3f}<extra>" + name + "</extra>",
    )


def attention_heatmap(
    weights: Any,
    query_tokens: Sequence[str],
    key_tokens: Sequence[str],
    title: str | None = None,
) -> go.Figure:
    """One attention matrix as a heatmap: row = query token, column = key token.

    Args:
        weights: (T_q, T_k) attention weights (tensor or array), each row a distribution.
        query_tokens: the T_q tokens that attend (rows, top to bottom).
        key_tokens: the T_k tokens attended to (columns, left to right).
        title: optional figure title.

    Raises:
        ValueError: ``weights`` is not 2-D, or a token list does not match its dimension.
    """
    w = _as_numpy(weights, "weights")
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (T_q, T_k), got shape {w.shape}")
    q = _check_tokens(query_tokens, w.shape[0], "query_tokens", "rows (T_q)")
    k = _check_tokens(key_tokens, w.shape[1], "key_tokens", "columns (T_k)")
    fig = go.Figure(_heatmap(w, _hover_text(q, k)))
    _token_axes(fig, q, k)
    side = max(320, 40 + 28 * max(len(q), len(k)))
    fig.update_layout(
        title=dict(text=title) if title else None,
        height=min(side + 120, 900),
        margin=dict(l=80, r=20, t=120 if title else 90, b=20),
    )
    return fig


def attention_explorer(
    attentions: Any,
    tokens: Sequence[str],
    title: str | None = None,
) -> go.Figure:
    """Every layer and head of a model's self-attention, with layer and head selectors.

    The selectors are plotly dropdowns, so they work in the static book with no kernel.
    There is one heatmap trace per head plus one for the mean over heads; the *head*
    dropdown picks which trace is visible, the *layer* dropdown swaps every trace's data to
    that layer. The two are independent: changing one keeps the other's choice.

    Args:
        attentions: (layers, heads, T, T) weights, or the per-layer tuple of
            (1, heads, T, T) tensors a Hugging Face model returns with
            ``output_attentions=True``.
        tokens: the T tokens (both queries and keys).
        title: optional figure title.
    """
    a = _attention_stack(attentions)
    n_layers, n_heads, t_q, t_k = a.shape
    if t_q != t_k:
        raise ValueError(f"attentions must be self-attention (T_q == T_k), got shape {a.shape}")
    toks = _check_tokens(tokens, t_q, "tokens", "positions (T)")
    text = _hover_text(toks, toks)
    mean = a.mean(axis=1)

    def layer_z(layer: int) -> list[list]:
        # Plain nested lists: restyle arguments are passed to plotly.js as they are.
        mats = [a[layer, h] for h in range(n_heads)] + [mean[layer]]
        return [np.round(m, 4).tolist() for m in mats]

    names = [f"head {h + 1}" for h in range(n_heads)] + ["mean of heads"]
    fig = go.Figure(
        [_heatmap(z, text, visible=(i == 0), name=names[i]) for i, z in enumerate(layer_z(0))]
    )
    n_traces = n_heads + 1
    layer_buttons = [
        dict(label=f"layer {l + 1}", method="restyle", args=[{"z": layer_z(l)}, list(range(n_traces))])
        for l in range(n_layers)
    ]
    head_buttons = [
        dict(label=names[i], method="restyle", args=[{"visible": [j == i for j in range(n_traces)]}])
        for i in range(n_traces)
    ]
    _token_axes(fig, toks, toks)
    # The menus sit in the top margin, above the key tokens and the x-axis title.
    top, bottom = (200 if title else 170), 20
    height = min(max(360, 40 + 28 * t_q) + top, 1000)
    menu_y = 1 + (top - (70 if title else 40)) / (height - top - bottom)
    menu = dict(type="dropdown", direction="down", showactive=True, y=menu_y,
                yanchor="bottom", xanchor="left")
    fig.update_layout(
        updatemenus=[
            dict(menu, buttons=layer_buttons, active=0, x=0.0, name="layer"),
            dict(menu, buttons=head_buttons, active=0, x=0.22, name="head"),
        ],
        title=dict(text=title, y=0.98, yanchor="top") if title else None,
        height=height,
        margin=dict(l=90, r=20, t=top, b=bottom),
    )
    return fig


# --------------------------------------------------------------------------- bertviz
_CDN_REQUIRE = "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js"
_REQUIRE_TAG = re.compile(r'<script src="https://[^"]*require(\.min)?\.js"></script>')
_CDN_PATH = re.compile(r"'(https://cdnjs\.cloudflare\.com/ajax/libs/(d3|jquery)/[^']+)'")
_LOCAL_PATH = {"d3": "d3/d3.min", "jquery": "jquery/jquery.min"}
_SCRIPT = re.compile(r'<script type="text/javascript">\n(.*)\n</script>', re.S)


def _offline_bertviz(html: str) -> str:
    """Rewrite bertviz's HTML so it loads require.js, d3 and jQuery from the book if it can.

    bertviz's HTML is ``<script src=CDN require.js>`` + a div + a script that calls
    ``require.config({paths: {d3: CDN, jquery: CDN}})``. The result loads require.js only
    if the page lacks it, from ``window.LLM_COURSE_VENDOR`` when the page defines it (the
    book) and from the CDN otherwise (JupyterLab, Colab); d3 and jQuery likewise.
    """
    html, n_tags = _REQUIRE_TAG.subn("", html)
    match = _SCRIPT.search(html)
    if n_tags != 1 or match is None:
        raise RuntimeError("unexpected bertviz HTML; llm_course.plots needs updating for this bertviz")
    js, n_paths = _CDN_PATH.subn(
        lambda m: f"(V ? V + {json.dumps(_LOCAL_PATH[m.group(2)])} : {json.dumps(m.group(1))})",
        match.group(1),
    )
    if n_paths != 2:
        raise RuntimeError("unexpected bertviz require.config; llm_course.plots needs updating")
    loader = f"""
<script type="text/javascript">
(function () {{
  var V = window.{VENDOR_GLOBAL};  // the book's vendor folder; undefined in Jupyter/Colab
  function run() {{
{js}
  }}
  if (window.requirejs) {{ run(); return; }}
  if (!window.__llmCourseRequire) {{
    window.__llmCourseRequire = new Promise(function (resolve, reject) {{
      var s = document.createElement("script");
      s.src = V ? V + "requirejs/require.js" : {json.dumps(_CDN_REQUIRE)};
      s.onload = resolve;
      s.onerror = reject;
      document.head.appendChild(s);
    }});
  }}
  window.__llmCourseRequire.then(run);
}})();
</script>
"""
    body = html[: match.start()] + loader + html[match.end():]
    return f'<div class="llm-course-bertviz">{body}</div>'


def _bertviz_inputs(attentions: Any, tokens: Sequence[str]) -> tuple[list, list[str]]:
    import torch

    a = _attention_stack(attentions)
    if a.shape[2] != a.shape[3]:
        raise ValueError(f"attentions must be self-attention (T_q == T_k), got shape {a.shape}")
    toks = _check_tokens(tokens, a.shape[2], "tokens", "positions (T)")
    return [torch.from_numpy(a[l][None]) for l in range(a.shape[0])], toks


def head_view(attentions: Any, tokens: Sequence[str], **kwargs: Any):
    """bertviz's head view (one layer, all heads, lines between tokens), offline-ready.

    ``attentions`` as in :func:`attention_explorer`; other keyword arguments go to
    ``bertviz.head_view`` (e.g. ``layer=``, ``heads=``, ``sentence_b_start=``).
    Returns an ``IPython.display.HTML``; put it last in a cell or pass it to ``display``.
    """
    from bertviz import head_view as _head_view
    from IPython.display import HTML

    att, toks = _bertviz_inputs(attentions, tokens)
    out = _head_view(attention=att, tokens=toks, html_action="return", **kwargs)
    return HTML(_offline_bertviz(out.data))


def model_view(attentions: Any, tokens: Sequence[str], **kwargs: Any):
    """bertviz's model view (a grid of every layer × head), offline-ready.

    Keyword arguments go to ``bertviz.model_view`` (e.g. ``include_layers=``,
    ``include_heads=``, ``display_mode="light"``).
    """
    from bertviz import model_view as _model_view
    from IPython.display import HTML

    att, toks = _bertviz_inputs(attentions, tokens)
    out = _model_view(attention=att, tokens=toks, html_action="return", **kwargs)
    return HTML(_offline_bertviz(out.data))
