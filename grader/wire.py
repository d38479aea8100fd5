"""Frames and values on the socket between the grader and the learner's kernel.

The grader never unpickles anything the kernel sends. A message is a JSON header plus
binary blobs; values are JSON scalars or tagged nodes::

    {"t": "list" | "tuple", "v": [...]}           {"t": "dict", "k": [...], "v": [...]}
    {"t": "bytes", "b": blob}                     {"t": "float", "v": "nan" | "inf" | "-inf"}
    {"t": "tensor", "b": blob, "dtype": "float32", "shape": [2, 3], "rg": false, ...}
    {"t": "ref", "id": 7, "type": "MultiHeadAttention"}   (an object that stays on its side)

Tensors travel as raw bytes and are rebuilt as plain ``torch.Tensor`` (or ``Parameter``):
whatever subclass, ``__eq__`` or ``__torch_function__`` the learner's object had stays in
the kernel. :func:`decode` checks every node (exact types, sizes, dtypes) as it arrives.

This file is also executed inside the kernel (see ``rpc_worker.py``), so it imports only
the standard library and torch.
"""
from __future__ import annotations

import json
import math
import socket
import struct
from typing import Any, Callable

import torch

MAX_HEADER = 16 << 20  # bytes of JSON per message
MAX_BLOB = 256 << 20  # bytes per tensor / bytes value
MAX_TOTAL = 512 << 20  # bytes per message
MAX_BLOBS = 100_000
MAX_DEPTH = 64
MAX_TYPE_NAME = 60
_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex64, torch.complex128,
    torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)}


class WireError(Exception):
    """A malformed or oversized message: the other side is not speaking the protocol."""


# --- frames --------------------------------------------------------------------------------

def send(sock: socket.socket, header: dict, blobs: list[bytes]) -> None:
    data = json.dumps(header, separators=(",", ":")).encode()
    parts = [struct.pack("!II", len(data), len(blobs)), data]
    for blob in blobs:
        parts += [struct.pack("!Q", len(blob)), blob]
    sock.sendall(b"".join(parts))


def recv(sock: socket.socket) -> tuple[dict, list[bytes]]:
    n_header, n_blobs = struct.unpack("!II", _exact(sock, 8))
    if n_header > MAX_HEADER or n_blobs > MAX_BLOBS:
        raise WireError(f"message too large ({n_header} header bytes, {n_blobs} blobs)")
    try:
        header = json.loads(_exact(sock, n_header))
    except (ValueError, RecursionError) as e:
        raise WireError(f"header is not valid JSON: {e}") from None
    if type(header) is not dict:
        raise WireError("header is not a JSON object")
    blobs, total = [], n_header
    for _ in range(n_blobs):
        (size,) = struct.unpack("!Q", _exact(sock, 8))
        total += size
        if size > MAX_BLOB or total > MAX_TOTAL:
            raise WireError(f"message too large ({total} bytes)")
        blobs.append(_exact(sock, size))
    return header, blobs


def _exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError("the other side closed the connection")
        buf += chunk
    return bytes(buf)


# --- values --------------------------------------------------------------------------------

def encode(value: Any, blobs: list[bytes], other: Callable[[Any], dict],
           tensor_extra: Callable[[torch.Tensor, dict], None] | None = None, loose: bool = False,
           depth: int = 0) -> Any:
    """``value`` as a JSON-able node; blobs are appended to ``blobs``; ``other(obj)`` tags the rest.

    Subclasses of int/float/str (numpy floats, IntEnum) become the plain type; any tensor
    (subclass or not) becomes its data; everything else is ``other``'s business. ``loose``
    (the kernel's answers) also sends ``OrderedDict``/``Counter``/``defaultdict`` as a dict;
    without it (the grader's arguments) they go to ``other``, which keeps their behaviour.
    """
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if value is None or type(value) is bool:
        return value
    if isinstance(value, float):
        value = float(value)
        return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if type(value) is bytes:
        blobs.append(value)
        return {"t": "bytes", "b": len(blobs) - 1}
    if isinstance(value, torch.Tensor):
        node = encode_tensor(value, blobs)
        if tensor_extra is not None:
            tensor_extra(value, node)
        return node
    if type(value) in (list, tuple):
        return {"t": type(value).__name__,
                "v": [encode(v, blobs, other, tensor_extra, loose, depth + 1) for v in value]}
    if type(value) is dict or loose and isinstance(value, dict) and type(value).__module__ == "collections":
        return {"t": "dict", "k": [encode(k, blobs, other, tensor_extra, loose, depth + 1) for k in value],
                "v": [encode(v, blobs, other, tensor_extra, loose, depth + 1) for v in value.values()]}
    return other(value)


