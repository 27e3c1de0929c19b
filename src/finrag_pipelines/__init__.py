"""finrag_pipelines: domain corpus → better retriever and answer model, as Kedro pipelines."""

__version__ = "0.1.0"
