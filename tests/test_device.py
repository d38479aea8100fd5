import pytest
import torch

from llm_course.device import get_device, quick_mode, seed_everything


def test_cpu_is_always_available_and_env_overrides(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LLM_COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_default_prefers_an_accelerator():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert get_device().type == expected


def test_bad_device_names_the_source(monkeypatch):
    monkeypatch.setenv("LLM_COURSE_DEVICE", "tpu-please")
    with pytest.raises(ValueError, match="LLM_COURSE_DEVICE"):
        get_device()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            get_device("cuda")


def test_seed_everything_repeats_and_rejects_bad_seeds():
    seed_everything(3)
    a = torch.randn(4)
    g = seed_everything(3)
    assert torch.equal(a, torch.randn(4))
    assert torch.equal(torch.randn(2, generator=g), torch.randn(2, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


def test_quick_mode_switch(monkeypatch):
    monkeypatch.setenv("LLM_COURSE_QUICK", "1")
    assert quick_mode()
    monkeypatch.setenv("LLM_COURSE_QUICK", "0")
    assert not quick_mode()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_attention_runs_on_gpu():
    from llm_course.attention import MultiHeadAttention
    device = get_device()
    mha = MultiHeadAttention(64, 4).to(device)
    x = torch.randn(2, 128, 64, device=device)
    fused, _ = mha(x, is_causal=True)
    explicit, w = mha(x, is_causal=True, need_weights=True)
    assert fused.device.type == "cuda" and torch.allclose(fused, explicit, atol=1e-4)
