"""llm_course.rnn against independent references: torch.nn.RNN with copied weights,
pack_padded_sequence for the masking, and hand-computed cases for segmentation."""

import math

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from llm_course.rnn import (
    RNN, RNNClassifier, RNNTagger, char_vocab, encode_batch, forward_max_match, last_hidden, reverse_padded,
    rnn, rnn_cell, tags_to_words, word_f1, word_spans, words_to_tags,
)


def _torch_rnn(ours: RNN) -> torch.nn.RNN:
    theirs = torch.nn.RNN(ours.input_size, ours.hidden_size, batch_first=True, bidirectional=ours.bidirectional)
    theirs.load_state_dict(ours.state_dict())  # same parameter names and shapes
    return theirs


def test_cell_hand_computed():
    # d_in = d_h = 1: h' = tanh(2·0.5 + 0.1 + (-1)·0.3 + 0.2) = tanh(1.0)
    x, h = torch.tensor([[0.5]]), torch.tensor([[0.3]])
    out = rnn_cell(x, h, torch.tensor([[2.0]]), torch.tensor([[-1.0]]), torch.tensor([0.1]), torch.tensor([0.2]))
    assert torch.allclose(out, torch.tensor([[math.tanh(1.0)]]))


def test_cell_matches_torch_rnncell():
    g = torch.Generator().manual_seed(0)
    cell = torch.nn.RNNCell(4, 6)
    x, h = torch.randn(3, 4, generator=g), torch.randn(3, 6, generator=g)
    ours = rnn_cell(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    assert torch.allclose(ours, cell(x, h), atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_layer_matches_torch_rnn_without_padding(bidirectional):
    torch.manual_seed(0)
    ours = RNN(5, 7, bidirectional=bidirectional)
    theirs = _torch_rnn(ours)
    x = torch.randn(4, 6, 5)
    h0 = torch.randn(2 if bidirectional else 1, 4, 7)
    out, h_n = ours(x, h0=h0)
    ref_out, ref_h = theirs(x, h0)
    assert out.shape == ref_out.shape and h_n.shape == ref_h.shape
    assert torch.allclose(out, ref_out, atol=1e-5) and torch.allclose(h_n, ref_h, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_masking_matches_pack_padded_sequence(bidirectional):
    torch.manual_seed(1)
    ours = RNN(3, 5, bidirectional=bidirectional)
    theirs = _torch_rnn(ours)
    x, lengths = torch.randn(4, 7, 3), torch.tensor([7, 2, 5, 1])
    out, h_n = ours(x, lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref_packed, ref_h = theirs(packed)
    ref_out = pad_packed_sequence(ref_packed, batch_first=True, total_length=7)[0]
    assert torch.allclose(out, ref_out, atol=1e-5)  # includes: zeros at every padded step
    assert torch.allclose(h_n, ref_h, atol=1e-5)   # the state at each sequence's last real step


def test_padding_does_not_change_the_result():
    """A sequence padded with garbage gives the same outputs and final state as on its own."""
    g = torch.Generator().manual_seed(2)
    w = (torch.randn(4, 3, generator=g), torch.randn(4, 4, generator=g), torch.randn(4, generator=g),
         torch.randn(4, generator=g))
    x = torch.randn(1, 3, 3, generator=g)
    padded = torch.cat([x, 100 * torch.randn(1, 4, 3, generator=g)], dim=1)
    out, h = rnn(x, *w)
    out_p, h_p = rnn(padded, *w, lengths=torch.tensor([3]))
    assert torch.allclose(out_p[:, :3], out) and torch.equal(out_p[:, 3:], torch.zeros(1, 4, 4))
    assert torch.allclose(h_p, h) and torch.allclose(h, out[:, -1])


def test_length_zero_keeps_h0():
    w = (torch.randn(2, 3), torch.randn(2, 2), torch.randn(2), torch.randn(2))
    h0 = torch.randn(1, 2)
    out, h = rnn(torch.randn(1, 4, 3), *w, h0=h0, lengths=torch.tensor([0]))
    assert torch.equal(h, h0) and torch.equal(out, torch.zeros(1, 4, 2))


def test_last_hidden_and_reverse_padded():
    outputs = torch.arange(2 * 4 * 1.0).view(2, 4, 1)
    assert last_hidden(outputs, torch.tensor([2, 4])).flatten().tolist() == [1.0, 7.0]
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    lengths = torch.tensor([3, 4])
    assert reverse_padded(x, lengths).tolist() == [[3, 2, 1, 0], [7, 6, 5, 4]]
    assert torch.equal(reverse_padded(reverse_padded(x, lengths), lengths), x)


def test_last_hidden_equals_final_state_of_masked_rnn():
    torch.manual_seed(3)
    layer = RNN(3, 4)
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 1, 4])
    out, h_n = layer(x, lengths)
    assert torch.allclose(last_hidden(out, lengths), h_n[0])


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_models_shapes_and_padding_invariance(cell):
    torch.manual_seed(4)
    clf = RNNClassifier(20, 3, embed_dim=8, hidden_size=6, cell=cell).eval()
    tag = RNNTagger(20, 4, embed_dim=8, hidden_size=6, cell=cell).eval()
    tokens, lengths = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]]), torch.tensor([3, 5])
    with torch.no_grad():
        assert clf(tokens, lengths).shape == (2, 3)
        assert tag(tokens, lengths).shape == (2, 5, 4)
        # the first sequence alone (no padding) gets the same logits
        assert torch.allclose(clf(tokens, lengths)[0], clf(tokens[:1, :3], lengths[:1])[0], atol=1e-6)
        assert torch.allclose(tag(tokens, lengths)[0, :3], tag(tokens[:1, :3], lengths[:1])[0], atol=1e-6)


