"""Numbers stated in the prose of book/01-nlp-tasks.md, recomputed.

The page computes its results in its own cells; this file guards the numbers the prose,
the exercises and their hints state as text, so that an edit to the library, the page's
examples or the packaged data cannot silently make the text wrong.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from llm_course import data
from llm_course.rnn import RNN, RNNClassifier, forward_max_match, rnn_cell, tags_to_words, word_f1, words_to_tags

W_IH = torch.tensor([[0.5, -1.0], [1.0, 0.5]])
W_HH = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
B_IH, B_HH = torch.tensor([0.0, 0.1]), torch.tensor([0.0, -0.1])


def test_hand_computed_rnn_steps():
    h1 = rnn_cell(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), W_IH, W_HH, B_IH, B_HH)
    assert torch.allclose(h1, torch.tensor([[math.tanh(0.5), math.tanh(1.0)]]))
    assert torch.allclose(h1, torch.tensor([[0.4621, 0.7616]]), atol=1e-4)
    x2 = torch.tensor([[0.0, 1.0]])
    assert torch.allclose(x2 @ W_IH.T + B_IH + B_HH, torch.tensor([[-1.0, 0.5]]))     # "input alone"
    assert torch.allclose(h1 @ W_HH.T, torch.tensor([[0.4621, -0.7616]]), atol=1e-4)  # "memory adds"
    h2 = rnn_cell(x2, h1, W_IH, W_HH, B_IH, B_HH)
    assert torch.allclose(h2, torch.tensor([[-0.4914, -0.2558]]), atol=1e-4)
    h3 = rnn_cell(torch.tensor([[1.0, 1.0]]), h2, W_IH, W_HH, B_IH, B_HH)             # exercise 2
    assert torch.allclose(h3, torch.tensor([[-0.7580, 0.9420]]), atol=1e-4)


def test_parameter_counts():
    assert sum(p.numel() for p in RNN(3, 4).parameters()) == 4 * (3 + 4 + 2) == 36
    model = RNNClassifier(1000, 2, embed_dim=64, hidden_size=128)
    assert sum(p.numel() for p in model.rnn.parameters()) == 24_832                    # exercise 3
    assert sum(p.numel() for p in model.head.parameters()) == 258


def test_segmentation_examples():
    words = ["迈向", "充满", "希望", "的", "新", "世纪"]
    assert words_to_tags(words) == "BEBEBESSBE"
    assert word_f1([["他", "来", "到", "北京"]], [["他", "来到", "北京"]])["f1"] == pytest.approx(4 / 7)
    dictionary = data.jieba_dictionary()
    assert len(dictionary) == 349_045
    assert forward_max_match("研究生命的起源", dictionary) == ["研究生", "命", "的", "起源"]
    assert forward_max_match("中央电视台", dictionary) == ["中央电视台"]


def test_corpus_facts():
    reviews = data.chinese_sentiment()
    assert len(reviews) == 35_123
    assert statistics.median(len(t) for t, _ in reviews) == 48
    sentences = data.chinese_segmentation()
    # the People's Daily corpus splits 中央电视台 as 中央 / 电视台
    found = [tags_to_words("".join(c for c, _ in s), "".join(t for _, t in s)) for s in sentences[:3000]]
    joined = [" ".join(w) for w in found]
    assert any("中央 电视台" in j for j in joined) and not any("中央电视台" in j.split() for j in joined)
