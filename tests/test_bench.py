"""bench/: the results format, the peak-memory probe, the runner, and the GPT-2 weight copy.

Small and quick: the benchmarks themselves are run by ``make bench``, not here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "bench"))  # appended: bench/tokenizers.py must not shadow the package

import results  # noqa: E402
import run_all  # noqa: E402


def test_row_orients_the_ratio_so_that_above_one_means_ours_is_better():
    faster = results.row("t", ours=1.0, peer=2.0, peer_name="p", unit="ms", higher_is_better=False, target=0.8)
    assert faster["ratio"] == 2.0 and faster["met"] is True
    slower = results.row("t", ours=1.0, peer=2.0, peer_name="p", unit="tokens/s", higher_is_better=True,
                         target=0.8)
    assert slower["ratio"] == 0.5 and slower["met"] is False
    alone = results.row("t", ours=1.0, peer=None, peer_name=None, unit="ms", higher_is_better=False, extra=3)
    assert alone["ratio"] is None and alone["met"] is None and alone["extra"] == 3
    assert set(results.ROW_KEYS) <= set(alone)


def test_save_writes_one_json_file_with_the_machine(tmp_path, monkeypatch):
    monkeypatch.setenv(results.DIR_ENV_VAR, str(tmp_path))
    r = results.row("a", 2.0, 1.0, "p", "ms", higher_is_better=False, peak_mb=float("nan"))
    path = results.save("demo", [r], meta={"batch": 4})
    assert path == tmp_path / "demo.json" and [p.name for p in tmp_path.iterdir()] == ["demo.json"]
    doc = json.loads(path.read_text())  # strict JSON: NaN was stored as null
    assert doc["bench"] == "demo" and doc["meta"]["batch"] == 4 and doc["meta"]["cores"] >= 1
    assert doc["meta"]["torch"] == torch.__version__ and doc["rows"][0]["peak_mb"] is None
    assert results.load("demo") == doc


def test_save_rejects_rows_without_the_required_keys_and_bad_names(tmp_path, monkeypatch):
    monkeypatch.setenv(results.DIR_ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError, match=r"rows\[0\] lacks the keys \['peer'"):
        results.save("demo", [{"case": "a", "ours": 1.0}])
    with pytest.raises(ValueError, match="bench_name"):
        results.save("../evil", [])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
def test_peak_memory_sees_a_tensor_allocated_and_freed_inside_the_block():
    with results.peak_memory() as before:
        pass
    with results.peak_memory() as mem:
        x = torch.ones(25_000_000)  # 100 MB, touched, then freed before the block ends
        del x
    assert 90 < mem.mb < 150 and before.mb < 20 and "VmHWM" in mem.how


def test_run_all_records_a_failing_or_missing_bench_and_goes_on(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit('no luck')\n")
    silent = tmp_path / "silent.py"
    silent.write_text("print('done')\n")
    failed = run_all.run_bench("bad", [], 60, tmp_path, script=bad)
    assert failed["status"] == "failed" and "no luck" in failed["error"]
    assert "wrote no" in run_all.run_bench("silent", [], 60, tmp_path, script=silent)["error"]
    assert run_all.run_bench("nonexistent", [], 60, tmp_path)["status"] == "missing"
    table = run_all.summary({"bad": failed})
    assert "(failed)" in table and "no luck" in table


def test_run_all_quick_end_to_end_for_one_bench(tmp_path):
    out = tmp_path / "all.json"
    assert run_all.main(["--quick", "--only", "attention", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    entry = doc["benches"]["attention"]
    assert doc["quick"] is True and entry["status"] == "ok" and entry["meta"]["lengths"] == [16, 32]
    for r in entry["rows"]:
        assert set(results.ROW_KEYS) <= set(r) and r["ours"] > 0 and r["peer"] > 0


def test_copied_gpt2_weights_give_the_same_logits_and_greedy_ids():
    transformers = pytest.importorskip("transformers")  # noqa: F841
    import generation
    from llm_course.generation import generate_cached
    from llm_course.transformer import DecoderOnly, ModelConfig

    torch.manual_seed(0)
    ours = DecoderOnly(ModelConfig(vocab_size=97, d_model=32, num_heads=4, num_layers=2, max_len=32)).eval()
    hf = generation.to_hf_gpt2(ours)
    ids = torch.randint(97, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), atol=1e-5, rtol=1e-5)
    greedy_hf = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, min_new_tokens=8,
                            do_sample=False, use_cache=True)
    assert torch.equal(greedy_hf, generate_cached(ours, ids, 8, greedy=True))


def test_peak_flops_table():
    from llm_course.device import peak_bf16_flops

    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("NVIDIA A100-SXM4-40GB") == 312e12
    assert peak_bf16_flops("NVIDIA L40S") == 362.05e12 and peak_bf16_flops("NVIDIA L4") == 121e12
    assert peak_bf16_flops("Tesla T4") is None  # no bf16 tensor cores: MFU needs --peak-flops


def test_published_results_file_has_the_shared_format():
    path = ROOT / "book" / "data" / "bench-results.json"
    if not path.exists():
        pytest.skip("make bench has not been run")
    doc = json.loads(path.read_text())
    assert {"generated", "machine", "benches"} <= set(doc)
    for name, entry in doc["benches"].items():
        assert entry["status"] in {"ok", "failed", "timeout", "missing", "skipped"}, name
        for r in entry.get("rows", []):
            assert set(results.ROW_KEYS) <= set(r), (name, r["case"])
