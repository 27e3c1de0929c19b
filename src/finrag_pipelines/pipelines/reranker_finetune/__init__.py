"""reranker_finetune: ms-swift reranker fine-tuning on the mined rows, merged into a plain model folder."""

from finrag_pipelines.pipelines.reranker_finetune.pipeline import create_pipeline

__all__ = ["create_pipeline"]
