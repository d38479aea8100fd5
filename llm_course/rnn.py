"""Recurrent networks for the two basic sequence shapes of NLP (chapter 01).

An Elman RNN reads a sequence one step at a time and carries a hidden state:

    h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)

Shapes used throughout (batch first, as with ``batch_first=True`` in PyTorch):

    x:       (batch, T, d_in)   one input vector per step
    h, h0:   (batch, d_h)       the hidden state
    lengths: (batch,) int       real steps of each sequence; steps t >= lengths[b] are padding
    outputs: (batch, T, d_h)    the hidden state after every step (0 at padded steps)

Padding is handled by *masking*: a padded step leaves the hidden state unchanged, so the
final state of every sequence is its state after its last real token — the same result as
PyTorch's ``pack_padded_sequence``. On top of the RNN sit the two models of the chapter: a
many-to-one classifier (多对一) and a many-to-many synchronous tagger (多对多（同步）).

The bottom of the module evaluates Chinese word segmentation: B/M/E/S tags ↔ words, a
dictionary forward-maximum-matching baseline, and word-level F1.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD, UNK = 0, 1  # token ids reserved by ``char_vocab``


def _describe(x: object) -> str:
    """How an argument looks, for error messages: a tensor's shape and dtype, else its type."""
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"[:80]


def _check_lengths(lengths: object, batch: int, T: int, *, min_length: int = 0) -> None:
    if not isinstance(lengths, Tensor) or lengths.dim() != 1 or lengths.is_floating_point() \
            or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be a 1-D integer tensor (one length per sequence), got {_describe(lengths)}")
    if lengths.numel() != batch:
        raise ValueError(f"lengths has {lengths.numel()} entries but the batch has {batch} sequences")
    if batch and (lengths.min() < min_length or lengths.max() > T):
        raise ValueError(f"lengths must lie in [{min_length}, T={T}], got {lengths.tolist()}")


def validate_rnn_inputs(x: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor, bias_hh: Tensor,
                        h0: Tensor | None = None, lengths: Tensor | None = None) -> None:
    """Raise a clear error if the arguments of ``rnn`` do not fit together."""
    if not isinstance(x, Tensor) or x.dim() != 3 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor of shape (batch, T, d_in), got {_describe(x)}")
    batch, T, d_in = x.shape
    if not isinstance(weight_hh, Tensor) or weight_hh.dim() != 2 or weight_hh.shape[0] != weight_hh.shape[1]:
        raise ValueError(f"weight_hh must have shape (d_h, d_h), got {_describe(weight_hh)}")
    d_h = weight_hh.shape[0]
    if not isinstance(weight_ih, Tensor) or tuple(weight_ih.shape) != (d_h, d_in):
        raise ValueError(f"weight_ih must have shape (d_h, d_in) = ({d_h}, {d_in}), got {_describe(weight_ih)}")
    for name, b in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if not isinstance(b, Tensor) or tuple(b.shape) != (d_h,):
            raise ValueError(f"{name} must have shape (d_h,) = ({d_h},), got {_describe(b)}")
    if h0 is not None and (not isinstance(h0, Tensor) or tuple(h0.shape) != (batch, d_h)):
        raise ValueError(f"h0 must have shape (batch, d_h) = ({batch}, {d_h}), got {_describe(h0)}")
    if lengths is not None:
        _check_lengths(lengths, batch, T)


# --- the Elman RNN --------------------------------------------------------------------


def rnn_cell(x: Tensor, h: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor, bias_hh: Tensor) -> Tensor:
    """One step of an Elman RNN: tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh).

    Args:
        x: (batch, d_in) the inputs of this step.  h: (batch, d_h) the previous hidden state.
        weight_ih: (d_h, d_in); weight_hh: (d_h, d_h); bias_ih, bias_hh: (d_h,) — the layout
            of ``torch.nn.RNN``'s ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``.

    Returns:
        (batch, d_h): the new hidden state, every entry in (-1, 1).
    """
    # W_ih reads the new input, W_hh reads the memory; tanh keeps the state bounded, so
    # repeating the step T times cannot blow it up.
    return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)


