"""Attention speed: the library against PyTorch, forward + backward, in one run.

    python bench/attention.py [--lengths 128 512 1024] [--device cpu] [--json results.json]

Rows:
  * MultiHeadAttention (fused path, what later chapters train with) vs torch.nn.MultiheadAttention
    — target: ratio ≤ 1.2 (ours / theirs, time; lower is better);
  * MultiHeadAttention(need_weights=True) — the explicit path the lab teaches, for scale;
  * scaled_dot_product_attention (explicit) vs torch.nn.functional.scaled_dot_product_attention.
Timing uses torch.utils.benchmark (warm-up, repeats until stable, median reported).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_course.attention import MultiHeadAttention, scaled_dot_product_attention  # noqa: E402
from llm_course.device import get_device  # noqa: E402

TARGET = 1.2


def fwd_bwd_time(fn, inputs: list[torch.Tensor], min_run_time: float) -> float:
    """Median seconds for fn(*inputs) forward + backward."""
    def step():
        out = fn(*inputs)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()

    step()  # warm-up (and allocates .grad buffers)
    timer = benchmark.Timer(stmt="step()", globals={"step": step})
    if inputs[0].device.type == "cuda":
        torch.cuda.synchronize()
    return timer.blocked_autorange(min_run_time=min_run_time).median


def run(lengths: list[int], device: torch.device, batch: int, d_model: int, heads: int,
        min_run_time: float) -> list[dict]:
    torch.manual_seed(0)
    ours = MultiHeadAttention(d_model, heads).to(device)
    theirs = torch.nn.MultiheadAttention(d_model, heads, batch_first=True).to(device)
    causal = {T: torch.ones(T, T, dtype=torch.bool, device=device).triu(1) for T in lengths}
    rows = []
    for T in lengths:
        x = torch.randn(batch, T, d_model, device=device, requires_grad=True)
        q, k, v = (torch.randn(batch, heads, T, d_model // heads, device=device, requires_grad=True)
                   for _ in range(3))
        t = {
            "mha_ours": fwd_bwd_time(lambda x: ours(x, is_causal=True), [x], min_run_time),
            "mha_torch": fwd_bwd_time(
                lambda x: theirs(x, x, x, attn_mask=causal[T], need_weights=False, is_causal=True), [x],
                min_run_time),
            "mha_explicit": fwd_bwd_time(lambda x: ours(x, is_causal=True, need_weights=True), [x], min_run_time),
            "sdpa_explicit": fwd_bwd_time(scaled_dot_product_attention, [q, k, v], min_run_time),
            "sdpa_torch": fwd_bwd_time(F.scaled_dot_product_attention, [q, k, v], min_run_time),
        }
        rows.append({"T": T, **{k: v * 1e3 for k, v in t.items()},
                     "mha_ratio": t["mha_ours"] / t["mha_torch"],
                     "mha_explicit_ratio": t["mha_explicit"] / t["mha_torch"],
                     "sdpa_ratio": t["sdpa_explicit"] / t["sdpa_torch"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds of timing per measurement")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    device = get_device(args.device)
    rows = run(args.lengths, device, args.batch, args.d_model, args.heads, args.min_run_time)

    print(f"attention forward+backward, batch {args.batch}, d_model {args.d_model}, {args.heads} heads, "
          f"causal, {device} (torch {torch.__version__}, {torch.get_num_threads()} threads); times in ms")
    print(f"{'T':>6} {'ours MHA':>9} {'torch MHA':>10} {'ratio':>6} {'explicit':>9} {'ratio':>6} "
          f"{'our sdpa':>9} {'F.sdpa':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['T']:>6} {r['mha_ours']:>9.2f} {r['mha_torch']:>10.2f} {r['mha_ratio']:>6.2f} "
              f"{r['mha_explicit']:>9.2f} {r['mha_explicit_ratio']:>6.2f} "
              f"{r['sdpa_explicit']:>9.2f} {r['sdpa_torch']:>8.2f} {r['sdpa_ratio']:>6.2f}")
    worst = max(r["mha_ratio"] for r in rows)
    print(f"MultiHeadAttention (training path) vs nn.MultiheadAttention: worst ratio {worst:.2f} "
          f"(target ≤ {TARGET}) → {'OK' if worst <= TARGET else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "attention", "device": str(device), "rows": rows,
                                         "target": TARGET, "worst_mha_ratio": worst}, indent=2))


if __name__ == "__main__":
    main()
