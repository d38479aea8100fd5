"""Plausible wrong answers to lab 03 (encoder–decoder: attention step, greedy, beam search)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/03-encoder-decoder/lab03-encoder-decoder.ipynb"
MAX_SCORE = 12
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "attention_step": ("03.attention_step", "AdditiveAttention"),
    "greedy": ("03.greedy", "greedy_decode"),
    "beam": ("03.beam", "beam_search"),
}

MUTANTS = [
    # --- one decoder step of additive attention
    Mutant("softmax over the batch axis", "attention_step", "scores.softmax(dim=-1)", "scores.softmax(dim=0)",
           "batch axis"),
    Mutant("padding mask ignored", "attention_step",
           "scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)", "pass", "mask was ignored"),
    Mutant("inverted mask", "attention_step", "masked_fill(~mask,", "masked_fill(mask,", "inverted"),
    Mutant("mask applied after the softmax", "attention_step",
           "            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)\n"
           "        weights = scores.softmax(dim=-1)",
           "            pass\n        weights = scores.softmax(dim=-1) * (mask if mask is not None else 1)",
           "after the softmax"),
    Mutant("no tanh", "attention_step", "hidden = torch.tanh(", "hidden = (", "tanh is missing"),
    Mutant("query ignored", "attention_step", "self.query_proj(query)[:, None, :] + ", "", "query was ignored"),
    Mutant("context from projected keys", "attention_step",
           "context = (weights[:, :, None] * keys).sum(dim=1)",
           "context = (weights[:, :, None] * self.key_proj(keys)).sum(dim=1)", "not their projections"),
    # --- greedy decoding
    Mutant("prediction not fed back", "greedy", "log_probs, state = step(tokens, state)",
           "log_probs, state = step(torch.full_like(tokens, bos), state)", "not fed back"),
    Mutant("does not stop at </s>", "greedy", "for b in (~done).nonzero().flatten().tolist():",
           "for b in range(B):", "after </s>"),
    Mutant("adds probabilities", "greedy", "scores[b] += float(best_lp[b])", "scores[b] += float(best_lp[b].exp())",
           "probabilities"),
    Mutant("one step too few", "greedy", "for _ in range(max_len):", "for _ in range(max_len - 1):",
           "one step too few"),
    # --- beam search
    Mutant("keeps one extension per hypothesis", "beam",
           "best = totals.flatten().topk(min(beam_width, totals.numel()))",
           "best = totals.flatten().topk(min(len(live), totals.numel()))", "one extension per hypothesis"),
    Mutant("sums probabilities", "beam", "+ log_probs.double().cpu()", "+ log_probs.double().cpu().exp()",
           "summed probabilities"),
    Mutant("state not reordered", "beam", "state = state[torch.tensor(keep, device=state.device)]",
           "state = state[: len(keep)]", "parent's state"),
    Mutant("finished hypotheses not kept", "beam", "if token == eos or t == max_len - 1:",
           "if t == max_len - 1:", "not kept as finished"),
    Mutant("cut-off hypotheses dropped", "beam", "if token == eos or t == max_len - 1:", "if token == eos:",
           "live at max_len were dropped"),
    Mutant("greedy not among the candidates", "beam",
           "finished = [(greedy_tokens[0], float(greedy_scores[0]))]", "finished = []"),
]
