"""negative_mining: registered now, filled by its own issue (see README "Pipelines")."""

from finrag_pipelines.pipelines.negative_mining.pipeline import create_pipeline

__all__ = ["create_pipeline"]
