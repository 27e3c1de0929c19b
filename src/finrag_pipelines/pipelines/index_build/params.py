"""Typed parameters of index_build (validated by Kedro from ``parameters_index_build.yml``)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from finrag_pipelines.retrieval.lucene.index import LuceneConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenizerParams(_Strict):
    """jieba tokenisation: dictionaries, stopwords, case, HMM, worker processes."""

    use_finance_dict: bool = Field(description="load the shipped finance user dictionary")
    user_dict_paths: list[str] = Field(description="extra jieba user-dict files (word [freq] [tag] per line)")
    extra_words: list[str] = Field(description="extra domain terms kept whole and boosted")
    stopwords: Optional[str] = Field(description="'builtin', a file path, or null for none")
    extra_stopwords: list[str]
    lowercase: bool
    hmm: bool = Field(description="jieba's HMM for unknown words")
    search_mode: bool = Field(description="also emit dictionary sub-words of long words (jieba search mode)")
    n_jobs: int = Field(ge=1, description="tokeniser worker processes for large inputs")


class ScoringParams(_Strict):
    """BM25 scoring, with the seed's two ideas (tf saturation cap, domain-term weight)."""

    k1: float = Field(gt=0)
    b: float = Field(ge=0, le=1)
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"]
    tf_cap: Optional[int] = Field(ge=1, description="a term stops counting after this many occurrences; null = off")
    domain_term_weight: float = Field(gt=0, description="weight of query terms found in the domain dictionary")


class BM25Params(_Strict):
    """One BM25 index."""

    name: str = Field(description="the retriever's name in logs, meta.json and the report")
    backend: Literal["bm25s", "lucene"] = Field(
        description="bm25s (tf cap, domain-term weight) or lucene (pyserini/Anserini: k1/b and RM3 from "
        "index_build.lucene; the bm25s-only settings are listed as not applied in meta.json)"
    )
    tokenizer: TokenizerParams
    scoring: ScoringParams


class LuceneRM3Params(_Strict):
    """Lucene's RM3 query expansion (pyserini ``set_rm3``)."""

    fb_terms: int = Field(ge=1, description="expansion terms")
    fb_docs: int = Field(ge=1, description="feedback documents")
    original_query_weight: float = Field(ge=0, le=1)
    filter_terms: bool = Field(description="Anserini's [a-z0-9]-only term filter; false for Chinese")


class LuceneParams(_Strict):
    """Settings of every Lucene BM25 index (``backend: lucene``, and the ``bm25_lucene`` comparison)."""

    compare: bool = Field(description="also build bm25_lucene (index_build.bm25 in Lucene) to evaluate it")
    k1: float | None = Field(gt=0, description="null = the index group's scoring.k1")
    b: float | None = Field(ge=0, le=1, description="null = the index group's scoring.b")
    rm3: LuceneRM3Params | None = Field(description="null = plain BM25")
    index_threads: int = Field(ge=1)
    search_threads: int = Field(ge=1, description="threads of one batched search")

    def config(self) -> LuceneConfig:
        """The library's :class:`~finrag_pipelines.retrieval.lucene.index.LuceneConfig`."""
        return LuceneConfig.from_mapping(self.model_dump(exclude={"compare"}))


class DenseParams(_Strict):
    """The FAISS index over the base encoder's document vectors."""

    index_type: Literal["flat", "hnsw"]
    hnsw_m: int = Field(ge=4)
    ef_search: int = Field(ge=1)
    chunk_size: int = Field(ge=1, description="documents encoded between two durable cache writes")
