"""Pick the device to run on, and make runs repeatable.

The course runs everywhere: a laptop CPU, Apple silicon, a Colab or cluster GPU. One
function decides where tensors live so that no lab hard-codes ``"cuda"``.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_ENV_VAR = "LLM_COURSE_DEVICE"


def get_device(prefer: str | None = None) -> torch.device:
    """The device to use: ``prefer``, else ``$LLM_COURSE_DEVICE``, else CUDA → MPS → CPU.

    >>> get_device("cpu")
    device(type='cpu')
    """
    choice = prefer or os.environ.get(DEVICE_ENV_VAR) or ""
    if choice:
        try:
            device = torch.device(choice)
        except RuntimeError as err:
            raise ValueError(
                f"device {choice!r} (from {'prefer' if prefer else DEVICE_ENV_VAR}) is not a "
                "torch device; expected e.g. 'cpu', 'cuda', 'cuda:1' or 'mps'"
            ) from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {choice!r} was requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {choice!r} was requested but Apple MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices); return a CPU generator with that seed.

    Seeding is what makes a lab's figures and a check's cases identical on every run.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


QUICK_ENV_VAR = "LLM_COURSE_QUICK"


def quick_mode() -> bool:
    """True when ``$LLM_COURSE_QUICK=1``: labs and pages shrink data and steps.

    The tests execute every notebook in this mode so the whole suite fits its time
    budget; a reader or learner runs the full size.
    """
    return os.environ.get(QUICK_ENV_VAR, "") == "1"


# Dense (no structured sparsity) bf16 tensor-core peaks in FLOP/s, from NVIDIA's datasheets; the
# denominator of MFU (model FLOPs utilisation). Matched in order against the CUDA device name,
# so the more specific names come first ("H100 PCIe" before "H100", "A100" before "A10").
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    ("H200", 989.4e12),
    ("H100 PCIe", 756.0e12),
    ("H100", 989.4e12),  # SXM ("NVIDIA H100 80GB HBM3")
    ("A100", 312.0e12),
    ("L40S", 362.05e12),
    ("L40", 181.05e12),
    ("L4", 121.0e12),
]


def peak_bf16_flops(device_name: str | None = None) -> float | None:
    """The GPU's dense bf16 peak in FLOP/s, or None if it is not in ``PEAK_BF16_FLOPS``.

    ``device_name`` defaults to the current CUDA device's name (None without CUDA).

    >>> peak_bf16_flops("NVIDIA H100 80GB HBM3")
    989400000000000.0
    """
    if device_name is None:
        if not torch.cuda.is_available():
            return None
        device_name = torch.cuda.get_device_name()
    for key, flops in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return flops
    return None
