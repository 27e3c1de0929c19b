"""Per-query candidate tables over several first-stage runs: the input of every multi-retriever fusion.

For one query, the candidates are the union of the documents each run lists. For each candidate and run
the table holds the raw score and rank (``NaN`` where the run does not list it) and the min-max normalised
score, with a candidate missing from a run at that run's floor (its lowest normalised score: 0, or 1 when
every listed score is equal), as in :func:`~finrag_pipelines.retrieval.fusion.weighted_sum`. Candidates
are ordered by document id, so every derived ranking breaks ties the same way.

Kedro-free library module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from finrag_pipelines.retrieval.types import Hit, Run


@dataclass(frozen=True)
class QueryCandidates:
    """One query's candidates.

    Attributes:
        doc_ids: The union of the runs' documents, sorted.
        scores: ``(n_docs, n_runs)`` raw scores, ``NaN`` where a run does not list the document.
        ranks: ``(n_docs, n_runs)`` ranks from 1, ``NaN`` where a run does not list the document.
        normalised: ``(n_docs, n_runs)`` min-max normalised scores in [0, 1], the run's floor where it does
            not list the document (0; 1 for a run whose listed scores are all equal).
    """

    doc_ids: list[str]
    scores: np.ndarray
    ranks: np.ndarray
    normalised: np.ndarray


@dataclass(frozen=True)
class CandidateTable:
    """Candidates of a batch of queries over the same named runs.

    Attributes:
        retrievers: The run names, in column order.
        queries: One :class:`QueryCandidates` per query, in query order.
    """

    retrievers: tuple[str, ...]
    queries: list[QueryCandidates]

    @classmethod
    def from_runs(cls, runs: Mapping[str, Run], depth: int | None = None) -> CandidateTable:
        """Build the table from runs of the same queries, each cut to its first ``depth`` hits.

        Raises:
            ValueError: Without runs, or if they cover different numbers of queries.
        """
        if not runs:
            raise ValueError("a candidate table needs at least one run")
        sizes = {name: len(run) for name, run in runs.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"runs cover different numbers of queries: {sizes}; fuse runs of the same queries"
            )
        names = tuple(runs)
        n_queries = next(iter(sizes.values()))
        return cls(names, [_query([runs[n][q][:depth] for n in names]) for q in range(n_queries)])

    def __len__(self) -> int:
        return len(self.queries)

    def subset(self, positions: Sequence[int]) -> CandidateTable:
        """The table of the queries at ``positions`` (in that order)."""
        return CandidateTable(self.retrievers, [self.queries[p] for p in positions])

    def columns(self, names: Sequence[str]) -> list[int]:
        """Column positions of the named runs.

        Raises:
            KeyError: Naming the unknown runs and the known ones.
        """
        unknown = [n for n in names if n not in self.retrievers]
        if unknown:
            raise KeyError(f"runs {unknown} are not in this candidate table (it has {list(self.retrievers)})")
        return [self.retrievers.index(n) for n in names]


def _query(hit_lists: list[list[Hit]]) -> QueryCandidates:
    doc_ids = sorted({hit.doc_id for hits in hit_lists for hit in hits})
    row = {doc_id: i for i, doc_id in enumerate(doc_ids)}
    shape = (len(doc_ids), len(hit_lists))
    scores = np.full(shape, np.nan)
    ranks = np.full(shape, np.nan)
    normalised = np.zeros(shape)
    for col, hits in enumerate(hit_lists):
        if not hits:
            continue
        rows = np.fromiter((row[h.doc_id] for h in hits), dtype=np.int64, count=len(hits))
        values = np.fromiter((h.score for h in hits), dtype=np.float64, count=len(hits))
        scores[rows, col] = values
        ranks[rows, col] = np.arange(1, len(hits) + 1)
        lo, hi = values.min(), values.max()
        if hi == lo:  # a constant list says nothing: every candidate, listed or not, gets 1
            normalised[:, col] = 1.0
        else:
            normalised[rows, col] = (values - lo) / (hi - lo)
    return QueryCandidates(doc_ids, scores, ranks, normalised)


def ranked(doc_ids: Sequence[str], scores: np.ndarray, depth: int | None = None) -> list[Hit]:
    """Hits by score descending, ties by document id (``doc_ids`` sorted), cut to ``depth``."""
    order = np.lexsort((np.arange(len(doc_ids)), -scores))
    if depth is not None:
        order = order[:depth]
    return [Hit(doc_ids[i], float(scores[i])) for i in order.tolist()]
