"""The index interfaces every backend implements: a lexical index and a vector index.

Lexical: bm25s (:class:`~finrag_pipelines.retrieval.bm25.index.BM25Index`), Lucene via pyserini
(:class:`~finrag_pipelines.retrieval.lucene.index.LuceneBM25Index`) and Milvus BM25
(:class:`~finrag_pipelines.retrieval.milvus.bm25.MilvusBM25Index`). Vector: FAISS
(:class:`~finrag_pipelines.retrieval.dense.DenseIndex`) and Milvus
(:class:`~finrag_pipelines.retrieval.milvus.dense.MilvusDenseIndex`). Code that searches an index (the
server backend, evaluation, negative mining, query_distill, :class:`~.dense.DenseRetriever`) is typed
against these Protocols, never against one backend's class. Building, writing and loading an index stay
with each backend (and its Kedro dataset).

The members are the ones those callers use:

* :class:`LexicalIndex` (a :class:`~.types.Retriever`): ``name``, ``meta``, ``num_docs``, ``doc_ids``,
  ``tokenizer``, ``search(queries, k)``, ``search_tokens(queries_tokens, k)``, ``check_compatible(hash)``.
* :class:`TermScoringIndex`: a lexical index that also gives ``get_scores(tokens)``, the score of every
  document for one query (negative mining reads the positive's own BM25 score from it): bm25s, and Lucene
  without RM3.
* :class:`VectorIndex`: ``meta``, ``num_docs``, ``doc_ids``, ``dim``, ``search_vectors(qvecs, k)``,
  ``check_compatible(corpus_hash=, encoder=)``.

A backend that cannot provide a member declares it in a class attribute ``UNSUPPORTED`` (member → why, and
what to use instead); :func:`require_term_scores` turns that into an :class:`IndexCapabilityError` naming
the backend. A backend whose ``get_scores`` depends on how an index was built also defines the method
``term_scores_unavailable(self) -> str | None`` (the reason, or ``None``), asked the same way. The checks
here look at the class, never at instance attributes, so they never trigger a property that asks a server
(``runtime_checkable`` ``isinstance`` would, on Python < 3.12).

Kedro-free library module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.retrieval.types import Retriever, Run
from finrag_pipelines.text.tokenizers import Tokenizer


class IndexCapabilityError(TypeError):
    """An index backend lacks a member that the caller needs; the message names the backend and the fix."""


@runtime_checkable
class LexicalIndex(Retriever, Protocol):
    """A term-matching (BM25) index over a corpus, searched with its own tokenizer."""

    name: str
    """Retriever name used in runs, logs and reports."""

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the build metadata (the contents of ``meta.json``: corpus hash, tokenizer, settings)."""
        ...

    @property
    def num_docs(self) -> int:
        """Number of indexed documents."""
        ...

    @property
    def doc_ids(self) -> list[str]:
        """Document ids (a copy)."""
        ...

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer the documents were tokenised with; queries must be tokenised with it too."""
        ...

    def search(self, queries: Sequence[str], k: int) -> Run:
        """The top ``k`` hits for each query text, best first, in query order (``[]`` for a query with no
        indexed token)."""
        ...

    def search_tokens(self, queries_tokens: Sequence[Sequence[str]], k: int) -> Run:
        """As :meth:`search`, for queries already tokenised with :attr:`tokenizer`."""
        ...

    def check_compatible(self, corpus_hash: str) -> None:
        """Raise :class:`~.types.IndexMismatchError` unless the index was built from this corpus."""
        ...


@runtime_checkable
class TermScoringIndex(LexicalIndex, Protocol):
    """A lexical index that can score every document for one query, not only return the top hits."""

    def get_scores(self, tokens: Sequence[str]) -> np.ndarray:
        """The score of every document, in :attr:`doc_ids` order, for one query tokenised with
        :attr:`tokenizer`."""
        ...


@runtime_checkable
class VectorIndex(Protocol):
    """An inner-product index of document vectors, tied to the encoder and corpus it was built from."""

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of the build metadata (the contents of ``meta.json``: encoder, corpus hash, index type)."""
        ...

    @property
    def num_docs(self) -> int:
        """Number of indexed documents."""
        ...

    @property
    def doc_ids(self) -> list[str]:
        """Document ids (a copy)."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension."""
        ...

    def search_vectors(self, qvecs: np.ndarray, k: int) -> Run:
        """The top ``k`` hits for each float32 query vector (rows of ``(n, dim)``), best first."""
        ...

    def check_compatible(self, corpus_hash: str | None = None, encoder: Encoder | None = None) -> None:
        """Raise :class:`~.types.IndexMismatchError` unless the index was built from this corpus and with this
        encoder (fingerprint, dimension, query instruction); ``None`` skips that check."""
        ...


def unsupported(index: object) -> Mapping[str, str]:
    """The members ``index``'s backend declares it cannot provide (``UNSUPPORTED``), with why and the fix."""
    declared = getattr(type(index), "UNSUPPORTED", None)
    return dict(declared) if isinstance(declared, Mapping) else {}


def require_term_scores(index: LexicalIndex, purpose: str) -> TermScoringIndex:
    """``index`` as a :class:`TermScoringIndex`, or an error naming its backend and what to use instead.

    Args:
        index: The lexical index a caller was given.
        purpose: What needs the scores, for the message (e.g. ``"negative_mining's BM25 candidates"``).

    Raises:
        IndexCapabilityError: If the backend has no ``get_scores``.
    """
    if callable(getattr(type(index), "get_scores", None)):
        ask = getattr(type(index), "term_scores_unavailable", None)
        why_not = ask(index) if callable(ask) else None
        if why_not is None:
            return index  # type: ignore[return-value]  # checked on the class just above
        why = str(why_not)
    else:
        why = unsupported(index).get(
            "get_scores", "use a lexical index that implements TermScoringIndex (the bm25s BM25Index)"
        )
    raise IndexCapabilityError(
        f"{purpose} needs get_scores (the score of every document for one query), which the lexical index "
        f"backend {index!r} does not provide: {why}."
    )
