"""Plausible wrong answers to lab 05 (embeddings and positions)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/05-embeddings-positions/lab05-embeddings-positions.ipynb"
MAX_SCORE = 11
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "embedding": ("05.embedding", "token_embedding"),
    "frequencies": ("05.frequencies", "inverse_frequencies"),
    "sinusoidal": ("05.sinusoidal", "sinusoidal_encoding"),
    "rope_cache": ("05.rope_cache", "rope_cache"),
    "rope": ("05.rope", "apply_rope"),
    "rope_scores": ("05.rope_relative", "rope_scores"),
}

MUTANTS = [
    Mutant("scale by d_model instead of √d_model", "embedding",
           "out * math.sqrt(weight.shape[1])", "out * weight.shape[1]", "you multiplied by d_model"),
    Mutant("padding_idx ignored", "embedding",
           "out = out.masked_fill((ids == padding_idx)[..., None], 0.0)", "out = out", "padding_idx was ignored"),
    Mutant("padding row zeroed in the table, in place", "embedding",
           "out = out.masked_fill((ids == padding_idx)[..., None], 0.0)",
           "weight.data[padding_idx] = 0.0\n        out = weight[ids]", "changed the weight table in place"),
    Mutant("exponent i/d instead of 2i/d", "frequencies",
           "torch.arange(0, d, 2, dtype=torch.float64) / d", "torch.arange(d // 2, dtype=torch.float64) / d",
           "exponent is i/d"),
    Mutant("base ignored", "frequencies", "return base **", "return 10000.0 **", "base argument was ignored"),
    Mutant("frequencies grow instead of shrink", "frequencies", "base ** (-torch", "base ** (torch",
           "wrong sign"),
    Mutant("sin and cos swapped", "sinusoidal", "(angles.sin(), angles.cos())", "(angles.cos(), angles.sin())",
           "sin and cos are swapped"),
    Mutant("[sin | cos] halves instead of interleaved", "sinusoidal",
           "return pe.flatten(-2).float()", "return pe.transpose(-1, -2).flatten(-2).float()", "split halves"),
    Mutant("positions start at 1", "sinusoidal", "torch.arange(T, dtype=torch.float64)",
           "torch.arange(1, T + 1, dtype=torch.float64)", "positions start at 1"),
    Mutant("cache returns (sin, cos)", "rope_cache", "return angles.cos().float(), angles.sin().float()",
           "return angles.sin().float(), angles.cos().float()", "swapped"),
    Mutant("rotation by −θ", "rope", "(x1 * cos - x2 * sin, x1 * sin + x2 * cos)",
           "(x1 * cos + x2 * sin, x2 * cos - x1 * sin)", "rotate by −θ"),
    Mutant("cos and sin swapped in the rotation", "rope", "(x1 * cos - x2 * sin, x1 * sin + x2 * cos)",
           "(x1 * sin - x2 * cos, x1 * cos + x2 * sin)", "cos and sin are swapped"),
    Mutant("split-halves (rotate_half) convention", "rope",
           "x1, x2 = x[..., 0::2], x[..., 1::2]", "x1, x2 = x.chunk(2, dim=-1)", "pairs are read as halves"),
    Mutant("full split-halves convention in and out", "rope",
           "rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)\n"
           "    return rotated.flatten(-2)",
           "x1, x2 = x.chunk(2, dim=-1)\n"
           "    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)",
           "rotate_half"),
    Mutant("positions argument ignored", "rope", "cos, sin = rope_cache(positions,",
           "cos, sin = rope_cache(torch.arange(x.shape[-2]),", "positions argument was ignored"),
    Mutant("pair mixes two different angles (not a rotation)", "rope", "x1 * sin + x2 * cos)",
           "x1 * sin.flip(-1) + x2 * cos.flip(-1))", "depend only on m − n"),
    Mutant("k not rotated", "rope_scores", "@ apply_rope(k, k_positions, base).transpose", "@ k.transpose",
           "rotate k too"),
    Mutant("k rotated with the query positions", "rope_scores", "apply_rope(k, k_positions, base)",
           "apply_rope(k, q_positions, base)", "query positions"),
]
