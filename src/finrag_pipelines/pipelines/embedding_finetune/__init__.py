"""embedding_finetune: ms-swift InfoNCE LoRA fine-tuning of the dense encoder,
merged into a plain model folder."""

from finrag_pipelines.pipelines.embedding_finetune.pipeline import create_pipeline

__all__ = ["create_pipeline"]
