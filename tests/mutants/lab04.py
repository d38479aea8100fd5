"""Plausible wrong answers to lab 04 (tokenization)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/04-tokenization/lab04-tokenization.ipynb"
MAX_SCORE = 11
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "get_pair_counts": ("04.get_pair_counts", "get_pair_counts"),
    "merge": ("04.merge", "merge"),
    "train_merges": ("04.train_bpe", "train_merges"),
    "encode_chunk": ("04.encode", "encode_chunk"),
    "decode": ("04.decode", "decode"),
    "wordpiece_tokenize": ("04.wordpiece", "wordpiece_tokenize"),
}

MUTANTS = [
    Mutant("pairs counted in steps of two", "get_pair_counts", "zip(ids, ids[1:])", "zip(ids[::2], ids[1::2])",
           "steps of two"),
    Mutant("each pair counted once", "get_pair_counts", "counts.get(pair, 0) + 1", "1", "counted once"),
    Mutant("overlapping merges", "merge", "i += 2  # both halves", "i += 1  # both halves", "overlapping"),
    Mutant("merge drops the last id", "merge", "        else:\n            out.append(ids[i])\n            i += 1",
           "        elif i + 1 < len(ids):\n            out.append(ids[i])\n            i += 1\n        else:\n"
           "            i += 1", "last id was dropped"),
    Mutant("ties broken by ids", "train_merges", "key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]])",
           "key=lambda p: (counts[p], p)", "comparing ids"),
    Mutant("ties broken towards the smallest bytes", "train_merges",
           "best = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))",
           "top = max(counts.values())\n"
           "        best = min((p for p in counts if counts[p] == top), key=lambda p: (vocab[p[0]], vocab[p[1]]))",
           "GREATEST bytes"),
    Mutant("no pre-tokenisation", "train_merges", "Counter(pretokenize(text, pattern))", "Counter([text])",
           "not pre-tokenised"),
    Mutant("latest merge first at encode time", "encode_chunk", "best = min(ranks)",
           "best = max((r for r in ranks if r != NOT_A_MERGE), default=NOT_A_MERGE)", "wrong order"),
    Mutant("only one merge at encode time", "encode_chunk", "ids = merge(ids, (ids[i], ids[i + 1]), best)",
           "return merge(ids, (ids[i], ids[i + 1]), best)", "stopped after one merge"),
    Mutant("strict UTF-8 decode", "decode", '.decode("utf-8", errors="replace")', '.decode("utf-8")',
           "errors='replace'"),
    Mutant("decode token by token", "decode", 'return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")',
           'return "".join(vocab[i].decode("utf-8", errors="replace") for i in ids)', "decoded on its own"),
    Mutant("WordPiece without ##", "wordpiece_tokenize", 'else "##" + word[start:end]', "else word[start:end]",
           "'##' prefix"),
    Mutant("WordPiece [UNK] only for the rest", "wordpiece_tokenize", "            return [unk_token]\n        pieces",
           "            return pieces + [unk_token]\n        pieces", "WHOLE word"),
    Mutant("WordPiece without the length cap", "wordpiece_tokenize", "        return [unk_token]\n    pieces",
           "        pass\n    pieces", "max_input_chars_per_word"),
]
