"""Encoder–decoder (seq2seq) with attention, greedy decoding and beam search (chapter 03).

The task is **date normalisation**: a date written the way people write it
("3rd of March 2021", "MAR 03 2021", "2021年3月3日") goes in, ISO 8601 ("2021-03-03") comes
out. It is generated here, so it needs no data, yet it is a real transduction problem:
the output order differs from the input order, and the model must learn month names, day
ordinals, two-digit years and a Chinese format from examples alone.

The model is the classic RNN encoder–decoder with **additive (Bahdanau) attention**:

    encoder:  bidirectional GRU over the source characters → memory (B, S, 2H), one vector
              per source position, and a summary of the whole input (the two final states)
    decoder:  a GRU cell, one target character per step. At step t it
              1. attends from its previous state s_{t-1} to the memory → context c_t (B, 2H)
              2. updates s_t = GRU([embed(y_{t-1}); c_t], s_{t-1})
              3. predicts y_t from [s_t; c_t]

Additive attention scores a query against each key with a one-hidden-layer network,
vᵀ tanh(W_q q + W_k k_j), instead of a dot product: it is what the 2014 paper that
introduced attention for translation used, and it lets query and keys have different
sizes. With ``attention=False`` the decoder instead gets the same summary vector at every
step — the single-context-vector model whose bottleneck attention removes.

Decoding works on any *step function* ``step(tokens (k,), state (k, ...)) -> (log_probs
(k, V), new_state (k, ...))``, so greedy decoding and beam search can be tested on tiny
random models where the best sequence can be found by brute force.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_course.attention import _check_positive_int, _describe

# ----------------------------------------------------------------------------- the task

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST_DATE, LAST_DATE = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
# Two-digit years ("3 Mar 21") are read in the window 1950–2049, so every rendering is unambiguous.


def ordinal(n: int) -> str:
    """1 → '1st', 2 → '2nd', 3 → '3rd', 11 → '11th', 22 → '22nd'."""
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# Day-first wherever the day and month are both numbers: "03/04/2021" is 3 April. Mixing in
# the US month-first order would make such strings ambiguous, and no model could be right.
DATE_FORMATS: dict[str, Callable[[dt.date], str]] = {
    "ordinal of":    lambda d: f"{ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",  # 3rd of March 2021
    "month d, yyyy": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",            # March 3, 2021
    "dd/mm/yyyy":    lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",                  # 03/03/2021
    "d mon yy":      lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year % 100:02d}",  # 3 Mar 21
    "chinese":       lambda d: f"{d.year}年{d.month}月{d.day}日",                        # 2021年3月3日
    "weekday":       lambda d: f"{WEEKDAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}",
    "lowercase":     lambda d: f"{d.day} {MONTHS[d.month - 1].lower()} {d.year}",      # 3 march 2021
    "MON dd yyyy":   lambda d: f"{MONTHS[d.month - 1][:3].upper()} {d.day:02d} {d.year}",  # MAR 03 2021
    "dd.mm.yyyy":    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",                  # 03.03.2021
    "yyyymmdd":      lambda d: f"{d.year}{d.month:02d}{d.day:02d}",                    # 20210303
    "yyyy/m/d":      lambda d: f"{d.year}/{d.month}/{d.day}",                          # 2021/3/3
}


def render_date(date: dt.date, fmt: str) -> str:
    """``date`` written in the human format named ``fmt`` (a key of ``DATE_FORMATS``)."""
    if fmt not in DATE_FORMATS:
        raise ValueError(f"fmt must be one of {sorted(DATE_FORMATS)}, got {fmt!r}")
    return DATE_FORMATS[fmt](date)


def _all_dates() -> list[dt.date]:
    n = (LAST_DATE - FIRST_DATE).days + 1
    return [FIRST_DATE + dt.timedelta(days=i) for i in range(n)]


def date_splits(n_train: int, n_test: int, seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Seeded (human, iso) pairs for training and held-out evaluation.

    The split is by **date**: the held-out dates never occur in training, in any format, so
    no source string (and no target string) is shared and the held-out score measures
    generalisation, not memory. Each example uses a format drawn uniformly.
    """
    _check_positive_int("n_train", n_train)
    _check_positive_int("n_test", n_test)
    dates = _all_dates()
    if n_test > len(dates) // 2:
        raise ValueError(f"n_test must be at most {len(dates) // 2} (half of the dates), got {n_test}")
    rng = random.Random(seed)
    rng.shuffle(dates)
    test_dates, train_dates = dates[:n_test], dates[n_test:]
    formats = list(DATE_FORMATS)

    def pair(d: dt.date) -> tuple[str, str]:
        return render_date(d, rng.choice(formats)), d.isoformat()

    test = [pair(d) for d in test_dates]
    train = [pair(rng.choice(train_dates)) for _ in range(n_train)]
    return train, test


