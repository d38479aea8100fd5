"""Serving a language model: an OpenAI-style HTTP API, token streaming, limits, metrics, a web UI.

The pieces, in the order a request meets them:

* ``create_app(backend, limits)`` builds a FastAPI app with ``POST /v1/completions`` and
  ``POST /v1/chat/completions`` (request and response JSON shaped like OpenAI's, so existing
  clients work), ``GET /health``, ``GET /metrics`` and, with ``ui=True``, a Gradio chat page
  at ``/ui`` that loads nothing from outside the machine.
* pydantic checks the *shape* of the JSON (types, required fields, no unknown fields);
  ``validate_request`` checks the *rules* that depend on the model and the limits (empty or
  too long prompt, temperature outside [0, 2], max_tokens outside [1, limit]).
* a gate admits at most ``max_concurrent + max_queue`` requests; beyond that the answer is
  429 at once (a client can retry later) instead of an ever-growing queue whose latency
  nobody wants. At most ``max_concurrent`` generations run at a time, each in a worker
  thread, so the event loop keeps answering ``/health`` while the model computes.
* ``stream: true`` turns the token iterator into server-sent events (``sse_events``): one
  ``data: {json}`` event per token, a blank line after each, ``data: [DONE]`` at the end.

A model plugs in through the small ``Backend`` protocol; ``GPTBackend`` serves our
``DecoderOnly`` with a character codec (the chapter-09 model), ``SmolLM2Backend`` the
pretrained SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from llm_course.generation import generate, next_token

# ----------------------------------------------------------------------------- the model side


class Backend(Protocol):
    """What the server needs from a model. ``stream`` yields one text piece per generated
    token (a piece may be "" while a multi-byte character is still incomplete) and stops early
    at the model's end-of-text token."""

    name: str

    def count_tokens(self, text: str) -> int: ...

    def render_chat(self, messages: list[dict[str, str]]) -> str: ...

    def stream(self, prompt: str, max_tokens: int, temperature: float,
               seed: int | None = None) -> Iterator[str]: ...


def _sampling(temperature: float, seed: int | None) -> dict:
    """temperature 0 means greedy decoding (the limit of T → 0: all mass on the argmax)."""
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return dict(greedy=temperature == 0, temperature=temperature or 1.0, generator=generator)


class GPTBackend:
    """Our ``DecoderOnly`` with a character codec (``llm_course.textdata.CharCodec``)."""

    def __init__(self, model: nn.Module, codec: Any, name: str = "gpt"):
        self.model, self.codec, self.name = model.eval(), codec, name

    def count_tokens(self, text: str) -> int:
        return len(self.codec.encode(text))  # raises ValueError on a character it does not know

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    def stream(self, prompt: str, max_tokens: int, temperature: float,
               seed: int | None = None) -> Iterator[str]:
        ids = torch.as_tensor(self.codec.encode(prompt), dtype=torch.long)[None]
        options = _sampling(temperature, seed)
        for _ in range(max_tokens):  # one token per call, so each can be sent as soon as it exists
            ids = generate(self.model, ids, 1, options["temperature"], generator=options["generator"],
                           greedy=options["greedy"])
            yield self.codec.decode(ids[0, -1:])


class SmolLM2Backend:
    """SmolLM2-135M-Instruct (``llm_course.pretrained.load_smollm2``), with a KV cache."""

    def __init__(self, name: str = "smollm2-135m-instruct"):
        from llm_course.pretrained import load_smollm2

        self.model, self.tokenizer = load_smollm2()
        self.name = name
        self.stop_ids = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|endoftext|>")}

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text).input_ids)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    @torch.no_grad()
    def stream(self, prompt: str, max_tokens: int, temperature: float,
               seed: int | None = None) -> Iterator[str]:
        x = self.tokenizer(prompt, return_tensors="pt").input_ids
        options, cache, new, shown = _sampling(temperature, seed), None, [], ""
        for _ in range(max_tokens):
            # After the first step only the newest token goes in; the cache holds every
            # earlier position's keys and values (chapter 12).
            out = self.model(input_ids=x, cache=cache, use_cache=True)
            cache, x = out.cache, next_token(out.logits[:, -1, :], **options)
            if x.item() in self.stop_ids:
                return
            new.append(x.item())
            # Decode everything so far and send the new suffix: a byte-level BPE token can end
            # inside a UTF-8 character, which decodes as U+FFFD until its last byte arrives.
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            piece = "" if text.endswith("\ufffd") else text[len(shown):]
            shown += piece
            yield piece


