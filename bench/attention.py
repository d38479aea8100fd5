"""Attention speed: the library against PyTorch, forward + backward, in one run.

    python bench/attention.py [--lengths 64 256 1024] [--device cpu] [--min-run-time 0.5]

Rows (one per sequence length T), written with ``results.save("attention", ...)``:
  * MultiHeadAttention (fused path, what later chapters train with) vs torch.nn.MultiheadAttention
    — target: ours / theirs time ≤ 1.2, i.e. ratio (theirs / ours, > 1 = ours faster) ≥ 1/1.2;
  * MultiHeadAttention(need_weights=True) — the explicit path the lab teaches — vs the same
    torch module (no target: it materialises the T×T weights on purpose);
  * scaled_dot_product_attention (explicit) vs torch.nn.functional.scaled_dot_product_attention
    (no target: the fused kernel never builds the T×T matrix; the gap is the lesson).
Timing uses torch.utils.benchmark (warm-up, repeats until stable, median reported). Peak memory
of each case: ``results.peak_memory`` (RSS high-water mark on CPU, allocator peak on CUDA).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_course.attention import MultiHeadAttention, scaled_dot_product_attention  # noqa: E402
from llm_course.device import get_device  # noqa: E402
from results import measure_peak_mb, row, save  # noqa: E402

TARGET = 1 / 1.2  # ratio = theirs / ours (time): ours may be at most 1.2× slower


def fwd_bwd_step(fn, inputs: list[torch.Tensor]):
    """A no-argument callable: fn(*inputs) forward + backward."""
    def step():
        out = fn(*inputs)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()
    return step


def median_time(step, min_run_time: float, device: torch.device) -> float:
    step()  # warm-up (and allocates .grad buffers)
    timer = benchmark.Timer(stmt="step()", globals={"step": step})
    if device.type == "cuda":
        torch.cuda.synchronize()
    return timer.blocked_autorange(min_run_time=min_run_time).median


def run(lengths: list[int], device: torch.device, batch: int, d_model: int, heads: int,
        min_run_time: float) -> list[dict]:
    torch.manual_seed(0)
    ours = MultiHeadAttention(d_model, heads).to(device)
    theirs = torch.nn.MultiheadAttention(d_model, heads, batch_first=True).to(device)
    steps = {}
    for T in lengths:
        causal = torch.ones(T, T, dtype=torch.bool, device=device).triu(1)
        x = torch.randn(batch, T, d_model, device=device, requires_grad=True)
        q, k, v = (torch.randn(batch, heads, T, d_model // heads, device=device, requires_grad=True)
                   for _ in range(3))
        for name, fn, inputs in [
            ("mha_ours", lambda x: ours(x, is_causal=True), [x]),
            ("mha_torch", lambda x, causal=causal: theirs(x, x, x, attn_mask=causal, need_weights=False,
                                                         is_causal=True), [x]),
            ("mha_explicit", lambda x: ours(x, is_causal=True, need_weights=True), [x]),
            ("sdpa_explicit", scaled_dot_product_attention, [q, k, v]),
            ("sdpa_torch", F.scaled_dot_product_attention, [q, k, v]),
        ]:
            steps[T, name] = fwd_bwd_step(fn, inputs)
    # all timings first, then the memory pass (measuring memory slows allocation: see results.py)
    ms = {key: median_time(step, min_run_time, device) * 1e3 for key, step in steps.items()}
    mb = {key: measure_peak_mb(step, device) for key, step in steps.items()}
    rows = []
    for T in lengths:
        ms_T = {name: value for (T2, name), value in ms.items() if T2 == T}
        mb_T = {name: value for (T2, name), value in mb.items() if T2 == T}
        peer = "torch.nn.MultiheadAttention"
        rows += [
            row(f"MultiHeadAttention, T={T}", ms_T["mha_ours"], ms_T["mha_torch"], peer, "ms",
                higher_is_better=False, target=TARGET, peak_mb=mb_T["mha_ours"], T=T,
                kind="mha", peer_peak_mb=mb_T["mha_torch"]),
            row(f"MultiHeadAttention(need_weights=True), T={T}", ms_T["mha_explicit"], ms_T["mha_torch"], peer, "ms",
                higher_is_better=False, peak_mb=mb_T["mha_explicit"], T=T, kind="mha_explicit",
                peer_peak_mb=mb_T["mha_torch"]),
            row(f"scaled_dot_product_attention, T={T}", ms_T["sdpa_explicit"], ms_T["sdpa_torch"],
                "F.scaled_dot_product_attention", "ms", higher_is_better=False, peak_mb=mb_T["sdpa_explicit"],
                T=T, kind="sdpa", peer_peak_mb=mb_T["sdpa_torch"]),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds of timing per measurement")
    args = parser.parse_args()
    device = get_device(args.device)
    rows = run(args.lengths, device, args.batch, args.d_model, args.heads, args.min_run_time)

    print(f"attention forward+backward, batch {args.batch}, d_model {args.d_model}, {args.heads} heads, "
          f"causal, {device} (torch {torch.__version__}, {torch.get_num_threads()} threads); times in ms; "
          "ratio = theirs / ours (> 1: ours faster)")
    print(f"{'case':44} {'ours':>8} {'peer':>8} {'ratio':>6} {'peak MB':>8}")
    for r in rows:
        print(f"{r['case']:44} {r['ours']:>8.2f} {r['peer']:>8.2f} {r['ratio']:>6.2f} {r['peak_mb'] or 0:>8.1f}")
    worst = min(r["ratio"] for r in rows if r["kind"] == "mha")
    print(f"MultiHeadAttention (training path) vs nn.MultiheadAttention: worst ratio {worst:.2f} "
          f"(target ≥ {TARGET:.2f}) → {'OK' if worst >= TARGET else 'MISSED'}")
    path = save("attention", rows, meta={"device": str(device), "batch": args.batch, "d_model": args.d_model,
                                         "heads": args.heads, "lengths": args.lengths})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
