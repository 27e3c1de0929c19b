"""Typed parameters of corpus_prep (validated by Kedro from ``parameters_corpus_prep.yml``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FilterParams(BaseModel):
    """Which documents are too small to keep."""

    model_config = ConfigDict(extra="forbid")
    min_chars: int = Field(ge=0, description="documents whose indexed text is shorter are dropped")


class DedupParams(BaseModel):
    """Exact and near-duplicate removal."""

    model_config = ConfigDict(extra="forbid")
    near: bool
    ngram: int = Field(ge=1, le=10)
    max_hamming: int = Field(ge=0, le=15)
    min_jaccard: float = Field(ge=0.0, le=1.0)
