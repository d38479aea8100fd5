"""Plausible wrong answers to lab 09 (pretraining: batches, schedule, step, checkpoints)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/09-pretraining/lab09-pretraining.ipynb"
MAX_SCORE = 11
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "get_batch": ("09.get_batch", "get_batch"),
    "lr_at": ("09.lr_at", "lr_at"),
    "train_step": ("09.train_step", "train_step"),
    "save_checkpoint": ("09.save_checkpoint", "save_checkpoint"),
    "load_checkpoint": ("09.load_checkpoint", "load_checkpoint"),
}

MUTANTS = [
    # get_batch
    Mutant("targets not shifted by one", "get_batch",
           "return window[:, :-1], window[:, 1:]", "return window[:, :-1], window[:, :-1]",
           "targets are the inputs themselves"),
    Mutant("last window never drawn", "get_batch",
           "torch.randint(len(tokens) - block_size, ", "torch.randint(len(tokens) - block_size - 1, ", "never drawn"),
    Mutant("targets shifted by two", "get_batch",
           "window = np.stack([np.asarray(tokens[o:o + block_size + 1], dtype=np.int64) for o in offsets])\n"
           "    window = torch.from_numpy(window)\n    return window[:, :-1], window[:, 1:]",
           "x = np.stack([np.asarray(tokens[o:o + block_size], dtype=np.int64) for o in offsets])\n"
           "    y = np.stack([np.asarray(tokens[o + 2:o + 2 + block_size], dtype=np.int64) for o in offsets])\n"
           "    return torch.from_numpy(x), torch.from_numpy(y)", "shifted by two"),
    # lr_at
    Mutant("warm-up off by one", "lr_at", "max_lr * (step + 1) / warmup_steps", "max_lr * step / warmup_steps",
           "off by one"),
    Mutant("cosine decays to zero, not min_lr", "lr_at",
           "return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))",
           "return max_lr * 0.5 * (1.0 + math.cos(math.pi * progress))", "instead of min_lr"),
    Mutant("cosine progress counted from step 0", "lr_at",
           "progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)",
           "progress = step / max(1, total_steps)", "count from the end of the warm-up"),
    Mutant("linear decay", "lr_at",
           "return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))",
           "return max_lr - (max_lr - min_lr) * progress", "linear"),
    # train_step
    Mutant("forgets zero_grad", "train_step", "    optimizer.zero_grad(set_to_none=True)\n", "", "not cleared"),
    Mutant("clips after the optimizer step", "train_step",
           "    norm = clip_grad_norm(model.parameters(), grad_clip) if grad_clip else torch.tensor(float(\"nan\"))\n"
           "    optimizer.step()\n",
           "    optimizer.step()\n"
           "    norm = clip_grad_norm(model.parameters(), grad_clip) if grad_clip else torch.tensor(float(\"nan\"))\n",
           "AFTER optimizer.step()"),
    Mutant("loss not divided by the number of micro-batches", "train_step",
           "loss = lm_loss(model(x), y) / len(batches)", "loss = lm_loss(model(x), y)", "not divided"),
    Mutant("no clipping", "train_step",
           "norm = clip_grad_norm(model.parameters(), grad_clip) if grad_clip else torch.tensor(float(\"nan\"))",
           "norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() "
           "if p.grad is not None]))", "not clipped"),
    # save_checkpoint
    Mutant("non-atomic save (writes straight onto the path)", "save_checkpoint",
           'fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")',
           "fd, tmp = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), str(path)", "not atomic"),
    Mutant("optimizer state not saved", "save_checkpoint", '"optimizer": optimizer.state_dict(),', "",
           "optimizer state was not saved"),
    Mutant("RNG state not saved", "save_checkpoint",
           '"rng": {"torch": torch.get_rng_state(),', '"rng_": {"torch": torch.get_rng_state(),', "RNG state was not saved"),
    # load_checkpoint
    Mutant("optimizer state not restored", "load_checkpoint",
           'optimizer.load_state_dict(state["optimizer"])', "pass", "optimizer state was not restored"),
    Mutant("RNG state not restored", "load_checkpoint",
           'torch.set_rng_state(state["rng"]["torch"])', "pass", "RNG state was not restored"),
    Mutant("corrupt file error does not name it", "load_checkpoint",
           'raise ValueError(f"checkpoint {path} is unreadable', 'raise ValueError(f"checkpoint is unreadable',
           "should name the file"),
]