def test_vocab_and_encoding():
    vocab = char_vocab(["aab", "bc"], min_count=2)
    assert vocab == {"<pad>": 0, "<unk>": 1, "a": 2, "b": 3}
    tokens, lengths = encode_batch(["ab", "c", "abab"], vocab, max_len=3)
    assert tokens.tolist() == [[2, 3, 0], [1, 0, 0], [2, 3, 2]] and lengths.tolist() == [2, 1, 3]


# --- segmentation helpers, on hand-computed cases ----------------------------------------


def test_tags_and_words_round_trip():
    words = ["迈向", "充满", "希望", "的", "新", "世纪", "一九九八年"]
    tags = words_to_tags(words)
    assert tags == "BEBEBESSBEBMMME"
    assert tags_to_words("".join(words), tags) == words
    assert word_spans(["迈向", "新", "世纪"]) == {(0, 2), (2, 3), (3, 5)}


def test_tags_to_words_repairs_inconsistent_tags():
    assert tags_to_words("abcd", "BBME") == ["a", "bcd"]     # B after an open B closes it
    assert tags_to_words("abc", "MSB") == ["a", "b", "c"]    # stray M; final open B
    assert tags_to_words("abc", "EEE") == ["a", "b", "c"]


def test_word_f1_hand_computed():
    gold = [["他", "来到", "北京"]]                 # spans (0,1) (1,3) (3,5)
    pred = [["他", "来", "到", "北京"]]             # spans (0,1) (1,2) (2,3) (3,5): 2 of 4 right
    s = word_f1(pred, gold)
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert word_f1(gold, gold)["f1"] == 1.0
    # micro-average over sentences: 2 + 1 correct, 4 + 1 predicted, 3 + 1 gold
    s2 = word_f1(pred + [["好"]], gold + [["好"]])
    assert s2["precision"] == pytest.approx(3 / 5) and s2["recall"] == pytest.approx(3 / 4)
    assert word_f1([["ab"]], [["a", "b"]])["f1"] == 0.0


def test_forward_max_match():
    dictionary = {"研究", "研究生", "生命", "起源"}
    # the classic failure of greedy matching: 研究生/命/的/起源 instead of 研究/生命/的/起源
    assert forward_max_match("研究生命的起源", dictionary) == ["研究生", "命", "的", "起源"]
    assert forward_max_match("研究生命的起源", dictionary, max_word_len=2) == ["研究", "生命", "的", "起源"]
    assert forward_max_match("", dictionary) == []


# --- bad inputs -------------------------------------------------------------------------


def _w(d_in=3, d_h=4):
    return torch.zeros(d_h, d_in), torch.zeros(d_h, d_h), torch.zeros(d_h), torch.zeros(d_h)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"x must be a float tensor of shape \(batch, T, d_in\)"):
        rnn(torch.zeros(2, 3), *_w())
    with pytest.raises(ValueError, match="x must be a float tensor"):
        rnn(torch.zeros(2, 3, 3, dtype=torch.long), *_w())
    with pytest.raises(ValueError, match=r"weight_ih must have shape \(d_h, d_in\) = \(4, 5\)"):
        rnn(torch.zeros(2, 3, 5), *_w())
    with pytest.raises(ValueError, match=r"weight_hh must have shape \(d_h, d_h\)"):
        rnn(torch.zeros(2, 3, 3), torch.zeros(4, 3), torch.zeros(4, 5), torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="bias_hh must have shape"):
        rnn(torch.zeros(2, 3, 3), *_w()[:3], torch.zeros(5))
    with pytest.raises(ValueError, match=r"h0 must have shape \(batch, d_h\) = \(2, 4\)"):
        rnn(torch.zeros(2, 3, 3), *_w(), h0=torch.zeros(4))
    with pytest.raises(ValueError, match="lengths must be a 1-D integer tensor"):
        rnn(torch.zeros(2, 3, 3), *_w(), lengths=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="lengths has 3 entries but the batch has 2"):
        rnn(torch.zeros(2, 3, 3), *_w(), lengths=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=3\]"):
        rnn(torch.zeros(2, 3, 3), *_w(), lengths=torch.tensor([1, 4]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=3\]"):
        last_hidden(torch.zeros(2, 3, 4), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"outputs must have shape \(batch, T, d\)"):
        last_hidden(torch.zeros(2, 3), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="input_size must be a positive int"):
        RNN(0, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, T, input_size=3\)"):
        RNN(3, 4)(torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match=r"h0 must have shape \(directions, batch, hidden_size\) = \(2, 1, 4\)"):
        RNN(3, 4, bidirectional=True)(torch.zeros(1, 5, 3), h0=torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="cell must be 'rnn'"):
        RNNClassifier(10, 2, cell="lstm")
    with pytest.raises(ValueError, match="texts is empty"):
        char_vocab([])
    with pytest.raises(ValueError, match="empty string"):
        encode_batch(["ab", ""], {"<pad>": 0, "<unk>": 1})
    with pytest.raises(ValueError, match="same length"):
        tags_to_words("abc", "BE")
    with pytest.raises(ValueError, match="tags must be B, M, E or S"):
        tags_to_words("ab", "BX")
    with pytest.raises(ValueError, match="do not spell the same text"):
        word_f1([["ab"]], [["a", "c"]])
    with pytest.raises(ValueError, match="predicted has 2 sentences but gold has 1"):
        word_f1([["a"], ["b"]], [["a"]])
