"""Typed parameters of index_build (validated by Kedro from ``parameters_index_build.yml``)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


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
    tokenizer: TokenizerParams
    scoring: ScoringParams


class DenseParams(_Strict):
    """The FAISS index over the base encoder's document vectors."""

    index_type: Literal["flat", "hnsw"]
    hnsw_m: int = Field(ge=4)
    ef_search: int = Field(ge=1)
    chunk_size: int = Field(ge=1, description="documents encoded between two durable cache writes")
