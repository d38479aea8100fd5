"""Tokenizer speed: our pure-Python byte-level BPE against the Rust/C libraries, in one run.

    python bench/tokenizers.py [--vocab-size 4096] [--chars N] [--repeats 3] [--json results.json]

Rows (on the 5 MB Shakespeare corpus, `llm_course.data.shakespeare()`):
  * training to vocab 4096: `llm_course.tokenizers.train_bpe` vs Hugging Face `tokenizers`'
    BpeTrainer (ByteLevel, same vocab size, one thread) — target: ours / theirs ≤ 2.5 (time);
  * encoding the whole corpus: a fresh `BPETokenizer` (empty cache) vs `tiktoken` built from
    the same ranks — target: our throughput ≥ 0.6 × tiktoken's; ids must be identical;
  * encoding in steady state, as when streaming a corpus: the last 10 % of the text, by a
    tokenizer that has already encoded the first 90 % (its pre-token cache is warm), vs
    tiktoken on the same 10 %. The cold row pays for running BPE once on each of the corpus's
    ~36k distinct pre-tokens; this row shows what encoding costs once that is paid;
  * peak Python memory of our training (tracemalloc, measured in a separate, slower pass).
Times are the best of --repeats runs (the least disturbed by other processes).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its thread pool
# This file is itself called tokenizers.py: drop its folder from the path, or
# `import tokenizers` below would import this script instead of Hugging Face's package.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import tiktoken  # noqa: E402
import tokenizers  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_course.data import shakespeare  # noqa: E402
from llm_course.tokenizers import BPETokenizer, train_bpe  # noqa: E402

TRAIN_TARGET = 2.5   # ours / theirs, training time (lower is better)
ENCODE_TARGET = 0.6  # ours / theirs, encoding throughput (higher is better)


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def train_hf(text: str, vocab_size: int) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    lines = text.splitlines(keepends=True)
    tok.train_from_iterator((lines[i:i + 1000] for i in range(0, len(lines), 1000)), trainer=trainer)
    return tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--chars", type=int, default=None, help="use only the first N characters")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    text = shakespeare()[: args.chars]
    mb = len(text.encode("utf-8")) / 1e6

    t_ours, tok = best_time(lambda: train_bpe(text, args.vocab_size), args.repeats)
    t_hf, hf = best_time(lambda: train_hf(text, args.vocab_size), args.repeats)

    enc = tiktoken.Encoding(name="llm_course_bench", pat_str=tok.pattern,
                            mergeable_ranks=tok.mergeable_ranks(), special_tokens={})
    # a fresh tokenizer each time: its pre-token cache starts empty, as for a new text
    e_ours, ids = best_time(lambda: BPETokenizer(tok.merges, pattern=tok.pattern).encode(text), args.repeats)
    e_tt, tt_ids = best_time(lambda: enc.encode_ordinary(text), args.repeats)
    identical = ids == tt_ids

    cut = int(len(text) * 0.9)
    head, tail = text[:cut], text[cut:]
    mb_tail = len(tail.encode("utf-8")) / 1e6
    warm = BPETokenizer(tok.merges, pattern=tok.pattern)
    warm.encode(head)
    w_ours, w_ids = best_time(lambda: warm.encode(tail), args.repeats)
    w_tt, w_tt_ids = best_time(lambda: enc.encode_ordinary(tail), args.repeats)
    identical = identical and w_ids == w_tt_ids

    peak_mib = None
    if not args.no_memory:
        tracemalloc.start()
        train_bpe(text, args.vocab_size)
        peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()

    results = {
        "benchmark": "tokenizers", "corpus_mb": mb, "vocab_size": args.vocab_size,
        "rayon_threads": os.environ.get("RAYON_NUM_THREADS"),
        "tokenizers_version": tokenizers.__version__, "tiktoken_version": tiktoken.__version__,
        "train_ours_s": t_ours, "train_hf_s": t_hf, "train_ratio": t_ours / t_hf,
        "hf_vocab_size": hf.get_vocab_size(),
        "encode_ours_mb_s": mb / e_ours, "encode_tiktoken_mb_s": mb / e_tt,
        "encode_ratio": e_tt / e_ours, "ids_identical": identical,
        "encode_warm_ours_mb_s": mb_tail / w_ours, "encode_warm_tiktoken_mb_s": mb_tail / w_tt,
        "encode_warm_ratio": w_tt / w_ours, "n_tokens": len(ids),
        "bytes_per_token": len(text.encode("utf-8")) / len(ids), "train_peak_mib": peak_mib,
        "train_target": TRAIN_TARGET, "encode_target": ENCODE_TARGET,
    }
    results["train_ok"] = results["train_ratio"] <= TRAIN_TARGET
    results["encode_ok"] = results["encode_ratio"] >= ENCODE_TARGET
    results["encode_warm_ok"] = results["encode_warm_ratio"] >= ENCODE_TARGET

    print(f"byte-level BPE on Shakespeare ({mb:.2f} MB), vocab {args.vocab_size}; best of {args.repeats}; "
          f"RAYON_NUM_THREADS={results['rayon_threads']}")
    print(f"{'':28} {'ours':>10} {'reference':>10} {'ratio':>7} {'target':>8}  met?")
    print(f"{'train (s) vs HF tokenizers':28} {t_ours:>10.2f} {t_hf:>10.2f} {results['train_ratio']:>7.2f} "
          f"{'≤ ' + str(TRAIN_TARGET):>8}  {'yes' if results['train_ok'] else 'NO'}")
    print(f"{'encode (MB/s) vs tiktoken':28} {mb / e_ours:>10.2f} {mb / e_tt:>10.2f} {results['encode_ratio']:>7.2f} "
          f"{'≥ ' + str(ENCODE_TARGET):>8}  {'yes' if results['encode_ok'] else 'NO'}")
    print(f"{'encode, warm cache (MB/s)':28} {mb_tail / w_ours:>10.2f} {mb_tail / w_tt:>10.2f} "
          f"{results['encode_warm_ratio']:>7.2f} {'≥ ' + str(ENCODE_TARGET):>8}  "
          f"{'yes' if results['encode_warm_ok'] else 'NO'}")
    print(f"ids identical to tiktoken over the whole corpus: {identical} ({len(ids):,} tokens, "
          f"{results['bytes_per_token']:.2f} bytes/token)")
    if peak_mib is not None:
        print(f"peak Python memory while training (tracemalloc): {peak_mib:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
