"""mcq_evaluation: ask an OpenAI-compatible endpoint the eval MCQ items and report accuracy."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
