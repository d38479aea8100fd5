"""Text → a file of token ids on disk → random training batches (chapter 09).

The pretraining data pipeline, small enough to read in one sitting:

    clean_text         normalise the raw text (Unicode form, line ends, trailing spaces, blank runs)
    CharCodec          a character-level tokeniser: one id per distinct character
    write_tokens       the whole corpus as ONE flat array of ids, written atomically to disk
    load_tokens        that file as a read-only ``np.memmap``: the OS pages in what a batch touches,
                       so a corpus far larger than RAM trains the same way
    get_batch          ``batch_size`` random windows of ``block_size + 1`` ids → inputs and targets
    eval_blocks        fixed, evenly spaced windows for a repeatable held-out loss

Packing: documents are concatenated into one stream and every window has exactly
``block_size`` tokens — no padding, no wasted compute. A window may straddle two documents;
the model learns that a title follows the end of a play.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from llm_course.files import atomic_write

_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # Unicode category Cc, except the newline
TOKEN_DTYPE = np.uint16  # 2 bytes per id: any vocabulary up to 65,536 (GPT-2's 50,257 fits)


def clean_text(text: str) -> str:
    """Normalise raw text the way a pretraining pipeline's first pass does.

    * Unicode NFC, so "é" is one code point whether the source wrote it composed or not;
    * ``\\r\\n`` and ``\\r`` → ``\\n``; tabs → spaces; other control characters dropped;
    * trailing spaces removed from every line; runs of 3+ newlines → one blank line.

    Deduplication and quality filtering work on whole documents and are shown in the chapter.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _CONTROL.sub("", text)
    text = re.sub(r"[ \u00a0]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text)


class CharCodec:
    """Character-level tokeniser: the sorted distinct characters of a text, id = position.

    >>> codec = CharCodec.from_text("hello")
    >>> codec.decode(codec.encode("hole"))
    'hole'
    """

    def __init__(self, chars: list[str]):
        if not chars or len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("chars must be a non-empty list of distinct single characters")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        # Code points in sorted order and the id of each: encoding is then one vectorised search.
        order = sorted(range(len(chars)), key=lambda i: ord(chars[i]))
        self._points = np.array([ord(chars[i]) for i in order], dtype=np.uint32)
        self._ids = np.array(order, dtype=TOKEN_DTYPE)

    @classmethod
    def from_text(cls, text: str) -> "CharCodec":
        if not isinstance(text, str) or not text:
            raise ValueError("text must be a non-empty str")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """text → ids (TOKEN_DTYPE array of len(text))."""
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        where = np.minimum(np.searchsorted(self._points, points), len(self._points) - 1)
        unknown = self._points[where] != points
        if unknown.any():
            raise ValueError(f"character {chr(points[unknown.argmax()])!r} is not in the codec's vocabulary "
                             f"({self.vocab_size} characters)")
        return self._ids[where]

    def decode(self, ids) -> str:
        """ids (any iterable of ints, a tensor or an array) → text."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return "".join(self.chars[int(i)] for i in ids)


def write_tokens(path: str | os.PathLike, ids: np.ndarray) -> Path:
    """Write ``ids`` as a flat binary file of TOKEN_DTYPE, atomically.

    The bytes go to a temporary file in the same folder, which then replaces ``path`` in one
    ``os.replace`` (atomic on POSIX and Windows): a crash leaves the old file or the new one,
    never half of one that a later run would silently train on.
    """
    path = Path(path)
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "ui":
        raise ValueError(f"ids must be a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(TOKEN_DTYPE).max):
        raise ValueError(f"ids must lie in [0, {np.iinfo(TOKEN_DTYPE).max}] to be stored as {TOKEN_DTYPE.__name__}")
    with atomic_write(path) as f:
        ids.astype(TOKEN_DTYPE).tofile(f)
    return path


def load_tokens(path: str | os.PathLike) -> np.memmap:
    """The token file as a read-only memory map (nothing is read until a batch touches it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file {path} does not exist; prepare the data first")
    if path.stat().st_size % np.dtype(TOKEN_DTYPE).itemsize:
        raise ValueError(f"token file {path} has {path.stat().st_size} bytes, not a whole number of "
                         f"{TOKEN_DTYPE.__name__} ids: truncated or not a token file")
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")


def prepare_shakespeare(data_dir: str | os.PathLike, *, clean: bool = False,
                        val_fraction: float = 0.1) -> dict:
    """Tokenise ``llm_course.data.shakespeare_split`` into ``train.bin``, ``val.bin``, ``meta.json``.

    The split is made on the raw text first (the figures are defined on it); ``clean=True`` then
    cleans each part. The codec covers every character of both parts. Re-running with the same
    settings reuses the files. Returns the meta dict (chars, sizes, settings).
    """
    from llm_course.data import shakespeare_split

    data_dir = Path(data_dir)
    settings = {"dataset": "shakespeare", "clean": bool(clean), "val_fraction": float(val_fraction)}
    meta_path = data_dir / "meta.json"
    if meta_path.is_file() and (data_dir / "train.bin").is_file() and (data_dir / "val.bin").is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("settings") == settings:
            return meta
    train, val = shakespeare_split(val_fraction)
    if clean:
        train, val = clean_text(train), clean_text(val)
    codec = CharCodec.from_text(train + val)
    write_tokens(data_dir / "train.bin", codec.encode(train))
    write_tokens(data_dir / "val.bin", codec.encode(val))
    meta = {"settings": settings, "chars": codec.chars, "train_tokens": len(train), "val_tokens": len(val)}
    with atomic_write(meta_path, "w", encoding="utf-8") as f:  # last: its presence means the .bin files are complete
        json.dump(meta, f, ensure_ascii=False)
    return meta


def get_batch(tokens: np.ndarray, batch_size: int, block_size: int,
              generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``batch_size`` windows at random offsets of the token array (e.g. a memmap).

    Window i starts at offset o_i: inputs x[i] = tokens[o_i : o_i + block_size], targets
    y[i] = tokens[o_i + 1 : o_i + block_size + 1] — the same window shifted by one, so the
    logits at position t are scored against the token that follows it. Offsets are drawn
    uniformly from every start that leaves room for the targets, with ``generator`` (whose
    state a checkpoint saves, so a resumed run draws the same batches).

    Returns: x, y — int64 tensors of shape (batch_size, block_size), on the CPU.
    """
    _check_count("batch_size", batch_size)
    _check_count("block_size", block_size)
    if len(tokens) < block_size + 1:
        raise ValueError(f"tokens has {len(tokens)} ids: too few for one window of block_size + 1 = {block_size + 1}")
    offsets = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator).tolist()
    window = np.stack([np.asarray(tokens[o:o + block_size + 1], dtype=np.int64) for o in offsets])
    window = torch.from_numpy(window)
    return window[:, :-1], window[:, 1:]


def eval_blocks(tokens: np.ndarray, block_size: int, max_tokens: int | None = None) -> tuple[Tensor, Tensor]:
    """Non-overlapping windows for a held-out loss: every one of them, or about ``max_tokens``
    worth spread evenly over the whole array (the same windows every time it is called).

    Returns x, y of shape (n_windows, block_size).
    """
    _check_count("block_size", block_size)
    n_all = (len(tokens) - 1) // block_size
    if n_all < 1:
        raise ValueError(f"tokens has {len(tokens)} ids: too few for one window of block_size + 1 = {block_size + 1}")
    n = n_all if max_tokens is None else max(1, min(n_all, max_tokens // block_size))
    starts = np.linspace(0, n_all - 1, n).round().astype(np.int64) * block_size
    window = torch.from_numpy(np.stack([np.asarray(tokens[s:s + block_size + 1], dtype=np.int64) for s in starts]))
    return window[:, :-1], window[:, 1:]


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