def tiny_backend(seed: int = 0) -> GPTBackend:
    """An untrained 2-layer ``DecoderOnly`` over printable ASCII: deterministic under greedy
    decoding and fast (≈ 1 ms a token), for tests and load tests of the server itself."""
    from llm_course.textdata import CharCodec
    from llm_course.transformer import DecoderOnly, ModelConfig

    codec = CharCodec([chr(c) for c in range(32, 127)] + ["\n"])
    torch.manual_seed(seed)
    model = DecoderOnly(ModelConfig(vocab_size=codec.vocab_size, d_model=32, num_heads=2, num_layers=2, max_len=128))
    return GPTBackend(model, codec, name="tiny-gpt")


# ----------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class Limits:
    """What one server accepts. max_concurrent generations run at once; up to max_queue more
    requests wait for a slot; any request beyond those gets 429 at once."""

    max_prompt_tokens: int = 512
    max_tokens: int = 256
    max_concurrent: int = 2
    max_queue: int = 64

    def __post_init__(self):
        for name in ("max_prompt_tokens", "max_tokens", "max_concurrent"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if not isinstance(self.max_queue, int) or self.max_queue < 0:
            raise ValueError(f"max_queue must be an int ≥ 0, got {self.max_queue!r}")


def validate_request(prompt: str, max_tokens: int, temperature: float, n_prompt_tokens: int,
                     limits: Limits) -> list[str]:
    """Every rule the request breaks, one readable message each (naming the field); [] if none.

    Rules: the prompt is not empty or only whitespace; it is at most
    ``limits.max_prompt_tokens`` tokens long; temperature is in [0, 2] (NaN is not);
    max_tokens is in [1, limits.max_tokens]. Every broken rule is reported, not only the first,
    so a client fixes its request in one round trip.
    """
    problems = []
    if not prompt.strip():
        problems.append("prompt is empty")
    if n_prompt_tokens > limits.max_prompt_tokens:
        problems.append(f"prompt is {n_prompt_tokens} tokens long, the limit is {limits.max_prompt_tokens}")
    if not 0 <= temperature <= 2:  # also False for NaN, which no comparison accepts
        problems.append(f"temperature must be in [0, 2], got {temperature}")
    if not 1 <= max_tokens <= limits.max_tokens:
        problems.append(f"max_tokens must be in [1, {limits.max_tokens}], got {max_tokens}")
    return problems


def sse_events(pieces: Iterable[str], make_chunk: Callable[[str], dict],
               usage: dict[str, int]) -> Iterator[str]:
    """Frame text pieces as server-sent events, lazily: each event leaves as soon as its piece exists.

    One event per piece: ``"data: " + json.dumps(make_chunk(piece)) + "\\n\\n"`` (the blank
    line ends an event; JSON escapes any newline inside the text, so it cannot end one early).
    After the last piece comes ``"data: [DONE]\\n\\n"``. Each piece is one token: add 1 to
    ``usage["completion_tokens"]`` per piece, for the metrics and the usage report.
    """
    for piece in pieces:
        usage["completion_tokens"] += 1
        yield f"data: {json.dumps(make_chunk(piece))}\n\n"
    yield "data: [DONE]\n\n"


def parse_sse(lines: Iterable[str]) -> Iterator[dict]:
    """The client side of ``sse_events``: the JSON chunks of an event stream's lines, up to ``[DONE]``.

    Lines that are not ``data:`` fields (blank separators, ``: comments``, ``event:``) are skipped.
    Raises ValueError if the stream ends without ``[DONE]``: the server stopped mid-answer.
    """
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)
    raise ValueError("the event stream ended without data: [DONE] (the answer is incomplete)")


def chunk_text(chunk: dict) -> str:
    """The text of one streamed chunk, completions (``text``) or chat (``delta.content``)."""
    choice = chunk["choices"][0]
    return choice["text"] if "text" in choice else choice["delta"].get("content") or ""


