"""Training speed: the course's GPT against the same model built from PyTorch's own layers, in one run.

    python bench/training.py [--steps 20] [--batch 32] [--block 128] [--device cpu]

Both models: 4 pre-norm blocks, d_model 128, 4 heads, GELU FFN of 4·d, learned positions, tied output
layer, no dropout — the recipe of configs/shakespeare_char.toml. One training step = forward, cross-entropy,
backward, AdamW step. Rows:
  * ours, as the trainer builds it (``build_model``: torch's fused LayerNorm kernel);
  * ours, plain ``DecoderOnly`` (the course's hand-written LayerNorm);
  * torch: ``nn.TransformerEncoder`` of ``nn.TransformerEncoderLayer(norm_first=True)`` with a causal mask.
Printed and saved (``results.save("training", ...)``): tokens/s of each, ratio = ours / torch
(> 1: ours faster; target ≥ 1.0 for the trainer's model), and the peak memory of one training
step (measured after the timings, see results.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_course.device import get_device  # noqa: E402
from llm_course.training import TrainConfig, build_model  # noqa: E402
from llm_course.transformer import DecoderOnly  # noqa: E402
from results import measure_peak_mb, row, save  # noqa: E402

TARGET = 1.0


class TorchGPT(nn.Module):
    """The same GPT from torch.nn building blocks."""

    def __init__(self, vocab: int, d_model: int, heads: int, layers: int, max_len: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(max_len, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        self.head.weight = self.tok.weight
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(max_len), persistent=False)

    def forward(self, ids):
        T = ids.shape[1]
        h = self.tok(ids) + self.pos[:T]
        h = self.blocks(h, mask=self.causal[:T, :T], is_causal=True)
        return self.head(self.norm(h))


def training_step(model: nn.Module, batch: int, block: int, vocab: int, device):
    """A no-argument callable: one step (forward, cross-entropy, backward, AdamW) on fixed random data."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(vocab, (batch, block), generator=gen).to(device)
    y = torch.randint(vocab, (batch, block), generator=gen).to(device)

    def step():
        loss = F.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def tokens_per_second(step, tokens_per_step: int, steps: int, device) -> float:
    for _ in range(3):  # warm-up: allocator, kernels, AdamW state
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * tokens_per_step / (time.perf_counter() - start)


def run(steps: int, batch: int, block: int, device: torch.device) -> list[dict]:
    vocab = 84
    cfg = TrainConfig(block_size=block)
    torch.manual_seed(0)
    models = {
        "ours (trainer: fused LayerNorm)": build_model(cfg, vocab),
        "ours (plain DecoderOnly)": DecoderOnly(cfg.model_config(vocab)),
        "torch TransformerEncoderLayer": TorchGPT(vocab, cfg.d_model, cfg.num_heads, cfg.num_layers, block),
    }
    step_fns = {name: training_step(model.to(device).train(), batch, block, vocab, device)
                for name, model in models.items()}
    speed = {name: tokens_per_second(fn, batch * block, steps, device) for name, fn in step_fns.items()}
    peak = {name: measure_peak_mb(fn, device) for name, fn in step_fns.items()}  # after all timings
    peer = "torch TransformerEncoderLayer"
    return [row(name, speed[name], speed[peer], peer, "tokens/s", higher_is_better=True,
                target=TARGET if name.startswith("ours (trainer") else None, peak_mb=peak[name],
                peer_peak_mb=peak[peer], params=sum(p.numel() for p in models[name].parameters()))
            for name in models if name != peer]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    args = parser.parse_args()
    device = get_device(args.device)
    rows = run(args.steps, args.batch, args.block, device)
    print(f"training step (forward + backward + AdamW), batch {args.batch} × block {args.block}, "
          f"{args.steps} steps, {device}, {torch.get_num_threads()} threads")
    print(f"{'model':34s} {'params':>9s} {'tokens/s':>10s} {'torch':>10s} {'ratio':>6s} {'peak MB':>8s}")
    for r in rows:
        print(f"{r['case']:34s} {r['params']:9,d} {r['ours']:10,.0f} {r['peer']:10,.0f} {r['ratio']:6.2f} "
              f"{r['peak_mb'] or float('nan'):8.1f}")
    ratio = rows[0]["ratio"]
    print(f"ratio (ours as trained / torch) = {ratio:.2f}  (target ≥ {TARGET}: {'met' if ratio >= TARGET else 'NOT met'})")
    meta = {"device": str(device), "steps": args.steps, "batch": args.batch, "block": args.block}
    print(f"results: {save('training', rows, meta)}")

if __name__ == "__main__":
    main()
