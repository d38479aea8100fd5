"""Pretraining a GPT on a token file (chapter 09): schedule, step, evaluation, checkpoints, DDP.

    lr_at              linear warm-up, then cosine decay to a floor
    clip_grad_norm     rescale all gradients together so their global L2 norm ≤ max_norm
    train_step         one optimizer step over k micro-batches (gradient accumulation) with clipping
    evaluate           mean next-token loss on fixed held-out windows
    save_checkpoint    model + optimizer + step + RNG states, written atomically
    load_checkpoint    the inverse, with an error that names the file and what is wrong
    TrainConfig, train the loop that ties them together; ``python -m llm_course.train`` runs it
    export_weights     checkpoint → the small weights-only file committed with the book
    load_shakespeare_gpt  that file → (trained DecoderOnly, CharCodec), for chapters 10, 12, 14

Exact resume: everything a step depends on — weights, AdamW's moments, the step number (the
schedule), the batch sampler's generator and torch's global RNG (dropout) — is in the checkpoint,
so on a deterministic device a run killed and resumed ends bit-for-bit where an uninterrupted
run ends.

Data parallelism: launched by ``torchrun --nproc_per_node=N``, every process holds a full copy of
the model, computes gradients on its own share of the micro-batches, and DDP averages the
gradients across processes (all-reduce) during ``backward``; the optimizer steps then agree
everywhere. ``grad_accum`` is the number of micro-batches per step *in total*, so the global batch
— and the result — does not depend on how many processes share it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from llm_course.device import get_device
from llm_course.files import atomic_write
from llm_course.textdata import eval_blocks, get_batch, load_tokens, prepare_shakespeare
from llm_course.transformer import DecoderOnly, ModelConfig

CHECKPOINT_FORMAT = "llm_course.checkpoint/1"


# --------------------------------------------------------------------------- the pieces
def lr_at(step: int, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate at optimizer step ``step`` (0-based).

    warm-up  step < warmup_steps:              max_lr · (step + 1) / warmup_steps
    decay    warmup_steps ≤ step ≤ total_steps: min_lr + (max_lr − min_lr) · (1 + cos(π·p)) / 2,
             p = (step − warmup_steps) / (total_steps − warmup_steps)
    after    step > total_steps:                min_lr

    The warm-up's first step already has a non-zero rate (step + 1): a step at lr = 0 is wasted.
    Warm-up matters because Adam's second-moment estimate is noisy for the first few hundred
    steps; the cosine tail anneals the weights into a flatter, lower-loss region.
    """
    _check_schedule(step, max_lr, min_lr, warmup_steps, total_steps)
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step > total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _check_schedule(step: int, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> None:
    for name, value in (("step", step), ("warmup_steps", warmup_steps), ("total_steps", total_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if not 0 <= min_lr <= max_lr:
        raise ValueError(f"need 0 ≤ min_lr ≤ max_lr, got min_lr={min_lr!r}, max_lr={max_lr!r}")
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps={warmup_steps} must not exceed total_steps={total_steps}")


@torch.no_grad()
def clip_grad_norm(parameters: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """Scale every gradient by min(1, max_norm / ‖g‖), ‖g‖ the L2 norm of ALL gradients together.

    One global factor keeps the update's direction and only shortens it, so one exploding
    batch cannot throw the weights far. Same result as ``torch.nn.utils.clip_grad_norm_``;
    returns the norm before clipping (worth logging: spikes announce instability).
    """
    if not isinstance(max_norm, (int, float)) or isinstance(max_norm, bool) or not max_norm > 0:
        raise ValueError(f"max_norm must be a positive number, got {max_norm!r}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale.to(g.device))
    return total


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of next-token logits (batch, T, V) against targets (batch, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list[tuple[Tensor, Tensor]],
               grad_clip: float | None = 1.0) -> tuple[float, float]:
    """One optimizer step on the micro-batches ``batches`` = [(x, y), …] (gradient accumulation).

    Clear the old gradients first. Each micro-batch's loss is divided by len(batches) before
    ``backward`` — gradients add up in ``.grad`` — so k micro-batches of size b give the gradient
    of ONE batch of k·b. Then clip (before the step: clipping changes the update) and step.
    Under DDP only the last micro-batch synchronises gradients (``no_sync`` for the others).

    Returns: (the mean loss over the micro-batches, the gradient norm before clipping).
    """
    if not batches:
        raise ValueError("batches must hold at least one (x, y) micro-batch")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for i, (x, y) in enumerate(batches):
        with accumulation_context(model, last=i == len(batches) - 1):
            loss = lm_loss(model(x), y) / len(batches)
            loss.backward()
        total += loss.item()
    norm = clip_grad_norm(model.parameters(), grad_clip) if grad_clip else torch.tensor(float("nan"))
    optimizer.step()
    return total, float(norm)


def accumulation_context(model: nn.Module, last: bool):
    """DDP's ``no_sync()`` for every micro-batch but the last (one all-reduce per step), else nothing."""
    if not last and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 64) -> float:
    """Mean next-token loss (nats per token) of ``model`` on the windows x, y (n, T), in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        total += lm_loss(model(xb), yb).item() * len(xb)
    model.train(was_training)
    return total / len(x)


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
                    step: int, extra: dict | None = None) -> Path:
    """Write model, optimizer, step, torch's RNG states and ``extra`` to ``path``, atomically.

    torch.save goes to a temporary file in the same folder, which ``os.replace`` then swaps in:
    killed mid-write (SIGKILL, power cut, full disk), the previous checkpoint is still intact.
    """
    path = Path(path)
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "extra": extra or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Restore ``model`` (and ``optimizer``, and torch's RNG states) from ``path``.

    Returns the checkpoint dict ("step", "extra", …). Raises FileNotFoundError for a missing
    file and ValueError, naming the file, for one that is truncated, not a checkpoint, or made
    for a different model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint {path} is unreadable — truncated or corrupt "
                         f"({type(err).__name__}: {str(err)[:200]})") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} checkpoint")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} was saved from a different model: {err}") from err
    if optimizer is not None:
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as err:
            raise ValueError(f"checkpoint {path} has optimizer state that does not fit this optimizer: {err}") from err
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return state


# --------------------------------------------------------------------------- the loop
@dataclass
class TrainConfig:
    """Everything a run depends on; the TOML config file's tables [data], [model], [train] fill it."""

    out_dir: str = "runs/shakespeare_char"
    # data
    dataset: str = "shakespeare"
    clean: bool = False
    data_dir: str = ""                  # default: <out_dir>/data
    # model (a DecoderOnly; block_size is its max_len)
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 4
    block_size: int = 128
    dropout: float = 0.0
    fused_norm: bool = True             # torch's fused LayerNorm kernel (same maths, faster on CPU)
    # optimisation
    batch_size: int = 32                # sequences per micro-batch
    grad_accum: int = 1                 # micro-batches per optimizer step, over ALL processes
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    # bookkeeping
    eval_interval: int = 250
    eval_tokens: int = 65536            # held-out tokens per periodic evaluation (0 = the whole split)
    final_eval_tokens: int = 0          # at the end (0 = the whole validation split)
    ckpt_interval: int = 0              # 0 = only at the end
    seed: int = 1337
    device: str = ""                    # "" = llm_course.device.get_device()
    threads: int = 0                    # torch.set_num_threads; 0 = leave the default

    def __post_init__(self):
        for name in ("d_model", "num_heads", "num_layers", "block_size", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)!r}")
        if not 0 <= self.warmup_iters <= self.max_iters:
            raise ValueError(f"warmup_iters={self.warmup_iters} must lie in [0, max_iters={self.max_iters}]")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 ≤ min_lr ≤ lr, got min_lr={self.min_lr}, lr={self.lr}")

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> "TrainConfig":
        """Build from a flat dict or one with [data]/[model]/[train] tables; unknown keys are errors."""
        flat = {}
        for key, value in values.items():
            if isinstance(value, dict) and key in ("data", "model", "train"):
                flat.update(value)
            else:
                flat[key] = value
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(flat) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown setting(s) {unknown}; known: {sorted(known)}")
        for key, value in flat.items():
            kind = type(known[key].default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                flat[key] = value = float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{source}: {key} must be a {kind.__name__}, got {value!r}")
        return cls(**flat)

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, d_model=self.d_model, num_heads=self.num_heads,
                           num_layers=self.num_layers, max_len=self.block_size, dropout=self.dropout)


def load_config(path: str | os.PathLike, overrides: dict | None = None) -> TrainConfig:
    """Read a TOML config file (tables [data], [model], [train] or flat keys), then ``overrides``."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config file {path} is not valid TOML: {err}") from err
    values.update(overrides or {})
    return TrainConfig.from_dict(values, source=f"config file {path}")


def build_model(cfg: TrainConfig, vocab_size: int) -> DecoderOnly:
    model = DecoderOnly(cfg.model_config(vocab_size))
    if cfg.fused_norm:
        use_fused_layernorm(model)
    return model


def use_fused_layernorm(model: nn.Module) -> nn.Module:
    """Swap every ``llm_course.norms.LayerNorm`` for ``torch.nn.LayerNorm`` with the same weights.

    Same maths and parameter names (state dicts are interchangeable); one fused kernel instead
    of five elementwise ops, ~15 % more tokens/s for this model on CPU.
    """
    from llm_course.norms import LayerNorm

    for name, child in model.named_children():
        if isinstance(child, LayerNorm):
            fused = nn.LayerNorm(child.d, eps=child.eps, bias=child.bias is not None)
            fused.load_state_dict(child.state_dict())
            setattr(model, name, fused.to(child.weight.device))
        else:
            use_fused_layernorm(child)
    return model


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices (and embeddings) only, not on biases and norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def _distributed() -> tuple[int, int, int]:
    """(rank, local_rank, world_size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), world


def train(cfg: TrainConfig, *, resume: bool = False, on_eval: Callable[[dict], None] | None = None,
          progress: bool = True, log: Callable[[str], None] | None = print) -> dict:
    """Train a DecoderOnly on the configured data; return {"model", "history", "chars", "config"}.

    Writes <out_dir>/ckpt.pt (every ``ckpt_interval`` steps and at the end) and <out_dir>/log.jsonl
    (one line per evaluation). ``resume=True`` continues from <out_dir>/ckpt.pt. ``on_eval`` is
    called with each evaluation record (the notebook's live loss curve); ``log`` gets the one-line
    summary of each evaluation. Under torchrun only rank 0 evaluates, logs and saves.
    "elapsed_s" in the records is the wall time of the training loop, evaluations included.
    """
    rank, local_rank, world = _distributed()
    if cfg.grad_accum % world:
        raise ValueError(f"grad_accum={cfg.grad_accum} must be divisible by the number of processes ({world})")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = get_device(cfg.device or None)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    out_dir = Path(cfg.out_dir)
    data_dir = Path(cfg.data_dir or out_dir / "data")
    if cfg.dataset != "shakespeare":
        raise ValueError(f"dataset must be 'shakespeare', got {cfg.dataset!r}")
    if rank == 0:
        prepare_shakespeare(data_dir, clean=cfg.clean)
    if world > 1:
        dist.barrier()  # the other processes wait until rank 0 has written the token files
    meta = json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))
    train_tokens, val_tokens = load_tokens(data_dir / "train.bin"), load_tokens(data_dir / "val.bin")

    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    model = build_model(cfg, len(meta["chars"])).to(device)
    optimizer = make_optimizer(model, cfg)
    batches = torch.Generator().manual_seed(cfg.seed)  # the same stream in every process
    ckpt_path = out_dir / "ckpt.pt"
    step, elapsed_before, history = 0, 0.0, []
    if resume:
        state = load_checkpoint(ckpt_path, model, optimizer)
        if state["extra"].get("config", {}) != _model_fields(cfg):
            raise ValueError(f"checkpoint {ckpt_path} was made with other model/data settings: "
                             f"{state['extra'].get('config')} vs {_model_fields(cfg)}")
        step, elapsed_before = state["step"], state["extra"]["elapsed_s"]
        batches.set_state(state["extra"]["batch_rng"])
        history = state["extra"].get("history", [])
    if not resume:
        torch.manual_seed(cfg.seed + rank)  # dropout masks: different in every process
    elif world > 1:
        torch.manual_seed(cfg.seed + rank + 7919 * step)  # the saved RNG state is rank 0's alone
    if rank == 0:  # a resumed log restarts from the checkpoint's history, not from the killed run's
        _write_jsonl(out_dir / "log.jsonl", history)
    raw_model = model
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)

    val_x, val_y = eval_blocks(val_tokens, cfg.block_size, cfg.eval_tokens or None)
    per_rank = cfg.grad_accum // world
    tokens_per_step = cfg.batch_size * cfg.block_size * cfg.grad_accum
    is_main = rank == 0
    if is_main and log:
        n_params = sum(p.numel() for p in raw_model.parameters())
        log(f"model: {n_params / 1e6:.2f}M parameters | {tokens_per_step:,} tokens per step | "
            f"{world} process(es) on {device} | data: {meta['train_tokens']:,} train / "
            f"{meta['val_tokens']:,} val characters")

    def checkpoint(at_step: int, elapsed: float) -> None:
        extra = {"config": _model_fields(cfg), "batch_rng": batches.get_state(), "elapsed_s": elapsed,
                 "history": history, "chars": meta["chars"], "train_config": asdict(cfg)}
        save_checkpoint(ckpt_path, raw_model, optimizer, at_step, extra)

    def evaluation(at_step: int, train_loss: float, elapsed: float, x: Tensor, y: Tensor,
                   final: bool = False) -> dict:
        record = {"step": at_step, "train_loss": None if math.isnan(train_loss) else train_loss,
                  "val_loss": evaluate(raw_model, x, y),
                  "val_tokens": int(x.numel()), "elapsed_s": round(elapsed, 2),
                  "tokens": at_step * tokens_per_step,
                  "lr": lr_at(min(at_step, cfg.max_iters), cfg.lr, cfg.min_lr, cfg.warmup_iters, cfg.max_iters),
                  "final": final}
        history.append(record)
        _append_jsonl(out_dir / "log.jsonl", record)
        if log:
            speed = record["tokens"] / elapsed if elapsed > 0 else 0.0
            message = (f"step {at_step:5d} | train {train_loss:.4f} | val {record['val_loss']:.4f} "
                       f"({record['val_tokens']:,} tok) | {elapsed:7.1f} s | {speed:,.0f} tok/s")
            (bar.write if bar is not None else log)(message)
        if on_eval:
            on_eval(record)
        return record

    bar = None
    if is_main and progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.max_iters, initial=step, unit="step", mininterval=2.0, dynamic_ncols=True)
    train_loss = float("nan")
    start = time.perf_counter() - elapsed_before
    while step < cfg.max_iters:
        already = bool(history) and history[-1]["step"] == step  # resumed right after an evaluation
        if is_main and cfg.eval_interval and step % cfg.eval_interval == 0 and not already:
            evaluation(step, train_loss, time.perf_counter() - start, val_x, val_y)
        lr = lr_at(step, cfg.lr, cfg.min_lr, cfg.warmup_iters, cfg.max_iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # Every process draws the step's whole global batch and keeps its own share, so the
        # micro-batches are the same whatever the number of processes.
        drawn = [get_batch(train_tokens, cfg.batch_size, cfg.block_size, batches) for _ in range(cfg.grad_accum)]
        mine = [(x.to(device), y.to(device)) for x, y in drawn[rank * per_rank:(rank + 1) * per_rank]]
        train_loss, _ = train_step(model, optimizer, mine, cfg.grad_clip)
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}", refresh=False)
        if is_main and cfg.ckpt_interval and step % cfg.ckpt_interval == 0 and step < cfg.max_iters:
            checkpoint(step, time.perf_counter() - start)
    if bar is not None:
        bar.close()
    result = {"model": raw_model, "history": history, "chars": meta["chars"], "config": cfg}
    if is_main:
        elapsed = time.perf_counter() - start
        if not (history and history[-1]["step"] == step and history[-1].get("final")):
            full_x, full_y = eval_blocks(val_tokens, cfg.block_size, cfg.final_eval_tokens or None)
            evaluation(step, train_loss, elapsed, full_x, full_y, final=True)
        checkpoint(step, elapsed)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _model_fields(cfg: TrainConfig) -> dict:
    """The settings a checkpoint must agree with to be resumed (shapes and data)."""
    keys = ("dataset", "clean", "d_model", "num_heads", "num_layers", "block_size", "fused_norm")
    return {k: getattr(cfg, k) for k in keys}


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