# ----------------------------------------------------------------------------- metrics


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of values; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class Metrics:
    """Counters of the API requests (not /health or /metrics), safe to update from threads."""

    def __init__(self, window: int = 10_000):
        self._lock = threading.Lock()
        self.requests, self.by_status, self.tokens, self.busy_seconds = 0, {}, 0, 0.0
        self.latencies: list[float] = []  # the last `window` successful requests, for percentiles
        self.first_token: list[float] = []
        self.window, self.started = window, time.time()

    def record(self, status: int, tokens: int = 0, seconds: float = 0.0,
               first_token_seconds: float | None = None) -> None:
        with self._lock:
            self.requests += 1
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1
            if status == 200:
                self.tokens += tokens
                self.busy_seconds += seconds
                self.latencies = (self.latencies + [seconds])[-self.window:]
                if first_token_seconds is not None:
                    self.first_token = (self.first_token + [first_token_seconds])[-self.window:]

    def snapshot(self) -> dict:
        with self._lock:
            lat, ttft = list(self.latencies), list(self.first_token)
            return {
                "requests": self.requests,
                "responses_by_status": dict(self.by_status),
                "errors": sum(n for s, n in self.by_status.items() if not s.startswith("2")),
                "tokens_generated": self.tokens,
                # mean decoding speed a client sees: tokens over the time spent producing them
                "tokens_per_second": self.tokens / self.busy_seconds if self.busy_seconds else 0.0,
                "latency_seconds": {f"p{q}": _finite(percentile(lat, q)) for q in (50, 95, 99)},
                "time_to_first_token_seconds": {f"p{q}": _finite(percentile(ttft, q)) for q in (50, 95)},
                "uptime_seconds": time.time() - self.started,
            }


def _finite(x: float) -> float | None:  # JSON has no NaN
    return None if math.isnan(x) else x


class _Gate:
    """Admission control: at most ``max_concurrent + max_queue`` requests inside at once."""

    def __init__(self, limits: Limits):
        self._capacity = limits.max_concurrent + limits.max_queue
        self._lock, self.inside = threading.Lock(), 0

    def enter(self) -> bool:
        with self._lock:
            if self.inside >= self._capacity:
                return False
            self.inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.inside -= 1


_END = object()  # marks the end of a generation in its queue


# ----------------------------------------------------------------------------- the HTTP API
# pydantic checks the shape of a request; validate_request its rules.

class _Request(BaseModel):
    # strict: "5" is not an int and true is not a number; forbid: a misspelt or unsupported
    # field (top_p, n) is an error rather than silently ignored.
    model_config = ConfigDict(strict=True, extra="forbid")
    model: str | None = None
    max_tokens: int = 16
    temperature: float = 1.0
    stream: bool = False
    seed: int | None = None


class CompletionRequest(_Request):
    prompt: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(_Request):
    messages: list[ChatMessage]


