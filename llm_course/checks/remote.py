"""What a case needs from the process its candidate lives in, whether that is this one or not.

In a notebook, ``check(piece, fn)`` runs ``fn`` right here. When grading, ``fn`` is a
stand-in for an object in the learner's kernel (``grader/rpc.py``): each call is a round
trip, and process-wide state (torch's global RNG, ``torch.save`` itself) is the kernel's,
not ours. A stand-in's class offers ``grader_*`` methods for that; these helpers use them
when present and do the plain local thing otherwise, so a case reads the same either way.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch


def _hook(obj: Any, name: str) -> Callable[..., Any] | None:
    # on the class, not the instance: a stand-in forwards unknown attributes to the kernel
    return getattr(type(obj), name, None)


def call_many(fn: Any, calls: list[tuple[tuple, dict]]) -> list:
    """``[fn(*args, **kwargs) for args, kwargs in calls]``, in one round trip for a stand-in.

    Tensor arguments are passed by value: each call gets its own copy, so one call changing
    its input in place does not change the next call's. A ``torch.Generator`` is shared, so
    the draws are the ones a loop would make. The first exception propagates, as in a loop.
    Give the same ``(args, kwargs)`` object n times to make one call n times (sent once).
    """
    batched = _hook(fn, "grader_map")
    if batched is not None:
        return batched(fn, calls)
    return [fn(*map(_copy, args), **{k: _copy(v) for k, v in kwargs.items()}) for args, kwargs in calls]


def _copy(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


def global_rng_state(fn: Any) -> torch.Tensor:
    """torch's global RNG state where ``fn`` runs."""
    remote = _hook(fn, "grader_rng")
    return remote(fn) if remote is not None else torch.get_rng_state()


def set_global_rng_state(fn: Any, state: torch.Tensor) -> None:
    """Set torch's global RNG state where ``fn`` runs."""
    remote = _hook(fn, "grader_rng")
    if remote is not None:
        remote(fn, state)
    else:
        torch.set_rng_state(state)


def same_object(got: Any, given: Any) -> bool:
    """``got is given`` — for a stand-in: is it the kernel's copy of ``given`` (an argument we sent)?"""
    remote = _hook(got, "grader_same")
    return remote(got, given) if remote is not None else got is given


def shared_tempdir(fn: Any) -> "tempfile.TemporaryDirectory[str]":
    """A temporary folder that we and the process where ``fn`` runs both see, at one path."""
    remote = _hook(fn, "grader_tempdir")
    return remote(fn) if remote is not None else tempfile.TemporaryDirectory()


CRASH_CONTENT = b"half a checkpoint"


@contextmanager
def failing_torch_save():
    """torch.save that writes half a file, then fails — a crash in the middle of writing."""
    real = torch.save

    def crash(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            Path(f).write_bytes(CRASH_CONTENT)
        else:
            f.write(CRASH_CONTENT)
        raise OSError("simulated crash while writing")

    torch.save = crash
    try:
        yield
    finally:
        torch.save = real


def call_with_failing_save(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` while ``torch.save`` crashes part-way (where ``fn`` runs)."""
    remote = _hook(fn, "grader_call_failing_save")
    if remote is not None:
        return remote(fn, *args, **kwargs)
    with failing_torch_save():
        return fn(*args, **kwargs)
