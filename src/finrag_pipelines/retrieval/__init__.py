"""Retrieval: one Retriever interface over BM25 (bm25s), dense (FAISS) and fusion; metrics.

Kedro-free library package.
"""