def encode_tensor(t: torch.Tensor, blobs: list[bytes]) -> dict:
    data = torch.Tensor.detach(t).to("cpu").contiguous()
    if type(data) is not torch.Tensor:  # a subclass: keep the numbers, drop the behaviour
        data = data.as_subclass(torch.Tensor)
    blobs.append(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return {"t": "tensor", "b": len(blobs) - 1, "dtype": str(data.dtype).removeprefix("torch."),
            "shape": list(data.shape), "rg": bool(t.requires_grad),
            "param": isinstance(t, torch.nn.Parameter)}


def decode(node: Any, blobs: list[bytes], on_tag: Callable[[dict, Callable[[Any], Any]], Any],
           on_tensor: Callable[[torch.Tensor, dict], Any] | None = None, depth: int = 0) -> Any:
    """Rebuild a value from ``node``; tags other than the plain ones go to ``on_tag(node, decode)``.

    ``on_tensor(tensor, node)``, if given, sees (and may replace) every tensor, in order.
    """
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if node is None or type(node) in (bool, int, float, str):
        return node
    if type(node) is not dict:
        raise WireError(f"unexpected {type(node).__name__} in a message")
    tag = node.get("t")

    def sub(n: Any) -> Any:
        return decode(n, blobs, on_tag, on_tensor, depth + 1)

    if tag in ("list", "tuple"):
        items = node.get("v")
        if type(items) is not list:
            raise WireError("list without items")
        out = [sub(v) for v in items]
        return out if tag == "list" else tuple(out)
    if tag == "dict":
        keys, values = node.get("k"), node.get("v")
        if type(keys) is not list or type(values) is not list or len(keys) != len(values):
            raise WireError("malformed dict")
        result = {}
        for k, v in zip(keys, values):
            key = sub(k)
            if not _hashable_plain(key):
                raise WireError("dict key is not a plain hashable value")
            result[key] = sub(v)
        return result
    if tag == "float":
        if node.get("v") not in ("nan", "inf", "-inf"):
            raise WireError("malformed float")
        return float(node["v"])
    if tag == "bytes":
        return _blob(node, blobs)
    if tag == "tensor":
        t = decode_tensor(node, blobs)
        return on_tensor(t, node) if on_tensor is not None else t
    return on_tag(node, sub)


def decode_tensor(node: dict, blobs: list[bytes]) -> torch.Tensor:
    dtype = _DTYPES.get(node.get("dtype"))  # type: ignore[arg-type]
    shape = node.get("shape")
    if dtype is None:
        raise WireError(f"unsupported tensor dtype {str(node.get('dtype'))[:20]!r}")
    if type(shape) is not list or len(shape) > 16 or not all(type(s) is int and 0 <= s for s in shape):
        raise WireError("malformed tensor shape")
    blob = _blob(node, blobs)
    numel = math.prod(shape)
    if len(blob) != numel * dtype.itemsize:
        raise WireError("tensor data does not match its shape and dtype")
    if numel == 0:
        t = torch.empty(shape, dtype=dtype)
    else:
        t = torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(dtype).reshape(shape)
    rg = node.get("rg") is True and (dtype.is_floating_point or dtype.is_complex)
    if node.get("param") is True:
        return torch.nn.Parameter(t, requires_grad=rg)
    return t.requires_grad_(rg)


def _blob(node: dict, blobs: list[bytes]) -> bytes:
    i = node.get("b")
    if type(i) is not int or not 0 <= i < len(blobs):
        raise WireError("missing blob")
    return blobs[i]


def _hashable_plain(key: Any) -> bool:
    if key is None or type(key) in (bool, int, float, str, bytes):
        return True
    return type(key) is tuple and all(_hashable_plain(k) for k in key)


def type_name(obj: Any) -> str:
    return type(obj).__name__[:MAX_TYPE_NAME]
