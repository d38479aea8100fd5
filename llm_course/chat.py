"""Chat with a model in the terminal, the answer streamed token by token.

    python -m llm_course.chat                                  # SmolLM2, in this process
    python -m llm_course.chat --url http://127.0.0.1:8000      # a server started by llm_course.serve
    python -m llm_course.chat --model tiny --prompt "Hello"    # one question, no prompt loop

Type a message and press Enter; an empty line or Ctrl-D quits. The conversation so far is
sent with every turn (the model itself remembers nothing between requests).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Iterator

from llm_course.serving import chunk_text, parse_sse

Messages = list[dict[str, str]]


def remote_stream(url: str, timeout: float = 300.0) -> Callable[[Messages, int, float], Iterator[str]]:
    """Pieces of the answer from a server's ``/v1/chat/completions`` with ``stream: true``."""
    import httpx

    def stream(messages: Messages, max_tokens: int, temperature: float) -> Iterator[str]:
        body = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stream": True}
        with httpx.stream("POST", url.rstrip("/") + "/v1/chat/completions", json=body, timeout=timeout) as r:
            if r.status_code != 200:
                r.read()
                raise RuntimeError(f"server answered {r.status_code}: {_message(r.text)}")
            for chunk in parse_sse(r.iter_lines()):
                yield chunk_text(chunk)

    return stream


def local_stream(backend) -> Callable[[Messages, int, float], Iterator[str]]:
    """Pieces of the answer from a backend in this process (no HTTP in between)."""

    def stream(messages: Messages, max_tokens: int, temperature: float) -> Iterator[str]:
        return backend.stream(backend.render_chat(messages), max_tokens, temperature)

    return stream


def _message(body: str) -> str:
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body[:200]


def turn(stream, messages: Messages, max_tokens: int, temperature: float, out=sys.stdout) -> str:
    """Send the conversation, print the answer as it arrives, append it to ``messages``."""
    answer = ""
    for piece in stream(messages, max_tokens, temperature):
        out.write(piece)
        out.flush()  # without a flush, stdout's buffer would hold the pieces back: no streaming
        answer += piece
    out.write("\n")
    messages.append({"role": "assistant", "content": answer})
    return answer


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a server's base URL; without it the model runs in this process")
    p.add_argument("--model", default="smollm2", choices=["smollm2", "tiny"], help="in-process model")
    p.add_argument("--prompt", help="ask this one question, print the answer and exit")
    p.add_argument("--system", help="a system message that starts the conversation")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (deterministic)")
    args = p.parse_args(argv)

    if args.url:
        stream = remote_stream(args.url)
    else:
        from llm_course.serve import load_backend
        stream = local_stream(load_backend(args.model))
    messages: Messages = [{"role": "system", "content": args.system}] if args.system else []
    questions = [args.prompt] if args.prompt else None
    while True:
        if questions is not None:
            if not questions:
                return
            question = questions.pop()
            print(f"you> {question}")
        else:
            try:
                question = input("you> ")
            except EOFError:
                return
        if not question.strip():
            return
        messages.append({"role": "user", "content": question})
        print("model> ", end="", flush=True)
        try:
            turn(stream, messages, args.max_tokens, args.temperature)
        except RuntimeError as err:  # e.g. the server rejected the request: say why, keep chatting
            messages.pop()
            print(f"\n[error] {err}", file=sys.stderr)


if __name__ == "__main__":
    main()
