"""Plausible wrong answers to lab 02 (n-gram language models)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/02-language-models/lab02-language-models.ipynb"
MAX_SCORE = 15
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "pad": ("02.pad", "pad"),
    "count_ngrams": ("02.count_ngrams", "count_ngrams"),
    "prob": ("02.prob", "add_k_prob"),
    "perplexity": ("02.perplexity", "perplexity"),
    "temperature": ("02.temperature", "apply_temperature"),
    "sample": ("02.sample", "sample_next"),
}

MUTANTS = [
    Mutant("no </s>", "pad", " + [EOS]", "", "no </s>"),
    Mutant("one <s> whatever n", "pad", "[BOS] * (n - 1)", "[BOS]", "one <s> regardless of n"),
    Mutant("n <s> instead of n - 1", "pad", "[BOS] * (n - 1)", "[BOS] * n", "n <s> in front"),
    Mutant("n-grams across sentence boundaries", "count_ngrams",
           "    for sentence in sentences:\n        padded = pad(sentence, n)\n",
           "    for sentence in [[w for s in sentences for w in s]]:\n        padded = pad(sentence, n)\n",
           "across sentence boundaries"),
    Mutant("n-grams of the unpadded sentence", "count_ngrams", "padded = pad(sentence, n)",
           "padded = list(sentence)", "counts are wrong"),
    Mutant("add-k denominator missing k·V", "prob", "context_totals[context] + k * vocab_size",
           "context_totals[context]", "missing k·V"),
    Mutant("k only in the denominator", "prob", "(ngram_counts[context + (token,)] + k)",
           "ngram_counts[context + (token,)]", "denominator only"),
    Mutant("unseen context gets probability 0", "prob", "return 1.0 / vocab_size", "return 0.0", "unseen context"),
    Mutant("perplexity not exponentiated", "perplexity", "return math.exp(-total_log / count)",
           "return -total_log / count", "not the perplexity"),
    Mutant("log2 with exp", "perplexity", "math.log(p)", "math.log2(p)", "log base"),
    Mutant("not normalised by the token count", "perplexity", "math.exp(-total_log / count)",
           "math.exp(-total_log)", "not normalised"),
    Mutant("</s> not predicted", "perplexity", "padded = pad(sentence, n)", "padded = pad(sentence, n)[:-1]",
           "</s> was not predicted"),
    Mutant("zero probabilities skipped", "perplexity", "return math.inf", "continue", "infinite"),
    Mutant("temperature applied after normalising", "temperature",
           "torch.softmax(probs.double().log() / temperature, dim=-1)",
           "(probs.double() / temperature) / (probs.double() / temperature).sum()", "no effect"),
    Mutant("temperature multiplies", "temperature", "log() / temperature", "log() * temperature",
           "instead of dividing"),
    Mutant("greedy instead of sampling", "sample",
           "int(torch.multinomial(apply_temperature(probs, temperature), 1, generator=generator))",
           "int(apply_temperature(probs, temperature).argmax())", "greedy"),
    Mutant("generator ignored", "sample", "1, generator=generator))", "1))", "generator"),
    Mutant("temperature ignored when sampling", "sample", "apply_temperature(probs, temperature)", "probs",
           "temperature was ignored"),
]
