"""query_distill pipeline — not implemented yet: it has no nodes, so `kedro run --pipelines query_distill` does nothing."""

from __future__ import annotations

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:  # noqa: D103
    return Pipeline([], namespace="query_distill", prefix_datasets_with_namespace=False)