def _append_jsonl(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


class LiveLossCurve:
    """A plotly loss curve that redraws itself in a notebook after every evaluation.

    Pass it as ``train(cfg, on_eval=LiveLossCurve())``. In a live kernel the figure updates in
    place; in an executed (static) page the last state is what the reader sees.
    """

    def __init__(self, title: str = "Next-token loss while training"):
        import plotly.graph_objects as go

        self.fig = go.Figure([go.Scatter(name="train (last step)", mode="lines+markers", x=[], y=[]),
                              go.Scatter(name="validation", mode="lines+markers", x=[], y=[])])
        self.fig.update_layout(title=title, xaxis_title="optimizer step", yaxis_title="loss (nats per character)",
                               height=360, margin=dict(l=60, r=20, t=50, b=50))
        self._handle = None

    def __call__(self, record: dict) -> None:
        from IPython.display import display

        train, val = self.fig.data
        if record["train_loss"] is not None:  # none yet before the first step
            train.x, train.y = (*train.x, record["step"]), (*train.y, record["train_loss"])
        val.x, val.y = (*val.x, record["step"]), (*val.y, record["val_loss"])
        if self._handle is None:
            self._handle = display(self.fig, display_id=True)
        else:
            self._handle.update(self.fig)


# --------------------------------------------------------------------------- the trained model, for later chapters
WEIGHTS_FORMAT = "llm_course.weights/1"
SHAKESPEARE_WEIGHTS = Path(__file__).resolve().parents[1] / "book" / "data" / "09-shakespeare-char-gpt.pt"


def export_weights(ckpt_path: str | os.PathLike, out_path: str | os.PathLike = SHAKESPEARE_WEIGHTS) -> Path:
    """Write the weights-only file that ``load_shakespeare_gpt`` reads, from a training checkpoint.

    Keeps the model's float32 state dict, the character list and the shape settings; drops the
    optimizer's moments and the RNG states (two thirds of a checkpoint), which only resuming needs.
    Regenerate the book's file after ``python -m llm_course.train configs/shakespeare_char.toml``:

        python -c "from llm_course.training import export_weights; export_weights('runs/shakespeare_char/ckpt.pt')"
    """
    state = torch.load(Path(ckpt_path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {ckpt_path} is not a {CHECKPOINT_FORMAT} checkpoint")
    cfg = TrainConfig.from_dict(state["extra"]["train_config"])
    chars = state["extra"]["chars"]
    weights = {
        "format": WEIGHTS_FORMAT,
        "model": {k: v.float().contiguous() for k, v in state["model"].items()},
        "config": asdict(cfg.model_config(len(chars))) | {"fused_norm": cfg.fused_norm},
        "chars": chars,
        "step": state["step"],
        "history": state["extra"].get("history", [])[-1:],  # the final evaluation, for reference
    }
    with atomic_write(out_path) as f:
        torch.save(weights, f)
    return Path(out_path)


def load_shakespeare_gpt(path: str | os.PathLike | None = None) -> tuple[DecoderOnly, "CharCodec"]:
    """Chapter 09's trained character-level GPT, as (model in eval mode on the CPU, its CharCodec).

    ``path`` defaults to the file committed with the book (written by ``export_weights``).
    """
    from llm_course.textdata import CharCodec

    path = Path(path or SHAKESPEARE_WEIGHTS)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist (write it with export_weights)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != WEIGHTS_FORMAT:
        raise ValueError(f"{path} is not a {WEIGHTS_FORMAT} file")
    config = dict(state["config"])
    fused = config.pop("fused_norm")
    model = DecoderOnly(ModelConfig(**config))
    if fused:  # same parameter names either way; the fused kernel is just faster
        use_fused_layernorm(model)
    model.load_state_dict(state["model"])
    return model.eval(), CharCodec(state["chars"])
