"""Retrieval metrics with multi-relevant (graded) qrels, and paired bootstrap intervals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def metric_names(ks: Sequence[int], cutoff: int) -> list[str]:
    """Names of the metrics :func:`query_metrics` returns, in report order."""
    return [f"top{k}" for k in ks] + [f"mrr@{cutoff}", f"recall@{cutoff}", f"ndcg@{cutoff}"]


def query_metrics(
    ranked: Sequence[str], relevance: Mapping[str, int], ks: Sequence[int] = (1, 3, 5, 10), cutoff: int = 10
) -> dict[str, float]:
    """Metrics of one ranked list of doc ids against graded judgements (grade > 0 is relevant).

    * ``top{k}``: 1 if any relevant document is within the first k;
    * ``mrr@c``: reciprocal rank of the first relevant document within the first c, else 0;
    * ``recall@c``: share of the relevant documents within the first c;
    * ``ndcg@c``: DCG with gain ``2^grade - 1`` and ``log2(rank + 1)`` discount, over the ideal DCG.

    Raises:
        ValueError: when the query has no relevant document (it cannot be evaluated).
    """
    relevant = {doc: grade for doc, grade in relevance.items() if grade > 0}
    if not relevant:
        raise ValueError("a query without relevant documents cannot be scored; filter it out first")
    first = next((rank for rank, doc in enumerate(ranked, start=1) if doc in relevant), None)
    out = {f"top{k}": float(first is not None and first <= k) for k in ks}
    out[f"mrr@{cutoff}"] = 1.0 / first if first is not None and first <= cutoff else 0.0
    top = ranked[:cutoff]
    out[f"recall@{cutoff}"] = sum(1 for doc in set(top) if doc in relevant) / len(relevant)
    dcg = sum(
        (2 ** relevant[doc] - 1) / math.log2(rank + 1)
        for rank, doc in enumerate(top, start=1)
        if doc in relevant
    )
    ideal = sorted(relevant.values(), reverse=True)[:cutoff]
    idcg = sum((2**grade - 1) / math.log2(rank + 1) for rank, grade in enumerate(ideal, start=1))
    out[f"ndcg@{cutoff}"] = dcg / idcg
    return out


@dataclass(frozen=True)
class BootstrapInterval:
    """Mean paired difference ``a - b`` with a percentile bootstrap interval."""

    mean_diff: float
    low: float
    high: float
    n_queries: int
    p_value: float  # two-sided share of resamples on the other side of 0 (x2, capped at 1)


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> BootstrapInterval:
    """Paired bootstrap over queries of the mean of ``a - b`` (per-query scores of two retrievers)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"paired bootstrap needs two equal-length non-empty vectors, got {a.shape} and {b.shape}"
        )
    diff = a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(n_resamples, diff.size))
    means = diff[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    observed = float(diff.mean())
    if observed >= 0:
        p = 2.0 * float((means <= 0).mean())
    else:
        p = 2.0 * float((means >= 0).mean())
    return BootstrapInterval(observed, float(low), float(high), int(diff.size), min(1.0, p))
