"""rag_answer pipeline: the evaluation questions answered by closed-book, single-shot and agent systems."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
