"""Catalogues of plausible wrong answers, one module ``labNN.py`` per lab.

A catalogue module defines:

* ``NOTEBOOK`` — the solution notebook (path from the repo root) and ``MAX_SCORE``;
* ``PIECES`` — grade_id of each solution cell → (check piece id, the name the cell defines);
* ``SETUP`` — grade_ids of the given cells the solution cells need (default ``["setup"]``);
  setup and solution cells are executed in notebook order, nothing else is;
* ``MUTANTS`` — ``Mutant(name, grade_id, old, new, hint)``: replace the text ``old`` by ``new``
  in that solution cell. Every mutant must lose points; ``hint`` (if given) is a phrase the
  check's feedback must contain, so the learner is told what the mistake is.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Mutant:
    name: str
    grade_id: str
    old: str
    new: str
    hint: str = ""

    def apply(self, source: str) -> str:
        if self.old not in source:
            raise AssertionError(f"mutant {self.name}: {self.old!r} is no longer in the reference cell")
        return source.replace(self.old, self.new, 1)


def catalogues() -> list[ModuleType]:
    """Every lab's catalogue module, in lab order."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("lab"))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]
