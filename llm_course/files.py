"""Writing files so that a crash never leaves half of one (checkpoints, token files, indexes).

    with atomic_write(path) as f:      # f: a binary file (or text, with mode="w")
        f.write(...)

The bytes go to a temporary file in the same folder, are flushed to disk, and only then is the
temporary file renamed over ``path`` with ``os.replace`` — atomic on POSIX and Windows, but
only within one file system, hence the same folder. Readers see the old file or the new one,
never a mixture; if the writing fails, the temporary file is removed and ``path`` is untouched.
(``training.save_checkpoint`` spells these steps out itself: lab 09 teaches them.)
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
