"""Instant, specific feedback for the labs: ``check("06.sdpa", my_function)``."""

from llm_course.checks.engine import PIECES, Report, check

__all__ = ["PIECES", "Report", "check"]
