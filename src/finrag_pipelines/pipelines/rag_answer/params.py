"""Typed parameters of the rag_answer pipeline (validated by Kedro from ``parameters_rag_answer.yml``).

The answering settings themselves (systems, passages, limits, searches, the extractive reader, the judge) are
the library's (:mod:`finrag_pipelines.rag.settings`, :mod:`finrag_pipelines.rag.judge`): ``finrag-ask`` reads
the same groups.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from finrag_pipelines.config import StrictModel


class QuestionParams(StrictModel):
    """Which evaluation questions are answered: evaluation's own split (nothing is tuned on ``report``)."""

    split: Literal["report", "tune"] = Field(description="evaluation's query split to answer")
    max_questions: int | None = Field(ge=1, description="a seeded sample of this many, or null for all")
    seed: int


class BootstrapParams(StrictModel):
    """Paired bootstrap intervals of ``a − b`` between systems over the questions both answered."""

    n_resamples: int = Field(ge=100)
    confidence: float = Field(gt=0.5, lt=1.0)
    seed: int
    metrics: list[str] = Field(min_length=1)
    comparisons: list[tuple[str, str]] = Field(min_length=1)
