"""Typed parameters of persona_index (validated by Kedro from ``parameters_persona_index.yml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilterParams(_Strict):
    """Which personas count as finance personas: English words (with inflections) or Chinese substrings."""

    keywords_en: list[str] = Field(
        description="whole words or phrases, case-insensitive; a keyword also matches itself plus one of "
        "en_suffixes (attached to the keyword, or to it without a final 'e'/'y')"
    )
    en_suffixes: list[str] = Field(
        description="inflection/derivation endings accepted after an English keyword, e.g. s, es, ial, ing"
    )
    keywords_zh: list[str] = Field(description="Chinese keywords, matched as substrings")

    @field_validator("keywords_en", "keywords_zh", "en_suffixes")
    @classmethod
    def _no_blank(cls, values: list[str]) -> list[str]:
        blank = [v for v in values if not v.strip()]
        if blank:
            raise ValueError(f"entries must be non-empty strings, got {blank!r}")
        return [v.strip() for v in values]


class SampleParams(_Strict):
    """An optional random subset of the matched personas (for quick runs)."""

    max_personas: int | None = Field(ge=1, description="keep at most this many (seeded sample); null = all")
    seed: int


class EncodeParams(_Strict):
    """Encoding through the embedding store (shared by deduplication and index build)."""

    chunk_size: int = Field(ge=1, description="personas encoded between two durable cache writes")


class DedupParams(_Strict):
    """Near-duplicate removal by embedding cosine, as Persona Hub does (0.9)."""

    cosine: float = Field(
        gt=0.0, le=1.0, description="a persona this close to an earlier kept one is dropped"
    )
    block_size: int = Field(ge=1, description="personas compared per block (memory ~ block_size x kept)")


class IndexParams(_Strict):
    """The FAISS index over the kept personas' vectors."""

    index_type: Literal["flat", "hnsw"]
    hnsw_m: int = Field(ge=4)
    ef_search: int = Field(ge=1)


class TranslateParams(_Strict):
    """Optional English → Chinese translation of the personas through the shared ``llm`` (off in demo)."""

    enabled: bool
