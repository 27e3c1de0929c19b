"""embedding_finetune: registered now, filled by its own issue (see README "Pipelines")."""

from finrag_pipelines.pipelines.embedding_finetune.pipeline import create_pipeline

__all__ = ["create_pipeline"]
