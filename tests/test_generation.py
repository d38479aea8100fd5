"""llm_course.generation against independent references.

- the logit filters vs Hugging Face ``transformers``' own logits processors;
- KV-cached generation vs uncached generation (our DecoderOnly, several configurations);
- our greedy loop on SmolLM2 vs ``model.generate(do_sample=False)``;
- beam search vs exhaustive search on a tiny model.
"""

import itertools

import pytest
import torch
from transformers import (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
                          TopPLogitsWarper)

from llm_course import generation as gen
from llm_course.transformer import DecoderOnly, ModelConfig

NEG_INF = float("-inf")


def random_logits(seed, shape=(4, 50), scale=3.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def assert_same(ours, theirs):
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs)), "different kept sets"
    torch.testing.assert_close(ours, theirs)


# --------------------------------------------------------------------------- filters vs transformers
@pytest.mark.parametrize("temperature", [0.1, 0.7, 1.0, 2.5])
def test_temperature_matches_transformers(temperature):
    logits = random_logits(0)
    assert_same(gen.apply_temperature(logits, temperature), TemperatureLogitsWarper(temperature)(None, logits))


@pytest.mark.parametrize("seed,k,min_keep", [(0, 1, 1), (1, 5, 1), (2, 49, 1), (3, 50, 1), (4, 80, 1),
                                             (5, 2, 7), (6, 10, 3)])
def test_top_k_matches_transformers(seed, k, min_keep):
    logits = random_logits(seed)
    assert_same(gen.top_k_filter(logits, k, min_keep),
                TopKLogitsWarper(k, min_tokens_to_keep=min_keep)(None, logits.clone()))


def test_top_k_keeps_every_token_tied_with_the_kth():
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, 2.0, 0.0]])
    ours = gen.top_k_filter(logits, 2)
    assert_same(ours, TopKLogitsWarper(2)(None, logits.clone()))
    assert torch.isfinite(ours).sum() == 4  # 3.0 and the three tied 2.0s


@pytest.mark.parametrize("seed,p,min_keep", [(0, 0.1, 1), (1, 0.5, 1), (2, 0.9, 1), (3, 0.95, 1),
                                             (4, 0.999, 1), (5, 1.0, 1), (6, 0.3, 5), (7, 0.01, 1)])
def test_top_p_matches_transformers(seed, p, min_keep):
    logits = random_logits(seed, (8, 100))
    assert_same(gen.top_p_filter(logits, p, min_keep),
                TopPLogitsWarper(p, min_tokens_to_keep=min_keep)(None, logits.clone()))


def test_top_p_keeps_the_token_that_crosses_p_by_hand():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(gen.top_p_filter(probs.log(), 0.7))
    assert kept.tolist() == [[True, True, False, False]]           # 0.5 < 0.7, 0.5 + 0.3 ≥ 0.7
    kept = torch.isfinite(gen.top_p_filter(probs.log(), 0.5))
    assert kept.tolist() == [[True, False, False, False]]          # the top token alone reaches 0.5


def test_top_p_keeps_ties_at_the_boundary_and_agrees_elsewhere():
    # two tokens share 0.25 at the boundary: HF keeps one of them (whichever its sort puts
    # first); we keep both, as top-k does. Away from the boundary, ties change nothing.
    logits = torch.tensor([[0.4, 0.25, 0.25, 0.1]]).log()
    assert torch.isfinite(gen.top_p_filter(logits, 0.5)).tolist() == [[True, True, True, False]]
    tied_inside = torch.tensor([[0.3, 0.3, 0.2, 0.1, 0.1]]).log()
    assert_same(gen.top_p_filter(tied_inside, 0.75), TopPLogitsWarper(0.75)(None, tied_inside.clone()))


def test_top_p_one_keeps_every_possible_token_and_respects_minus_inf():
    logits = gen.top_k_filter(random_logits(3), 10)
    assert_same(gen.top_p_filter(logits, 1.0), logits)


@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 2.0])
def test_repetition_penalty_matches_transformers(penalty):
    logits = random_logits(1, (3, 30))
    ids = torch.randint(0, 30, (3, 12), generator=torch.Generator().manual_seed(2))  # with repeats
    assert_same(gen.repetition_penalty(logits, ids, penalty),
                RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone()))


def test_repetition_penalty_moves_negative_logits_down_by_hand():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    out = gen.repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0]]  # positive ÷ 2, negative × 2 (once), unseen untouched


