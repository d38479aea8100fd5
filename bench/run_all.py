"""Run every benchmark in bench/ and gather their results into one file (``make bench``).

    python bench/run_all.py [--only attention training] [--quick] [--out book/data/bench-results.json]

Each bench runs as its own subprocess (a crash or a hang cannot take the others down; memory
peaks are per process), with the sizes below, chosen so that the whole run takes about 15 minutes
on the 2-core CPU the book is built on. Each writes ``<name>.json`` through ``results.save`` into a
fresh temporary folder; this script reads them back and writes ONE file (atomically):

    {"generated": ..., "machine": {...}, "total_s": ..., "quick": false,
     "benches": {"attention": {"status": "ok", "seconds": 41.2, "command": [...], "meta": {...},
                               "rows": [...]},
                 "vectordb": {"status": "failed", "error": "<last lines of its output>", ...}, ...}}

A bench that fails, times out or writes no results is recorded with that status and the rest
still run. With --only, the other benches' entries already in --out are kept (re-run one bench
without re-running all). The summary printed at the end lists every row's ratio (> 1: ours better) and target.
--quick uses tiny sizes (seconds per bench): for the tests, not for numbers to publish.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE))
from results import DIR_ENV_VAR, ROOT, machine  # noqa: E402
from llm_course.files import atomic_write  # noqa: E402

DEFAULT_OUT = ROOT / "book" / "data" / "bench-results.json"

# name → (arguments for the published run, arguments for --quick, timeout in seconds)
BENCHES: dict[str, tuple[list[str], list[str], int]] = {
    "attention": (["--lengths", "64", "256", "1024", "--min-run-time", "0.3"],
                  ["--lengths", "16", "32", "--min-run-time", "0.01", "--batch", "2", "--d-model", "32",
                   "--heads", "2"], 900),
    "tokenizers": (["--repeats", "2"], ["--chars", "20000", "--vocab-size", "300", "--repeats", "1"], 900),
    "training": (["--steps", "10"], ["--steps", "1", "--batch", "2", "--block", "16"], 900),
    "generation": (["--new-tokens", "32", "112", "--uncached-max", "64", "--repeats", "2"],
                   ["--models", "char", "--new-tokens", "4", "--repeats", "1"], 900),
    "vectordb": (["--datasets", "random", "--n", "50000", "--queries", "500", "--no-pq"],
                 ["--datasets", "random", "--n", "2000", "--queries", "20", "--repeats", "1", "--no-pq"], 900),
    "grading": ([], [], 900),
}


def run_bench(name: str, args: list[str], timeout: int, out_dir: Path, quick: bool = False,
              script: Path | None = None) -> dict:
    """Run bench/<name>.py (or ``script``); return its entry for the combined file."""
    script = script or HERE / f"{name}.py"
    command = [sys.executable, str(script), *args]
    entry: dict = {"command": ["python", script.name if script.parent != HERE else f"bench/{script.name}", *args]}
    if not script.is_file():
        return entry | {"status": "missing", "seconds": 0.0, "error": f"{script.name} does not exist"}
    env = os.environ | {DIR_ENV_VAR: str(out_dir)} | ({"LLM_COURSE_QUICK": "1"} if quick else {})
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        tail = (err.stdout or b"")[-2000:]
        return entry | {"status": "timeout", "seconds": time.perf_counter() - start,
                        "error": f"no result after {timeout} s\n" + (tail.decode() if isinstance(tail, bytes) else tail)}
    entry["seconds"] = time.perf_counter() - start
    result_file = out_dir / f"{name}.json"
    if proc.returncode != 0:
        return entry | {"status": "failed", "error": (proc.stdout + proc.stderr)[-2000:]}
    if not result_file.is_file():
        return entry | {"status": "failed",
                        "error": f"exited 0 but wrote no {result_file.name} (does it call results.save?)"}
    saved = json.loads(result_file.read_text(encoding="utf-8"))
    return entry | {"status": "ok", "meta": saved["meta"], "rows": saved["rows"], "stdout": proc.stdout[-4000:]}


def summary(benches: dict) -> str:
    lines = [f"{'bench':11} {'case':50} {'ratio':>6} {'target':>7}  result"]
    for name, entry in benches.items():
        if entry["status"] != "ok":
            last_error_line = (entry.get("error") or "").strip().splitlines()[-1:] or [""]
            lines.append(f"{name:11} {'(' + entry['status'] + ')':50} {'':>6} {'':>7}  {last_error_line[0]}")
            continue
        for r in entry["rows"]:
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
            target = "" if r["target"] is None else f"≥ {r['target']:.2f}"
            verdict = "" if r.get("met") is None else ("met" if r["met"] else "MISSED")
            lines.append(f"{name:11} {r['case'][:50]:50} {ratio:>6} {target:>7}  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(BENCHES), help="run only these benches")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHES)

    kept = {}
    if args.only and args.out.is_file():  # keep the benches not re-run
        old = json.loads(args.out.read_text(encoding="utf-8"))
        if old.get("quick") == args.quick:
            kept = {n: e for n, e in old["benches"].items() if n not in names}
    doc = {"generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
           "total_s": 0.0, "quick": args.quick, "benches": kept}
    benches = doc["benches"]
    with tempfile.TemporaryDirectory(prefix="llm-course-bench-") as tmp:
        for name in names:
            full, quick, timeout = BENCHES[name]
            print(f"[{dt.datetime.now():%H:%M:%S}] {name} ...", flush=True)
            benches[name] = run_bench(name, quick if args.quick else full, timeout, Path(tmp), args.quick)
            print(f"    {benches[name]['status']} in {benches[name]['seconds']:.0f} s", flush=True)
            doc["total_s"] = sum(e.get("seconds", 0.0) for e in benches.values())
            with atomic_write(args.out, "w", encoding="utf-8") as f:  # after each bench: an interrupted
                json.dump(doc, f, indent=1)                          # run keeps what it measured
    print(summary(benches))
    print(f"total {doc['total_s']:.0f} s; written to {args.out}")
    return 0 if all(entry["status"] == "ok" for entry in benches.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
