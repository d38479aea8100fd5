"""Command line: train a GPT from a config file, resume it, sample from it (chapter 09).

    python -m llm_course.train configs/shakespeare_char.toml
    python -m llm_course.train configs/shakespeare_char.toml --resume          # after a crash
    python -m llm_course.train configs/shakespeare_char.toml --set max_iters=200 --set out_dir=runs/try
    torchrun --nproc_per_node=2 -m llm_course.train configs/shakespeare_char.toml   # data parallel
    python -m llm_course.train configs/shakespeare_char.toml --sample 500      # from the saved checkpoint

Every evaluation prints one line: step, last training loss, held-out loss, wall time, tokens/s.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import torch

from llm_course.training import build_model, load_checkpoint, load_config, train


def parse_overrides(items: list[str]) -> dict:
    """["max_iters=200", "out_dir=runs/x", "clean=true"] → {"max_iters": 200, "out_dir": "runs/x", "clean": True}."""
    overrides = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        lowered = raw.strip().lower()
        if lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw  # a bare string such as a path
        overrides[key.strip()] = value
    return overrides


def sample(config_path: str, overrides: dict, n_chars: int, temperature: float, top_k: int | None,
           prompt: str, seed: int) -> str:
    """Text sampled from <out_dir>/ckpt.pt, continuing ``prompt``."""
    from llm_course.generation import generate
    from llm_course.textdata import CharCodec

    cfg = load_config(config_path, overrides)
    path = Path(cfg.out_dir) / "ckpt.pt"
    state = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None
    if state is None:
        raise SystemExit(f"no checkpoint at {path}: train first")
    codec = CharCodec(state["extra"]["chars"])
    model = build_model(cfg, codec.vocab_size)
    load_checkpoint(path, model)
    ids = torch.tensor(codec.encode(prompt or "\n"), dtype=torch.long)[None]
    out = generate(model, ids, n_chars, temperature=temperature, top_k=top_k,
                   generator=torch.Generator().manual_seed(seed))
    return codec.decode(out[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llm_course.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="TOML file with [data], [model], [train] tables")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (repeatable), e.g. --set max_iters=200")
    parser.add_argument("--resume", action="store_true", help="continue from <out_dir>/ckpt.pt")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    parser.add_argument("--sample", type=int, metavar="N", help="print N sampled characters from the checkpoint")
    parser.add_argument("--prompt", default="", help="text the sample continues")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    if args.sample is not None:
        print(sample(args.config, overrides, args.sample, args.temperature, args.top_k, args.prompt, args.seed))
        return
    cfg = load_config(args.config, overrides)
    result = train(cfg, resume=args.resume, progress=not args.no_progress)
    final = [r for r in result["history"] if r.get("final")]
    if final:
        r = final[-1]
        print(f"final: step {r['step']} | held-out loss {r['val_loss']:.4f} on {r['val_tokens']:,} tokens | "
              f"{r['elapsed_s']:.1f} s | checkpoint {Path(cfg.out_dir) / 'ckpt.pt'}")


if __name__ == "__main__":
    main(sys.argv[1:])