def rnn(x: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor, bias_hh: Tensor,
        h0: Tensor | None = None, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Run ``rnn_cell`` over all T steps of a padded batch.

    Args:
        x: (batch, T, d_in).  weight_ih, weight_hh, bias_ih, bias_hh: as in ``rnn_cell``.
        h0: (batch, d_h) initial hidden state; zeros if None.
        lengths: (batch,) number of real steps of each sequence; None means all T are real.

    Returns:
        outputs: (batch, T, d_h) — the hidden state after each step; exactly 0 at padded steps.
        h_n: (batch, d_h) — the state after each sequence's *last real* step (h0 if its length is 0).
    """
    validate_rnn_inputs(x, weight_ih, weight_hh, bias_ih, bias_hh, h0, lengths)
    batch, T, _ = x.shape
    h = x.new_zeros(batch, weight_hh.shape[0]) if h0 is None else h0
    if lengths is None:
        lengths = torch.full((batch,), T)
    real = torch.arange(T, device=x.device) < lengths.to(x.device)[:, None]  # (batch, T): real step?
    outputs = []
    for t in range(T):
        h_new = rnn_cell(x[:, t], h, weight_ih, weight_hh, bias_ih, bias_hh)
        keep = real[:, t, None]  # (batch, 1)
        h = torch.where(keep, h_new, h)  # a padded step leaves the state as it was
        outputs.append(h_new * keep)  # and outputs nothing
    return torch.stack(outputs, dim=1), h


def last_hidden(outputs: Tensor, lengths: Tensor) -> Tensor:
    """The output at each sequence's last real step: ``outputs[b, lengths[b] - 1]``.

    This is the many-to-one read-out. Because an RNN only looks backwards, the output at
    step lengths-1 has seen the whole real sequence and none of the padding after it — so
    it is right even for an RNN that does not mask (e.g. ``torch.nn.GRU`` on a padded batch).

    Args:
        outputs: (batch, T, d) per-step outputs.  lengths: (batch,) ints in [1, T].

    Returns:
        (batch, d).
    """
    if not isinstance(outputs, Tensor) or outputs.dim() != 3:
        raise ValueError(f"outputs must have shape (batch, T, d), got {_describe(outputs)}")
    _check_lengths(lengths, outputs.shape[0], outputs.shape[1], min_length=1)
    rows = torch.arange(outputs.shape[0], device=outputs.device)
    return outputs[rows, lengths.to(outputs.device) - 1]


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse the first lengths[b] steps of each sequence; padded steps stay where they are.

    (batch, T, ...) → same shape. Applying it twice gives ``x`` back. Running an RNN on the
    result reads each sentence right to left and still sees the padding last.
    """
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"x must have shape (batch, T, ...), got {_describe(x)}")
    batch, T = x.shape[:2]
    _check_lengths(lengths, batch, T)
    t = torch.arange(T, device=x.device)
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (batch, T): where step t comes from
    index = index.view(batch, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class RNN(nn.Module):
    """A one-layer Elman RNN (tanh, batch first), optionally bidirectional (双向).

    Parameters are named as in ``torch.nn.RNN(input_size, hidden_size, batch_first=True,
    bidirectional=...)`` — ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``
    and, for the right-to-left direction, the same names with ``_reverse`` — so a
    ``state_dict`` loads either way, and the shapes of inputs and outputs match too.
    """

    def __init__(self, input_size: int, hidden_size: int, *, bidirectional: bool = False):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {_describe(value)}")
        self.input_size, self.hidden_size, self.bidirectional = input_size, hidden_size, bidirectional
        self.suffixes = ["_l0", "_l0_reverse"] if bidirectional else ["_l0"]
        bound = 1 / math.sqrt(hidden_size)  # torch.nn.RNN's initialisation: U(-1/√d_h, 1/√d_h)
        for s in self.suffixes:
            for name, shape in (("weight_ih", (hidden_size, input_size)), ("weight_hh", (hidden_size, hidden_size)),
                                ("bias_ih", (hidden_size,)), ("bias_hh", (hidden_size,))):
                self.register_parameter(name + s, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def forward(self, x: Tensor, lengths: Tensor | None = None,
                h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (batch, T, input_size) → outputs (batch, T, dirs·hidden_size), h_n (dirs, batch, hidden_size).

        ``h0``: (dirs, batch, hidden_size) or None. ``lengths``: (batch,) real steps; padded
        steps give 0 outputs and do not change the state, as with ``pack_padded_sequence``.
        """
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape (batch, T, input_size={self.input_size}), got {_describe(x)}")
        dirs, batch, T = len(self.suffixes), x.shape[0], x.shape[1]
        if h0 is not None and (not isinstance(h0, Tensor) or tuple(h0.shape) != (dirs, batch, self.hidden_size)):
            raise ValueError(f"h0 must have shape (directions, batch, hidden_size) = "
                             f"({dirs}, {batch}, {self.hidden_size}), got {_describe(h0)}")
        if lengths is None:
            lengths = torch.full((batch,), T)
        _check_lengths(lengths, batch, T)
        outputs, finals = [], []
        for d, s in enumerate(self.suffixes):
            weights = [getattr(self, name + s) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            backward = s.endswith("_reverse")
            inputs = reverse_padded(x, lengths) if backward else x
            out, h_n = rnn(inputs, *weights, h0=None if h0 is None else h0[d], lengths=lengths)
            # flip the right-to-left outputs back so that step t lines up with token t
            outputs.append(reverse_padded(out, lengths) if backward else out)
            finals.append(h_n)
        return torch.cat(outputs, dim=-1), torch.stack(finals)


def run_recurrent(layer: nn.Module, x: Tensor, lengths: Tensor) -> Tensor:
    """Per-step outputs (batch, T, d) of ``layer`` on a padded batch, 0 at padded steps.

    ``layer`` is this module's ``RNN`` (which masks) or a batch-first ``torch.nn.RNN``,
    ``GRU`` or ``LSTM`` (which get the same effect from ``pack_padded_sequence``).
    """
    if isinstance(layer, RNN):
        return layer(x, lengths)[0]
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    return pad_packed_sequence(layer(packed)[0], batch_first=True, total_length=x.shape[1])[0]


def _recurrent_layer(cell: str, input_size: int, hidden_size: int, bidirectional: bool) -> nn.Module:
    if cell == "rnn":
        return RNN(input_size, hidden_size, bidirectional=bidirectional)
    if cell == "gru":
        return nn.GRU(input_size, hidden_size, batch_first=True, bidirectional=bidirectional)
    raise ValueError(f"cell must be 'rnn' (this module's Elman RNN) or 'gru' (torch.nn.GRU), got {cell!r}")


class RNNClassifier(nn.Module):
    """Many-to-one (多对一): embedding → RNN → hidden state at the last real step → linear.

    ``forward(tokens (batch, T), lengths (batch,))`` → logits (batch, num_classes). Only the
    last step's output is used: the per-step outputs of a many-to-one model are not needed.
    """

    def __init__(self, vocab_size: int, num_classes: int, *, embed_dim: int = 64, hidden_size: int = 128,
                 cell: str = "rnn"):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.rnn = _recurrent_layer(cell, embed_dim, hidden_size, bidirectional=False)
        self.head = nn.Linear(hidden_size, num_classes)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        outputs = run_recurrent(self.rnn, self.embed(tokens), lengths)
        return self.head(last_hidden(outputs, lengths))


class RNNTagger(nn.Module):
    """Many-to-many synchronous (多对多（同步）): embedding → (bi)RNN → one linear read-out per step.

    ``forward(tokens (batch, T), lengths (batch,))`` → logits (batch, T, num_tags). With
    ``bidirectional=True`` the tag of token t sees the tokens after t as well as before.
    """

    def __init__(self, vocab_size: int, num_tags: int, *, embed_dim: int = 64, hidden_size: int = 128,
                 bidirectional: bool = True, cell: str = "rnn"):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.rnn = _recurrent_layer(cell, embed_dim, hidden_size, bidirectional)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_tags)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return self.head(run_recurrent(self.rnn, self.embed(tokens), lengths))


# --- characters → padded id tensors ----------------------------------------------------


def char_vocab(texts: Iterable[str], min_count: int = 1) -> dict[str, int]:
    """Character → id, most frequent first; id 0 is padding ``<pad>``, id 1 unknown ``<unk>``."""
    counts = Counter(ch for text in texts for ch in text)
    if not counts:
        raise ValueError("texts is empty: cannot build a vocabulary from no characters")
    chars = [ch for ch, n in counts.most_common() if n >= min_count]
    return {"<pad>": PAD, "<unk>": UNK, **{ch: i + 2 for i, ch in enumerate(chars)}}


def encode_batch(texts: Sequence[str], vocab: dict[str, int], max_len: int | None = None) -> tuple[Tensor, Tensor]:
    """Texts → (tokens (batch, T) long, padded with 0; lengths (batch,)). Long texts are cut to max_len."""
    if not texts:
        raise ValueError("texts is empty: nothing to encode")
    if any(len(t) == 0 for t in texts):
        raise ValueError("texts contains an empty string; every sequence needs at least one step")
    ids = [[vocab.get(ch, UNK) for ch in text[:max_len]] for text in texts]
    lengths = torch.tensor([len(s) for s in ids])
    tokens = torch.full((len(ids), int(lengths.max())), PAD, dtype=torch.long)
    for row, s in enumerate(ids):
        tokens[row, :len(s)] = torch.tensor(s)
    return tokens, lengths


# --- evaluating word segmentation (分词) ------------------------------------------------

TAGS = "BMES"  # Begin, Middle, End of a multi-character word; Single-character word


def words_to_tags(words: Sequence[str]) -> str:
    """["迈向", "新", "世纪"] → "BESBE": one B/M/E/S tag per character."""
    return "".join("S" if len(w) == 1 else "B" + "M" * (len(w) - 2) + "E" for w in words if w)


def tags_to_words(chars: str, tags: Sequence[str]) -> list[str]:
    """Cut ``chars`` into words by their tags. A word ends after E or S, and before B or S.

    Inconsistent sequences a model may output ("BB", "MS", a final "B") are cut at the
    obvious place rather than rejected, so every tag sequence gives a segmentation.
    """
    if len(chars) != len(tags):
        raise ValueError(f"chars and tags must have the same length, got {len(chars)} and {len(tags)}")
    words, start = [], 0
    for i, tag in enumerate(tags):
        if tag not in TAGS:
            raise ValueError(f"tags must be B, M, E or S, got {tag!r} at position {i}")
        if tag in "BS" and i > start:  # a new word begins: close the open one
            words.append(chars[start:i])
            start = i
        if tag in "ES":
            words.append(chars[start:i + 1])
            start = i + 1
    if start < len(chars):
        words.append(chars[start:])
    return words


def word_spans(words: Sequence[str]) -> set[tuple[int, int]]:
    """["迈向", "新"] → {(0, 2), (2, 3)}: each word as its [start, end) character span."""
    spans, start = set(), 0
    for w in words:
        spans.add((start, start + len(w)))
        start += len(w)
    return spans


def word_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Precision, recall and F1 of predicted words over a corpus (micro-averaged).

    A predicted word counts as correct iff a gold word has exactly the same span
    (start, end): both of its boundaries must be right.
    """
    if len(predicted) != len(gold):
        raise ValueError(f"predicted has {len(predicted)} sentences but gold has {len(gold)}")
    correct = n_pred = n_gold = 0
    for i, (p, g) in enumerate(zip(predicted, gold)):
        if "".join(p) != "".join(g):
            raise ValueError(f"sentence {i}: predicted and gold words do not spell the same text")
        p_spans, g_spans = word_spans(p), word_spans(g)
        correct += len(p_spans & g_spans)
        n_pred += len(p_spans)
        n_gold += len(g_spans)
    precision = correct / n_pred if n_pred else 0.0
    recall = correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def forward_max_match(text: str, dictionary: set[str] | dict[str, int], max_word_len: int = 8) -> list[str]:
    """Dictionary segmentation: at each position take the longest dictionary word (正向最大匹配).

    A character that starts no dictionary word becomes a word of its own.
    """
    if max_word_len < 1:
        raise ValueError(f"max_word_len must be >= 1, got {max_word_len!r}")
    words, i = [], 0
    while i < len(text):
        for n in range(min(max_word_len, len(text) - i), 0, -1):
            if n == 1 or text[i:i + n] in dictionary:
                words.append(text[i:i + n])
                i += n
                break
    return words
