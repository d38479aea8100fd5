"""Plausible wrong answers to lab 10 (fine-tuning: LoRA, classification head, metrics)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/10-fine-tuning/lab10-fine-tuning.ipynb"
MAX_SCORE = 9
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "lora": ("10.lora", "LoRALinear"),
    "head": ("10.head", "ClassificationHead"),
    "confusion": ("10.confusion", "confusion_matrix"),
    "report": ("10.report", "classification_report"),
}

MUTANTS = [
    # LoRALinear
    Mutant("B initialised non-zero (the start differs from the base model)", "lora",
           "self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device, dtype=w.dtype))",
           "self.lora_B = nn.Parameter(torch.randn(base.out_features, r, device=w.device, dtype=w.dtype))",
           "B must start at zero"),
    Mutant("A initialised to zero as well", "lora",
           "nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))", "nn.init.zeros_(self.lora_A)",
           "lora_A is all zeros"),
    Mutant("scale r/alpha instead of alpha/r", "lora",
           "self.scale = r, alpha, alpha / r", "self.scale = r, alpha, r / alpha", "scaled by r/alpha"),
    Mutant("base weight left trainable", "lora", "        base.requires_grad_(False)\n", "",
           "still trainable"),
    Mutant("LoRA path not scaled", "lora",
           "return self.base(x) + self.scale * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)",
           "return self.base(x) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)", "not scaled"),
    Mutant("merge adds B·A without the scale", "lora",
           "self.base.weight += self.delta_weight()", "self.base.weight += self.lora_B @ self.lora_A",
           "without the alpha/r scale"),
    Mutant("forward still adds the LoRA path after merge", "lora",
           "        if self.merged:  # the update already lives inside base.weight\n            return self.base(x)\n",
           "", "counted twice"),
    Mutant("unmerge adds instead of subtracting", "lora",
           "self.base.weight -= self.delta_weight()", "self.base.weight += self.delta_weight()",
           "unmerge() must subtract"),
    Mutant("merge forgets to set merged", "lora", "        self.merged = True\n", "", "merged should be True"),
    # ClassificationHead
    Mutant("mean pooling over padding", "head",
           "return (hidden * m).sum(1) / m.sum(1).clamp(min=1)", "return hidden.mean(1)",
           "averaged over the padding"),
    Mutant("[CLS] pooling takes the last token", "head", "return hidden[:, 0]", "return hidden[:, -1]",
           "first token"),
    Mutant("mean pooling does not divide", "head",
           "return (hidden * m).sum(1) / m.sum(1).clamp(min=1)", "return (hidden * m).sum(1)",
           "did not divide"),
    # confusion_matrix
    Mutant("confusion matrix transposed", "confusion",
           "flat = y_true.long() * num_classes + y_pred.long()", "flat = y_pred.long() * num_classes + y_true.long()",
           "transposed"),
    # classification_report
    Mutant("macro-F1 computed as micro (= accuracy)", "report",
           '"macro_f1": f1.mean().item()', '"macro_f1": (tp.sum() / cm.sum()).item()', "micro-F1"),
    Mutant("macro-F1 weighted by support", "report",
           '"macro_f1": f1.mean().item()', '"macro_f1": ((f1 * cm.sum(1)).sum() / cm.sum()).item()',
           "weighted"),
    Mutant("0/0 F1 gives NaN", "report",
           "f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros_like(tp))",
           "f1 = 2 * precision * recall / (precision + recall)", "NaN"),
]
