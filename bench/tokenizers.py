"""Tokenizer speed: our pure-Python byte-level BPE against the Rust/C libraries, in one run.

    python bench/tokenizers.py [--vocab-size 4096] [--chars N] [--repeats 3] [--no-memory]

Rows (on the 5 MB Shakespeare corpus, `llm_course.data.shakespeare()`):
  * training to vocab 4096: `llm_course.tokenizers.train_bpe` vs Hugging Face `tokenizers`'
    BpeTrainer (ByteLevel, same vocab size, one thread) — target: ours / theirs ≤ 2.5 (time);
  * encoding the whole corpus: a fresh `BPETokenizer` (empty cache) vs `tiktoken` built from
    the same ranks — target: our throughput ≥ 0.6 × tiktoken's; ids must be identical;
  * encoding in steady state, as when streaming a corpus: the last 10 % of the text, by a
    tokenizer that has already encoded the first 90 % (its pre-token cache is warm), vs
    tiktoken on the same 10 %. The cold row pays for running BPE once on each of the corpus's
    ~36k distinct pre-tokens; this row shows what encoding costs once that is paid;
Times are the best of --repeats runs (the least disturbed by other processes). Peak memory of
each case (ours and the peer's, RSS high-water mark: it sees Rust's allocations as well as
Python's) is measured in a separate pass after the timings (see results.py); --no-memory skips it.
Results: ``results.save("tokenizers", ...)``; ratio > 1 means ours is better.
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
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import tiktoken  # noqa: E402
import tokenizers  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_course.data import shakespeare  # noqa: E402
from llm_course.tokenizers import BPETokenizer, train_bpe  # noqa: E402

sys.path.append(HERE)  # back, now that `tokenizers` is imported: for results.py
from results import peak_memory, row, save  # noqa: E402

TRAIN_TARGET = 1 / 2.5  # ratio = theirs / ours (time): ours may take at most 2.5× as long
ENCODE_TARGET = 0.6     # ratio = ours / theirs (throughput)


def peak_mb(fn) -> float | None:
    with peak_memory() as mem:
        fn()
    return mem.mb


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
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
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
    # each of these runs takes only ~30 ms, so one hiccup of the machine decides a best-of-2:
    # both tools get at least 10 runs
    w_ours, w_ids = best_time(lambda: warm.encode(tail), max(args.repeats, 10))
    w_tt, w_tt_ids = best_time(lambda: enc.encode_ordinary(tail), max(args.repeats, 10))
    identical = identical and w_ids == w_tt_ids

    mem = {}
    if not args.no_memory:  # one more call of each case, now measuring memory (slower, so apart)
        mem = {"train": peak_mb(lambda: train_bpe(text, args.vocab_size)),
               "train_hf": peak_mb(lambda: train_hf(text, args.vocab_size)),
               "encode": peak_mb(lambda: BPETokenizer(tok.merges, pattern=tok.pattern).encode(text)),
               "encode_tt": peak_mb(lambda: enc.encode_ordinary(text)),
               "warm": peak_mb(lambda: warm.encode(tail)),
               "warm_tt": peak_mb(lambda: enc.encode_ordinary(tail))}

    rows = [
        row(f"train to vocab {args.vocab_size}", t_ours, t_hf, "HF tokenizers (BpeTrainer, 1 thread)", "s",
            higher_is_better=False, target=TRAIN_TARGET, peak_mb=mem.get("train"),
            peer_peak_mb=mem.get("train_hf"), hf_vocab_size=hf.get_vocab_size()),
        row("encode, cold cache", mb / e_ours, mb / e_tt, "tiktoken", "MB/s", higher_is_better=True,
            target=ENCODE_TARGET, peak_mb=mem.get("encode"), peer_peak_mb=mem.get("encode_tt"),
            ids_identical=ids == tt_ids, n_tokens=len(ids)),
        row("encode, warm cache (last 10 %)", mb_tail / w_ours, mb_tail / w_tt, "tiktoken", "MB/s",
            higher_is_better=True, target=ENCODE_TARGET, peak_mb=mem.get("warm"),
            peer_peak_mb=mem.get("warm_tt"), ids_identical=w_ids == w_tt_ids),
    ]
    meta = {"corpus_mb": mb, "vocab_size": args.vocab_size, "repeats": args.repeats,
            "rayon_threads": os.environ.get("RAYON_NUM_THREADS"),
            "tokenizers_version": tokenizers.__version__, "tiktoken_version": tiktoken.__version__,
            "bytes_per_token": len(text.encode("utf-8")) / len(ids), "ids_identical": identical}

    print(f"byte-level BPE on Shakespeare ({mb:.2f} MB), vocab {args.vocab_size}; best of {args.repeats}; "
          f"RAYON_NUM_THREADS={meta['rayon_threads']}; ratio > 1: ours better")
    print(f"{'case':32} {'ours':>9} {'peer':>9} {'unit':>5} {'ratio':>6} {'target':>7} {'met':>4} {'peak MB':>8}")
    for r in rows:
        print(f"{r['case']:32} {r['ours']:>9.2f} {r['peer']:>9.2f} {r['unit']:>5} {r['ratio']:>6.2f} "
              f"{'≥ %.2f' % r['target']:>7} {'yes' if r['met'] else 'NO':>4} {r['peak_mb'] or float('nan'):>8.1f}")
    print(f"ids identical to tiktoken over the whole corpus: {identical} ({len(ids):,} tokens, "
          f"{meta['bytes_per_token']:.2f} bytes/token)")
    print(f"results: {save('tokenizers', rows, meta)}")

if __name__ == "__main__":
    main()