def test_filters_keep_at_least_one_token_and_never_renormalise():
    logits = random_logits(5)
    for filtered in (gen.top_k_filter(logits, 1), gen.top_p_filter(logits, 1e-6)):
        assert torch.isfinite(filtered).sum(-1).tolist() == [1] * 4
        kept = torch.isfinite(filtered)
        assert torch.equal(filtered[kept], logits[kept])


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call,match", [
    (lambda x: gen.apply_temperature(x, 0), "temperature"),
    (lambda x: gen.apply_temperature(x, -1.0), "temperature"),
    (lambda x: gen.top_k_filter(x, 0), "k"),
    (lambda x: gen.top_k_filter(x, 2.5), "k"),
    (lambda x: gen.top_k_filter(x, 3, min_tokens_to_keep=0), "min_tokens_to_keep"),
    (lambda x: gen.top_p_filter(x, 0.0), "top_p"),
    (lambda x: gen.top_p_filter(x, 1.5), "top_p"),
    (lambda x: gen.repetition_penalty(x, torch.zeros(4, 2, dtype=torch.long), 0.0), "penalty"),
    (lambda x: gen.repetition_penalty(x, torch.zeros(3, 2, dtype=torch.long), 1.2), "ids"),
    (lambda x: gen.apply_temperature(x.long(), 1.0), "logits"),
    (lambda x: gen.next_token(x, temperature=0.0), "temperature"),
    (lambda x: gen.next_token(x, top_k=0), "top_k"),
    (lambda x: gen.next_token(x, top_p=2), "top_p"),
    (lambda x: gen.next_token(x, repetition_penalty=-1), "repetition_penalty"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call(random_logits(0))


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(vocab_size=40, d_model=32, num_heads=4, num_layers=2, max_len=48)
    return DecoderOnly(ModelConfig(**{**config, **overrides})).eval()


def test_bad_generation_arguments_are_named():
    model, ids = tiny_model(), torch.randint(0, 40, (2, 10))
    with pytest.raises(ValueError, match="ids"):
        gen.generate_cached(model, torch.randint(0, 40, (1, 49)), 0)  # prompt longer than max_len
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen.generate_cached(model, ids, 39)
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen.generate(model, ids, -1)
    with pytest.raises(ValueError, match="temperature"):
        gen.generate_cached(model, ids, 5, temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        gen.generate(model, ids, 5, top_p=0)
    with pytest.raises(ValueError, match="ids"):
        gen.generate(model, ids.float(), 5)
    with pytest.raises(ValueError, match="num_layers"):
        gen.KVCache(0)


# --------------------------------------------------------------------------- the KV cache
CONFIGS = {
    "pre-norm LayerNorm": {},
    "post-norm": dict(prenorm=False),
    "RMSNorm SwiGLU": dict(norm="rms", activation="swiglu", num_layers=3),
    "one head, untied": dict(num_heads=1, tie_weights=False),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_greedy_equals_uncached_greedy(name):
    model = tiny_model(**CONFIGS[name])
    ids = torch.randint(0, 40, (3, 6), generator=torch.Generator().manual_seed(1))  # batch 3
    uncached = gen.generate(model, ids, 40, greedy=True)
    assert torch.equal(gen.generate_cached(model, ids, 40, greedy=True), uncached)


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_logits_equal_the_full_forward_at_every_position(name):
    model = tiny_model(**CONFIGS[name])
    ids = torch.randint(0, 40, (2, 20))
    with torch.no_grad():
        full = model(ids)
        cache = gen.KVCache(len(model.blocks))
        chunks = [gen.forward_cached(model, ids[:, a:b], cache) for a, b in ((0, 7), (7, 8), (8, 15), (15, 20))]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-5, rtol=1e-4)
    d_head = model.config.d_model // model.config.num_heads
    assert cache.length == 20
    assert cache.keys[0].shape == (2, model.config.num_heads, 20, d_head)
    assert cache.nbytes() == 2 * model.config.num_layers * 2 * 20 * model.config.d_model * 4


def test_sampling_is_reproducible_with_a_generator_and_cache_agnostic():
    model, ids = tiny_model(), torch.randint(0, 40, (2, 4))
    options = dict(temperature=1.3, top_k=12, top_p=0.9, repetition_penalty=1.2)
    runs = [gen.generate(model, ids, 30, generator=torch.Generator().manual_seed(7), **options),
            gen.generate(model, ids, 30, generator=torch.Generator().manual_seed(7), **options),
            gen.generate_cached(model, ids, 30, generator=torch.Generator().manual_seed(7), **options)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    other = gen.generate(model, ids, 30, generator=torch.Generator().manual_seed(8), **options)
    assert not torch.equal(runs[0], other)


def test_generate_keeps_chapter_09_behaviour():
    model, ids = tiny_model(), torch.randint(0, 40, (1, 40))
    model.train()
    out = gen.generate(model, ids, 20, 0.8, 5, torch.Generator().manual_seed(0))  # positional, past max_len
    assert out.shape == (1, 60) and torch.equal(out[:, :40], ids) and model.training


def test_sampling_follows_the_filtered_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]]).expand(20000, 5)
    draws = gen.next_token(logits, temperature=0.5, top_k=3, generator=torch.Generator().manual_seed(0))
    expected = torch.softmax(torch.tensor([2.0, 1.0, 0.5]) / 0.5, 0)
    counts = torch.bincount(draws.flatten(), minlength=5).float() / 20000
    assert counts[3:].sum() == 0
    torch.testing.assert_close(counts[:3], expected, atol=0.015, rtol=0)


# --------------------------------------------------------------------------- beam search
def test_beam_search_finds_the_exhaustive_best_on_a_tiny_model():
    model = tiny_model(vocab_size=6, d_model=16, num_heads=2)
    ids = torch.tensor([[1, 2]])
    with torch.no_grad():
        @torch.no_grad()
        def score(seq):
            full = torch.tensor([[1, 2, *seq]])
            lp = torch.log_softmax(model(full), -1)[0]
            return sum(float(lp[1 + i, t]) for i, t in enumerate(seq))
        best = max(itertools.product(range(6), repeat=3), key=score)
    results = gen.beam_search_lm(model, ids, beam_width=6, max_new_tokens=3)
    assert results[0][0] == list(best)
    assert results[0][1] == pytest.approx(score(best), abs=1e-4)
    greedy = gen.generate(model, ids, 3, greedy=True)[0, 2:].tolist()
    assert results[0][1] >= score(greedy) - 1e-6


# --------------------------------------------------------------------------- SmolLM2
@pytest.fixture(scope="module")
def smollm2():
    from llm_course.pretrained import load_smollm2

    return load_smollm2()


def test_greedy_on_smollm2_equals_transformers_generate(smollm2):
    model, tokenizer = smollm2
    ids = tokenizer("The three primary colours are", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        reference = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False,
                                   pad_token_id=tokenizer.eos_token_id)
    assert torch.equal(gen.generate(model, ids, 20, greedy=True), reference)
