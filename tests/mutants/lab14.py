"""Plausible wrong answers to lab 14 (model compression)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/14-compression/lab14-compression.ipynb"
MAX_SCORE = 12
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "absmax": ("14.absmax", "absmax_quantize"),
    "zeropoint": ("14.zeropoint", "zeropoint_quantize"),
    "dequantize": ("14.dequantize", "dequantize"),
    "prune": ("14.prune", "magnitude_mask"),
    "distill": ("14.distill", "distillation_loss"),
}

MUTANTS = [
    # absmax
    Mutant("absmax scale per column instead of per row", "absmax",
           "amax = reduce_except(x.abs(), axis, torch.amax)",
           "amax = x.abs().amax(dim=axis, keepdim=True) if axis is not None else x.abs().amax(dim=list(range(x.dim())), keepdim=True)",
           "one scale per COLUMN"),
    Mutant("absmax floor instead of round", "absmax", "torch.round(x / scale)", "torch.floor(x / scale)", "floor"),
    Mutant("absmax truncates toward zero", "absmax", "torch.round(x / scale)", "(x / scale)", "truncated toward zero"),
    Mutant("absmax asymmetric range with a symmetric scale (÷128), no clamp", "absmax",
           "q = qmax(bits)", "q = 2 ** (bits - 1)", "2^(bits−1)"),
    Mutant("absmax scale not divided by qmax", "absmax", "amax / q,", "amax,", "divide it by qmax"),
    Mutant("absmax divides by zero on a zero row", "absmax",
           "scale = torch.where(amax > 0, amax / q, torch.ones_like(amax))", "scale = amax / q"),
    # zero-point
    Mutant("zero-point range without 0", "zeropoint",
           "lo = reduce_except(x, axis, torch.amin).clamp(max=0)", "lo = reduce_except(x, axis, torch.amin)",
           "include 0"),
    Mutant("zero-point sign error", "zeropoint", "torch.round(-lo / scale)", "torch.round(lo / scale)", "wrong sign"),
    Mutant("zero-point subtracted from the codes", "zeropoint", "torch.round(x / scale) + zero_point",
           "torch.round(x / scale) - zero_point", "subtracted instead of added"),
    Mutant("zero-point scale over 2^bits", "zeropoint", "top = 2 ** bits - 1", "top = 2 ** bits", ""),
    # dequantize
    Mutant("dequantize ignores the zero point", "dequantize", "q = q - zero_point.to(torch.float32)", "q = q",
           "zero point was ignored"),
    Mutant("dequantize divides by the scale", "dequantize", "return q * scale", "return q / scale", "divided by the scale"),
    # pruning
    Mutant("prune the largest weights", "prune", "order = torch.argsort(w.detach().abs().flatten(), stable=True)",
           "order = torch.argsort(w.detach().abs().flatten(), stable=True, descending=True)", "LARGEST"),
    Mutant("prune by threshold (ties over-prune)", "prune",
           "mask[order[:k]] = False",
           "mask = w.detach().abs().flatten() > w.detach().abs().flatten()[order[k - 1]] if k else mask",
           "break ties by position"),
    Mutant("prune one too many", "prune", "mask[order[:k]] = False", "mask[order[:k + 1]] = False", "round(sparsity"),
    Mutant("prune by signed value", "prune", "torch.argsort(w.detach().abs().flatten(), stable=True)",
           "torch.argsort(w.detach().flatten(), stable=True)", "most negative"),
    Mutant("mask inverted", "prune", "return mask.reshape(w.shape)", "return ~mask.reshape(w.shape)", "inverted"),
    # distillation
    Mutant("distillation without T²", "distill", "alpha * T ** 2 * kl", "alpha * kl", "T²"),
    Mutant("KL direction swapped", "distill",
           "kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()",
           "kl = (log_p_student.exp() * (log_p_student - log_p_teacher)).sum(-1).mean()", "wrong direction"),
    Mutant("teacher not softened", "distill", "F.log_softmax(t / T, dim=-1)", "F.log_softmax(t, dim=-1)",
           "teacher's logits were not divided by T"),
    Mutant("teacher not detached", "distill", "t = teacher_logits.detach().reshape(-1, V)",
           "t = teacher_logits.reshape(-1, V)", "teacher's logits: the teacher is a fixed target"),
    Mutant("alpha on the wrong term", "distill", "return alpha * T ** 2 * kl + (1 - alpha) * ce",
           "return (1 - alpha) * T ** 2 * kl + alpha * ce", "alpha weights the wrong term"),
]
