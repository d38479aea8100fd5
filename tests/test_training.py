"""Chapter 09: the data pipeline, trainer pieces, checkpoints, exact resume and DDP.

References: hand-computed schedule values, ``torch.nn.utils.clip_grad_norm_``, one big batch
for gradient accumulation, an uninterrupted run for resume, a single process for DDP.
"""

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from llm_course.generation import generate
from llm_course.textdata import (CharCodec, clean_text, eval_blocks, get_batch, load_tokens, write_tokens)
from llm_course.training import (TrainConfig, build_model, clip_grad_norm, evaluate, export_weights, load_checkpoint,
                                 load_config, load_shakespeare_gpt, lr_at, make_optimizer, save_checkpoint, train_step,
                                 use_fused_layernorm)
from llm_course.transformer import DecoderOnly, ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def tiny_model(seed=0, vocab=11, **kw):
    torch.manual_seed(seed)
    return DecoderOnly(ModelConfig(vocab_size=vocab, d_model=16, num_heads=2, num_layers=2, max_len=12, **kw))


# --- data -------------------------------------------------------------------------------------
def test_clean_text_normalises_line_ends_spaces_blank_runs_and_unicode():
    raw = "Cafe\u0301  \r\nline\ttwo\r\n\n\n\nend\x07"
    assert clean_text(raw) == "Caf\u00e9\nline two\n\nend"


def test_char_codec_round_trip_and_unknown_character():
    codec = CharCodec.from_text("to be or not")
    assert codec.chars == sorted(set("to be or not"))
    assert codec.decode(codec.encode("not to be")) == "not to be"
    with pytest.raises(ValueError, match="'z' is not in the codec"):
        codec.encode("zoo")


def test_token_file_round_trip_is_a_memmap_and_leaves_no_temporary(tmp_path):
    ids = np.arange(1000) % 300
    write_tokens(tmp_path / "t.bin", ids)
    tokens = load_tokens(tmp_path / "t.bin")
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    np.testing.assert_array_equal(tokens, ids)
    assert [p.name for p in tmp_path.iterdir()] == ["t.bin"]


def test_token_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        load_tokens(tmp_path / "missing.bin")
    (tmp_path / "odd.bin").write_bytes(b"abc")
    with pytest.raises(ValueError, match="odd.bin.*not a whole number"):
        load_tokens(tmp_path / "odd.bin")
    with pytest.raises(ValueError, match="1-D integer"):
        write_tokens(tmp_path / "x.bin", np.zeros((2, 2)))


def test_get_batch_targets_are_the_inputs_shifted_by_one():
    tokens = np.arange(500, dtype=np.uint16)  # token value = its position: the offsets are visible
    x, y = get_batch(tokens, 64, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (64, 10) and x.dtype == torch.int64
    assert torch.equal(y, x + 1)
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)  # contiguous windows
    assert int(x[:, 0].min()) >= 0 and int(y.max()) <= 499
    again, _ = get_batch(tokens, 64, 10, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)


def test_get_batch_reaches_the_last_window_and_rejects_short_data():
    tokens = np.arange(12, dtype=np.uint16)
    x, y = get_batch(tokens, 400, 10, torch.Generator().manual_seed(1))
    assert set(x[:, 0].tolist()) == {0, 1}  # the two windows with room for their targets
    with pytest.raises(ValueError, match="too few"):
        get_batch(tokens, 1, 12, torch.Generator())
    with pytest.raises(ValueError, match="batch_size"):
        get_batch(tokens, 0, 4, torch.Generator())


def test_eval_blocks_are_fixed_non_overlapping_and_cover_the_split():
    tokens = np.arange(1001, dtype=np.uint16)
    x, y = eval_blocks(tokens, 10)
    assert x.shape == (100, 10) and torch.equal(x.flatten(), torch.arange(1000)) and torch.equal(y, x + 1)
    xs, _ = eval_blocks(tokens, 10, max_tokens=50)
    assert xs.shape == (5, 10) and xs[0, 0] == 0 and xs[-1, 0] == 990


