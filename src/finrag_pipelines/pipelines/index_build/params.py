"""Typed parameters of index_build (validated by Kedro from ``parameters_index_build.yml``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from finrag_pipelines.retrieval.lucene.index import LuceneConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenizerParams(_Strict):
    """jieba tokenisation: dictionaries, stopwords, case, HMM, worker processes."""

    use_finance_dict: bool = Field(description="load the shipped finance user dictionary")
    user_dict_paths: list[str] = Field(description="extra jieba user-dict files (word [freq] [tag] per line)")
    extra_words: list[str] = Field(description="extra domain terms kept whole and boosted")
    stopwords: str | None = Field(description="'builtin', a file path, or null for none")
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
    tf_cap: int | None = Field(
        ge=1, description="a term stops counting after this many occurrences; null = off"
    )
    domain_term_weight: float = Field(
        gt=0, description="weight of query terms found in the domain dictionary"
    )


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


class NgramTokenizerParams(_Strict):
    """Character n-grams (``text/ngram.py``): no dictionary, no stopwords."""

    n: int = Field(ge=1, le=8, description="window length in characters (2 = bigrams)")
    lowercase: bool
    split_on_punctuation: bool = Field(description="no n-gram spans whitespace, punctuation or symbols")
    ascii_words: bool = Field(description="keep ASCII letter/digit runs (codes, numbers) whole")


class NgramBM25Params(_Strict):
    """The character n-gram BM25 index (a lexical index next to the word index, same normalised text)."""

    name: str = Field(description="the retriever's name in logs, meta.json and the report")
    tokenizer: NgramTokenizerParams
    scoring: ScoringParams

    @model_validator(mode="after")
    def _no_domain_weight(self) -> NgramBM25Params:
        if self.scoring.domain_term_weight != 1.0:
            raise ValueError(
                "index_build.bm25_ngram.scoring.domain_term_weight must be 1.0: an n-gram tokenizer has no "
                "dictionary, so no n-gram is a domain term"
            )
        return self


class StatisticalMiningParams(_Strict):
    """New-word discovery over the corpus: frequency, cohesion (PMI) and left/right branching entropy."""

    enabled: bool
    max_len: int = Field(ge=2, le=8, description="longest candidate in characters")
    min_freq: int = Field(ge=1)
    min_cohesion: float = Field(description="smallest PMI over the split points (natural log)")
    min_entropy: float = Field(ge=0, description="smallest left and right branching entropy (nats)")
    max_terms: int = Field(ge=1, description="candidates kept by score before filtering")


class LLMMiningParams(_Strict):
    """LLM entity extraction (organisations, products, metrics, terms, stock code ↔ short name aliases)."""

    enabled: bool = Field(description="ask the llm endpoint (llm.backend openai); offline: reported not run")
    max_documents: int = Field(ge=1, description="documents asked about (a seeded sample of a larger corpus)")
    max_doc_chars: int = Field(ge=50, description="characters of each document sent")
    seed: int
    temperature: float = Field(ge=0)
    max_tokens: int = Field(ge=16)


class VocabularyFilterParams(_Strict):
    """Which mined terms may enter the tokenizer's user dictionary."""

    min_len: int = Field(ge=2)
    max_len: int = Field(ge=2)
    min_llm_documents: int = Field(ge=1, description="an LLM term must come from this many documents")


class SplitParams(_Strict):
    """The evaluation query split (the same values as evaluation.split, from globals.query_split)."""

    tune_fraction: float = Field(ge=0.0, lt=1.0)
    seed: int


class VocabularyAblationParams(_Strict):
    """Mined terms are kept only if word BM25 with them beats it without them on the tune split."""

    split: SplitParams
    metric: str = Field(description="e.g. mrr@10 (name as in evaluation.metrics)")
    min_gain: float = Field(ge=0, description="keep a variant only when it beats no mined terms by more")
    depth: int = Field(ge=10, description="hits per query searched")
    fixed_decision: Literal["none", "statistical", "llm", "all"] | None = Field(
        description="use this variant unmeasured (a held-out set: the dev set's decision); null = ablate"
    )


class VocabularyParams(_Strict):
    """The mined-vocabulary step of index_build."""

    statistical: StatisticalMiningParams
    llm: LLMMiningParams
    filter: VocabularyFilterParams
    ablation: VocabularyAblationParams
