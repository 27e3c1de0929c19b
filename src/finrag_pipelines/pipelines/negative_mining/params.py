"""Typed parameters of negative_mining (validated by Kedro from ``parameters_negative_mining.yml``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitParams(_Strict):
    """Train/dev split by document (a seeded hash of doc_id), so a document's queries stay together."""

    dev_fraction: float = Field(ge=0.0, lt=1.0)
    seed: int


class BM25CandidateParams(_Strict):
    """BM25 candidates next to the dense ones."""

    enabled: bool
    share: float = Field(
        ge=0.0, le=1.0, description="fraction of the hard negatives drawn from BM25 candidates"
    )


class CandidateParams(_Strict):
    """Candidate retrieval with the base encoder's dense index (and optionally BM25)."""

    batch_size: int = Field(ge=1, description="queries per dense search: memory is batch_size x depth")
    depth: int = Field(ge=1, description="candidates per query and source; at least rules.rank_max + 1")
    bm25: BM25CandidateParams


class RuleParams(_Strict):
    """Which candidates become negatives (see negative_mining/mining.py)."""

    rank_min: int = Field(ge=1, description="1-based, counted after removing the positive")
    rank_max: int = Field(ge=1)
    relative_margin: float = Field(ge=0.0, lt=1.0, description="drop score > positive_score * (1 - margin)")
    near_duplicate_jaccard: float = Field(gt=0.0, le=1.0)
    near_duplicate_ngram: int = Field(ge=1, description="character n-gram size of the Jaccard check")
    num_negatives: int = Field(ge=1, description="hard negatives per query")
    random_negatives: int = Field(ge=0, description="easy negatives sampled uniformly from the corpus")
    seed: int

    @model_validator(mode="after")
    def _window(self) -> RuleParams:
        if self.rank_min > self.rank_max:
            raise ValueError(
                f"negative_mining.rules: rank_min {self.rank_min} > rank_max {self.rank_max}; "
                "the window is empty"
            )
        return self


class RerankFilterParams(_Strict):
    """The reranker as a false-negative filter (sentence-transformers' ``mine_hard_negatives`` with a
    cross-encoder): a candidate it scores above ``positive_score * (1 - relative_margin)`` is dropped."""

    enabled: bool = Field(description="false: no reranker is loaded")
    relative_margin: float = Field(ge=0.0, lt=1.0, description="drop score > positive's * (1 - margin)")
    chunk_pairs: int = Field(ge=1, description="(query, passage) pairs handed to the reranker per call")


class FormatParams(_Strict):
    """ms-swift rows: the query instruction (the same ``query_task`` the fine-tuned encoder will use)."""

    query_task: str | None = Field(description="wrapped with encoders.format_query; null = no instruction")
