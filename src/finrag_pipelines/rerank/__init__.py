"""Rerankers: cross-encoders that score (query, passage) pairs after a first-stage retriever.

* :mod:`.interfaces`: the :class:`~.interfaces.Reranker` Protocol and :func:`~.interfaces.rerank_run`;
* :mod:`.causal_lm`: Qwen3-Reranker-style causal LM (yes/no next-token logits);
* :mod:`.cross_encoder`: BERT-style sequence classification;
* :mod:`.factory`: :func:`~.factory.build_reranker` from a parameters block;
* :mod:`.tiny_models`: tiny random models of both kinds, built locally for tests.

Kedro-free library package.
"""
