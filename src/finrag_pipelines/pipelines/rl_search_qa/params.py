"""Typed parameters of rl_search_qa (validated by Kedro from ``parameters_rl_search_qa.yml``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SelectParams(BaseModel):
    """Which distilled queries become search-QA items, and the validation hold-out."""

    model_config = ConfigDict(extra="forbid")

    min_relevance: int = Field(
        ge=1, description="qrels grade from which a document is an evaluation question's gold"
    )
    max_reference_chars: int = Field(ge=50, description="the source text kept as the reward's reference")
    val_size: int = Field(
        ge=0, description="source documents held out for GRPO validation (all their queries)"
    )
    seed: int
