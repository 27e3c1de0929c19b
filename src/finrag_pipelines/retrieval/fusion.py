"""Rank fusion as small pure functions over runs (one ranked hit list per query)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from finrag_pipelines.retrieval.types import Hit, Run


def _check_aligned(runs: Sequence[Run]) -> int:
    if not runs:
        raise ValueError("fusion needs at least one run")
    sizes = {len(run) for run in runs}
    if len(sizes) != 1:
        raise ValueError(
            f"runs cover different numbers of queries: {sorted(sizes)}; fuse runs of the same queries"
        )
    return sizes.pop()


def rrf(
    runs: Sequence[Run], k: int = 60, weights: Sequence[float] | None = None, depth: int | None = None
) -> Run:
    """Reciprocal rank fusion: ``score(d) = Σ_i w_i / (k + rank_i(d))`` with ranks starting at 1.

    Args:
        runs: runs over the same queries, in the same order.
        k: the RRF constant (60 in Cormack et al.).
        weights: per-run weights (default 1 each).
        depth: how many fused hits to keep per query (default: all in the union).
    """
    n_queries = _check_aligned(runs)
    weights = [1.0] * len(runs) if weights is None else list(weights)
    if len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights for {len(runs)} runs")
    fused: Run = []
    for q in range(n_queries):
        scores: dict[str, float] = {}
        for run, weight in zip(runs, weights):
            for rank, hit in enumerate(run[q], start=1):
                scores[hit.doc_id] = scores.get(hit.doc_id, 0.0) + weight / (k + rank)
        fused.append(_ranked(scores, depth))
    return fused


def normalise(hits: Sequence[Hit], method: str = "minmax") -> dict[str, float]:
    """Normalise one hit list's scores: ``minmax`` to [0, 1] or ``zscore``;
    a constant list maps to 1 (minmax)."""
    if not hits:
        return {}
    scores = np.array([hit.score for hit in hits], dtype=np.float64)
    if method == "minmax":
        lo, hi = scores.min(), scores.max()
        scaled = np.ones_like(scores) if hi == lo else (scores - lo) / (hi - lo)
    elif method == "zscore":
        std = scores.std()
        scaled = np.zeros_like(scores) if std == 0 else (scores - scores.mean()) / std
    else:
        raise ValueError(f"unknown normalisation {method!r}; use 'minmax' or 'zscore'")
    return {hit.doc_id: float(s) for hit, s in zip(hits, scaled)}


def weighted_sum(
    runs: Sequence[Run], weights: Sequence[float], method: str = "minmax", depth: int | None = None
) -> Run:
    """Convex combination of per-query normalised scores over the union of the runs' hits.

    A document missing from one run's list gets that run's lowest normalised score (0 for min-max),
    since it scored at most as high as the list's last hit.
    """
    n_queries = _check_aligned(runs)
    if len(weights) != len(runs):
        raise ValueError(f"{len(weights)} weights for {len(runs)} runs")
    fused: Run = []
    for q in range(n_queries):
        normed = [normalise(run[q], method) for run in runs]
        floors = [min(n.values()) if n else 0.0 for n in normed]
        union = {doc for n in normed for doc in n}
        scores = {
            doc: sum(w * n.get(doc, floor) for w, n, floor in zip(weights, normed, floors)) for doc in union
        }
        fused.append(_ranked(scores, depth))
    return fused


def _ranked(scores: dict[str, float], depth: int | None) -> list[Hit]:
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    if depth is not None:
        ordered = ordered[:depth]
    return [Hit(doc_id, score) for doc_id, score in ordered]
