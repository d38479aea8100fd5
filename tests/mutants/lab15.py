"""Plausible wrong answers to lab 15 (serving: request validation and server-sent events)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/15-deployment/lab15-deployment.ipynb"
MAX_SCORE = 6
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "validate": ("15.validate", "validate_request"),
    "sse": ("15.sse", "sse_events"),
}

MUTANTS = [
    # validate_request
    Mutant("temperature upper bound missing", "validate",
           "if not 0 <= temperature <= 2:", "if not 0 <= temperature:", "above 2"),
    Mutant("temperature upper bound exclusive", "validate",
           "if not 0 <= temperature <= 2:", "if not 0 <= temperature < 2:", "temperature 2 (the upper bound, allowed)"),
    Mutant("temperature checked with or: NaN slips through", "validate",
           "if not 0 <= temperature <= 2:", "if temperature < 0 or temperature > 2:", "NaN"),
    Mutant("empty prompt accepted", "validate",
           '    if not prompt.strip():\n        problems.append("prompt is empty")\n', "", "empty prompt"),
    Mutant("whitespace-only prompt accepted", "validate",
           "if not prompt.strip():", 'if prompt == "":', "whitespace-only prompt"),
    Mutant("prompt limit off by one", "validate",
           "if n_prompt_tokens > limits.max_prompt_tokens:", "if n_prompt_tokens >= limits.max_prompt_tokens:",
           "exactly at the token limit"),
    Mutant("max_tokens limit exclusive", "validate",
           "if not 1 <= max_tokens <= limits.max_tokens:", "if not 1 <= max_tokens < limits.max_tokens:",
           "max_tokens equal to the limit"),
    Mutant("max_tokens 0 accepted", "validate",
           "if not 1 <= max_tokens <= limits.max_tokens:", "if not 0 <= max_tokens <= limits.max_tokens:",
           "max_tokens 0"),
    Mutant("only the first broken rule reported", "validate",
           "    return problems", "    return problems[:1]", "one message per broken rule"),
    # sse_events
    Mutant("missing [DONE]", "sse", '    yield "data: [DONE]\\n\\n"', "", "[DONE]"),
    Mutant("events not separated by a blank line", "sse",
           'yield f"data: {json.dumps(make_chunk(piece))}\\n\\n"', 'yield f"data: {json.dumps(make_chunk(piece))}\\n"',
           "blank line"),
    Mutant("tokens counted as characters", "sse",
           'usage["completion_tokens"] += 1', 'usage["completion_tokens"] += len(piece)', "characters"),
    Mutant("streaming buffers everything until the end", "sse",
           "for piece in pieces:", "for piece in list(pieces):", "buffers"),
    Mutant("chunk sent as a Python repr, not JSON", "sse",
           "{json.dumps(make_chunk(piece))}", "{str(make_chunk(piece))}", "JSON"),
    Mutant("usage reset instead of added to", "sse",
           'usage["completion_tokens"] += 1', 'usage["completion_tokens"] = usage.get("n", 0) + 1\n        usage["n"] = usage["completion_tokens"]',
           "reset"),
]
