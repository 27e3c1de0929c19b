"""Typed parameters of query_distill (validated by Kedro from ``parameters_query_distill.yml``)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SelectParams(_Strict):
    """Which corpus documents get a query."""

    max_documents: Optional[int] = Field(ge=1, description="null = all documents; else a seeded sample")
    seed: int
    min_chars: int = Field(ge=0)
    passage_max_chars: int = Field(ge=50, description="passage shown to the LLM is cut here")


class PersonaParams(_Strict):
    """Candidate personas per document."""

    top_k: int = Field(ge=1)


class SpecParams(_Strict):
    """The allowed question types and difficulties, with the descriptions shown to the LLM."""

    question_types: dict[str, str] = Field(min_length=1)
    difficulties: dict[str, str] = Field(min_length=1)
    length_rules: dict[str, str]

    @model_validator(mode="after")
    def _rules_cover_types(self) -> "SpecParams":
        missing = set(self.question_types) - set(self.length_rules)
        if missing:
            raise ValueError(f"query_distill.spec.length_rules lacks {sorted(missing)}")
        return self


class KeywordBackendParams(_Strict):
    """The offline keyword baseline: TF-IDF keywords filled into per-type templates (``$k1`` … ``$k4``)."""

    top_keywords: int = Field(ge=1, le=10)
    seed: int
    templates: dict[str, list[str]] = Field(min_length=1)


class RoundTripParams(_Strict):
    """Keep a query only if the base retriever ranks its document in the top k."""

    enabled: bool
    top_k: int = Field(ge=1)


class CleanParams(_Strict):
    """Filters applied to generated queries."""

    min_chars: int = Field(ge=1)
    max_chars: int = Field(ge=1)
    max_copied_chars: int = Field(ge=5)
    near_duplicates: bool
    dedup_max_hamming: int = Field(ge=0, le=15)
    dedup_min_jaccard: float = Field(ge=0.0, le=1.0)
    round_trip: RoundTripParams
