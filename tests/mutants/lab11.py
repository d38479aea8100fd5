"""Plausible wrong answers to lab 11 (making training affordable)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/11-training-efficiency/lab11-training-efficiency.ipynb"
MAX_SCORE = 12
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "params": ("11.params", "count_parameters"),
    "flops": ("11.flops", "flops_per_token"),
    "memory": ("11.memory", "memory_estimate"),
    "accumulate": ("11.accumulate", "accumulate_gradients"),
}

MUTANTS = [
    # count_parameters
    Mutant("tied output layer counted twice", "params",
           "head = 0 if c.tie_weights else c.vocab_size * d", "head = c.vocab_size * d", "tied"),
    Mutant("linear biases forgotten", "params",
           "attention = 4 * (d * d + d)\n    ffn = n_mats * d * f + (n_mats - 1) * f + d",
           "attention = 4 * d * d\n    ffn = n_mats * d * f", "biases"),
    Mutant("one block only", "params", "c.num_layers * block", "block", "only one block"),
    # flops_per_token
    Mutant("forward FLOPs 1x instead of 2x per MAC", "flops",
           "return 2 * matmul_weights + 4 * c.num_layers * T * d",
           "return matmul_weights + 2 * c.num_layers * T * d", "1 FLOP per multiply-add"),
    Mutant("attention term forgotten", "flops",
           "return 2 * matmul_weights + 4 * c.num_layers * T * d", "return 2 * matmul_weights",
           "attention term is missing"),
    Mutant("output layer forgotten", "flops", " + d * c.vocab_size", "", "output layer"),
    # memory_estimate
    Mutant("AdamW state counted once instead of twice", "memory",
           '"adamw": 2', '"adamw": 1', "counted once"),
    Mutant("activations counted per model, not per layer", "memory",
           "c.num_layers * per_layer", "per_layer", "once per model"),
    Mutant("no fp32 master copy in mixed precision", "memory",
           "(4 * n if mixed else 0)", "0", "master copy"),
    Mutant("optimizer state in the 16-bit dtype", "memory",
           "optimizer_bytes = states * 4 * n", "optimizer_bytes = states * size * n", "16-bit dtype"),
    # accumulate_gradients
    Mutant("forgets the loss scaling (sums k means)", "accumulate",
           'reduction="sum") / n_tokens', ")", "summed without scaling"),
    Mutant("divides each micro-batch mean by k", "accumulate",
           'reduction="sum") / n_tokens', ") / k", "divided by k"),
    Mutant("zeroes gradients inside the accumulation loop", "accumulate",
           "        logits = model(xs).flatten(0, 1)",
           "        model.zero_grad()\n        logits = model(xs).flatten(0, 1)", "zeroed inside the loop"),
    Mutant("never zeroes the gradients", "accumulate",
           "model.zero_grad(set_to_none=True)", "pass", "before the call were kept"),
]
