"""Mining statistics (JSON-ready) and the score histogram (matplotlib), kept apart from the nodes."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from finrag_pipelines.pipelines.negative_mining.mining import STATUSES

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _quantiles(values: pd.Series) -> dict[str, float] | None:
    values = values.dropna()
    if values.empty:
        return None
    return {f"q{int(q * 100):02d}": round(float(values.quantile(q)), 4) for q in _QUANTILES}


def mining_stats(
    candidates: pd.DataFrame, selection: pd.DataFrame, split: pd.DataFrame, num_negatives: int
) -> dict[str, Any]:
    """Queries, candidates per source, drops per rule and source, short queries, splits, score quantiles."""
    queries = split["query_id"].nunique()
    by_status = {
        str(source): {s: int((group["status"] == s).sum()) for s in STATUSES}
        for source, group in selection.groupby("source")
    }
    kept = selection[selection["status"] == "kept"]
    hard = (
        kept[kept["source"] != "random"]
        .groupby("query_id")
        .size()
        .reindex(split["query_id"].unique(), fill_value=0)
    )
    positives = candidates.drop_duplicates(["query_id", "source"])
    return {
        "queries": int(queries),
        "candidates_seen": {
            str(k): int(v) for k, v in candidates["source"].value_counts().sort_index().items()
        },
        "status_by_source": by_status,
        "kept": {str(k): int(v) for k, v in kept["source"].value_counts().sort_index().items()},
        "kept_total": len(kept),
        "hard_negatives_per_query": {
            "mean": round(float(hard.mean()), 3) if len(hard) else 0.0,
            "min": int(hard.min()) if len(hard) else 0,
        },
        "queries_short": int((hard < num_negatives).sum()),
        "queries_without_hard_negative": int((hard == 0).sum()),
        "split": {
            s: {
                "queries": int((split["split"] == s).sum()),
                "documents": int(split.loc[split["split"] == s, "doc_id"].nunique()),
            }
            for s in ("train", "dev")
        },
        "positive_score_quantiles": {
            str(src): _quantiles(g["positive_score"]) for src, g in positives.groupby("source")
        },
        "kept_negative_score_quantiles": {
            str(src): _quantiles(g["score"]) for src, g in kept[kept["source"] != "random"].groupby("source")
        },
        "false_negative_score_quantiles": {
            str(src): _quantiles(g["score"])
            for src, g in selection[selection["status"] == "false_negative"].groupby("source")
        },
    }


def hard_negative_yield(selection: pd.DataFrame, split: pd.DataFrame) -> tuple[int, int, dict[str, int]]:
    """``(queries with a hard negative, queries, why the others have none)`` for the stage's floor.

    The reasons are the statuses of the dense/BM25 candidates of the queries left without a hard negative
    (``no_candidates`` for a query that got none at all).
    """
    queries = pd.Index(split["query_id"].unique())
    hard = selection[selection["source"] != "random"]
    with_hard = set(hard.loc[hard["status"] == "kept", "query_id"])
    without = [q for q in queries if q not in with_hard]
    rows = hard[hard["query_id"].isin(without) & (hard["status"] != "positive")]
    reasons = {str(k): int(v) for k, v in rows["status"].value_counts().items()}
    no_candidates = len(set(without) - set(rows["query_id"]))
    if no_candidates:
        reasons["no_candidates"] = no_candidates
    return len(queries) - len(without), len(queries), reasons


def score_histogram(selection: pd.DataFrame, source: str = "dense") -> Figure:
    """Overlaid histograms of one source's positive, kept-negative and false-negative scores."""
    rows = selection[selection["source"] == source]
    series = {
        "positive": rows.drop_duplicates("query_id")["positive_score"],
        "kept negative": rows.loc[rows["status"] == "kept", "score"],
        "dropped false negative": rows.loc[rows["status"] == "false_negative", "score"],
    }
    fig, ax = plt.subplots(figsize=(7, 4))
    values = [v.dropna().to_numpy() for v in series.values()]
    joined = np.concatenate(values) if any(len(v) for v in values) else np.zeros(1)
    bins = np.linspace(float(joined.min()), float(joined.max()) + 1e-6, 40)
    for (label, _), data in zip(series.items(), values, strict=True):
        if len(data):
            ax.hist(data, bins=bins, alpha=0.5, density=True, label=f"{label} (n={len(data)})")
    ax.set_xlabel(f"{source} score (inner product)")
    ax.set_ylabel("density (each series normalised)")
    ax.set_title("negative_mining: positive vs negative scores")
    ax.legend()
    fig.tight_layout()
    return fig