class _Rejected(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def error_body(message: str, kind: str = "invalid_request_error") -> dict:
    """OpenAI's error envelope, so clients that handle OpenAI errors handle ours."""
    return {"error": {"message": message, "type": kind}}


def create_app(backend: Backend, limits: Limits = Limits(), *, ui: bool = False,
               validate: Callable = validate_request, to_events: Callable = sse_events):
    """The FastAPI app serving ``backend`` under ``limits``; ``ui=True`` mounts the Gradio page at /ui.

    ``validate`` and ``to_events`` replace the request rules and the event framing (the lab
    plugs its own versions in here).
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title=f"llm_course · {backend.name}")
    app.state.backend, app.state.limits = backend, limits
    app.state.metrics = metrics = Metrics()
    gate = _Gate(limits)

    def reject(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
        metrics.record(status)
        return JSONResponse(error_body(message, kind), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError):
        errors = err.errors()
        if any(e["type"] == "json_invalid" for e in errors):  # not JSON at all: 400, like a parse error
            return reject(400, "request body is not valid JSON: " + errors[0].get("ctx", {}).get("error", ""))
        where = lambda e: ".".join(str(p) for p in e["loc"] if p != "body") or "body"  # noqa: E731
        return reject(422, "; ".join(f"{where(e)}: {e['msg']}" for e in errors))

    @app.exception_handler(_Rejected)
    async def rejected(request: Request, err: _Rejected):
        return reject(err.status, err.message, err.kind)

    def admit(req, text: str, prompt: str) -> int:
        """Apply the rules; raise _Rejected, or return the prompt's token count."""
        if req.model not in (None, backend.name):
            raise _Rejected(404, f"model {req.model!r} does not exist; this server serves {backend.name!r}",
                            "model_not_found")
        try:
            n_prompt = backend.count_tokens(prompt)
        except ValueError as err:  # e.g. a character the model's codec does not know
            raise _Rejected(400, f"prompt cannot be tokenised: {err}") from None
        problems = validate(text, req.max_tokens, req.temperature, n_prompt, limits)
        if problems:
            raise _Rejected(400, "; ".join(problems))
        if not gate.enter():
            raise _Rejected(429, f"server is busy ({limits.max_concurrent} running, {limits.max_queue} "
                            "waiting); retry later", "rate_limit_exceeded")
        return n_prompt

    # The model runs on its own pool of max_concurrent threads; the pool's queue is the waiting
    # line. Generations never wait inside the web server's worker threads, so a full line
    # cannot starve the threads that carry finished tokens to clients (a deadlock otherwise).
    workers = ThreadPoolExecutor(limits.max_concurrent, thread_name_prefix="generate")

    def start(prompt: str, req) -> Iterator[str]:
        """Queue the generation now; iterate the result to receive its pieces as they are made."""
        out: queue.SimpleQueue = queue.SimpleQueue()
        abandoned = threading.Event()

        def produce():
            try:
                for piece in backend.stream(prompt, req.max_tokens, req.temperature, req.seed):
                    if abandoned.is_set():  # the client went away: free the model for others
                        break
                    out.put(piece)
            except Exception as err:  # handed to the receiving side, which raises it
                out.put(err)
            finally:
                gate.leave()
                out.put(_END)

        workers.submit(produce)

        def receive() -> Iterator[str]:
            try:
                while (item := out.get()) is not _END:
                    if isinstance(item, Exception):
                        raise item
                    yield item
            finally:
                abandoned.set()

        return receive()

    async def serve(req, prompt: str, n_prompt: int, make_chunk, make_body):
        """Generate for an admitted request: SSE events if req.stream, else one JSON body."""
        started, created, rid = time.perf_counter(), int(time.time()), uuid.uuid4().hex[:24]
        if req.stream:
            usage, pieces = {"completion_tokens": 0}, start(prompt, req)  # queued now, not when read

            def events() -> Iterator[str]:
                first = None
                try:
                    for event in to_events(pieces, lambda p: make_chunk(rid, created, p), usage):
                        first = first or time.perf_counter() - started
                        yield event
                finally:
                    metrics.record(200, usage["completion_tokens"], time.perf_counter() - started, first)

            # A sync iterator: Starlette pulls it in a worker thread, one event at a time.
            return StreamingResponse(events(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        pieces = await run_in_threadpool(lambda: list(start(prompt, req)))
        metrics.record(200, len(pieces), time.perf_counter() - started)
        finish_reason = "length" if len(pieces) == req.max_tokens else "stop"  # else it met end-of-text
        usage = {"prompt_tokens": n_prompt, "completion_tokens": len(pieces),
                 "total_tokens": n_prompt + len(pieces)}
        return make_body(rid, created, "".join(pieces), finish_reason) | {"usage": usage}

    def envelope(kind: str, rid: str, created: int) -> dict:
        return {"id": rid, "object": kind, "created": created, "model": backend.name}

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        n_prompt = admit(req, req.prompt, req.prompt)
        return await serve(
            req, req.prompt, n_prompt,
            lambda rid, t, piece: envelope("text_completion", "cmpl-" + rid, t)
            | {"choices": [{"index": 0, "text": piece, "finish_reason": None}]},
            lambda rid, t, text, why: envelope("text_completion", "cmpl-" + rid, t)
            | {"choices": [{"index": 0, "text": text, "finish_reason": why}]})

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest):
        messages = [m.model_dump() for m in req.messages]
        prompt = backend.render_chat(messages) if messages else ""
        n_prompt = admit(req, "".join(m["content"] for m in messages), prompt)
        return await serve(
            req, prompt, n_prompt,
            lambda rid, t, piece: envelope("chat.completion.chunk", "chatcmpl-" + rid, t)
            | {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]},
            lambda rid, t, text, why: envelope("chat.completion", "chatcmpl-" + rid, t)
            | {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                            "finish_reason": why}]})

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": backend.name, "inside": gate.inside,
                "capacity": limits.max_concurrent + limits.max_queue}

    @app.get("/metrics")
    async def get_metrics():
        return metrics.snapshot()

    if ui:
        app = mount_ui(app, backend, limits)
    return app


# ----------------------------------------------------------------------------- running and loading

