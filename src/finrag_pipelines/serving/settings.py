"""Typed settings of the retrieval server (the ``serving`` parameters group).

The values live in ``conf/base/parameters_serving.yml``; this module holds no defaults that duplicate
them. Unknown keys are rejected so a typo in the YAML is an error, not a silently ignored setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Method = Literal["dense", "bm25", "hybrid", "bm25_ngram", "fusion"]
METHODS: tuple[str, ...] = ("dense", "bm25", "hybrid", "bm25_ngram", "fusion")
AUTO = "auto"
"""``serving.method: auto``: ``fusion`` when evaluation produced fusion settings, else the first of
``hybrid``, ``bm25``, ``dense`` that the server has."""
AUTO_ORDER: tuple[str, ...] = ("fusion", "hybrid", "bm25", "dense")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """Per-request limits; a request over any of them gets a 4xx naming the field."""

    max_queries: int = Field(ge=1)
    max_topk: int = Field(ge=1)
    max_query_chars: int = Field(ge=1)
    max_body_bytes: int = Field(ge=1024)


class BatcherSettings(_Strict):
    """Micro-batching: up to ``max_batch`` queries, waiting at most ``max_wait_ms`` for company."""

    max_batch: int = Field(ge=1)
    max_wait_ms: float = Field(ge=0, le=1000)


class CatalogNames(_Strict):
    """Catalog entries the CLI loads."""

    bm25_index: str
    dense_index: str
    encoder: str
    corpus: str
    fusion_weight: str
    reranker: str
    bm25_ngram_index: str
    fusion_settings: str
    fusion_indexes: dict[str, str] = Field(
        description="other index entries fusion settings may name (bm25_plain, dense_finetuned)"
    )
    fusion_encoders: dict[str, str] = Field(description="the query encoder entry of each vector index above")


class RerankSettings(_Strict):
    """The optional rerank step: a cross-encoder reorders the first ``depth`` hits of any method."""

    enabled: bool
    default: bool
    depth: int = Field(ge=1)

    @model_validator(mode="after")
    def _default_needs_enabled(self) -> RerankSettings:
        if self.default and not self.enabled:
            raise ValueError("rerank.default: true needs rerank.enabled: true")
        return self


class ServingSettings(_Strict):
    """The ``serving`` parameters group.

    Attributes:
        host: Bind address.
        port: TCP port.
        method: Default retriever for requests that name none, or ``auto`` (:data:`AUTO`).
        alpha: Default dense weight of ``hybrid`` (convex min-max weighted sum), or ``"tuned"`` for the
            weight the evaluation pipeline tuned (catalog ``fusion_weight``).
        default_topk: Hits per query when a request sends no ``topk``.
        fusion_depth: Candidates per retriever that ``hybrid`` fuses (at least the request's topk).
        encode_batch_size: Queries per encoder call.
        token_env: Name of the environment variable holding the bearer token, or ``None`` (no auth).
        limits: Request limits.
        batcher: Micro-batching settings.
        rerank: The optional rerank step.
        datasets: Catalog entry names.
    """

    host: str = Field(min_length=1)
    port: int = Field(ge=0, le=65535)
    method: Method | Literal["auto"]
    alpha: float | Literal["tuned"]
    default_topk: int = Field(ge=1)
    fusion_depth: int = Field(ge=1)
    encode_batch_size: int = Field(ge=1)
    token_env: str | None
    limits: Limits
    batcher: BatcherSettings
    rerank: RerankSettings
    datasets: CatalogNames

    @field_validator("alpha")
    @classmethod
    def _alpha_range(cls, value: float | str) -> float | str:
        if isinstance(value, float) and not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"alpha must be within [0, 1] or 'tuned', got {value!r}")
        return value

    @model_validator(mode="after")
    def _topk_within_limit(self) -> ServingSettings:
        if self.default_topk > self.limits.max_topk:
            raise ValueError(
                f"default_topk {self.default_topk} exceeds limits.max_topk {self.limits.max_topk}"
            )
        return self


class ServingConfigError(ValueError):
    """The ``serving`` parameters are invalid (the message lists each bad key)."""


def load_settings(params: Mapping[str, Any], source: str = "parameters 'serving'") -> ServingSettings:
    """Validate the ``serving`` parameters group.

    Args:
        params: The group's mapping (``context.params["serving"]``).
        source: Where it came from, for the error message.

    Returns:
        The settings.

    Raises:
        ServingConfigError: Naming every invalid or missing key.
    """
    try:
        return ServingSettings.model_validate(dict(params))
    except ValidationError as exc:
        problems = "; ".join(
            f"serving.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ServingConfigError(f"invalid {source} (conf/base/parameters_serving.yml): {problems}") from exc
