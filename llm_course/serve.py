"""Run the API server: ``python -m llm_course.serve --model smollm2 --port 8000``.

Then ``curl http://127.0.0.1:8000/health``, chat in the browser at http://127.0.0.1:8000/ui,
or in the terminal with ``python -m llm_course.chat --url http://127.0.0.1:8000``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llm_course.serving import Limits, create_app


def gpt_backend(config_path: str):
    """The chapter-09 model: the checkpoint ``<out_dir>/ckpt.pt`` of a training config, whose
    ``extra["chars"]`` holds the character codec it was trained with."""
    import torch

    from llm_course.serving import GPTBackend
    from llm_course.textdata import CharCodec
    from llm_course.training import build_model, load_checkpoint, load_config

    cfg = load_config(config_path)
    path = Path(cfg.out_dir) / "ckpt.pt"
    if not path.is_file():
        raise SystemExit(f"no checkpoint at {path}: train it first (chapter 09)")
    codec = CharCodec(torch.load(path, map_location="cpu", weights_only=True)["extra"]["chars"])
    model = build_model(cfg, codec.vocab_size)
    load_checkpoint(path, model)
    return GPTBackend(model, codec, name=Path(config_path).stem)


def load_backend(model: str, config: str | None = None):
    """The backend named ``model``: "smollm2", "tiny" (an untrained test model) or "gpt"
    (a chapter-09 checkpoint, found through its training config)."""
    from llm_course import serving

    if model == "smollm2":
        return serving.SmolLM2Backend()
    if model == "tiny":
        return serving.tiny_backend()
    if model == "gpt":
        if not config:
            raise SystemExit("--model gpt needs --config PATH (the chapter-09 training config)")
        return gpt_backend(config)
    raise SystemExit(f"unknown --model {model!r}; choose smollm2, tiny or gpt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="smollm2", choices=["smollm2", "tiny", "gpt"])
    p.add_argument("--config", help="training config of the checkpoint to serve, for --model gpt")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 exposes the server to the network")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--no-ui", action="store_true", help="do not mount the Gradio page at /ui")
    defaults = Limits()
    for name in ("max_prompt_tokens", "max_tokens", "max_concurrent", "max_queue"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    limits = Limits(args.max_prompt_tokens, args.max_tokens, args.max_concurrent, args.max_queue)
    app = create_app(load_backend(args.model, args.config), limits, ui=not args.no_ui)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
