"""evaluation: BM25 / dense / hybrid runs, metrics with bootstrap intervals, markdown report and chart."""

from finrag_pipelines.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
