"""The reranker interface and the one function that reranks a first-stage run with it.

A reranker scores (query, passage) pairs jointly — a cross-encoder reads both texts in one forward pass —
and is used after a first-stage retriever (BM25, dense, hybrid) on its top N candidates. Scores are
probabilities of relevance in (0, 1): ``P(yes)`` for a Qwen3-Reranker-style causal LM, ``sigmoid(logit)``
for a sequence-classification cross-encoder (as sentence-transformers' ``CrossEncoder`` reports them), so
a positive's score times a margin is meaningful for false-negative filtering.

Kedro-free library module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from finrag_pipelines.retrieval.types import Hit, RetrievalError, Run

logger = logging.getLogger(__name__)


@runtime_checkable
class Reranker(Protocol):
    """Anything that scores (query, passage) pairs jointly."""

    @property
    def name(self) -> str:
        """Short human-readable name, used in logs and reports."""
        ...

    @property
    def fingerprint(self) -> str:
        """sha256 hex digest of ``describe()`` (minus the location) and of the model files."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable settings: everything that changes the scores."""
        ...

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Relevance probabilities of ``(queries[i], passages[i])`` as a float32 array in input order."""
        ...


def check_pairs(queries: Sequence[str], passages: Sequence[str]) -> tuple[list[str], list[str]]:
    """Validate a batch of (query, passage) pairs and return them as lists.

    Raises:
        TypeError: If either is a bare string or holds a non-string.
        ValueError: If the lengths differ.
    """
    for what, items in (("queries", queries), ("passages", passages)):
        if isinstance(items, str):
            raise TypeError(
                f"{what} must be a sequence of strings, got one str {items[:40]!r}; wrap it in a list."
            )
    qs, ps = list(queries), list(passages)
    if len(qs) != len(ps):
        raise ValueError(
            f"score_pairs needs one passage per query, got {len(qs)} queries and {len(ps)} passages."
        )
    for what, items in (("queries", qs), ("passages", ps)):
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise TypeError(f"{what}[{i}] is {type(text).__name__} {text!r:.60}, expected str.")
    return qs, ps


def rerank_run(
    reranker: Reranker,
    queries: Sequence[str],
    run: Run,
    text_of: Mapping[str, str] | Callable[[str], str],
    top_n: int,
    *,
    chunk_pairs: int = 4096,
) -> Run:
    """Rerank the top ``top_n`` hits of each query's first-stage list by the reranker's score.

    Every pair of the whole run is scored in chunks of ``chunk_pairs`` (a reranker sorts each chunk by length
    into batches), so short and long passages of different queries share batches. Ties keep the first-stage
    order. The reranked run lists exactly the top ``top_n`` (fewer when the first stage found fewer), with the
    reranker's scores; hits below ``top_n`` are not reranked and not listed.

    Args:
        reranker: The reranker.
        queries: Query texts, one per list of ``run``.
        run: The first-stage run.
        text_of: Passage text per document id (a mapping or a function).
        top_n: How many first-stage hits per query are reranked.
        chunk_pairs: Pairs scored per call.

    Returns:
        The reranked run, in query order.

    Raises:
        ValueError: If the sizes disagree or ``top_n`` < 1.
        RetrievalError: If a hit's text is unknown or the reranker fails.
    """
    if len(queries) != len(run):
        raise ValueError(f"rerank_run got {len(queries)} queries for {len(run)} result lists.")
    if top_n < 1 or chunk_pairs < 1:
        raise ValueError(f"top_n and chunk_pairs must be >= 1, got {top_n} and {chunk_pairs}.")
    lookup = text_of.__getitem__ if isinstance(text_of, Mapping) else text_of
    heads = [hits[:top_n] for hits in run]
    pair_q: list[str] = []
    pair_p: list[str] = []
    for query, hits in zip(queries, heads, strict=True):
        for hit in hits:
            try:
                text = lookup(hit.doc_id)
            except KeyError:
                raise RetrievalError(
                    f"reranking: first-stage hit {hit.doc_id!r} has no passage text; the run and the corpus "
                    "differ."
                ) from None
            pair_q.append(query)
            pair_p.append(text)
    scores = np.empty(len(pair_q), dtype=np.float32)
    for start in range(0, len(pair_q), chunk_pairs):
        end = min(start + chunk_pairs, len(pair_q))
        try:
            chunk = np.asarray(reranker.score_pairs(pair_q[start:end], pair_p[start:end]), dtype=np.float32)
        except Exception as exc:  # a failed rerank aborts; it is never a run of zeros
            raise RetrievalError(
                f"reranker '{reranker.name}' failed on pairs {start}..{end - 1}: {type(exc).__name__}: {exc}"
            ) from exc
        if chunk.shape != (end - start,):
            raise RetrievalError(
                f"reranker '{reranker.name}' returned {chunk.shape} scores for {end - start} pairs."
            )
        scores[start:end] = chunk
    out: Run = []
    offset = 0
    for hits in heads:
        block = scores[offset : offset + len(hits)]
        offset += len(hits)
        order = sorted(range(len(hits)), key=lambda i: (-float(block[i]), i))
        out.append([Hit(hits[i].doc_id, float(block[i])) for i in order])
    logger.info(
        "reranked %d pairs of %d queries with %s (top %d)", len(pair_q), len(run), reranker.name, top_n
    )
    return out
