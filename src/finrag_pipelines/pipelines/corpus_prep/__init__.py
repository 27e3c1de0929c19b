"""corpus_prep: validate and normalise a BEIR (or seed-format) folder, filter and deduplicate it."""

from finrag_pipelines.pipelines.corpus_prep.pipeline import create_pipeline

__all__ = ["create_pipeline"]