@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread (a real server on a real socket);
    yields its base URL and shuts it down afterwards. ``port=None`` picks a free one."""
    import socket

    import uvicorn

    if port is None:
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def load_test(url: str, bodies: list[dict], concurrency: int, path: str = "/v1/completions") -> dict:
    """POST every body to ``url + path``, at most ``concurrency`` in flight at any moment.

    A body with ``"stream": true`` is read as server-sent events. Returns, in the order of
    ``bodies``: ``status``, ``text`` (the answer, None on an error) and ``latency`` (seconds),
    plus ``wall`` (seconds for all of them) and ``tokens`` (completion tokens received).
    """
    import asyncio

    import httpx

    async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore, body: dict):
        async with gate:
            start = time.perf_counter()
            if body.get("stream"):
                async with client.stream("POST", path, json=body) as r:
                    lines = [line async for line in r.aiter_lines()]
                    chunks = list(parse_sse(lines)) if r.status_code == 200 else None
                text = None if chunks is None else "".join(chunk_text(c) for c in chunks)
                tokens = len(chunks or [])
            else:
                r = await client.post(path, json=body)
                ok = r.status_code == 200
                answer = r.json()["choices"][0] if ok else None
                text = None if answer is None else answer.get("text", (answer.get("message") or {}).get("content"))
                tokens = r.json()["usage"]["completion_tokens"] if ok else 0
            return r.status_code, text, time.perf_counter() - start, tokens

    async def run_all():
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
            return await asyncio.gather(*(one(client, gate, b) for b in bodies))

    start = time.perf_counter()
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: no event loop in this thread
        results = asyncio.run(run_all())
    else:  # inside Jupyter, whose loop is running: run ours in a thread of its own
        with ThreadPoolExecutor(1) as pool:
            results = pool.submit(asyncio.run, run_all()).result()
    return {"status": [r[0] for r in results], "text": [r[1] for r in results],
            "latency": [r[2] for r in results], "tokens": sum(r[3] for r in results),
            "wall": time.perf_counter() - start}


# ----------------------------------------------------------------------------- the web UI

def mount_ui(app, backend: Backend, limits: Limits, path: str = "/ui"):
    """Mount a Gradio chat page at ``path`` that talks to ``backend`` in-process.

    Nothing may come from outside the machine. Gradio can reach out in two ways: usage
    analytics, posted to Hugging Face by the server (switched off; the environment variable
    is read when Gradio is imported, hence before the import), and themes whose fonts are
    ``GoogleFont``s, which the browser fetches from fonts.googleapis.com (Gradio 6's default
    theme ships its fonts locally; we use the system's fonts, which need no download at all).
    ``tests/test_serving.py`` fetches the page, its config, theme and stylesheets and checks
    that nothing the browser would load points outside the machine.
    """
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "Consolas", "monospace"])
    respond = _ui_reply(backend, limits)

    def reply(message: str, history: list[dict], temperature: float, max_tokens: int):
        try:
            yield from respond(message, history, temperature, max_tokens)
        except ValueError as err:  # a broken rule or an unknown character: shown in the page
            raise gr.Error(str(err)) from None

    demo = gr.ChatInterface(
        reply, title=f"Chat with {backend.name}", analytics_enabled=False,
        additional_inputs=[gr.Slider(0, 2, value=0.7, step=0.1, label="temperature"),
                           gr.Slider(1, limits.max_tokens, value=min(64, limits.max_tokens), step=1,
                                     label="max_tokens")],
        concurrency_limit=limits.max_concurrent)
    return gr.mount_gradio_app(app, demo, path=path, theme=theme, footer_links=[], ssr_mode=False)


def _ui_reply(backend: Backend, limits: Limits):
    """The chat function behind the page: yields the growing answer, one token longer each time
    (Gradio re-renders the message on every yield). Broken rules raise ValueError."""

    def reply(message: str, history: list[dict], temperature: float, max_tokens: int) -> Iterator[str]:
        messages = [{"role": m["role"], "content": _text(m["content"])} for m in history]
        messages.append({"role": "user", "content": message})
        prompt = backend.render_chat(messages)
        problems = validate_request(message, int(max_tokens), temperature, backend.count_tokens(prompt), limits)
        if problems:
            raise ValueError("; ".join(problems))
        text = ""
        for piece in backend.stream(prompt, int(max_tokens), temperature):
            text += piece
            yield text

    return reply


def _text(content: Any) -> str:
    """Gradio message content: a str, or a list of parts such as {"type": "text", "text": …}."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)
