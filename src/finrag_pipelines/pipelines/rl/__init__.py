"""rl: registered now, filled by its own issue (see README "Pipelines")."""

from finrag_pipelines.pipelines.rl.pipeline import create_pipeline

__all__ = ["create_pipeline"]
