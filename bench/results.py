"""One format for every benchmark's results, so one page and one table can read them all.

    from results import save, row, peak_memory
    with peak_memory(device) as mem:
        ...run the case...
    rows.append(row("T=256", ours=3.1, peer=2.9, peer_name="torch", unit="ms",
                    higher_is_better=False, target=0.83, peak_mb=mem.mb))
    save("attention", rows, meta={"batch": 4})

writes ``$LLM_COURSE_BENCH_DIR/attention.json`` (default ``bench/out/``) atomically:

    {"bench": "attention", "meta": {machine..., batch: 4}, "rows": [{...}, ...]}

Row keys (every bench, every row):
  case       what was measured ("encode, cold cache", "T=256", ...)
  ours       our number, in ``unit``
  peer       the peer library's number (None for a row with no peer, e.g. shown for scale)
  peer_name  who the peer is ("tiktoken", "torch.nn.MultiheadAttention", ...)
  unit       "ms", "tokens/s", "MB/s", ...
  ratio      ours vs peer, oriented so that > 1 means OURS IS BETTER: peer/ours for a time,
             ours/peer for a throughput (``row`` does the orientation from ``higher_is_better``)
  target     the smallest acceptable ratio (None: no target); ``met`` = ratio ≥ target
  peak_mb    peak memory of the case in MB (10⁶ bytes), see ``peak_memory``
and any extra keys a bench wants (e.g. "ids_identical").

Peak memory. On CPU, PyTorch allocates tensors with the C allocator, so tracemalloc (Python
objects only) does not see them and torch has no allocator statistics for the CPU. What the
operating system sees does include them: the resident set size (RSS). Linux keeps its high-water
mark (VmHWM) per process and lets a process reset it to the current RSS (write "5" to
/proc/self/clear_refs). ``peak_memory`` resets it before the case and reports the peak RSS
above the RSS at the start — the extra memory the case needed at its worst moment.
One catch: glibc's malloc keeps freed blocks for reuse instead of returning them to the OS, so
a case run after another would reuse that resident memory and show (almost) nothing. So before
each measurement ``peak_memory`` calls ``malloc_trim(0)``, which hands every free page back to
the OS; pages the case then reuses are faulted in again and counted. (That costs time, which is
why a bench measures memory in its own pass, after the timings: ``measure_peak_mb`` does one
warm-up call, then measures one call.)
On CUDA the caching allocator's own peak (``torch.cuda.max_memory_allocated``) is used.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # appended, not prepended: bench/tokenizers.py must not shadow a package
from llm_course.files import atomic_write  # noqa: E402

DIR_ENV_VAR = "LLM_COURSE_BENCH_DIR"
ROW_KEYS = ("case", "ours", "peer", "peer_name", "unit", "ratio", "target", "peak_mb")


def out_dir() -> Path:
    """Where ``save`` writes: ``$LLM_COURSE_BENCH_DIR``, else ``bench/out/``."""
    return Path(os.environ.get(DIR_ENV_VAR) or ROOT / "bench" / "out")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine a result was measured on: CPU, cores, threads, torch, GPU, load, date (UTC)."""
    info = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if hasattr(os, "getloadavg"):
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)  # other processes share the CPU
    return info


def row(case: str, ours: float, peer: float | None, peer_name: str | None, unit: str, *,
        higher_is_better: bool, target: float | None = None, peak_mb: float | None = None,
        **extra) -> dict:
    """A result row with ``ratio`` oriented so that > 1 means ours is better, and ``met``."""
    if peer is None:
        ratio = None
    elif higher_is_better:
        ratio = ours / peer
    else:
        ratio = peer / ours
    met = None if ratio is None or target is None else ratio >= target
    return {"case": case, "ours": ours, "peer": peer, "peer_name": peer_name, "unit": unit,
            "ratio": ratio, "target": target, "peak_mb": peak_mb, "met": met,
            "higher_is_better": higher_is_better, **extra}


def _clean(value):
    """NaN/inf are not JSON: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def save(bench_name: str, rows: list[dict], meta: dict | None = None) -> Path:
    """Write ``<out_dir>/<bench_name>.json`` atomically; return its path.

    Every row must carry the keys of ``ROW_KEYS`` (``row`` builds one); extra keys are kept.
    """
    if not bench_name or not bench_name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"bench_name must be a plain name like 'attention', got {bench_name!r}")
    for i, r in enumerate(rows):
        missing = [k for k in ROW_KEYS if k not in r]
        if missing:
            raise ValueError(f"rows[{i}] lacks the keys {missing} (every row needs {list(ROW_KEYS)})")
    path = out_dir() / f"{bench_name}.json"
    doc = {"bench": bench_name, "meta": {**machine(), **(meta or {})}, "rows": rows}
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(_clean(doc), f, indent=2)
    return path


def load(bench_name: str) -> dict:
    """Read back what ``save`` wrote."""
    return json.loads((out_dir() / f"{bench_name}.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- peak memory
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _malloc_trim() -> None:
    """Return the C allocator's free pages to the OS (glibc); elsewhere a no-op."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: peaks may undercount memory reused from earlier cases


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5 = reset the peak RSS to the current RSS
        return True
    except OSError:
        return False


class PeakMemory:
    """Filled in by ``peak_memory`` when its block ends: ``mb`` (None if not measurable) and ``how``."""

    mb: float | None = None
    how: str = "unavailable"


@contextmanager
def peak_memory(device: torch.device | str = "cpu") -> Iterator[PeakMemory]:
    """Measure the peak memory a block needs above what was in use when it started (MB, 10⁶ bytes)."""
    result = PeakMemory()
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        result.mb = (torch.cuda.max_memory_allocated(device) - base) / 1e6
        result.how = "torch.cuda.max_memory_allocated"
        return
    _malloc_trim()
    base = _status_kb("VmRSS")
    ok = base is not None and _reset_hwm()
    yield result
    peak = _status_kb("VmHWM")
    if ok and peak is not None:
        result.mb = max(peak - base, 0) * 1024 / 1e6
        result.how = "RSS high-water mark (VmHWM) above the RSS at the start"


def measure_peak_mb(fn, device: torch.device | str = "cpu") -> float | None:
    """Peak memory (MB) of one call of ``fn()`` after one warm-up call (lazy initialisation,
    .grad buffers and optimiser state belong to the model, not to the step)."""
    fn()
    with peak_memory(device) as mem:
        fn()
    return mem.mb
