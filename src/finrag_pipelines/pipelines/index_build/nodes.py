"""index_build nodes: build index objects from the prepared corpus; the catalog persists them."""

from __future__ import annotations

import logging

import pandas as pd

from finrag_pipelines.embedding.distributed import encode_with_execution
from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.store import EmbeddingStore
from finrag_pipelines.execution import ExecutionConfig
from finrag_pipelines.pipelines.index_build.params import BM25Params, DenseParams, LuceneParams
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex
from finrag_pipelines.retrieval.interfaces import LexicalIndex
from finrag_pipelines.retrieval.lucene.index import LuceneBM25Index
from finrag_pipelines.retrieval.types import Unavailable
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.tokenize import FinanceTokenizer

logger = logging.getLogger(__name__)


def build_bm25_index(corpus: pd.DataFrame, params: BM25Params, lucene: LuceneParams) -> LexicalIndex:
    """Tokenise the corpus with the configured jieba tokenizer and index it with ``params.backend``.

    ``bm25s``: the project's BM25 (tf cap, domain-term weight); ``lucene``: pyserini/Anserini over the same
    tokens, with ``lucene``'s k1/b and RM3 (``meta.json`` lists the bm25s-only settings as not applied).
    """
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    tokenizer = FinanceTokenizer(**params.tokenizer.model_dump())
    scoring = BM25Config(**params.scoring.model_dump())
    index: LexicalIndex
    if params.backend == "lucene":
        index = LuceneBM25Index.build(
            ids, texts, tokenizer, scoring, digest, lucene=lucene.config(), name=params.name
        )
    else:
        index = BM25Index.build(ids, texts, tokenizer, scoring, digest, name=params.name)
    logger.info("index_build: %s (%s) over %d documents (%s)", params.name, params.backend, len(ids),
                params.scoring.model_dump())
    return index


def build_bm25_lucene_index(
    corpus: pd.DataFrame, params: BM25Params, lucene: LuceneParams
) -> LuceneBM25Index | Unavailable:
    """``bm25_lucene``: ``params`` (index_build.bm25) in Lucene, for evaluation next to ``bm25``; only with
    ``lucene.compare`` (otherwise recorded as not built, and evaluation reports it as not evaluated)."""
    if not lucene.compare:
        return Unavailable(what="bm25_lucene index", reason="off (index_build.lucene.compare: false)")
    same = params.model_copy(update={"name": "bm25_lucene", "backend": "lucene"})
    return build_bm25_index(corpus, same, lucene)  # type: ignore[return-value]  # backend lucene


def build_dense_index(
    corpus: pd.DataFrame,
    encoder: Encoder | Unavailable,
    embedding_store: EmbeddingStore,
    params: DenseParams,
    execution: ExecutionConfig | None = None,
) -> DenseIndex | Unavailable:
    """Encode the documents (resuming from the embedding store) and build a FAISS index.

    ``execution.backend: ray`` encodes on a Ray actor pool instead of in this process (same store, same
    vectors). An optional encoder that does not exist yet (no fine-tuned model) yields an index folder that
    records why it was not built; evaluation reports that retriever as not evaluated.
    """
    if isinstance(encoder, Unavailable):
        logger.warning("index_build: dense index not built: %s", encoder.reason)
        return Unavailable(what="dense index", reason=encoder.reason)
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    vectors = encode_with_execution(encoder, texts, "document", embedding_store, params.chunk_size, execution)
    meta = {**encoder.describe(), "fingerprint": encoder.fingerprint}
    return DenseIndex.build(
        ids, vectors, meta, digest, index_type=params.index_type, hnsw_m=params.hnsw_m, ef_search=params.ef_search
    )
