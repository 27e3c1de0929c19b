"""Runs as tables: ``query_id, rank, doc_id, score`` rows, and back."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from finrag_pipelines.retrieval.types import Hit, Run

RUN_COLUMNS = ["query_id", "rank", "doc_id", "score"]


def run_to_frame(query_ids: Sequence[str], run: Run) -> pd.DataFrame:
    """Flatten a run (ranks start at 1); a query with no hits simply has no rows."""
    if len(query_ids) != len(run):
        raise ValueError(f"run has {len(run)} result lists for {len(query_ids)} queries")
    rows = [
        (qid, rank, hit.doc_id, float(hit.score))
        for qid, hits in zip(query_ids, run)
        for rank, hit in enumerate(hits, start=1)
    ]
    return pd.DataFrame(rows, columns=RUN_COLUMNS).astype({"query_id": str, "doc_id": str})


def frame_to_run(frame: pd.DataFrame, query_ids: Sequence[str]) -> Run:
    """Rebuild a run in the order of ``query_ids`` (queries absent from the frame get no hits)."""
    missing = set(RUN_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"run table lacks columns {sorted(missing)}")
    grouped = {
        qid: [Hit(d, float(s)) for d, s in zip(g["doc_id"], g["score"])]
        for qid, g in frame.sort_values(["query_id", "rank"]).groupby("query_id", sort=False)
    }
    return [grouped.get(qid, []) for qid in query_ids]


UNAVAILABLE_ATTR = "unavailable"


def unavailable_frame(reason: str) -> pd.DataFrame:
    """An empty run table that says why the retriever did not run (kept in the parquet file's metadata).

    Scoring skips it and the report names the reason; it is never scored as a run that found nothing.
    """
    frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(RUN_COLUMNS, (str, "int64", str, float))})
    frame.attrs[UNAVAILABLE_ATTR] = reason
    return frame


def unavailable_reason(frame: pd.DataFrame) -> str | None:
    """The reason recorded by :func:`unavailable_frame`, or ``None`` for a real run."""
    reason = frame.attrs.get(UNAVAILABLE_ATTR)
    return str(reason) if reason else None
