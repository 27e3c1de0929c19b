"""Typed parameters of sft_distill (validated by Kedro from ``parameters_sft_distill.yml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from finrag_pipelines.config import StrictModel
from finrag_pipelines.finmath import FAMILIES


class CalcParams(StrictModel):
    """Calculation questions with computed answers (no LLM)."""

    families: list[str] = Field(min_length=1, description="finmath families to generate")
    per_family: int = Field(ge=1)
    seed: int

    @model_validator(mode="after")
    def _known(self) -> CalcParams:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"sft_distill.calc.families: unknown {unknown}; known: {sorted(FAMILIES)}")
        return self


class RewriteParams(StrictModel):
    """Optional LLM rewrite of calculation stems, kept only when every number survives in order."""

    enabled: bool
    fraction: float = Field(
        ge=0.0, le=1.0, description="share of the questions offered for a rewrite (seeded)"
    )
    seed: int
    temperature: float = Field(ge=0.0, le=2.0)
    max_tokens: int = Field(ge=16)
    min_length_ratio: float = Field(gt=0.0, description="rewrite length / original length, lower bound")
    max_length_ratio: float = Field(gt=0.0, description="rewrite length / original length, upper bound")


class ReasoningParams(StrictModel):
    """Rejection-sampled teacher reasoning for sft_train items."""

    enabled: bool
    items: Literal["unexplained", "all"] = Field(
        description="items without an explanation, or every sft_train item"
    )
    max_items: int | None = Field(ge=1, description="null = all; else a seeded sample")
    samples: int = Field(ge=1, description="k samples per item")
    temperature: float = Field(ge=0.0, le=2.0)
    max_tokens: int = Field(ge=16)
    seed: int = Field(description="sample s is sent with seed + s (distinct, reproducible samples)")


class DocumentParams(StrictModel):
    """Which corpus documents get grounded questions."""

    max_documents: int | None = Field(ge=1, description="null = every document; else a seeded sample")
    min_chars: int = Field(ge=0)
    passage_max_chars: int = Field(ge=50, description="the passage shown to the LLM (and in the SFT prompt)")
    seed: int


class DedupParams(StrictModel):
    """Near-duplicate check against the evaluation queries (and among the generated questions)."""

    near_duplicates: bool
    max_hamming: int = Field(ge=0, le=15)
    min_jaccard: float = Field(ge=0.0, le=1.0)


class GroundedParams(StrictModel):
    """Corpus-grounded question-answer pairs per task type, kept when a second call judges them supported."""

    enabled: bool
    documents: DocumentParams
    task_types: dict[str, str] = Field(min_length=1, description="task name -> description shown to the LLM")
    tasks_per_document: int = Field(ge=1)
    question_min_chars: int = Field(ge=1)
    question_max_chars: int = Field(ge=1)
    answer_max_chars: int = Field(ge=1)
    temperature: float = Field(ge=0.0, le=2.0)
    judge_temperature: float = Field(ge=0.0, le=2.0)
    max_tokens: int = Field(ge=16)
    dedup: DedupParams

    @model_validator(mode="after")
    def _tasks(self) -> GroundedParams:
        if self.tasks_per_document > len(self.task_types):
            raise ValueError(
                f"sft_distill.grounded.tasks_per_document ({self.tasks_per_document}) exceeds the "
                f"{len(self.task_types)} task types"
            )
        return self
