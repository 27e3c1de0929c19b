"""index_build nodes: build index objects from the prepared corpus; the catalog persists them."""

from __future__ import annotations

import logging

import pandas as pd

from finrag_pipelines.embedding.distributed import encode_with_execution
from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.store import EmbeddingStore
from finrag_pipelines.execution import ExecutionConfig
from finrag_pipelines.pipelines.index_build.params import (
    BM25Params,
    DenseParams,
    LuceneParams,
    NgramBM25Params,
)
from finrag_pipelines.project_paths import portable_values
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex
from finrag_pipelines.retrieval.interfaces import LexicalIndex
from finrag_pipelines.retrieval.lucene.index import LuceneBM25Index
from finrag_pipelines.retrieval.types import Unavailable
from finrag_pipelines.text.corpus import indexable
from finrag_pipelines.text.ngram import CharNgramTokenizer
from finrag_pipelines.text.tokenize import FinanceTokenizer

logger = logging.getLogger(__name__)


def lexical_index(
    ids: list[str],
    texts: list[str],
    digest: str,
    tokenizer: FinanceTokenizer,
    params: BM25Params,
    lucene: LuceneParams,
) -> LexicalIndex:
    """Index the tokenised texts with ``params.backend``.

    ``bm25s``: the project's BM25 (tf cap, domain-term weight); ``lucene``: pyserini/Anserini over the same
    tokens, with ``lucene``'s k1/b and RM3 (``meta.json`` lists the bm25s-only settings as not applied).
    """
    scoring = BM25Config(**params.scoring.model_dump())
    if params.backend == "lucene":
        return LuceneBM25Index.build(
            ids, texts, tokenizer, scoring, digest, lucene=lucene.config(), name=params.name
        )
    return BM25Index.build(ids, texts, tokenizer, scoring, digest, name=params.name)


def build_bm25_index(corpus: pd.DataFrame, params: BM25Params, lucene: LuceneParams) -> LexicalIndex:
    """Tokenise the corpus with the configured jieba tokenizer and index it with ``params.backend``."""
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    tokenizer = FinanceTokenizer(**params.tokenizer.model_dump())
    index = lexical_index(ids, texts, digest, tokenizer, params, lucene)
    logger.info(
        "index_build: %s (%s) over %d documents (%s)",
        params.name,
        params.backend,
        len(ids),
        params.scoring.model_dump(),
    )
    return index


def build_ngram_index(corpus: pd.DataFrame, params: NgramBM25Params) -> BM25Index:
    """Build the character n-gram BM25 index from the same normalised text as the word index.

    Its folder holds the n-gram tokenizer, so queries are cut into n-grams exactly as the documents were.
    """
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    tokenizer = CharNgramTokenizer(**params.tokenizer.model_dump())
    index = BM25Index.build(
        ids, texts, tokenizer, BM25Config(**params.scoring.model_dump()), digest, name=params.name
    )
    logger.info("index_build: %s (%r) over %d documents", params.name, tokenizer, len(ids))
    return index


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
    # meta.json names paths under the project relative to it, never the machine's absolute paths
    meta = portable_values({**encoder.describe(), "fingerprint": encoder.fingerprint})
    return DenseIndex.build(
        ids,
        vectors,
        meta,
        digest,
        index_type=params.index_type,
        hnsw_m=params.hnsw_m,
        ef_search=params.ef_search,
    )
