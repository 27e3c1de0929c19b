"""Retrieval: one Retriever interface over BM25, dense and fusion; metrics.

The index interfaces (:mod:`.interfaces`): a lexical index (bm25s in :mod:`.bm25`, Milvus in
:mod:`.milvus`) and a vector index (FAISS in :mod:`.dense`, Milvus in :mod:`.milvus`).

Kedro-free library package.
"""
