"""Catalogues of plausible wrong answers, one module per lab.

A mutant is a small edit of the reference solution cell: ``(grade_id, old, new, hint)``
replaces the text ``old`` by ``new`` in the cell whose nbgrader grade_id is ``grade_id``.
Every mutant must lose points; where the check engine recognises the mistake, ``hint`` is a
phrase its feedback must contain.
"""

from dataclasses import dataclass


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