def reversal_pairs(n: int, min_len: int, max_len: int, seed: int = 0) -> list[tuple[str, str]]:
    """(digits, digits reversed) pairs with lengths in [min_len, max_len]: a task whose
    information grows with the input length (used to measure the context-vector bottleneck)."""
    for name, value in (("n", n), ("min_len", min_len), ("max_len", max_len)):
        _check_positive_int(name, value)
    if min_len > max_len:
        raise ValueError(f"min_len must be ≤ max_len, got {min_len} > {max_len}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = "".join(rng.choice("0123456789") for _ in range(rng.randint(min_len, max_len)))
        out.append((s, s[::-1]))
    return out


# ----------------------------------------------------------------------------- vocabulary

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ["<pad>", "<s>", "</s>"]


class CharVocab:
    """Characters ↔ ids, with ``<pad>`` = 0, ``<s>`` = 1 (start), ``</s>`` = 2 (end)."""

    def __init__(self, chars: str | Sequence[str]):
        chars = sorted(set(chars))
        self.itos = SPECIALS + chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, *, eos: bool = False) -> list[int]:
        unknown = sorted(set(text) - set(self.stoi) - set(SPECIALS))
        if not isinstance(text, str) or unknown:
            raise ValueError(f"text must be a str of known characters; unknown: {unknown} in {text!r}")
        return [self.stoi[c] for c in text] + ([EOS] if eos else [])

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Ids → text, stopping at the first ``</s>`` and skipping ``<pad>``/``<s>``."""
        out = []
        for i in (ids.tolist() if isinstance(ids, Tensor) else ids):
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return "".join(out)

    def batch(self, texts: Sequence[str], *, eos: bool = False) -> tuple[Tensor, Tensor]:
        """Padded ids (B, T_max) and lengths (B,)."""
        if not texts:
            raise ValueError("texts must be a non-empty list of strings")
        rows = [self.encode(t, eos=eos) for t in texts]
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.full((len(rows), int(lengths.max())), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return ids, lengths


def _source_chars() -> str:
    # Every character any format can produce: render every day of a leap year in every format
    # (covers all months, weekdays, ordinal suffixes and digits).
    days = [dt.date(2000, 1, 1) + dt.timedelta(days=i) for i in range(366)]
    return "".join({c for d in days for f in DATE_FORMATS.values() for c in f(d)} | set("0123456789"))


SOURCE_VOCAB = CharVocab(_source_chars())
TARGET_VOCAB = CharVocab("0123456789-")


# ----------------------------------------------------------------------------- the model


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: one decoder query against all encoder states.

    score(q, k_j) = vᵀ tanh(W_q q + W_k k_j);  weights = softmax over the source positions j;
    context = Σ_j weights_j k_j (the keys are also the values: the encoder states).

    Attributes: ``query_proj`` = Linear(d_query, d_attn, bias=False), ``key_proj`` =
    Linear(d_key, d_attn), ``score_proj`` = Linear(d_attn, 1, bias=False) (the vector v).
    """

    def __init__(self, d_query: int, d_key: int, d_attn: int):
        super().__init__()
        for name, value in (("d_query", d_query), ("d_key", d_key), ("d_attn", d_attn)):
            _check_positive_int(name, value)
        self.query_proj = nn.Linear(d_query, d_attn, bias=False)
        self.key_proj = nn.Linear(d_key, d_attn)
        self.score_proj = nn.Linear(d_attn, 1, bias=False)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One decoder step's attention.

        Args:
            query: (B, d_query) — the decoder state asking.
            keys: (B, S, d_key) — the encoder states (keys and values at once).
            mask: (B, S) bool, True where the source position is real (not padding).

        Returns:
            context: (B, d_key) — the weighted average of the keys.
            weights: (B, S) — each row sums to 1; padding gets exactly 0.
        """
        self._check_inputs(query, keys, mask)
        # (B, 1, d_attn) + (B, S, d_attn): the query's projection is added to every key's.
        hidden = torch.tanh(self.query_proj(query)[:, None, :] + self.key_proj(keys))
        scores = self.score_proj(hidden).squeeze(-1)  # (B, S)
        if mask is not None:
            # Fill before the softmax so the real positions still share exactly one unit.
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)  # over source positions, one distribution per row
        context = (weights[:, :, None] * keys).sum(dim=1)
        return context, weights

    def _check_inputs(self, query: Tensor, keys: Tensor, mask: Tensor | None) -> None:
        d_query, d_key = self.query_proj.in_features, self.key_proj.in_features
        if not isinstance(query, Tensor) or query.dim() != 2 or query.shape[-1] != d_query:
            raise ValueError(f"query must have shape (B, d_query={d_query}), got {_describe(query)}")
        if not isinstance(keys, Tensor) or keys.dim() != 3 or keys.shape[-1] != d_key:
            raise ValueError(f"keys must have shape (B, S, d_key={d_key}), got {_describe(keys)}")
        if keys.shape[0] != query.shape[0]:
            raise ValueError(f"query and keys batch sizes differ: {query.shape[0]} vs {keys.shape[0]}")
        if mask is not None and (not isinstance(mask, Tensor) or mask.dtype != torch.bool
                                 or tuple(mask.shape) != tuple(keys.shape[:2])):
            raise ValueError(f"mask must be a bool tensor of shape (B, S) = {tuple(keys.shape[:2])}, "
                             f"got {_describe(mask)}")


class Seq2Seq(nn.Module):
    """Bidirectional-GRU encoder, GRU-cell decoder, additive attention (or none).

    Args:
        src_vocab, tgt_vocab: vocabulary sizes.
        d_embed: character embedding size; d_hidden: encoder GRU size per direction (the
            memory and the decoder state have 2·d_hidden); d_attn: attention hidden size.
        attention: False gives the single-context-vector model: the decoder sees the
            encoder's summary at every step and no per-position memory.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, *, d_embed: int = 32, d_hidden: int = 64,
                 d_attn: int = 64, attention: bool = True):
        super().__init__()
        for name, value in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab), ("d_embed", d_embed),
                            ("d_hidden", d_hidden), ("d_attn", d_attn)):
            _check_positive_int(name, value)
        d_mem = 2 * d_hidden
        self.src_embed = nn.Embedding(src_vocab, d_embed, padding_idx=PAD)
        self.encoder = nn.GRU(d_embed, d_hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(d_mem, d_mem)  # encoder summary → first decoder state
        self.tgt_embed = nn.Embedding(tgt_vocab, d_embed)
        self.attention = AdditiveAttention(d_mem, d_mem, d_attn) if attention else None
        self.cell = nn.GRUCell(d_embed + d_mem, d_mem)
        self.out = nn.Linear(2 * d_mem, tgt_vocab)

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """src (B, S) ids, lengths (B,) → memory (B, S, 2H), mask (B, S), first decoder state (B, 2H).

        Without attention the memory is the summary alone, (B, 1, 2H), with mask (B, 1).
        """
        if src.dim() != 2 or lengths.shape != src.shape[:1]:
            raise ValueError(f"src must be (B, S) and lengths (B,), got {_describe(src)} and {_describe(lengths)}")
        # Packing makes each direction stop at the real end of its sequence, so the final
        # states summarise the characters and not the padding after them.
        packed = nn.utils.rnn.pack_padded_sequence(self.src_embed(src), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        out, h_n = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        summary = torch.cat([h_n[0], h_n[1]], dim=-1)  # forward's last state ‖ backward's last state
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < lengths.to(src.device)[:, None]
        if self.attention is None:
            # No attention: all the decoder may ever see of the input is this ONE vector.
            memory, mask = summary[:, None, :], mask[:, :1]
        return memory, mask, torch.tanh(self.bridge(summary))

    def decode_step(self, tokens: Tensor, state: Tensor, memory: Tensor, mask: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One step: previous tokens (B,), state (B, 2H) → logits (B, V), new state, attention (B, S) or None."""
        if self.attention is not None:
            context, weights = self.attention(state, memory, mask)
        else:  # the same summary vector at every step: the context-vector bottleneck
            context, weights = memory[:, 0], None
        state = self.cell(torch.cat([self.tgt_embed(tokens), context], dim=-1), state)
        return self.out(torch.cat([state, context], dim=-1)), state, weights

    def forward(self, src: Tensor, lengths: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: the decoder reads the *true* previous token ``tgt_in`` (B, T) at each step.

        Returns logits (B, T, V) and attention weights (B, T, S) (None without attention).
        """
        memory, mask, state = self.encode(src, lengths)
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, state, w = self.decode_step(tgt_in[:, t], state, memory, mask)
            logits.append(step_logits)
            weights.append(w)
        return torch.stack(logits, 1), (torch.stack(weights, 1) if self.attention is not None else None)



def seq2seq_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy per real target token; ``<pad>`` positions are ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)


def teacher_forcing_batch(tgt: Sequence[str], vocab: CharVocab = TARGET_VOCAB) -> tuple[Tensor, Tensor]:
    """Decoder input ``<s> y_1 … y_n`` and target ``y_1 … y_n </s>`` (both (B, n+1), padded)."""
    targets, lengths = vocab.batch(tgt, eos=True)
    tgt_in = torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], dim=1)
    tgt_in = tgt_in.masked_fill(tgt_in == EOS, PAD)  # the </s> of a shorter row is not an input
    return tgt_in, targets


