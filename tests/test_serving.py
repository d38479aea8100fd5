"""The serving stack: every endpoint and validation error through FastAPI's TestClient, SSE
parsed as a client would, a real uvicorn server under 50 concurrent requests, the Gradio page
loading nothing from outside the machine, and SmolLM2 answering through the API.

Answers are checked against an independent reference: ``llm_course.generation.generate``
called directly on the same model (greedy), never against the server's own output.
"""

from __future__ import annotations

import math
import re
import threading
from urllib.parse import urljoin, urlparse

import pytest
import torch

from llm_course.generation import generate
from llm_course.serving import (Limits, Metrics, chunk_text, create_app, load_test, parse_sse, percentile,
                                serve_in_thread, sse_events, tiny_backend, validate_request)

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

LIMITS = Limits(max_prompt_tokens=40, max_tokens=24, max_concurrent=2, max_queue=64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The tiny model multiplies 32×32 matrices: one thread is fastest, and several test
    # workers share two cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def backend():
    return tiny_backend()


@pytest.fixture()
def client(backend):
    return TestClient(create_app(backend, LIMITS))


def reference(backend, prompt: str, n: int) -> str:
    """Greedy continuation computed without the server."""
    ids = torch.as_tensor(backend.codec.encode(prompt), dtype=torch.long)[None]
    return backend.codec.decode(generate(backend.model, ids, n, greedy=True)[0, ids.shape[1]:])


def error(response) -> str:
    return response.json()["error"]["message"]


# --------------------------------------------------------------------------- endpoints

def test_completion_matches_direct_generation(client, backend):
    r = client.post("/v1/completions", json={"prompt": "To be, or not", "max_tokens": 10, "temperature": 0})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "tiny-gpt"
    assert body["choices"][0]["text"] == reference(backend, "To be, or not", 10)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 13, "completion_tokens": 10, "total_tokens": 23}


def test_chat_completion_renders_the_conversation(client, backend):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    r = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 6, "temperature": 0})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    prompt = "system: Be brief.\nuser: Hi\nassistant:"
    assert body["choices"][0]["message"]["content"] == reference(backend, prompt, 6)
    assert body["usage"]["prompt_tokens"] == len(prompt)


@pytest.mark.parametrize("path,body", [
    ("/v1/completions", {"prompt": "Once upon a time"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Once upon a time"}]}),
])
def test_stream_concatenates_to_the_non_streamed_text(client, path, body):
    body = {**body, "max_tokens": 12, "temperature": 0}
    whole = client.post(path, json=body).json()
    with client.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""], "the stream must end with data: [DONE] and a blank line"
    chunks = list(parse_sse(raw.splitlines()))
    assert len(chunks) == 12
    text = whole["choices"][0].get("text") or whole["choices"][0]["message"]["content"]
    assert "".join(chunk_text(c) for c in chunks) == text


def test_sampling_with_a_seed_is_reproducible_and_differs_from_greedy(client):
    body = {"prompt": "abc", "max_tokens": 20, "temperature": 1.5, "seed": 7}
    a, b = (client.post("/v1/completions", json=body).json()["choices"][0]["text"] for _ in range(2))
    greedy = client.post("/v1/completions", json={**body, "temperature": 0}).json()["choices"][0]["text"]
    assert a == b and a != greedy


def test_health_and_metrics(client):
    assert client.get("/health").json()["status"] == "ok"
    client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 5, "temperature": 0})
    client.post("/v1/completions", json={"prompt": "", "max_tokens": 5})
    m = client.get("/metrics").json()
    assert m["requests"] == 2 and m["responses_by_status"] == {"200": 1, "400": 1} and m["errors"] == 1
    assert m["tokens_generated"] == 5 and m["tokens_per_second"] > 0
    assert 0 < m["latency_seconds"]["p50"] <= m["latency_seconds"]["p99"]


def test_streamed_tokens_are_counted_with_time_to_first_token(client):
    with client.stream("POST", "/v1/completions", json={"prompt": "hi", "max_tokens": 7, "stream": True}) as r:
        r.read()
    m = client.get("/metrics").json()
    assert m["tokens_generated"] == 7
    assert 0 < m["time_to_first_token_seconds"]["p50"] <= m["latency_seconds"]["p50"]


# --------------------------------------------------------------------------- validation errors

