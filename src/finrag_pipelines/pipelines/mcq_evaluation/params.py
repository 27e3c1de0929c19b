"""Typed parameters of mcq_evaluation (validated by Kedro from ``parameters_mcq_evaluation.yml``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SelectParams(_Strict):
    """Which items are asked."""

    split: str = Field(description="the mcq_splits split to evaluate; only `eval` is disjoint from training")
    sources: list[str] | None = Field(description="restrict to these sources; null = all")
    max_items: int | None = Field(ge=1, description="a seeded sample of this many items; null = all")
    seed: int


class AskParams(_Strict):
    """How the endpoint is asked (on top of the shared ``llm`` block)."""

    llm_overrides: dict[str, Any] = Field(description="keys of the shared llm block to change for this run")
    system_prompt: str | None


class ScoreParams(_Strict):
    """How answers are read."""

    allow_fallback: bool = Field(
        description="also accept an unboxed `答案：A` for accuracy (never for format)"
    )
