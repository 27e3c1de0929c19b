"""Typed parameters of corpus_prep (validated by Kedro from ``parameters_corpus_prep.yml``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class PassageParams(BaseModel):
    """Splitting long documents into passages (``<doc_id>#<k>``; relevance stays at document level)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(description="false: one row per document, as before")
    max_chars: int = Field(ge=20, description="passage body length limit (the title is repeated on top)")
    overlap_chars: int = Field(ge=0, description="whole trailing sentences of a passage repeated in the next")

    @model_validator(mode="after")
    def _overlap_below_max(self) -> PassageParams:
        if self.overlap_chars >= self.max_chars:
            raise ValueError(
                f"corpus_prep.passages.overlap_chars {self.overlap_chars} must be < max_chars "
                f"{self.max_chars}"
            )
        return self
