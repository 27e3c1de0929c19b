"""BM25 scoring settings and bm25s's precomputed score matrix, with a tf saturation cap applied exactly.

bm25s precomputes, for every (document, term) pair, the term's whole BM25 contribution
``idf(t) · tfc(tf, |d|)`` and stores it in a sparse CSC matrix (one column per term); a query's score is
the sum of its terms' columns. The matrix is built here with bm25s's own idf/tfc functions, but with
``min(tf, tf_cap)`` in the tf component (``tf_cap``). Document lengths stay the true lengths (capping does
not shorten documents), and idf is unchanged. With ``tf_cap=None`` the matrix is bit-identical to bm25s's.
The domain-term weight is applied at query time (:mod:`~finrag_pipelines.retrieval.bm25.index`).

Kedro-free library module.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import bm25s
import numpy as np
from bm25s.scoring import (
    _build_idf_array,
    _build_nonoccurrence_array,
    _select_idf_scorer,
    _select_tfc_scorer,
)

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")

_NONOCCURRENCE_METHODS = ("bm25l", "bm25+")
_DTYPE = "float32"
_INT_DTYPE = "int32"


@dataclass(frozen=True)
class BM25Config:
    """BM25 scoring settings.

    Attributes:
        k1: Term-frequency saturation (> 0).
        b: Length normalisation, 0..1.
        method: bm25s variant: "lucene", "robertson", "atire", "bm25l" or "bm25+".
        tf_cap: A term stops counting after this many occurrences in a document (>= 1), inside the tf
            component only; ``None`` = off.
        domain_term_weight: Weight of query terms that are domain terms (> 0); 1.0 = off.
        delta: The δ of bm25l / bm25+ (ignored by the other methods; bm25s's default).
    """

    k1: float = 1.2
    b: float = 0.75
    method: str = "lucene"
    tf_cap: int | None = 5
    domain_term_weight: float = 1.2
    delta: float = 0.5

    def __post_init__(self) -> None:
        def number(name: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"BM25Config.{name} must be a finite number, got {value!r}.")
            return float(value)

        if number("k1", self.k1) <= 0:
            raise ValueError(f"BM25Config.k1 must be > 0, got {self.k1!r} (typical: 0.9-1.5).")
        if not 0.0 <= number("b", self.b) <= 1.0:
            raise ValueError(f"BM25Config.b must be within 0..1, got {self.b!r} (typical: 0.75).")
        if self.method not in METHODS:
            raise ValueError(f"BM25Config.method must be one of {METHODS}, got {self.method!r}.")
        if self.tf_cap is not None and (
            isinstance(self.tf_cap, bool) or not isinstance(self.tf_cap, int) or self.tf_cap < 1
        ):
            raise ValueError(f"BM25Config.tf_cap must be an integer >= 1 or null (off), got {self.tf_cap!r}.")
        if number("domain_term_weight", self.domain_term_weight) <= 0:
            raise ValueError(
                f"BM25Config.domain_term_weight must be > 0, got {self.domain_term_weight!r} (1.0 turns it "
                "off)."
            )
        if number("delta", self.delta) < 0:
            raise ValueError(f"BM25Config.delta must be >= 0, got {self.delta!r}.")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (as stored in ``meta.json["bm25"]``)."""
        return asdict(self)


_PAIR_CHUNK_TOKENS = 1 << 24  # tokens whose (doc, term) pairs are counted at a time


def _count_pairs(
    flat_terms: np.ndarray, doc_lens: np.ndarray, n_vocab: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(doc * n_vocab + term, return_counts=True)`` split into int32 ``(doc, term, count)``.

    Documents are taken a chunk at a time (pairs never cross documents, so sorting within chunks gives the
    global order): memory holds one chunk's int64 pairs, not the corpus's.
    """
    ends = np.cumsum(doc_lens)
    docs, terms, counts = [], [], []
    doc = 0
    while doc < len(doc_lens):
        first_token = int(ends[doc] - doc_lens[doc])
        stop = max(doc + 1, int(np.searchsorted(ends, first_token + _PAIR_CHUNK_TOKENS, "right")))
        last_token = int(ends[stop - 1])
        pairs = np.repeat(np.arange(doc, stop, dtype=np.int64), doc_lens[doc:stop])
        pairs *= n_vocab
        pairs += flat_terms[first_token:last_token]
        pairs.sort()
        fresh = np.empty(pairs.size, dtype=bool)
        fresh[:1] = True
        np.not_equal(pairs[1:], pairs[:-1], out=fresh[1:])
        starts = np.flatnonzero(fresh)
        counts.append(np.diff(np.append(starts, pairs.size)).astype(np.int32))
        pairs = pairs[starts]
        docs.append((pairs // n_vocab).astype(np.int32))
        terms.append((pairs % n_vocab).astype(np.int32))
        doc = stop
    if not docs:
        return (np.zeros(0, dtype=np.int32),) * 3
    return np.concatenate(docs), np.concatenate(terms), np.concatenate(counts)


def _score_matrix(
    flat_terms: np.ndarray, doc_lens: np.ndarray, n_vocab: int, config: BM25Config
) -> tuple[dict[str, Any], np.ndarray | None, float]:
    """bm25s's precomputed score matrix, with the tf cap applied in the tf component.

    Mirrors ``bm25s.BM25.build_index_from_ids`` (same idf / tfc functions, same dtypes, same operation
    order, hence the same bits when ``tf_cap`` is None), vectorised over all (doc, term) pairs.

    Args:
        flat_terms: Term ids of all documents, concatenated in row order.
        doc_lens: Tokens per document (int64).
        n_vocab: Number of terms.
        config: Scoring settings.

    Returns:
        ``(scores, nonoccurrence_array, avg_doc_len)`` where ``scores`` is bm25s's
        ``{"data", "indices", "indptr", "num_docs"}``.
    """
    n_docs = len(doc_lens)
    avg_doc_len = doc_lens.mean()  # as bm25s: mean of an int array
    doc_idx, voc_idx, tf_counts = _count_pairs(flat_terms, doc_lens, n_vocab)
    doc_freqs = dict(enumerate(np.bincount(voc_idx, minlength=n_vocab).tolist()))
    idf = _build_idf_array(doc_freqs, n_docs, compute_idf_fn=_select_idf_scorer(config.method), dtype=_DTYPE)
    nonoccurrence = None
    if config.method in _NONOCCURRENCE_METHODS:
        nonoccurrence = _build_nonoccurrence_array(
            doc_freqs,
            n_docs,
            compute_idf_fn=_select_idf_scorer(config.method),
            calculate_tfc_fn=_select_tfc_scorer(config.method),
            l_d=avg_doc_len,
            l_avg=avg_doc_len,
            k1=config.k1,
            b=config.b,
            delta=config.delta,
            dtype=_DTYPE,
        )
    tf = tf_counts.astype(_DTYPE)
    if config.tf_cap is not None:
        np.minimum(tf, np.float32(config.tf_cap), out=tf)
    tfc = _select_tfc_scorer(config.method)(
        tf_array=tf, l_d=doc_lens[doc_idx], l_avg=avg_doc_len, k1=config.k1, b=config.b, delta=config.delta
    )
    contrib = idf[voc_idx] * tfc
    if nonoccurrence is not None:
        contrib -= nonoccurrence[voc_idx]
    # bm25s's _np_csc_python, with fewer copies: pairs are unique and in (doc, term) order, so a stable sort
    # by term alone gives its (term, doc) order
    order = np.argsort(voc_idx, kind="stable")
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(np.bincount(voc_idx, minlength=n_vocab), out=indptr[1:])
    del voc_idx
    data = contrib.astype(_DTYPE)[order]
    del contrib
    indices = doc_idx.astype(_INT_DTYPE)[order]
    scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}
    return scores, nonoccurrence, float(avg_doc_len)


@dataclass(frozen=True)
class ScoredCorpus:
    """A bm25s object over a tokenised corpus, and what the index records about it.

    Attributes:
        retriever: The bm25s object holding the score matrix and vocabulary.
        avg_doc_len: Mean document length in tokens.
        empty_docs: Documents without any token (they can never be retrieved).
    """

    retriever: bm25s.BM25
    avg_doc_len: float
    empty_docs: int


def score_corpus(corpus_tokens: Sequence[Sequence[str]], config: BM25Config) -> ScoredCorpus:
    """Number the terms of a tokenised corpus and build its bm25s object with ``config`` (tf cap included).

    Args:
        corpus_tokens: One token list per document, in row order.
        config: Scoring settings.

    Raises:
        ValueError: If no document has any token.
    """
    vocab: dict[str, int] = {}
    terms = array("i")  # all documents' term ids, concatenated (4 bytes a token, no per-document lists)
    lengths = array("q")
    for tokens in corpus_tokens:
        before = len(terms)
        for token in tokens:
            term = vocab.get(token)
            if term is None:
                term = vocab[token] = len(vocab)
            terms.append(term)
        lengths.append(len(terms) - before)
    if not vocab:
        raise ValueError(
            f"none of the {len(lengths)} documents has a token after tokenisation (all empty, punctuation "
            "or stopwords); check the corpus texts and the stopword list."
        )
    doc_lens = np.frombuffer(lengths, dtype=np.int64)
    flat_terms = np.frombuffer(terms, dtype=np.int32)  # a view: no copy of the corpus's term ids
    scores, nonoccurrence, avg_len = _score_matrix(flat_terms, doc_lens, len(vocab), config)
    del flat_terms
    del terms
    retriever = bm25s.BM25(
        k1=config.k1,
        b=config.b,
        delta=config.delta,
        method=config.method,
        dtype=_DTYPE,
        int_dtype=_INT_DTYPE,
    )
    retriever.scores = scores
    retriever.vocab_dict = vocab
    retriever.unique_token_ids_set = set(vocab.values())
    retriever.nonoccurrence_array = nonoccurrence
    return ScoredCorpus(retriever, avg_len, int((doc_lens == 0).sum()))
