"""Plausible wrong answers to lab 12 (generating text)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/12-generation/lab12-generation.ipynb"
MAX_SCORE = 16
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "temperature": ("12.temperature", "apply_temperature"),
    "top_k": ("12.top_k", "top_k_filter"),
    "top_p": ("12.top_p", "top_p_filter"),
    "repetition": ("12.repetition_penalty", "repetition_penalty"),
    "kv_cache": ("12.kv_cache", "KVCache"),
    "cached_forward": ("12.cached_forward", "forward_cached"),
    "generate_cached": ("12.generate_cached", "generate_cached"),
}

MUTANTS = [
    # temperature
    Mutant("temperature multiplies instead of dividing", "temperature",
           "return logits / temperature", "return logits * temperature", "multiplied by the temperature"),
    Mutant("temperature returns probabilities", "temperature",
           "return logits / temperature", "return torch.softmax(logits / temperature, dim=-1)",
           "returned probabilities"),
    # top-k
    Mutant("top-k keeps k + 1 (off by one)", "top_k",
           "kth = torch.topk(logits, k, dim=-1).values[..., -1:]",
           "kth = torch.topk(logits, min(k + 1, logits.shape[-1]), dim=-1).values[..., -1:]", "off by one"),
    Mutant("top-k drops ties by keeping k indices", "top_k",
           "kth = torch.topk(logits, k, dim=-1).values[..., -1:]\n    return logits.masked_fill(logits < kth, NEG_INF)",
           "idx = torch.topk(logits, k, dim=-1).indices\n"
           "    return torch.full_like(logits, NEG_INF).scatter(-1, idx, logits.gather(-1, idx))",
           "tied with the k-th"),
    Mutant("top-k sets removed logits to 0", "top_k",
           "logits.masked_fill(logits < kth, NEG_INF)", "logits.masked_fill(logits < kth, 0.0)", "set to 0"),
    Mutant("top-k ignores k ≥ vocab", "top_k",
           "k = min(max(k, min_tokens_to_keep), logits.shape[-1])", "k = max(k, min_tokens_to_keep)"),
    # top-p
    Mutant("top-p drops the token that crosses p", "top_p",
           "n_keep = (tail > 1 - top_p).sum(dim=-1, keepdim=True)",
           "n_keep = (tail - sorted_probs > 1 - top_p).sum(dim=-1, keepdim=True)", "crosses top_p was dropped"),
    Mutant("top-p on unsorted probabilities", "top_p",
           "sorted_probs = probs.sort(dim=-1, descending=True).values", "sorted_probs = probs"),
    Mutant("top-p ignores min_tokens_to_keep", "top_p",
           "n_keep = n_keep.clamp(min=min(min_tokens_to_keep, logits.shape[-1]))", "n_keep = n_keep.clamp(min=1)",
           "min_tokens_to_keep was ignored"),
    # repetition penalty
    Mutant("penalty divides negative logits", "repetition",
           "torch.where(seen > 0, seen / penalty, seen * penalty)", "seen / penalty", "negative logits were divided"),
    Mutant("penalty applied to every token", "repetition",
           "seen = logits.gather(-1, ids)\n    seen = torch.where(seen > 0, seen / penalty, seen * penalty)\n"
           "    return logits.scatter(-1, ids, seen)",
           "return torch.where(logits > 0, logits / penalty, logits * penalty)", "every token was penalised"),
    # KV cache
    Mutant("cache appends keys but not values", "kv_cache",
           "            v = torch.cat([self.values[layer], v], dim=-2)\n",
           "            v = self.values[layer]\n", "values were not appended"),
    Mutant("cache concatenates on the batch axis", "kv_cache",
           "k = torch.cat([self.keys[layer], k], dim=-2)", "k = torch.cat([self.keys[layer], k], dim=0)",
           "time axis"),
    Mutant("cache returns only the new keys and values", "kv_cache",
           "        if self.keys[layer] is not None:\n            k = torch.cat([self.keys[layer], k], dim=-2)",
           "        new = k, v\n        if self.keys[layer] is not None:\n"
           "            k = torch.cat([self.keys[layer], k], dim=-2)\n            v = torch.cat([self.values[layer], v], dim=-2)\n"
           "            self.keys[layer], self.values[layer] = k, v\n            return new\n"
           "        if self.keys[layer] is not None:\n            k = torch.cat([self.keys[layer], k], dim=-2)",
           "returned only the new keys"),
    # cached forward
    Mutant("cache does not advance the position offset", "cached_forward",
           "model.pos_emb(model.tok_emb(ids), offset=offset)", "model.pos_emb(model.tok_emb(ids))",
           "offset did not advance"),
    Mutant("causal mask aligned top-left", "cached_forward", ".tril(offset)", ".tril()", "aligned top-left"),
    Mutant("cached keys and values not used", "cached_forward",
           "            k, v = cache.update(layer, split_heads(attn.k_proj(x), attn.num_heads),\n"
           "                                split_heads(attn.v_proj(x), attn.num_heads))\n"
           "            out, _ = attn.attend(q, k, v, mask)",
           "            k, v = split_heads(attn.k_proj(x), attn.num_heads), split_heads(attn.v_proj(x), attn.num_heads)\n"
           "            cache.update(layer, k, v)\n"
           "            out, _ = attn.attend(q, k, v, is_causal=True)",
           "cached keys/values were not used"),
    # generation loop
    Mutant("loop feeds the whole sequence to the cache every step", "generate_cached",
           "logits = forward_cached(model, new, cache)[:, -1]", "logits = forward_cached(model, ids, cache)[:, -1]"),
    Mutant("loop generates one token too few", "generate_cached",
           "for step in range(max_new_tokens):", "for step in range(max_new_tokens - 1):", "new tokens for"),
]
