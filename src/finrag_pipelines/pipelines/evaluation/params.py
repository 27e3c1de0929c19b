"""Typed parameters of the evaluation pipeline (validated by Kedro from ``parameters_evaluation.yml``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitParams(_Strict):
    """Queries are split once, by a seeded hash of their id, into ``tune`` and ``report``."""

    tune_fraction: float = Field(
        ge=0.0,
        lt=1.0,
        description="share of queries used only for tuning fusion (0: every query is reported; "
        "then fusion.fixed_dense_weight must be set, e.g. to the weight tuned on a dev set)",
    )
    seed: int


class RetrieveParams(_Strict):
    """How deep each first-stage retriever lists candidates (fusion works over these lists)."""

    depth: int = Field(ge=10)
    batch_size: int = Field(ge=1)


class FusionParams(_Strict):
    """Hybrid retrieval: RRF and a weighted sum of normalised scores, ``w·dense + (1−w)·bm25``."""

    rrf_k: int = Field(ge=1)
    normalisation: Literal["minmax", "zscore"]
    weight_grid: list[float] = Field(
        min_length=1, description="candidate dense weights, tuned on the tune split"
    )
    tune_metric: str
    depth: int = Field(ge=10)
    fixed_dense_weight: float | None = Field(
        ge=0.0,
        le=1.0,
        description="use this weight instead of tuning (e.g. tuned on a dev set, applied to a test set)",
    )


class MetricParams(_Strict):
    """Which cut-offs are reported."""

    ks: list[int] = Field(min_length=1)
    cutoff: int = Field(ge=1)


class BootstrapParams(_Strict):
    """Paired bootstrap intervals for differences between retrievers on the report split."""

    n_resamples: int = Field(ge=100)
    confidence: float = Field(gt=0.5, lt=1.0)
    seed: int
    metrics: list[str] = Field(min_length=1)
    comparisons: list[tuple[str, str]] = Field(min_length=1)


class RerankParams(_Strict):
    """The rerank stage: a reranker reorders the top ``top_n`` of first-stage runs (``<name>_rerank``)."""

    retrievers: list[str] = Field(
        description="first-stage runs that are reranked (each must be one the pipeline offers for reranking)"
    )
    top_n: int = Field(ge=10, description="first-stage hits reranked per query (>= the metrics cutoff)")
    chunk_pairs: int = Field(ge=1, description="(query, passage) pairs handed to the reranker per call")


class LearnedFusionParams(_Strict):
    """The learned fusion: a LightGBM lambdarank model over per-candidate features, trained on ``tune``."""

    enabled: bool = Field(description="train it (else only the weighted fusion is tuned)")
    lightgbm: dict[str, Any] = Field(description="lightgbm.LGBMRanker arguments (objective: lambdarank)")


class FirstStageFusionParams(_Strict):
    """Fusion of several first-stage retrievers (``fusion_weighted``, ``fusion_learned`` and ``fusion``)."""

    retrievers: list[str] = Field(
        min_length=1, description="runs fused; one not evaluated (no model) is left out, with the reason"
    )
    views: list[str] = Field(description="lexical indexes whose tokenizers give coverage / dictionary terms")
    depth: int = Field(ge=10, description="candidates per retriever fused, and the fused list's length")
    tune_metric: str
    weight_step: float = Field(gt=0, le=0.5, description="grid step over the simplex of weights")
    cv_folds: int = Field(ge=2, description="folds of tune on which weighted and learned are compared")
    cv_repeats: int = Field(ge=1, description="the cross-validation is repeated with this many fold seeds")
    seed: int
    learned: LearnedFusionParams
