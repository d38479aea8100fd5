"""Numbers stated in the prose of book/03-encoder-decoder.md, recomputed.

The page measures its figures in its own cells; this file guards what the text, the summary
and the exercise hints state as facts, so that an edit to the library cannot make them wrong.
"""

import itertools
import math

import pytest

from llm_course.seq2seq import (
    EOS, TARGET_VOCAB, ToyDecoder, _all_dates, beam_search, brute_force_best, greedy_decode,
    teacher_forcing_batch,
)


def test_target_vocabulary_and_uniform_loss():
    assert len(TARGET_VOCAB) == 14                     # "3 specials, 10 digits, '-'" (exercise 1)
    assert math.log(14) == pytest.approx(2.64, abs=5e-3)  # figure 2 caption


def test_dates_carry_about_fifteen_bits():
    assert len(_all_dates()) == 36525                  # 1950-01-01 … 2049-12-31
    assert math.log2(36525) == pytest.approx(15.2, abs=0.05)


def test_exercise2_teacher_forcing():
    tgt_in, targets = teacher_forcing_batch(["1999-12-31"])
    assert TARGET_VOCAB.decode(tgt_in[0, 1:]) == "1999-12-31" and tgt_in.shape[1] == 11
    assert targets.shape[1] == 11 and targets[0, -1] == EOS


def test_exercise6_search_space():
    seqs = [s for n in range(1, 5) for s in itertools.product(range(3), repeat=n)
            if EOS not in s[:-1] and (s[-1] == EOS or n == 4)]
    assert sum(s[-1] == EOS for s in seqs) == 15 and len(seqs) == 31


def test_beam_width_claims_on_toy_decoders():
    # "Greedy finds the best sequence for only about half of these models; a beam of 2 closes
    # most of the gap and a beam of 4 to 8 almost all of it."
    found, gap = {w: 0 for w in (1, 2, 4, 8)}, {w: 0.0 for w in (1, 2, 4, 8)}
    n = 300
    for seed in range(n):
        toy = ToyDecoder(4, seed=seed)
        s0 = toy.initial_state(1)
        _, best = brute_force_best(toy, s0, vocab_size=4, max_len=5)
        g = float(greedy_decode(toy, s0, max_len=5)[1][0])
        for w in found:
            score = beam_search(toy, s0, beam_width=w, max_len=5)[0][1]
            assert score >= g - 1e-9
            found[w] += abs(score - best) < 1e-6
            gap[w] += best - score
    assert 0.4 < found[1] / n < 0.65
    assert gap[2] < gap[1] / 2
    assert found[4] / n > 0.95 and found[8] / n > 0.97


def test_plain_beam_rarely_ends_below_greedy():
    # "about 1 run in 100 with widths 2 and 3" — plain beam search = without greedy's candidate
    from llm_course.checks.seq2seq_cases import _beam_variant

    worse = runs = 0
    for seed in range(1000):
        toy = ToyDecoder(5, seed=seed)
        s0 = toy.initial_state(1)
        g = float(greedy_decode(toy, s0, max_len=8)[1][0])
        for w in (2, 3):
            runs += 1
            worse += _beam_variant(toy, s0, w, 8, 1, EOS, seed_greedy=False)[0][1] < g - 1e-9
    assert 0.003 < worse / runs < 0.02
