"""LLM Foundations — the course's reference library.

Each module is the reference implementation of one chapter's lab; read them top to
bottom. Chapters import from here, so no chapter depends on a learner's earlier answer.
"""

__version__ = "0.1.0"
