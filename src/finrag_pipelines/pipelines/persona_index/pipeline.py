"""persona_index pipeline — not implemented yet: it has no nodes, so `kedro run --pipelines persona_index` does nothing."""

from __future__ import annotations

from kedro.pipeline import Pipeline


def create_pipeline(**kwargs) -> Pipeline:  # noqa: D103
    return Pipeline([], namespace="persona_index", prefix_datasets_with_namespace=False)
