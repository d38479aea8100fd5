"""Plausible wrong answers to lab 06 (attention)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/06-attention/lab06-attention.ipynb"
MAX_SCORE = 13
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "sdpa": ("06.sdpa", "scaled_dot_product_attention"),
    "causal_mask": ("06.causal_mask", "causal_mask"),
    "padding_mask": ("06.padding_mask", "padding_mask"),
    "split_heads": ("06.split_heads", "split_heads"),
    "merge_heads": ("06.merge_heads", "merge_heads"),
    "mha": ("06.mha", "MultiHeadAttention"),
}

MUTANTS = [
    Mutant("no √d_k scaling", "sdpa", "/ math.sqrt(d_k)", "", "not divided by √d_k"),
    Mutant("divides by d_k", "sdpa", "/ math.sqrt(d_k)", "/ d_k", "divided by d_k instead"),
    Mutant("softmax over the query axis", "sdpa", "softmax(dim=-1)", "softmax(dim=-2)", "query axis"),
    Mutant("inverted mask", "sdpa", "masked_fill(~mask,", "masked_fill(mask,", "inverted"),
    Mutant("mask applied after softmax", "sdpa",
           "        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)\n"
           "    weights = scores.softmax(dim=-1)",
           "        pass\n    weights = scores.softmax(dim=-1)\n"
           "    weights = weights * mask if mask is not None else weights",
           "after the softmax"),
    Mutant("masked scores zeroed instead of -inf", "sdpa",
           "scores.masked_fill(~mask, torch.finfo(scores.dtype).min)", "scores * mask", "multiplied by 0"),
    Mutant("causal mask upper-triangular", "causal_mask", ".tril()", ".triu()", "upper-triangular"),
    Mutant("causal mask without its diagonal", "causal_mask", ".tril()", ".tril(-1)", "diagonal"),
    Mutant("padding mask off by one", "padding_mask", "positions < lengths", "positions <= lengths", "off by one"),
    Mutant("padding mask without singleton dims", "padding_mask", "[:, None, None, :]", "", "singleton dims"),
    Mutant("heads split by reshape without transpose", "split_heads",
           "x.view(batch, T, num_heads, d_model // num_heads).transpose(1, 2)",
           "x.reshape(batch, num_heads, T, d_model // num_heads)", "reshape alone"),
    Mutant("heads merged by reshape without transpose", "merge_heads",
           "x.transpose(1, 2).reshape(batch, T, heads * d_head)", "x.reshape(batch, T, heads * d_head)",
           "reshape alone"),
    Mutant("missing output projection", "mha", "return self.out_proj(merge_heads(out)), weights",
           "return merge_heads(out), weights", "out_proj is missing"),
    Mutant("keys and values use the query projection", "mha",
           "k = split_heads(self.k_proj(context), self.num_heads)",
           "k = split_heads(self.q_proj(context), self.num_heads)"),
    Mutant("self-attention even when given a context", "mha",
           "context = x if context is None else context", "context = x"),
]