def train_seq2seq(model: Seq2Seq, pairs: Sequence[tuple[str, str]], *, steps: int, batch_size: int = 64,
                  lr: float = 3e-3, seed: int = 0, src_vocab: CharVocab = SOURCE_VOCAB,
                  tgt_vocab: CharVocab = TARGET_VOCAB) -> list[float]:
    """Teacher-forced training with Adam and gradient clipping; returns the loss of every step."""
    _check_positive_int("steps", steps)
    _check_positive_int("batch_size", batch_size)
    if not pairs:
        raise ValueError("pairs must be a non-empty list of (source, target) strings")
    device = next(model.parameters()).device
    src, src_len = src_vocab.batch([s for s, _ in pairs])
    tgt_in, targets = teacher_forcing_batch([t for _, t in pairs], tgt_vocab)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(pairs), (batch_size,), generator=gen)
        S, T = int(src_len[idx].max()), int((targets[idx] != PAD).sum(1).max())
        logits, _ = model(src[idx, :S].to(device), src_len[idx], tgt_in[idx, :T].to(device))
        loss = seq2seq_loss(logits, targets[idx, :T].to(device))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # RNNs occasionally produce huge gradients
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


# ----------------------------------------------------------------------------- decoding

StepFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""step(tokens (k,), state (k, ...)) -> (log_probs (k, V), new_state (k, ...))."""


def _check_decode_args(state: Tensor, max_len: int, bos: int, eos: int) -> None:
    if not isinstance(state, Tensor) or state.dim() < 1 or state.shape[0] < 1:
        raise ValueError(f"state must be a tensor with a leading batch dim, got {_describe(state)}")
    _check_positive_int("max_len", max_len)
    for name, value in (("bos", bos), ("eos", eos)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int token id, got {value!r}")


def greedy_decode(step: StepFn, state: Tensor, *, max_len: int, bos: int = BOS, eos: int = EOS
                  ) -> tuple[list[list[int]], Tensor]:
    """Pick the most probable token at every step and feed it back in, for B sequences at once.

    Args:
        step: the model's step function (see ``StepFn``); it returns log-probabilities.
        state: (B, ...) the decoder's starting state, one row per sequence.
        max_len: the most tokens to generate per sequence (``</s>`` included).

    Returns:
        tokens: B lists of generated ids, each ending with ``eos`` unless max_len cut it off.
        scores: (B,) float — each list's total log-probability under the model.
    """
    _check_decode_args(state, max_len, bos, eos)
    B = state.shape[0]
    tokens = torch.full((B,), bos, dtype=torch.long, device=state.device)
    scores = torch.zeros(B, dtype=torch.float64)
    done = torch.zeros(B, dtype=torch.bool)
    out: list[list[int]] = [[] for _ in range(B)]
    for _ in range(max_len):
        log_probs, state = step(tokens, state)
        best_lp, tokens = log_probs.max(dim=-1)  # the prediction becomes the next input
        for b in (~done).nonzero().flatten().tolist():
            out[b].append(int(tokens[b]))
            scores[b] += float(best_lp[b])
        done |= (tokens == eos).cpu()
        if done.all():  # every sequence has said </s>: stop early
            break
    return out, scores


def beam_search(step: StepFn, state: Tensor, *, beam_width: int, max_len: int, bos: int = BOS,
                eos: int = EOS) -> list[tuple[list[int], float]]:
    """Keep the ``beam_width`` most probable partial sequences at every step, for ONE input.

    Scores are sums of log-probabilities (products of probabilities would underflow and
    cannot be added). At each step every live hypothesis is extended by every token and the
    best ``beam_width`` of all these candidates survive; those that end in ``eos`` move to the
    finished list. Search stops when nothing is live, when no live hypothesis can still beat
    the k-th finished one (log-probabilities only go down as a sequence grows), or at
    ``max_len`` (what is still live then is kept as a candidate, cut off).

    Plain beam search can, rarely, end below greedy: the greedy prefix may be pushed out of
    the beam by prefixes that later collapse. The greedy hypothesis is therefore added to
    the candidates, so the best returned score is never worse than greedy's.

    Args:
        state: (1, ...) the decoder's starting state for the one input sequence.

    Returns:
        Up to ``beam_width`` (tokens, log-probability) pairs, best first.
    """
    _check_decode_args(state, max_len, bos, eos)
    _check_positive_int("beam_width", beam_width)
    if state.shape[0] != 1:
        raise ValueError(f"state must describe one sequence, shape (1, ...), got {_describe(state)}")
    greedy_tokens, greedy_scores = greedy_decode(step, state, max_len=max_len, bos=bos, eos=eos)
    finished = [(greedy_tokens[0], float(greedy_scores[0]))]
    live = [([], 0.0)]  # (tokens so far, their log-probability)
    for t in range(max_len):
        prev = torch.tensor([seq[-1] if seq else bos for seq, _ in live], device=state.device)
        log_probs, state = step(prev, state)
        totals = torch.tensor([s for _, s in live], dtype=torch.float64)[:, None] + log_probs.double().cpu()
        # the best beam_width extensions over ALL live hypotheses × tokens, not the best per hypothesis
        best = totals.flatten().topk(min(beam_width, totals.numel()))
        vocab = totals.shape[1]
        keep, new_live = [], []
        for score, flat in zip(best.values.tolist(), best.indices.tolist()):
            parent, token = divmod(flat, vocab)
            seq = live[parent][0] + [token]
            if token == eos or t == max_len - 1:
                finished.append((seq, score))
            else:
                keep.append(parent)
                new_live.append((seq, score))
        live = new_live
        if not live:
            break
        state = state[torch.tensor(keep, device=state.device)]  # each survivor carries its parent's state
        finished.sort(key=lambda h: h[1], reverse=True)
        if len(finished) >= beam_width and live[0][1] <= finished[beam_width - 1][1]:
            break
    unique = {tuple(seq): score for seq, score in finished}  # greedy's may also be found by the beam
    ranked = sorted(unique.items(), key=lambda h: h[1], reverse=True)[:beam_width]
    return [(list(seq), score) for seq, score in ranked]


# ----------------------------------------------------------------------------- using the model


def model_step(model: Seq2Seq, memory: Tensor, mask: Tensor) -> StepFn:
    """The ``StepFn`` of a trained model for the sources whose encoding is ``memory``/``mask``.

    With one source (memory (1, S, ·)) it serves any number of hypotheses, as beam search needs.
    """

    def step(tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        k = tokens.shape[0]
        mem = memory.expand(k, -1, -1) if memory.shape[0] == 1 else memory
        msk = mask.expand(k, -1) if mask.shape[0] == 1 else mask
        logits, state, _ = model.decode_step(tokens, state, mem, msk)
        return logits.log_softmax(-1), state

    return step


@torch.no_grad()
def translate(model: Seq2Seq, sources: Sequence[str], *, beam_width: int = 1, max_len: int = 12,
              src_vocab: CharVocab = SOURCE_VOCAB, tgt_vocab: CharVocab = TARGET_VOCAB) -> list[str]:
    """Decode each source string: greedy (batched) for ``beam_width=1``, else the best beam."""
    _check_positive_int("beam_width", beam_width)
    model.eval()
    device = next(model.parameters()).device
    src, lengths = src_vocab.batch(list(sources))
    memory, mask, state = model.encode(src.to(device), lengths)
    if beam_width == 1:
        tokens, _ = greedy_decode(model_step(model, memory, mask), state, max_len=max_len)
        return [tgt_vocab.decode(t) for t in tokens]
    out = []
    for i in range(len(sources)):
        best = beam_search(model_step(model, memory[i: i + 1], mask[i: i + 1]), state[i: i + 1],
                           beam_width=beam_width, max_len=max_len)
        out.append(tgt_vocab.decode(best[0][0]))
    return out


def exact_match(model: Seq2Seq, pairs: Sequence[tuple[str, str]], *, batch_size: int = 500,
                **kwargs) -> float:
    """Fraction of pairs whose decoded output equals the target exactly."""
    right = 0
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i: i + batch_size]
        max_len = max(len(t) for _, t in chunk) + 1
        preds = translate(model, [s for s, _ in chunk], max_len=max_len, **kwargs)
        right += sum(p == t for p, (_, t) in zip(preds, chunk))
    return right / len(pairs)


@torch.no_grad()
def attention_map(model: Seq2Seq, source: str, output: str, *, src_vocab: CharVocab = SOURCE_VOCAB,
                  tgt_vocab: CharVocab = TARGET_VOCAB) -> Tensor:
    """(len(output)+1, len(source)) attention weights while the model writes ``output`` + ``</s>``."""
    if model.attention is None:
        raise ValueError("model was built with attention=False: it has no attention weights")
    src, lengths = src_vocab.batch([source])
    tgt_in, _ = teacher_forcing_batch([output], tgt_vocab)
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        _, weights = model(src.to(device), lengths, tgt_in.to(device))
    return weights[0].cpu()


def sequence_log_prob(step: StepFn, state: Tensor, tokens: Sequence[int], *, bos: int = BOS) -> float:
    """Log-probability the model gives to ``tokens`` (teacher-forced through ``step``)."""
    total, prev = 0.0, torch.tensor([bos], device=state.device)
    for tok in tokens:
        log_probs, state = step(prev, state)
        total += float(log_probs[0, tok])
        prev = torch.tensor([tok], device=state.device)
    return total


def brute_force_best(step: StepFn, state: Tensor, *, vocab_size: int, max_len: int, bos: int = BOS,
                     eos: int = EOS) -> tuple[list[int], float]:
    """The exact most probable output by trying every sequence (tiny vocabularies only).

    Candidates are every sequence that ends with ``eos`` within ``max_len`` tokens, plus every
    sequence of exactly ``max_len`` tokens without it — the same space the decoders search.
    """
    best: tuple[list[int], float] = ([], -math.inf)

    def visit(seq: list[int], st: Tensor, score: float) -> None:
        nonlocal best
        if (seq and seq[-1] == eos) or len(seq) == max_len:
            if score > best[1]:
                best = (seq, score)
            return
        if score <= best[1]:  # log-probabilities only fall: this branch cannot win
            return
        log_probs, new_state = step(torch.tensor([seq[-1] if seq else bos]), st)
        for tok in range(vocab_size):
            visit(seq + [tok], new_state, score + float(log_probs[0, tok]))

    visit([], state, 0.0)
    return best


class ToyDecoder:
    """A tiny random decoder to test search on: a ``StepFn`` whose best sequence can be brute-forced.

    state = [h ‖ t]: a tanh recurrence h' = tanh(E[token] + W h) over the whole history, and the
    step count t. The ``eos`` logit grows with t, so sequences end at varied lengths.

    >>> toy = ToyDecoder(vocab_size=4, hidden=8, seed=0)
    >>> log_probs, state = toy(torch.tensor([BOS]), toy.initial_state(1))
    """

    def __init__(self, vocab_size: int, hidden: int = 8, *, seed: int = 0, sharpness: float = 2.0,
                 eos: int = EOS, eos_drift: float = 0.6):
        _check_positive_int("vocab_size", vocab_size)
        _check_positive_int("hidden", hidden)
        if not 0 <= eos < vocab_size:
            raise ValueError(f"eos must be a token id in [0, vocab_size={vocab_size}), got {eos}")
        gen = torch.Generator().manual_seed(seed)
        self.vocab_size, self.hidden, self.eos, self.eos_drift = vocab_size, hidden, eos, eos_drift
        self.seed = seed
        self.E = torch.randn(max(vocab_size, BOS + 1), hidden, generator=gen)
        self.W = torch.randn(hidden, hidden, generator=gen) / math.sqrt(hidden)
        self.O = sharpness * torch.randn(hidden, vocab_size, generator=gen) / math.sqrt(hidden)

    def initial_state(self, batch: int) -> Tensor:
        """(batch, hidden + 1): random h (seeded), step count 0."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        return torch.cat([torch.randn(batch, self.hidden, generator=gen), torch.zeros(batch, 1)], dim=-1)

    def __call__(self, tokens: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, t = state[:, :-1], state[:, -1:]
        h = torch.tanh(self.E[tokens] + h @ self.W)
        logits = h @ self.O
        t = t.expand(h.shape[0], 1)  # one state may serve several tokens (a beam's first step)
        logits[:, self.eos] += self.eos_drift * (t[:, 0] - 2)  # ending gets likelier every step
        return logits.log_softmax(-1), torch.cat([h, t + 1], dim=-1)
