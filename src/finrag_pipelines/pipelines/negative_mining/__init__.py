"""negative_mining: hard negatives for the embedding fine-tune, written as ms-swift 4.x InfoNCE rows."""

from finrag_pipelines.pipelines.negative_mining.pipeline import create_pipeline

__all__ = ["create_pipeline"]
