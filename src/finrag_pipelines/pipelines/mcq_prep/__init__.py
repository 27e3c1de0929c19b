"""mcq_prep: bundled Chinese finance MCQ sets → one normalised table → dedup → sft_train/rl_train/eval."""

from finrag_pipelines.pipelines.mcq_prep.pipeline import create_pipeline

__all__ = ["create_pipeline"]
