"""The GPU check (``make gpu-check``): the gpu-marked tests, then GPT-2-small training speed and MFU.

    python bench/gpu_check.py [--steps 20] [--batch 8] [--block 1024] [--peak-flops 989.4e12] [--no-tests]

1. ``pytest -m gpu`` (tests/test_gpu.py and every other gpu-marked test): each model class on the
   GPU equals the CPU, bf16 autocast, the fused attention kernels, DDP over NCCL, two labs.
2. Training throughput of a GPT-2-small-shaped ``DecoderOnly`` (vocab 50,257, d_model 768,
   12 heads, 12 layers, context 1024; 124 M parameters) under bf16 autocast with AdamW:
   tokens/s, and MFU (model FLOPs utilisation) = achieved model FLOP/s / the GPU's dense bf16
   peak. Model FLOPs per token = 3 × ``efficiency.flops_per_token`` (forward + backward:
   ≈ 6·N plus the attention scores, counted in full even though causal masking could skip
   half). The peak comes from ``device.PEAK_BF16_FLOPS`` by device name, or --peak-flops.
Results go through ``results.save("gpu", ...)``. Without a CUDA GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from llm_course.device import peak_bf16_flops  # noqa: E402
from llm_course.efficiency import flops_per_token  # noqa: E402
from llm_course.training import lm_loss  # noqa: E402
from llm_course.transformer import DecoderOnly, ModelConfig  # noqa: E402
from results import peak_memory, row, save  # noqa: E402

GPT2_SMALL = ModelConfig(vocab_size=50257, d_model=768, num_heads=12, num_layers=12, max_len=1024)


def run_gpu_tests() -> tuple[int, str]:
    """(exit code, last line) of ``pytest -m gpu`` over the whole test suite."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:xdist", "-o", "addopts=",
               "-p", "no:cacheprovider", "tests"]
    print("$", " ".join(command[2:]), flush=True)
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    print(proc.stdout[-6000:], proc.stderr[-2000:], sep="\n", flush=True)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, lines[-1] if lines else ""


def training_throughput(steps: int, batch: int, block: int) -> tuple[float, float | None]:
    """(tokens/s, peak MB) of bf16-autocast training steps of GPT-2 small on cuda."""
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True  # what a real run uses for the fp32 leftovers
    device = torch.device("cuda")
    model = DecoderOnly(GPT2_SMALL).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
    x = torch.randint(GPT2_SMALL.vocab_size, (batch, block), device=device)
    y = torch.randint(GPT2_SMALL.vocab_size, (batch, block), device=device)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = lm_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: cuBLAS heuristics, allocator, AdamW state
        step()
    with peak_memory(device) as mem:
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * batch * block / (time.perf_counter() - start), mem.mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--peak-flops", type=float, default=None,
                        help="the GPU's dense bf16 peak in FLOP/s, if it is not in device.PEAK_BF16_FLOPS")
    parser.add_argument("--no-tests", action="store_true", help="skip pytest -m gpu")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("No CUDA GPU on this machine: nothing to check. Run `make gpu-check` on a machine with one.")
        return 0
    name = torch.cuda.get_device_name()
    peak = args.peak_flops or peak_bf16_flops(name)
    print(f"GPU: {name}; dense bf16 peak: {f'{peak / 1e12:.1f} TFLOP/s' if peak else 'unknown (pass --peak-flops)'}")

    tests_rc, tests_summary = (0, "skipped (--no-tests)") if args.no_tests else run_gpu_tests()
    tokens_s, peak_mb = training_throughput(args.steps, args.batch, args.block)
    model_flops = 3 * flops_per_token(GPT2_SMALL, args.block) * tokens_s
    mfu = model_flops / peak if peak else None
    print(f"GPT-2 small, bf16 autocast, batch {args.batch} × {args.block}: {tokens_s:,.0f} tokens/s, "
          f"{model_flops / 1e12:.1f} model TFLOP/s, MFU {f'{mfu:.1%}' if mfu else 'unknown'}, "
          f"peak memory {peak_mb:,.0f} MB")
    rows = [row("GPT-2 small training, bf16 autocast", tokens_s, None, None, "tokens/s", higher_is_better=True,
                peak_mb=peak_mb, mfu=mfu, model_tflops=model_flops / 1e12, batch=args.batch, block=args.block)]
    meta = {"gpu_name": name, "peak_bf16_flops": peak, "gpu_tests_exit_code": tests_rc,
            "gpu_tests_summary": tests_summary, "steps": args.steps}
    print(f"results: {save('gpu', rows, meta)}")
    print(f"pytest -m gpu: {tests_summary}")
    return tests_rc


if __name__ == "__main__":
    sys.exit(main())
