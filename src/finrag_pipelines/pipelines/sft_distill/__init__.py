"""sft_distill: verified SFT rows beyond the public explanations: calculation questions with computed answers,
rejection-sampled teacher reasoning for sft_train items, and corpus-grounded QA judged supported."""

from finrag_pipelines.pipelines.sft_distill.pipeline import create_pipeline

__all__ = ["create_pipeline"]