@pytest.mark.parametrize("body,status,message", [
    (b"{not json", 400, "not valid JSON"),
    (b'{"max_tokens": 5}', 422, "prompt: Field required"),
    (b'{"prompt": 42}', 422, "prompt: Input should be a valid string"),
    (b'{"prompt": "hi", "max_tokens": "5"}', 422, "max_tokens: Input should be a valid integer"),
    (b'{"prompt": "hi", "top_p": 0.9}', 422, "top_p: Extra inputs are not permitted"),
    (b'{"prompt": ""}', 400, "prompt is empty"),
    (b'{"prompt": "   "}', 400, "prompt is empty"),
    (b'{"prompt": "' + b"x" * 41 + b'"}', 400, "prompt is 41 tokens long, the limit is 40"),
    (b'{"prompt": "hi", "temperature": 2.01}', 400, "temperature must be in [0, 2], got 2.01"),
    (b'{"prompt": "hi", "temperature": -1}', 400, "temperature must be in [0, 2]"),
    (b'{"prompt": "hi", "max_tokens": 0}', 400, "max_tokens must be in [1, 24], got 0"),
    (b'{"prompt": "hi", "max_tokens": 25}', 400, "max_tokens must be in [1, 24], got 25"),
    (b'{"prompt": "hi", "model": "gpt-4"}', 404, "model 'gpt-4' does not exist"),
    ('{"prompt": "caf\u00e9"}'.encode(), 400, "not in the codec's vocabulary"),
])
def test_bad_requests_get_a_clear_4xx(client, body, status, message):
    r = client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert message in error(r)
    assert client.get("/metrics").json()["responses_by_status"] == {str(status): 1}


def test_every_broken_rule_is_reported_at_once(client):
    r = client.post("/v1/completions", json={"prompt": " ", "temperature": 9, "max_tokens": 99})
    assert r.status_code == 400
    assert error(r).count(";") == 2


@pytest.mark.parametrize("messages,message", [
    ([], "prompt is empty"),
    ([{"role": "user", "content": ""}], "prompt is empty"),
    ([{"role": "wizard", "content": "hi"}], "messages.0.role: Input should be 'system', 'user' or 'assistant'"),
    ([{"role": "user"}], "messages.0.content: Field required"),
])
def test_bad_chat_requests(client, messages, message):
    r = client.post("/v1/chat/completions", json={"messages": messages})
    assert r.status_code in (400, 422) and message in error(r)


def test_over_capacity_gets_429():
    """max_concurrent=1, max_queue=0: while one request holds the only slot, the next is refused."""
    started, release = threading.Event(), threading.Event()

    class Blocking:
        name = "blocking"

        def count_tokens(self, text):
            return len(text)

        def render_chat(self, messages):
            return messages[-1]["content"]

        def stream(self, prompt, max_tokens, temperature, seed=None):
            started.set()
            release.wait(10)
            yield "x"

    client = TestClient(create_app(Blocking(), Limits(max_concurrent=1, max_queue=0)))
    first = threading.Thread(target=client.post, args=("/v1/completions",), kwargs={"json": {"prompt": "a"}})
    first.start()
    assert started.wait(10)
    try:
        r = client.post("/v1/completions", json={"prompt": "b"})
        assert r.status_code == 429 and "busy" in error(r)
        assert client.get("/health").json()["inside"] == 1  # /health answers while the model works
    finally:
        release.set()
        first.join(10)
    assert client.post("/v1/completions", json={"prompt": "c"}).status_code == 200


# --------------------------------------------------------------------------- library pieces

def test_validate_request_rules():
    lim = Limits(max_prompt_tokens=10, max_tokens=5)
    assert validate_request("hi", 5, 2.0, 10, lim) == []
    assert validate_request("hi", 1, 0.0, 1, lim) == []
    assert len(validate_request("", 0, math.nan, 11, lim)) == 4
    assert validate_request("hi", 1, math.inf, 1, lim) == ["temperature must be in [0, 2], got inf"]


def test_sse_events_framing_and_laziness():
    usage = {"completion_tokens": 0}
    read = []

    def pieces():
        for p in ["a\nb", '"q"']:
            read.append(p)
            yield p

    events = sse_events(pieces(), lambda p: {"t": p}, usage)
    assert next(events) == 'data: {"t": "a\\nb"}\n\n' and len(read) == 1
    assert list(events) == ['data: {"t": "\\"q\\""}\n\n', "data: [DONE]\n\n"]
    assert usage["completion_tokens"] == 2


def test_parse_sse_needs_done():
    assert list(parse_sse(["data: {\"a\": 1}", "", ": comment", "data: [DONE]"])) == [{"a": 1}]
    with pytest.raises(ValueError, match="without data: \\[DONE\\]"):
        list(parse_sse(["data: {\"a\": 1}", ""]))


def test_percentile_nearest_rank_against_numpy():
    np = pytest.importorskip("numpy")
    values = [float(v) for v in torch.randperm(101)]
    for q in (50, 95, 99):
        assert percentile(values, q) == np.percentile(values, q, method="inverted_cdf")
    assert math.isnan(percentile([], 50))


def test_metrics_counts_only_successes_in_speed():
    m = Metrics()
    m.record(200, tokens=10, seconds=2.0)
    m.record(429)
    s = m.snapshot()
    assert s["requests"] == 2 and s["errors"] == 1 and s["tokens_per_second"] == 5.0


@pytest.mark.parametrize("field,value", [("max_tokens", 0), ("max_concurrent", -1), ("max_queue", -1),
                                         ("max_prompt_tokens", 1.5)])
def test_limits_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        Limits(**{field: value})


# --------------------------------------------------------------------------- a real server

@pytest.fixture(scope="module")
def live_server(backend):
    """uvicorn on 127.0.0.1, a free port, in a thread of this process."""
    pytest.importorskip("uvicorn")
    with serve_in_thread(create_app(backend, LIMITS)) as url:
        yield url


