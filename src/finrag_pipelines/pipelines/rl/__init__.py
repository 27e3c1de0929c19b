"""rl: verl GRPO data and reward config (from mcq_prep's rl_train/eval splits) and, next, the verl launch."""

from finrag_pipelines.pipelines.rl.pipeline import create_pipeline

__all__ = ["create_pipeline"]
