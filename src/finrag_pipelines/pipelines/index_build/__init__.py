"""index_build: jieba+bm25s BM25 indexes (ours and a plain baseline) and a FAISS dense index."""

from finrag_pipelines.pipelines.index_build.pipeline import create_pipeline

__all__ = ["create_pipeline"]
