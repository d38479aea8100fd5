"""Plausible wrong answers to lab 01 (recurrent networks)."""

from tests.mutants import Mutant

NOTEBOOK = "solutions/01-nlp-tasks/lab01-nlp-tasks.ipynb"
MAX_SCORE = 9
SETUP = ["setup"]

# grade_id of a solution cell → (check piece, the name the cell defines)
PIECES = {
    "rnn_cell": ("01.rnn_cell", "rnn_cell"),
    "rnn": ("01.rnn", "rnn"),
    "last_hidden": ("01.last_hidden", "last_hidden"),
}

CELL = "torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)"

MUTANTS = [
    Mutant("tanh missing", "rnn_cell", CELL, "x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh",
           "tanh is missing"),
    Mutant("sigmoid instead of tanh", "rnn_cell", "torch.tanh(", "torch.sigmoid(", "not sigmoid"),
    Mutant("W_hh applied to x", "rnn_cell", CELL,
           "torch.tanh(x @ weight_hh.T + bias_ih + h @ weight_ih.T + bias_hh)", "W_hh was applied to x"),
    Mutant("weights not transposed", "rnn_cell", CELL,
           "torch.tanh(x @ weight_ih + bias_ih + h @ weight_hh + bias_hh)", "not transposed"),
    Mutant("one bias forgotten", "rnn_cell", " + bias_hh)", ")", "bias_hh is missing"),
    Mutant("hidden state not carried", "rnn", "h = torch.where(keep, h_new, h)",
           "h_last = torch.where(keep, h_new, h)", "not carried"),
    Mutant("padded steps update the state", "rnn", "h = torch.where(keep, h_new, h)", "h = h_new",
           "padded steps updated the state"),
    Mutant("no masking at all", "rnn",
           "        h = torch.where(keep, h_new, h)  # a padded step leaves the state as it was\n"
           "        outputs.append(h_new * keep)  # and outputs nothing",
           "        h = h_new\n        outputs.append(h)",
           "padded steps updated the state"),
    Mutant("padded outputs not zeroed", "rnn", "outputs.append(h_new * keep)", "outputs.append(h)",
           "outputs at padded positions must be zero"),
    Mutant("final state taken at step T-1", "rnn", "return torch.stack(outputs, dim=1), h",
           "return torch.stack(outputs, dim=1), outputs[-1]", "state at step T-1"),
    Mutant("h0 ignored", "rnn", "h = x.new_zeros(batch, weight_hh.shape[0]) if h0 is None else h0",
           "h = x.new_zeros(batch, weight_hh.shape[0])", "h0 was ignored"),
    Mutant("time-major outputs", "rnn", "torch.stack(outputs, dim=1)", "torch.stack(outputs, dim=0)",
           "time-major"),
    Mutant("last hidden at T-1", "last_hidden", "return outputs[rows, lengths.to(outputs.device) - 1]",
           "return outputs[:, -1]", "step T-1"),
    Mutant("last hidden off by one", "last_hidden", "lengths.to(outputs.device) - 1",
           "lengths.clamp(max=outputs.shape[1] - 1)", "off by one"),
    Mutant("last hidden indexes without pairing rows", "last_hidden",
           "return outputs[rows, lengths.to(outputs.device) - 1]",
           "return outputs[:, lengths.to(outputs.device) - 1]", "index rows and steps together"),
]
