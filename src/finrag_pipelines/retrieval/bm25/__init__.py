"""BM25 over bm25s with the seed's two ideas applied exactly: a tf saturation cap and domain-term weights.

* :mod:`.scoring`: :class:`~.scoring.BM25Config` and the bm25s score matrix with the tf cap.
* :mod:`.index`: :class:`~.index.BM25Index` (build, search with domain-term weights, save / load), a
  :class:`~finrag_pipelines.retrieval.interfaces.TermScoringIndex`.
* :mod:`.folder`: the index folder (bm25s files, tokenizer, ``doc_ids.json``, ``meta.json``), checked on read.

Kedro-free library package.
"""
