"""sft: verl SFT data (from mcq_prep's sft_train split) and, next, the verl SFT launch."""

from finrag_pipelines.pipelines.sft.pipeline import create_pipeline

__all__ = ["create_pipeline"]
