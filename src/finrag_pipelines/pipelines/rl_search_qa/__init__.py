"""rl_search_qa: distilled queries + their source documents → search-QA training items for rl (gold
documents of evaluation questions excluded)."""

from finrag_pipelines.pipelines.rl_search_qa.pipeline import create_pipeline

__all__ = ["create_pipeline"]