# --- schedule, clipping, step ------------------------------------------------------------------
def test_lr_schedule_matches_hand_computed_values():
    args = dict(max_lr=1.0, min_lr=0.1, warmup_steps=4, total_steps=14)
    assert [lr_at(s, **args) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, **args) == 1.0                          # decay starts at the peak
    assert lr_at(9, **args) == pytest.approx(0.55)          # half way: cos(π/2) = 0 → (max + min) / 2
    assert lr_at(14, **args) == pytest.approx(0.1)
    assert lr_at(1000, **args) == 0.1
    assert lr_at(6, **args) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.2)))
    assert lr_at(0, 1.0, 0.0, 0, 10) == 1.0                 # no warm-up


@pytest.mark.parametrize("bad,match", [(dict(step=-1), "step"), (dict(warmup_steps=20), "warmup_steps"),
                                       (dict(min_lr=2.0), "min_lr")])
def test_lr_schedule_bad_inputs(bad, match):
    args = dict(step=0, max_lr=1.0, min_lr=0.1, warmup_steps=2, total_steps=10) | bad
    with pytest.raises(ValueError, match=match):
        lr_at(**args)


@pytest.mark.parametrize("max_norm", [0.05, 1.0, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    ours, theirs = tiny_model(), tiny_model()
    x = torch.randint(0, 11, (3, 12))
    for m in (ours, theirs):
        m(x).pow(2).mean().backward()
    n_ours = clip_grad_norm(ours.parameters(), max_norm)
    n_theirs = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm)
    assert torch.allclose(n_ours, n_theirs)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-7)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(ours.parameters(), 0)


def test_gradient_accumulation_equals_one_big_batch():
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randint(0, 11, (8, 12), generator=gen), torch.randint(0, 11, (8, 12), generator=gen)
    # SGD, so the weights move by exactly lr·gradient (Adam would magnify float-rounding
    # differences of near-zero gradients into full-size updates).
    big, small = tiny_model(), tiny_model()
    opt_big, opt_small = (torch.optim.SGD(m.parameters(), lr=0.5) for m in (big, small))
    for _ in range(3):
        loss_big, norm_big = train_step(big, opt_big, [(x, y)], grad_clip=0.5)
        loss_small, norm_small = train_step(small, opt_small, [(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)],
                                            grad_clip=0.5)
        assert loss_small == pytest.approx(loss_big, rel=1e-5) and norm_small == pytest.approx(norm_big, rel=1e-4)
    for a, b in zip(big.parameters(), small.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_make_optimizer_decays_matrices_only():
    model = tiny_model()
    decay, no_decay = make_optimizer(model, TrainConfig(weight_decay=0.1)).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_train_step_lowers_the_loss_and_rejects_no_batches():
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(0, 11, (4, 12))
    first, _ = train_step(model, opt, [(x, x)])
    for _ in range(20):
        last, _ = train_step(model, opt, [(x, x)])
    assert last < first - 0.5
    with pytest.raises(ValueError, match="at least one"):
        train_step(model, opt, [])


def test_evaluate_is_the_mean_token_loss_in_eval_mode():
    model = tiny_model(dropout=0.5)
    x, y = torch.randint(0, 11, (5, 12)), torch.randint(0, 11, (5, 12))
    model.train()
    got = evaluate(model, x, y, batch_size=2)
    model.eval()
    expected = torch.nn.functional.cross_entropy(model(x).reshape(-1, 11), y.reshape(-1)).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_fused_layernorm_keeps_the_outputs_and_the_state_dict():
    model = tiny_model()
    x = torch.randint(0, 11, (2, 12))
    before, state = model(x), model.state_dict()
    use_fused_layernorm(model)
    assert isinstance(model.final_norm, torch.nn.LayerNorm)
    assert torch.allclose(model(x), before, atol=1e-5)
    assert model.state_dict().keys() == state.keys()


# --- checkpoints -----------------------------------------------------------------------------
def test_checkpoint_round_trip_restores_model_optimizer_and_rng(tmp_path):
    model, opt = tiny_model(), None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(0, 11, (2, 12))
    train_step(model, opt, [(x, x)])
    save_checkpoint(tmp_path / "c.pt", model, opt, 7, {"note": "hi"})
    after_save = torch.rand(3)
    fresh = tiny_model(seed=5)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    state = load_checkpoint(tmp_path / "c.pt", fresh, fresh_opt)
    assert state["step"] == 7 and state["extra"] == {"note": "hi"}
    assert torch.equal(torch.rand(3), after_save)  # the global RNG continues where it was saved
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    train_step(model, opt, [(x, x)])
    train_step(fresh, fresh_opt, [(x, x)])  # same Adam moments → the same next step
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters())
    path = save_checkpoint(tmp_path / "c.pt", model, opt, 1)
    good = path.read_bytes()

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, opt, 2)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_checkpoint_errors_name_the_file_and_the_problem(tmp_path):
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(FileNotFoundError, match="nope.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt", model)
    path = save_checkpoint(tmp_path / "c.pt", model, opt, 1)
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.pt is unreadable — truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.pt", model)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt is not a llm_course.checkpoint"):
        load_checkpoint(tmp_path / "other.pt", model)
    with pytest.raises(ValueError, match="c.pt was saved from a different model"):
        load_checkpoint(path, tiny_model(vocab=12))


