"""Milvus (Lite embedded, or a server) behind the same interfaces as the FAISS and bm25s indexes.

* :mod:`.connection`: where a collection lives (:class:`~.connection.MilvusTarget`: a local ``*.db`` file for
  Milvus Lite or an ``http(s)://host:port`` server, with credentials) and one shared client per connection.
* :mod:`.collection`: what both collections share: build keys, idempotent writes (a collection built from
  the same inputs is kept, a partly written one completed with upserts keyed by ``doc_id``, anything else
  dropped and rebuilt), waiting for the index before a write returns, checked opening.
* :mod:`.dense`: :class:`~.dense.MilvusDenseIndex`, a
  :class:`~finrag_pipelines.retrieval.interfaces.VectorIndex` like the FAISS ``DenseIndex``.
* :mod:`.bm25`: :class:`~.bm25.MilvusBM25Index`, a
  :class:`~finrag_pipelines.retrieval.interfaces.LexicalIndex` like the bm25s ``BM25Index`` (without
  ``get_scores``).
* :mod:`.local_server`: a local ``milvus-lite server`` for tests and trying the server setup.

Kedro-free library package; needs the ``milvus`` extra (pymilvus, milvus-lite) only when used.
"""
