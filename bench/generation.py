"""Generation speed with a KV cache: the library against Hugging Face transformers, in one run.

    python bench/generation.py [--models char gpt2-mini] [--new-tokens 32 128] [--repeats 3] [--device cpu]

Models (batch 1, greedy decoding):
  * "char": chapter 09's trained character-level GPT (``load_shakespeare_gpt``; 0.8 M parameters,
    context 128), prompted with the first 16 characters of Shakespeare;
  * "gpt2-mini": a ``DecoderOnly`` shaped like a small GPT-2 (vocab 50,257, d_model 384, 6 heads,
    6 layers, context 1024; GPT-2 initialisation, untrained), prompted with 32 random ids.
The peer is ``transformers.GPT2LMHeadModel`` with the same configuration and the SAME weights
(copied tensor by tensor: GPT-2 packs q, k, v into one transposed ``Conv1D``), run with
``generate(use_cache=True, do_sample=False)``. Before anything is timed, both must produce the
same ids; a mismatch stops the bench. Rows (ratio > 1: ours better):
  * ours ``generate_cached`` vs HF ``generate`` — tokens/s; target ≥ 1/1.2 (at most 1.2× slower);
  * ours ``generate_cached`` vs ours ``generate`` (no cache; only up to --uncached-max new tokens,
    it recomputes the whole prefix every step) — the speed-up the cache buys; no target.
tokens/s = new tokens / seconds, prefill included; best of --repeats. Peak memory per case is
measured after the timings (see results.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]  # bench/tokenizers.py
import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, str(Path(HERE).parent))
sys.path.append(HERE)
from llm_course.device import get_device  # noqa: E402
from llm_course.generation import generate, generate_cached  # noqa: E402
from llm_course.training import load_shakespeare_gpt  # noqa: E402
from llm_course.transformer import DecoderOnly, ModelConfig  # noqa: E402
from results import measure_peak_mb, row, save  # noqa: E402

TARGET = 1 / 1.2  # ratio = ours / HF (tokens/s)
GPT2_MINI = ModelConfig(vocab_size=50257, d_model=384, num_heads=6, num_layers=6, max_len=1024)


def to_hf_gpt2(model: DecoderOnly) -> transformers.GPT2LMHeadModel:
    """A GPT2LMHeadModel computing the same function as ``model`` (pre-norm, GELU, tied head)."""
    c = model.config
    if not (c.prenorm and c.norm == "layer" and c.activation == "gelu" and c.tie_weights):
        raise ValueError(f"model must be GPT-2 shaped (pre-norm LayerNorm, GELU, tied head), got {c}")
    eps = model.final_norm.eps
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.max_len, n_embd=c.d_model, n_layer=c.num_layers,
        n_head=c.num_heads, n_inner=model.blocks[0].ffn.up.out_features, activation_function="gelu",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=eps,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=None, pad_token_id=0))
    state = {"transformer.wte.weight": model.tok_emb.weight, "transformer.wpe.weight": model.pos_emb.weight,
             "transformer.ln_f.weight": model.final_norm.weight, "transformer.ln_f.bias": model.final_norm.bias}
    for i, b in enumerate(model.blocks):
        a, p = b.attn, f"transformer.h.{i}."
        # HF's Conv1D stores weights (in, out), the transpose of nn.Linear's (out, in)
        state |= {
            p + "ln_1.weight": b.norm1.weight, p + "ln_1.bias": b.norm1.bias,
            p + "ln_2.weight": b.norm2.weight, p + "ln_2.bias": b.norm2.bias,
            p + "attn.c_attn.weight": torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).T,
            p + "attn.c_attn.bias": torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]),
            p + "attn.c_proj.weight": a.out_proj.weight.T, p + "attn.c_proj.bias": a.out_proj.bias,
            p + "mlp.c_fc.weight": b.ffn.up.weight.T, p + "mlp.c_fc.bias": b.ffn.up.bias,
            p + "mlp.c_proj.weight": b.ffn.down.weight.T, p + "mlp.c_proj.bias": b.ffn.down.bias,
        }
    missing, unexpected = hf.load_state_dict({k: v.detach().contiguous() for k, v in state.items()}, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # lm_head is tied to wte
        raise RuntimeError(f"weight copy failed: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def best_time(fn, repeats: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def build(name: str, device: torch.device) -> tuple[DecoderOnly, torch.Tensor]:
    if name == "char":
        model, codec = load_shakespeare_gpt()
        from llm_course.data import shakespeare
        prompt = torch.as_tensor(codec.encode(shakespeare()[:16]), dtype=torch.long)[None]
    elif name == "gpt2-mini":
        torch.manual_seed(0)
        model = DecoderOnly(GPT2_MINI)
        prompt = torch.randint(GPT2_MINI.vocab_size, (1, 32), generator=torch.Generator().manual_seed(0))
    else:
        raise ValueError(f"model must be 'char' or 'gpt2-mini', got {name!r}")
    return model.to(device).eval(), prompt.to(device)


def run(names: list[str], new_tokens: list[int], uncached_max: int, repeats: int,
        device: torch.device) -> list[dict]:
    rows = []
    for name in names:
        model, prompt = build(name, device)
        hf = to_hf_gpt2(model).to(device)
        for n in new_tokens:
            n = min(n, model.config.max_len - prompt.shape[1])  # the cache cannot slide past the context
            ours = lambda: generate_cached(model, prompt, n, greedy=True)  # noqa: E731
            uncached = lambda: generate(model, prompt, n, greedy=True)  # noqa: E731
            theirs = lambda: hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,  # noqa: E731
                                         min_new_tokens=n, do_sample=False, use_cache=True)
            with torch.no_grad():
                ids, hf_ids = ours(), theirs()
            if not torch.equal(ids, hf_ids):
                first = int((ids != hf_ids).nonzero()[0, 1]) if ids.shape == hf_ids.shape else None
                raise SystemExit(f"{name}: greedy ids differ from transformers' (first at position {first})")
            t_ours = best_time(ours, repeats, device)
            t_hf = best_time(theirs, repeats, device)
            t_unc = best_time(uncached, repeats, device) if n <= uncached_max else None
            mem = {"ours": measure_peak_mb(ours, device), "hf": measure_peak_mb(theirs, device)}
            common = dict(model=name, new_tokens=n, prompt_tokens=prompt.shape[1],
                          params=sum(p.numel() for p in model.parameters()), ids_identical=True)
            rows.append(row(f"{name}: cached, {n} new tokens", n / t_ours, n / t_hf, "HF GPT2LMHeadModel.generate",
                            "tokens/s", higher_is_better=True, target=TARGET, peak_mb=mem["ours"],
                            peer_peak_mb=mem["hf"], kind="vs_hf", **common))
            if t_unc is not None:
                rows.append(row(f"{name}: cached vs uncached, {n} new tokens", n / t_ours, n / t_unc,
                                "ours without KV cache (generate)", "tokens/s", higher_is_better=True,
                                peak_mb=mem["ours"], peer_peak_mb=measure_peak_mb(uncached, device),
                                kind="cache_speedup", **common))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["char", "gpt2-mini"], choices=["char", "gpt2-mini"])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[32, 112, 256])
    parser.add_argument("--uncached-max", type=int, default=112, help="skip the uncached run above this")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    args = parser.parse_args()
    device = get_device(args.device)
    rows = run(args.models, sorted(set(args.new_tokens)), args.uncached_max, args.repeats, device)
    print(f"greedy generation, batch 1, {device}, {torch.get_num_threads()} threads, transformers "
          f"{transformers.__version__}; ids identical to HF in every case; ratio > 1: ours faster")
    print(f"{'case':44} {'ours tok/s':>10} {'peer tok/s':>10} {'ratio':>6} {'peak MB':>8}  peer")
    for r in rows:
        print(f"{r['case']:44} {r['ours']:>10.1f} {r['peer']:>10.1f} {r['ratio']:>6.2f} "
              f"{r['peak_mb'] or float('nan'):>8.1f}  {r['peer_name']}")
    meta = {"device": str(device), "transformers": transformers.__version__, "repeats": args.repeats,
            "batch": 1, "decoding": "greedy"}
    print(f"results: {save('generation', rows, meta)}")


if __name__ == "__main__":
    main()