# --- config ---------------------------------------------------------------------------------
def test_config_file_tables_types_and_unknown_keys(tmp_path):
    cfg = load_config(ROOT / "configs" / "shakespeare_char.toml")
    assert cfg.dataset == "shakespeare" and cfg.block_size >= 64
    (tmp_path / "bad.toml").write_text("[train]\nmax_itres = 5\n")
    with pytest.raises(ValueError, match="bad.toml: unknown setting.*max_itres"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "type.toml").write_text("[train]\nmax_iters = 'many'\n")
    with pytest.raises(ValueError, match="max_iters must be a int"):
        load_config(tmp_path / "type.toml")
    with pytest.raises(ValueError, match="warmup_iters"):
        TrainConfig(max_iters=10, warmup_iters=20)


# --- generation -------------------------------------------------------------------------------
def test_generate_top_k_1_is_greedy_and_respects_max_len():
    model = tiny_model().eval()
    ids = torch.randint(0, 11, (2, 3))
    out = generate(model, ids, 15, top_k=1)  # longer than max_len=12: the context is cropped
    assert out.shape == (2, 18) and torch.equal(out[:, :3], ids)
    greedy = ids
    for _ in range(15):
        greedy = torch.cat([greedy, model(greedy[:, -12:])[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, greedy)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, ids, 1, temperature=0)
    with pytest.raises(ValueError, match="ids must be"):
        generate(model, ids[0], 1)


def test_generate_samples_from_the_temperature_scaled_distribution():
    model = tiny_model().eval()
    ids = torch.zeros(4000, 1, dtype=torch.long)
    out = generate(model, ids, 1, temperature=2.0, generator=torch.Generator().manual_seed(0))[:, 1]
    expected = torch.softmax(model(ids[:1])[0, -1] / 2.0, -1)
    freq = torch.bincount(out, minlength=11).float() / len(out)
    assert (freq - expected).abs().max() < 0.03


# --- the command line: exact resume after SIGKILL, and DDP -------------------------------------
TINY = ["dataset='shakespeare'", "d_model=32", "num_heads=2", "num_layers=2", "block_size=32", "batch_size=8",
        "lr=3e-3", "min_lr=3e-4", "warmup_iters=5", "eval_interval=0", "final_eval_tokens=4096", "seed=3",
        "threads=1", "device='cpu'"]


def cli(out_dir, data_dir, *extra, resume=False):
    sets = [f"--set={s}" for s in [*TINY, f"out_dir='{out_dir}'", f"data_dir='{data_dir}'", *extra]]
    return [sys.executable, "-m", "llm_course.train", str(ROOT / "configs" / "shakespeare_char.toml"),
            "--no-progress", *sets, *(["--resume"] if resume else [])]


def final_weights(out_dir) -> dict:
    return torch.load(Path(out_dir) / "ckpt.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from llm_course.textdata import prepare_shakespeare
    path = tmp_path_factory.mktemp("data")
    prepare_shakespeare(path)
    return path


def test_resume_after_sigkill_ends_bit_for_bit_like_an_uninterrupted_run(tmp_path, data_dir):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    steps = ["max_iters=400", "ckpt_interval=20"]
    subprocess.run(cli(tmp_path / "whole", data_dir, *steps), check=True, env=env, capture_output=True, cwd=ROOT)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli(killed, data_dir, *steps), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "ckpt.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    saved = torch.load(killed / "ckpt.pt", weights_only=True)["step"]
    assert 0 < saved < 400

    out = subprocess.run(cli(killed, data_dir, *steps, resume=True), check=True, env=env, capture_output=True,
                         text=True, cwd=ROOT)
    assert "final: step 400" in out.stdout
    whole, resumed = final_weights(tmp_path / "whole"), final_weights(killed)
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    log = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert log[-1]["final"] and log[-1]["step"] == 400


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path, data_dir):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(cli(tmp_path, data_dir, "max_iters=6"), check=True, env=env, capture_output=True, cwd=ROOT)
    out = subprocess.run(cli(tmp_path, data_dir, "max_iters=8", "d_model=16", resume=True), env=env,
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0 and "ckpt.pt was saved from a different model" in out.stderr
    shutil.rmtree(tmp_path / "empty", ignore_errors=True)
    out = subprocess.run(cli(tmp_path / "empty", data_dir, "max_iters=6", resume=True), env=env,
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0 and "ckpt.pt does not exist" in out.stderr


@pytest.mark.slow  # two extra Python processes with torch and a gloo rendezvous: ~30 s on 2 cores
def test_torchrun_two_processes_match_one_process_with_the_same_global_batch(tmp_path, data_dir):
    """Same micro-batches, same averaged gradient; only the order of the floating-point sums
    differs (the all-reduce adds the two halves; one process accumulates them in turn), so the
    weights agree to float32 rounding, not bit for bit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    steps = ["max_iters=30", "grad_accum=2"]
    subprocess.run(cli(tmp_path / "one", data_dir, *steps), check=True, env=env, capture_output=True, cwd=ROOT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = cli(tmp_path / "two", data_dir, *steps)
    out = subprocess.run([*torchrun, *cmd[1:]], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 process(es)" in out.stdout
    one, two = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-5, rtol=1e-4), k


# --- the committed weights of chapter 09's model ---------------------------------------------------
def test_committed_shakespeare_gpt_is_the_trained_model():
    """Held-out loss well below an untrained model's ln 84 ≈ 4.4 and a bigram model's ≈ 2.5: trained weights."""
    from llm_course.data import shakespeare_split

    model, codec = load_shakespeare_gpt()
    assert not model.training and codec.vocab_size == model.config.vocab_size == 84
    ids = torch.from_numpy(codec.encode(shakespeare_split()[1][:16_385]).astype(np.int64))
    x, y = ids[:-1].view(-1, 128), ids[1:].view(-1, 128)
    assert evaluate(model, x, y) < 1.7


@pytest.mark.parametrize("fused", [False, True])
def test_export_then_load_gives_the_checkpoint_weights_exactly(tmp_path, fused):
    cfg = TrainConfig(d_model=16, num_heads=2, num_layers=2, block_size=12, fused_norm=fused)
    chars = list("abcdefghijk")
    torch.manual_seed(0)
    model = build_model(cfg, len(chars))
    save_checkpoint(tmp_path / "ckpt.pt", model, make_optimizer(model, cfg), 7,
                    {"chars": chars, "train_config": dataclasses.asdict(cfg)})
    path = export_weights(tmp_path / "ckpt.pt", tmp_path / "weights.pt")
    assert path.stat().st_size < (tmp_path / "ckpt.pt").stat().st_size  # no optimizer state
    loaded, codec = load_shakespeare_gpt(path)
    assert codec.chars == chars and not loaded.training
    reference = model.state_dict()
    assert loaded.state_dict().keys() == reference.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, reference[key]), key
    x = torch.randint(0, len(chars), (2, 12))
    assert torch.equal(loaded(x), model.eval()(x))


def test_load_shakespeare_gpt_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_shakespeare_gpt(tmp_path / "missing.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt"):
        load_shakespeare_gpt(tmp_path / "other.pt")
