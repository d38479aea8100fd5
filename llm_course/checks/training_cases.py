"""Cases for lab 09 (pretraining). Each piece is compared with ``llm_course.textdata`` /
``llm_course.training``; classic mistakes are recognised by recomputing them."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from llm_course import textdata as tdref
from llm_course import training as ref
from llm_course.checks.engine import Case, Reason, compare_tensor, piece
from llm_course.checks.remote import (call_with_failing_save, global_rng_state, set_global_rng_state,
                                      shared_tempdir)
from llm_course.transformer import DecoderOnly, ModelConfig

# --- 09.get_batch ---------------------------------------------------------------------------


def _batch_variant(tokens, batch_size, block_size, gen, *, high_minus=0, shift=1):
    """The reference batch with one mistake; None where that mistake cannot make whole windows."""
    if len(tokens) - block_size - high_minus < 1:
        return None
    offsets = torch.randint(len(tokens) - block_size - high_minus, (batch_size,), generator=gen).tolist()
    if max(offsets) + shift + block_size > len(tokens):
        return None
    x = torch.from_numpy(np.stack([np.asarray(tokens[o:o + block_size], dtype=np.int64) for o in offsets]))
    y = torch.from_numpy(np.stack([np.asarray(tokens[o + shift:o + shift + block_size], dtype=np.int64)
                                   for o in offsets]))
    return x, y


BATCH_MISTAKES = {
    "the targets are the inputs themselves: y must be the window shifted by ONE token (y[t] = token after x[t])":
        dict(shift=0),
    "the targets are shifted by two tokens, not one": dict(shift=2),
    "offsets drawn from range(len(tokens) − block_size − 1): the last window that still has room for its "
    "targets is never drawn (torch.randint's upper bound is exclusive)": dict(high_minus=1),
}


def _batch_case(name: str, tokens: np.ndarray, batch_size: int, block_size: int, seed: int) -> Case:
    def run(fn) -> Reason:
        got = fn(tokens, batch_size, block_size, torch.Generator().manual_seed(seed))
        if not isinstance(got, tuple) or len(got) != 2:
            return f"should return a tuple (x, y), got {type(got).__name__}"
        exp = tdref.get_batch(tokens, batch_size, block_size, torch.Generator().manual_seed(seed))
        variants = [(hint, _batch_variant(tokens, batch_size, block_size, torch.Generator().manual_seed(seed), **kw))
                    for hint, kw in BATCH_MISTAKES.items()]
        variants = [(hint, v) for hint, v in variants if v is not None]
        for i, what in enumerate(("x (the inputs)", "y (the targets)")):
            if isinstance(got[i], Tensor) and got[i].dtype != torch.int64:
                return f"{what} has dtype {got[i].dtype}; token ids for nn.Embedding and cross_entropy must be int64"
            reason = compare_tensor(got[i], exp[i], what, known_mistakes=[(h, v[i]) for h, v in variants])
            if reason:
                if "differs" in reason or "positions" in reason:
                    reason += (" — draw the offsets with torch.randint(len(tokens) − block_size, (batch_size,), "
                               "generator=generator), once, in that order")
                return reason
        return None

    return Case(name, run)


@piece("09.get_batch", "random training windows from the token file")
def get_batch_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    seed = int(torch.randint(1000, (1,), generator=gen))
    ramp = np.arange(300, dtype=np.uint16)
    rand = torch.randint(84, (5000,), generator=gen).numpy().astype(np.uint16)
    cases = [
        _batch_case("8 windows of 16 from 300 tokens (id = position)", ramp, 8, 16, seed),
        _batch_case("4 windows of 32, random ids", rand, 4, 32, seed + 1),
        _batch_case("only two possible windows: both must be drawn", ramp[:12], 64, 10, seed + 2),
    ]
    if extended:
        with tempfile.TemporaryDirectory() as d:
            tdref.write_tokens(Path(d) / "t.bin", rand)
            memmap = np.array(tdref.load_tokens(Path(d) / "t.bin"))
        cases += [_batch_case("a memmap'd token file, 16 × 64", memmap, 16, 64, seed + 3),
                  _batch_case("one window of 1", ramp[:50], 1, 1, seed + 4)]
    return cases


# --- 09.lr_at -------------------------------------------------------------------------------


def _lr_variant(step, max_lr, min_lr, warmup, total, *, mistake):
    if step < warmup:
        return max_lr * (step if mistake == "warmup_step" else step + 1) / warmup
    if step > total:
        return min_lr
    p = (step - (0 if mistake == "no_offset" else warmup)) / max(1, total - (0 if mistake == "no_offset" else warmup))
    p = min(p, 1.0)
    if mistake == "linear":
        return max_lr - (max_lr - min_lr) * p
    if mistake == "no_floor":
        return max_lr * 0.5 * (1 + math.cos(math.pi * p))
    if mistake == "full_period":
        return min_lr + (max_lr - min_lr) * 0.5 * (1 + math.cos(2 * math.pi * p))
    return min_lr + (max_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * p))


LR_MISTAKES = {
    "warmup_step": "the warm-up is off by one: step 0 must already have max_lr·1/warmup_steps (use step + 1), "
                   "and the warm-up reaches max_lr at its last step",
    "no_floor": "the decay goes to 0 instead of min_lr: lr = min_lr + (max_lr − min_lr)·(1 + cos πp)/2",
    "no_offset": "the cosine's progress p should count from the end of the warm-up: "
                 "p = (step − warmup_steps) / (total_steps − warmup_steps)",
    "linear": "the decay is linear; it should follow half a cosine, (1 + cos πp)/2",
    "full_period": "the cosine runs a full period (cos 2πp) and climbs back up; use cos(πp)",
}


def _lr_case(name: str, max_lr: float, min_lr: float, warmup: int, total: int, steps: list[int]) -> Case:
    def run(fn) -> Reason:
        got = [fn(s, max_lr, min_lr, warmup, total) for s in steps]
        exp = [ref.lr_at(s, max_lr, min_lr, warmup, total) for s in steps]
        for s, g in zip(steps, got):
            if isinstance(g, Tensor):
                g = g.item()
            if not isinstance(g, (int, float)) or isinstance(g, bool):
                return f"lr_at({s}, …) should return a float, got {type(g).__name__}"
        bad = [s for s, g, e in zip(steps, got, exp) if not math.isclose(float(g), e, rel_tol=1e-6, abs_tol=1e-12)]
        if not bad:
            return None
        for mistake, hint in LR_MISTAKES.items():
            wrong = [_lr_variant(s, max_lr, min_lr, warmup, total, mistake=mistake) for s in steps]
            if all(math.isclose(float(g), w, rel_tol=1e-6, abs_tol=1e-12) for g, w in zip(got, wrong)):
                return hint
        phase = "warm-up" if bad[0] < warmup else ("cosine decay" if bad[0] <= total else "after total_steps")
        return f"wrong learning rate at step {bad[0]} (in the {phase}); {len(bad)} of {len(steps)} steps are wrong"

    return Case(name, run)


@piece("09.lr_at", "warm-up + cosine learning-rate schedule")
def lr_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    total = int(torch.randint(40, 80, (1,), generator=gen))
    warm = int(torch.randint(4, 10, (1,), generator=gen))
    cases = [_lr_case(f"warm-up {warm}, total {total}", 3e-3, 3e-4, warm, total, list(range(total + 5))),
             _lr_case("no warm-up, min_lr = 0", 1.0, 0.0, 0, 20, list(range(25)))]
    if extended:
        cases += [_lr_case("warm-up = total", 0.5, 0.05, 10, 10, list(range(14))),
                  _lr_case("long run, sparse steps", 6e-4, 6e-5, 2000, 600_000,
                           [0, 1, 999, 1999, 2000, 2001, 300_000, 599_999, 600_000, 600_001, 10**7])]
    return cases


# --- 09.train_step --------------------------------------------------------------------------


def _tiny_lm(seed: int) -> DecoderOnly:
    torch.manual_seed(seed)
    return DecoderOnly(ModelConfig(vocab_size=13, d_model=16, num_heads=2, num_layers=2, max_len=10))


def _step_variant(model, opt, batches, grad_clip, *, mistake=""):
    """The reference step, with one deliberate mistake."""
    model.train()
    if mistake != "no_zero_grad":
        opt.zero_grad(set_to_none=True)
    total = 0.0
    for x, y in batches:
        loss = ref.lm_loss(model(x), y) / (1 if mistake == "no_divide" else len(batches))
        loss.backward()
        total += loss.item()
    if mistake == "clip_after":
        opt.step()
        norm = ref.clip_grad_norm(model.parameters(), grad_clip)
    else:
        norm = ref.clip_grad_norm(model.parameters(), grad_clip) if mistake != "no_clip" else \
            torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
        opt.step()
    return total, float(norm)


STEP_MISTAKES = {
    "no_zero_grad": "gradients from the previous step were not cleared: call optimizer.zero_grad() every step "
                    "(.grad accumulates across backward() calls)",
    "clip_after": "the gradients were clipped AFTER optimizer.step(): clipping must come before the step, "
                  "or the update is not clipped at all",
    "no_clip": "the gradients were not clipped: call clip_grad_norm(model.parameters(), grad_clip) before the step",
    "no_divide": "each micro-batch's loss was not divided by the number of micro-batches: the accumulated "
                 "gradient is k times too large (and the returned loss is a sum, not a mean)",
}


def _run_steps(step_fn, seed, batches_per_step, grad_clip, n_steps):
    model = _tiny_lm(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    outs = [step_fn(model, opt, batches, grad_clip) for batches in batches_per_step[:n_steps]]
    return model, outs


def _train_step_case(name: str, gen: torch.Generator, n_micro: int, grad_clip: float, n_steps: int = 3) -> Case:
    seed = int(torch.randint(10_000, (1,), generator=gen))
    data = [[(torch.randint(13, (3, 10), generator=gen), torch.randint(13, (3, 10), generator=gen))
             for _ in range(n_micro)] for _ in range(n_steps)]

    def run(fn) -> Reason:
        model, outs = _run_steps(fn, seed, data, grad_clip, n_steps)
        exp_model, exp_outs = _run_steps(ref.train_step, seed, data, grad_clip, n_steps)
        for i, out in enumerate(outs):
            if not isinstance(out, tuple) or len(out) != 2:
                return f"should return a tuple (mean loss, grad norm), got {type(out).__name__}"
        weights = torch.cat([p.detach().flatten() for p in model.parameters()])
        expected = torch.cat([p.detach().flatten() for p in exp_model.parameters()])
        reason = compare_tensor(weights, expected, f"the weights after {n_steps} steps", atol=1e-5)
        if reason:  # only now pay for recomputing the classic mistakes, to name the one made
            for mistake, hint in STEP_MISTAKES.items():
                wrong, _ = _run_steps(lambda m, o, b, c: _step_variant(m, o, b, c, mistake=mistake), seed, data,
                                      grad_clip, n_steps)
                wrong = torch.cat([p.detach().flatten() for p in wrong.parameters()])
                if torch.allclose(weights.double(), wrong.double(), atol=1e-5, rtol=1e-4):
                    return hint
        if reason:
            return reason
        for i, ((loss, norm), (exp_loss, exp_norm)) in enumerate(zip(outs, exp_outs)):
            if not math.isclose(float(loss), exp_loss, rel_tol=1e-4):
                hint = STEP_MISTAKES["no_divide"] if math.isclose(float(loss), exp_loss * n_micro, rel_tol=1e-4) \
                    else "should be the mean of the micro-batches' losses"
                return f"the returned loss at step {i + 1} is wrong: {hint}"
            if not math.isclose(float(norm), exp_norm, rel_tol=1e-4):
                return (f"the returned gradient norm at step {i + 1} is wrong: return the norm BEFORE clipping "
                        "(what clip_grad_norm returns)")
        return None

    return Case(name, run)


@piece("09.train_step", "one optimizer step: accumulation, clipping, step")
def train_step_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    cases = [_train_step_case("1 micro-batch, clipping active", gen, 1, 0.05),
             _train_step_case("3 micro-batches (accumulation), clipping active", gen, 3, 0.05),
             _train_step_case("2 micro-batches, clipping inactive (large max_norm)", gen, 2, 1e6)]
    if extended:
        cases += [_train_step_case("4 micro-batches, 4 steps", gen, 4, 0.2, n_steps=4)]
    return cases


# --- 09.save_checkpoint / 09.load_checkpoint ------------------------------------------------


def _trained_pair(seed: int):
    """A tiny model and an AdamW that has taken two steps (so its state is not empty)."""
    model = _tiny_lm(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(2):
        x = torch.randint(13, (2, 10), generator=gen)
        ref.train_step(model, opt, [(x, x)])
    return model, opt


def _same_state(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, dict):
            if not isinstance(vb, dict) or not _same_state(va, vb):
                return False
        elif isinstance(va, Tensor):
            if not isinstance(vb, Tensor) or not torch.equal(va, vb):
                return False
        elif va != vb:
            return False
    return True


def _compare_restored(model, opt, ref_model, ref_opt) -> Reason:
    for (name, p), q in zip(model.state_dict().items(), ref_model.state_dict().values()):
        if not torch.equal(p, q):
            return f"the model's {name} was not restored"
    if opt is not None and not _same_state(opt.state_dict(), ref_opt.state_dict()):
        return ("the optimizer state was not restored (AdamW's moment estimates and step counts): a resumed run "
                "would restart Adam from zero and take different steps")
    return None


def _save_roundtrip_case(name: str, seed: int, step: int, extra: dict | None) -> Case:
    def run(fn) -> Reason:
        model, opt = _trained_pair(seed)
        with shared_tempdir(fn) as d:
            path = Path(d) / "ckpt.pt"
            # where fn runs, torch's RNG gets our state: the file must hold exactly that one
            set_global_rng_state(fn, torch.get_rng_state())
            fn(path, model, opt, step, extra) if extra is not None else fn(path, model, opt, step)
            after_save = torch.rand(4)
            if not path.is_file():
                return f"no file was written at the path given ({path.name})"
            leftovers = sorted(p.name for p in Path(d).iterdir() if p.name != "ckpt.pt")
            if leftovers:
                return f"left other files behind in the folder: {leftovers} — replace the temporary file into place"
            fresh, fresh_opt = _tiny_lm(seed + 1), None
            fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
            try:
                state = ref.load_checkpoint(path, fresh, fresh_opt)
            except (ValueError, KeyError, TypeError) as err:
                if "optimizer" in str(err):
                    return "the optimizer state was not saved: a resumed run would restart AdamW from zero"
                if "rng" in str(err):
                    return "torch's RNG state was not saved (state['rng']['torch'] = torch.get_rng_state())"
                return (f"the file is not a checkpoint the course's load_checkpoint can read ({err}); save the "
                        "dict with the keys the docstring lists")
            if not torch.equal(torch.rand(4), after_save):
                return ("torch's RNG state was not saved (or not the one at save time): a resumed run would draw "
                        "different dropout masks")
            reason = _compare_restored(fresh, fresh_opt, model, opt)
            if reason:
                return reason.replace("was not restored", "was not saved")
            if state["step"] != step:
                return f"the step saved is {state['step']!r}, not the step passed"
            if state["extra"] != (extra or {}):
                return "extra was not saved as given (None → {})"
        return None

    return Case(name, run)


def _atomic_case(name: str, seed: int) -> Case:
    def run(fn) -> Reason:
        model, opt = _trained_pair(seed)
        with shared_tempdir(fn) as d:
            path = Path(d) / "ckpt.pt"
            ref.save_checkpoint(path, model, opt, 1)
            good = path.read_bytes()
            try:
                call_with_failing_save(fn, path, model, opt, 2)
            except OSError:
                pass
            else:
                return "a failing torch.save must not be swallowed: let the error propagate"
            if not path.is_file() or path.read_bytes() != good:
                return ("not atomic: a crash during the write destroyed the previous checkpoint — write to a "
                        "temporary file in the same folder, then os.replace it onto the path")
            leftovers = sorted(p.name for p in Path(d).iterdir() if p.name != "ckpt.pt")
            if leftovers:
                return f"a failed write left a temporary file behind ({leftovers}): delete it when saving fails"
        return None

    return Case(name, run)


@piece("09.save_checkpoint", "save a checkpoint atomically")
def save_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    seed = int(torch.randint(10_000, (1,), generator=gen))
    cases = [_save_roundtrip_case("model, optimizer, step, RNG", seed, 7, None),
             _atomic_case("a crash while writing keeps the old checkpoint", seed + 1)]
    if extended:
        cases += [_save_roundtrip_case("with extra state", seed + 2, 123, {"elapsed_s": 1.5, "note": "hi"})]
    return cases


def _load_case(name: str, seed: int, with_optimizer: bool) -> Case:
    def run(fn) -> Reason:
        model, opt = _trained_pair(seed)
        with shared_tempdir(fn) as d:
            path = ref.save_checkpoint(Path(d) / "ckpt.pt", model, opt, 11, {"k": 1})
            saved_rng = torch.load(path, weights_only=True)["rng"]["torch"]
            torch.rand(4)  # move on from the saved state, where fn runs too
            set_global_rng_state(fn, torch.get_rng_state())
            fresh = _tiny_lm(seed + 1)
            fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2) if with_optimizer else None
            state = fn(path, fresh, fresh_opt) if with_optimizer else fn(path, fresh)
            if not torch.equal(global_rng_state(fn), saved_rng):
                return "torch's RNG state was not restored (torch.set_rng_state): dropout would differ after resuming"
            if not isinstance(state, dict) or state.get("step") != 11 or state.get("extra") != {"k": 1}:
                return "should return the checkpoint dict (with its 'step' and 'extra')"
            return _compare_restored(fresh, fresh_opt, model, opt)

    return Case(name, run)


def _load_error_case(name: str, seed: int, problem: str) -> Case:
    def run(fn) -> Reason:
        model, opt = _trained_pair(seed)
        with shared_tempdir(fn) as d:
            path = ref.save_checkpoint(Path(d) / "ckpt.pt", model, opt, 3)
            target, other = path, _tiny_lm(seed)
            if problem == "truncated":
                target = Path(d) / "cut.pt"
                target.write_bytes(path.read_bytes()[:200])
            elif problem == "other model":
                torch.manual_seed(seed)
                other = DecoderOnly(ModelConfig(vocab_size=14, d_model=16, num_heads=2, num_layers=2, max_len=10))
            try:
                fn(target, other)
            except NotImplementedError:
                raise
            except ValueError as err:
                if target.name not in str(err):
                    return f"the error for a {problem} checkpoint should name the file ({target.name}): {err}"
                return None
            except Exception as err:
                return (f"a {problem} checkpoint raised {type(err).__name__}; raise a ValueError that names the "
                        "file and says what is wrong")
            return f"a {problem} checkpoint was loaded without an error"

    return Case(name, run)


@piece("09.load_checkpoint", "load a checkpoint, with clear errors")
def load_cases(gen: torch.Generator, extended: bool) -> list[Case]:
    seed = int(torch.randint(10_000, (1,), generator=gen))
    cases = [_load_case("restores model, optimizer, RNG; returns the dict", seed, True),
             _load_error_case("a truncated file → ValueError naming it", seed + 1, "truncated")]
    if extended:
        cases += [_load_case("model only (optimizer=None)", seed + 2, False),
                  _load_error_case("another model's checkpoint → ValueError naming it", seed + 3, "other model")]
    return cases