def test_fifty_concurrent_requests_on_a_real_server(live_server, backend):
    import httpx

    prompts = [f"request {i:02d}: " for i in range(50)]
    bodies = [{"prompt": p, "max_tokens": 8, "temperature": 0, "stream": i % 2 == 1} for i, p in enumerate(prompts)]
    result = load_test(live_server, bodies, concurrency=50)
    assert result["status"] == [200] * 50
    assert result["text"] == [reference(backend, p, 8) for p in prompts]
    assert result["tokens"] == 400
    assert httpx.get(live_server + "/health").json() == {"status": "ok", "model": "tiny-gpt", "inside": 0,
                                                         "capacity": 66}
    metrics = httpx.get(live_server + "/metrics").json()
    assert metrics["requests"] == 50 and metrics["responses_by_status"] == {"200": 50}
    assert metrics["tokens_generated"] == 400


# --------------------------------------------------------------------------- the web UI

EXTERNAL = re.compile(r"^(https?:)?//", re.I)


def _loaded_urls(html: str) -> list[str]:
    """What a browser fetches while loading a page: scripts, stylesheets, preloads, icons, images."""
    urls = re.findall(r"<script[^>]*\bsrc=[\"']([^\"']+)", html)
    urls += re.findall(r"<link[^>]*\bhref=[\"']([^\"']+)", html)
    urls += re.findall(r"<(?:img|iframe)[^>]*\bsrc=[\"']([^\"']+)", html)
    return urls


def _css_urls(css: str) -> list[str]:
    return re.findall(r"@import\s+(?:url\()?[\"']?([^\"')\s;]+)", css) + re.findall(r"url\([\"']?([^\"')]+)", css)


def test_gradio_page_loads_nothing_from_outside(backend):
    pytest.importorskip("gradio")
    client = TestClient(create_app(backend, LIMITS, ui=True))
    page = client.get("/ui/")
    assert page.status_code == 200 and "gradio" in page.text
    config = client.get("/ui/config").json()
    assert config["analytics_enabled"] is False
    assert config["stylesheets"] == [], "the theme must not pull web fonts"
    urls = _loaded_urls(page.text) + list(config["stylesheets"])
    theme = client.get("/ui/theme.css")
    assert theme.status_code == 200
    urls += _css_urls(theme.text)
    checked_css = 0
    for url in list(urls):
        if EXTERNAL.match(url) or url.startswith("data:"):
            continue
        if url.endswith(".css"):
            css = client.get(urljoin("/ui/", url))
            assert css.status_code == 200, url
            urls += _css_urls(css.text)
            checked_css += 1
    assert checked_css >= 1 and any(u.endswith(".js") for u in urls)
    external = [u for u in urls if EXTERNAL.match(u) and urlparse(u).hostname not in ("127.0.0.1", "localhost")]
    assert external == []


def test_the_scan_would_catch_a_google_font_theme():
    """A theme with a GoogleFont lists a fonts.googleapis.com stylesheet, which the scan flags."""
    gr = pytest.importorskip("gradio")
    sheets = gr.themes.Default(font=gr.themes.GoogleFont("Inter"))._stylesheets
    assert sheets and all(EXTERNAL.match(u) and "fonts.googleapis.com" in u for u in sheets)


def test_gradio_chat_streams_from_the_backend(backend):
    pytest.importorskip("gradio")
    from llm_course.serving import _ui_reply
    outputs = list(_ui_reply(backend, LIMITS)("Hello", [], 0.0, 5))
    assert outputs[-1] == reference(backend, "user: Hello\nassistant:", 5)
    assert [len(o) for o in outputs] == [1, 2, 3, 4, 5]  # one growing message per token


# --------------------------------------------------------------------------- SmolLM2

@pytest.mark.slow
def test_smollm2_answers_a_simple_question():
    pytest.importorskip("transformers")
    from llm_course.serving import SmolLM2Backend

    try:
        backend = SmolLM2Backend()
    except ImportError as err:
        pytest.skip(str(err))
    client = TestClient(create_app(backend, Limits()))
    r = client.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        "max_tokens": 16, "temperature": 0})
    assert r.status_code == 200
    assert "Paris" in r.json()["choices"][0]["message"]["content"]


def test_cli_chat_streams_from_a_real_server(backend):
    import io

    from llm_course.chat import remote_stream, turn

    pytest.importorskip("uvicorn")
    with serve_in_thread(create_app(backend, LIMITS)) as url:  # its own server: the metrics test counts
        messages = [{"role": "user", "content": "Hi"}]
        out = io.StringIO()
        answer = turn(remote_stream(url), messages, max_tokens=6, temperature=0, out=out)
        assert answer == reference(backend, "user: Hi\nassistant:", 6)
        assert out.getvalue() == answer + "\n" and messages[-1] == {"role": "assistant", "content": answer}
        with pytest.raises(RuntimeError, match="server answered 400: prompt is empty"):
            list(remote_stream(url)([{"role": "user", "content": " "}], 5, 0.0))
