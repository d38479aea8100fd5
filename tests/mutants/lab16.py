"""Plausible wrong answers to lab 16 (the landscape and its challenges)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/16-landscape-challenges/lab16-landscape-challenges.ipynb"
MAX_SCORE = 16
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "luhn": ("16.luhn", "luhn_valid"),
    "cn_id": ("16.cn_id", "cn_id_valid"),
    "patterns": ("16.patterns", "pii_patterns"),
    "find_pii": ("16.find_pii", "find_pii"),
    "training_cost": ("16.training_cost", "training_cost"),
    "inference_cost": ("16.inference_cost", "inference_cost"),
    "judge": ("16.judge", "judge_claim"),
}

MUTANTS = [
    # luhn_valid
    Mutant("Luhn doubles the wrong digits (the check digit's parity)", "luhn",
           "if i % 2 == 1:", "if i % 2 == 0:", "doubled the wrong digits"),
    Mutant("Luhn forgets to subtract 9", "luhn",
           "d = d * 2 - 9 if d > 4 else d * 2", "d = d * 2", "subtract 9"),
    # cn_id_valid
    Mutant("ID checksum weights in the wrong order", "cn_id",
           "zip(number[:17], CN_ID_WEIGHTS)", "zip(number[:17], reversed(CN_ID_WEIGHTS))", "wrong weights"),
    Mutant("ID check character X not handled", "cn_id",
           r're.fullmatch(r"\d{17}[\dXx]", number)', r're.fullmatch(r"\d{18}", number)', "check character X"),
    Mutant("ID birth date not checked", "cn_id",
           "return datetime.date(1900, 1, 1) <= born <= datetime.date.today()", "return True", "birth date"),
    # pii_patterns
    Mutant("phone regex accepts 12 digits (no right boundary)", "patterns",
           r'r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?!\d)"', r'r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?"', "12-digit"),
    Mutant("Chinese mobile accepts any second digit", "patterns",
           r"1[3-9]\d(?:[ -]?\d{4}){2}", r"1\d\d(?:[ -]?\d{4}){2}", "cn_mobile pattern wrongly finds"),
    # find_pii
    Mutant("overlapping candidates are all kept", "find_pii",
           " and not any(taken[m.start():m.end()])", "", "overlapping spans"),
    Mutant("checksums not applied", "find_pii", "_valid(kind, text, m) and ", "", "checksum"),
    # training_cost
    Mutant("training cost uses 2·N·D (forgets the backward pass)", "training_cost",
           "flops = 6.0 * n_params * n_tokens", "flops = 2.0 * n_params * n_tokens", "2·N·D"),
    Mutant("utilisation applied the wrong way", "training_cost",
           "gpu_days(flops, peak_flops, utilisation)", "gpu_days(flops * utilisation, peak_flops, 1.0)",
           "utilisation is applied the wrong way"),
    # inference_cost
    Mutant("decoding speed set by the faster bound", "inference_cost",
           "step = max(compute_step, memory_step)", "step = min(compute_step, memory_step)", "SLOWER"),
    Mutant("weights read once per sequence instead of once per step", "inference_cost",
           "memory_step = n_params * bytes_per_param / bandwidth",
           "memory_step = batch * n_params * bytes_per_param / bandwidth", "once per step"),
    # judge_claim
    Mutant("checker ignores numbers", "judge",
           "needed = numbers_in(claim) | names_in(claim)", "needed = names_in(claim)", "numbers are ignored"),
    Mutant("checker ignores the similarity threshold", "judge",
           "supported = similarity[best] >= threshold and not lacking[best]", "supported = not lacking[best]",
           "threshold"),
]
