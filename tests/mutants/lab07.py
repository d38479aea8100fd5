"""Plausible wrong answers to lab 07 (normalisation, residuals, feed-forward)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/07-normalisation/lab07-normalisation.ipynb"
MAX_SCORE = 14
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "batchnorm": ("07.batchnorm", "BatchNorm"),
    "layernorm": ("07.layernorm", "LayerNorm"),
    "rmsnorm": ("07.rmsnorm", "RMSNorm"),
    "ffn": ("07.ffn", "FeedForward"),
    "block": ("07.block", "TransformerBlock"),
}

MUTANTS = [
    # BatchNorm
    Mutant("BatchNorm normalises with the unbiased variance", "batchnorm",
           "var = x.var(dims, unbiased=False)", "var = x.var(dims, unbiased=True)", "unbiased variance"),
    Mutant("BatchNorm running var biased", "batchnorm",
           "self.momentum * var * n / (n - 1)", "self.momentum * var", "biased variance (÷n); PyTorch stores"),
    Mutant("BatchNorm over the features (LayerNorm's axis)", "batchnorm",
           "dims = tuple(range(x.dim() - 1))", "dims = -1", "wrong axis"),
    Mutant("BatchNorm over the batch axis only for 3-D input", "batchnorm",
           "dims = tuple(range(x.dim() - 1))", "dims = 0", "wrong axis"),
    Mutant("BatchNorm eps outside the sqrt", "batchnorm",
           "torch.sqrt(var + self.eps)", "(torch.sqrt(var) + self.eps)", "eps added outside"),
    Mutant("BatchNorm momentum reversed", "batchnorm",
           "self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)",
           "self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)", "momentum reversed"),
    Mutant("BatchNorm updates running stats in eval mode", "batchnorm",
           "        else:\n            mean, var = self.running_mean, self.running_var",
           "        else:\n            mean, var = self.running_mean.clone(), self.running_var.clone()\n"
           "            self.running_mean.mul_(0.5)",
           "changed in eval mode"),
    Mutant("BatchNorm uses batch statistics in eval mode", "batchnorm",
           "mean, var = self.running_mean, self.running_var",
           "mean, var = x.mean(dims), x.var(dims, unbiased=False)", "batch's own statistics"),
    Mutant("BatchNorm detaches the batch statistics", "batchnorm",
           "mean = x.mean(dims)\n", "mean = x.mean(dims).detach()\n"),
    # LayerNorm
    Mutant("LayerNorm unbiased variance", "layernorm",
           "x.var(-1, keepdim=True, unbiased=False)", "x.var(-1, keepdim=True, unbiased=True)", "unbiased variance"),
    Mutant("LayerNorm over the batch axis", "layernorm",
           "mean = x.mean(-1, keepdim=True)\n        var = x.var(-1, keepdim=True, unbiased=False)",
           "mean = x.mean(0, keepdim=True)\n        var = x.var(0, keepdim=True, unbiased=False)", "wrong axis"),
    Mutant("LayerNorm eps outside the sqrt", "layernorm",
           "torch.sqrt(var + self.eps)", "(torch.sqrt(var) + self.eps)", "eps added outside"),
    Mutant("LayerNorm without centring", "layernorm", "(x - mean) /", "x /", "mean was not subtracted"),
    # RMSNorm
    Mutant("RMSNorm subtracts the mean", "rmsnorm",
           "rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)\n        return x / rms",
           "x = x - x.mean(-1, keepdim=True)\n        rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)\n"
           "        return x / rms", "mean was subtracted"),
    Mutant("RMSNorm eps outside the sqrt", "rmsnorm",
           "torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)", "torch.sqrt(x.pow(2).mean(-1, keepdim=True)) + eps",
           "eps added outside"),
    Mutant("RMSNorm root of the sum of squares", "rmsnorm",
           "x.pow(2).mean(-1, keepdim=True)", "x.pow(2).sum(-1, keepdim=True)", "SUM of squares"),
    Mutant("RMSNorm ignores eps=None", "rmsnorm",
           "eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps", "eps = self.eps"),
    # FeedForward
    Mutant("FFN without activation", "ffn", "h = F.gelu(self.up(x))", "h = self.up(x)", "no activation"),
    Mutant("FFN with ReLU", "ffn", "h = F.gelu(self.up(x))", "h = F.relu(self.up(x))", "ReLU"),
    Mutant("SwiGLU gate and up swapped", "ffn", "F.silu(self.gate(x)) * self.up(x)",
           "F.silu(self.up(x)) * self.gate(x)", "swapped"),
    # TransformerBlock
    Mutant("post-norm instead of pre-norm", "block",
           "return x + self.drop(sublayer(norm(x)))", "return norm(x + self.drop(sublayer(x)))",
           "post-norm instead of pre-norm"),
    Mutant("attention residual missing", "block",
           "x = self.residual(x, self.norm1, lambda h: self.attn(h, mask=mask, is_causal=is_causal)[0])",
           "x = self.attn(self.norm1(x), mask=mask, is_causal=is_causal)[0]", "residual connection is missing"),
    Mutant("pre-norm residual adds the normalised input", "block",
           "return x + self.drop(sublayer(norm(x)))",
           "h = norm(x)\n            return h + self.drop(sublayer(h))", "adds the normalised x"),
    Mutant("mask not passed to attention", "block",
           "self.attn(h, mask=mask, is_causal=is_causal)", "self.attn(h)", "not passed"),
    Mutant("causal flag of the block ignored", "block", "is_causal = is_causal or self.causal", "pass"),
    Mutant("one norm for both sub-layers", "block",
           "return self.residual(x, self.norm2, self.ffn)", "return self.residual(x, self.norm1, self.ffn)",
           "norm1 was used for both"),
]
