"""evaluation's rerank stage: ``<retriever>_rerank`` runs and what the report says about the rerankers.

A reranker that is not configured, or whose model folder does not exist yet (no fine-tuned reranker), makes
its runs *not evaluated* with the reason — never a score.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from finrag_pipelines.pipelines.evaluation.params import RerankParams
from finrag_pipelines.rerank.factory import LazyReranker
from finrag_pipelines.rerank.interfaces import Reranker, rerank_run
from finrag_pipelines.retrieval.runs import frame_to_run, run_to_frame, unavailable_frame, unavailable_reason
from finrag_pipelines.retrieval.types import Unavailable
from finrag_pipelines.text.corpus import indexable

logger = logging.getLogger(__name__)

RERANKABLE = ("bm25", "hybrid_weighted")
"""First-stage runs the rerank stage offers (``evaluation.rerank.retrievers`` picks among them). Add a
retriever here to offer it: the pipeline then gives it ``<name>_rerank`` and ``<name>_rerank_finetuned``."""


def rerank_first_stage(
    first_stage_run: pd.DataFrame,
    reranker: Reranker | Unavailable,
    corpus: pd.DataFrame,
    eval_queries: pd.DataFrame,
    rerank: RerankParams,
    *,
    first_stage: str,
) -> pd.DataFrame:
    """Rerank the top ``rerank.top_n`` hits of one first-stage run over the indexed texts (title + body).

    Args:
        first_stage: The name of the first-stage retriever (bound per node).
    """
    if first_stage not in rerank.retrievers:
        return unavailable_frame(f"{first_stage} is not listed in evaluation.rerank.retrievers")
    reason = unavailable_reason(first_stage_run) or (
        reranker.reason if isinstance(reranker, Unavailable) else None
    )
    if reason:
        logger.warning("evaluation: %s reranking not evaluated: %s", first_stage, reason)
        return unavailable_frame(reason)
    ids, texts, _ = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    qids = list(eval_queries["query_id"])
    run = frame_to_run(first_stage_run, qids)
    reranked = rerank_run(
        reranker,
        list(eval_queries["text"]),
        run,
        dict(zip(ids, texts)),
        rerank.top_n,
        chunk_pairs=rerank.chunk_pairs,
    )
    return run_to_frame(qids, reranked)


def node_for(first_stage: str) -> Callable[..., pd.DataFrame]:
    """:func:`rerank_first_stage` bound to one first-stage retriever, as a plain typed function (Kedro reads
    its annotations to validate ``params:evaluation.rerank``)."""

    def rerank_node(
        first_stage_run: pd.DataFrame,
        reranker: Reranker | Unavailable,
        corpus: pd.DataFrame,
        eval_queries: pd.DataFrame,
        rerank: RerankParams,
    ) -> pd.DataFrame:
        return rerank_first_stage(
            first_stage_run, reranker, corpus, eval_queries, rerank, first_stage=first_stage
        )

    rerank_node.__name__ = rerank_node.__qualname__ = f"rerank_{first_stage}"
    rerank_node.__doc__ = f"Rerank the ``{first_stage}`` run (see rerank_first_stage)."
    return rerank_node


def _about(reranker: Reranker | Unavailable) -> dict[str, Any]:
    if isinstance(reranker, Unavailable):
        return {"status": "unavailable", "reason": reranker.reason}
    config = reranker.config if isinstance(reranker, LazyReranker) else reranker.describe()
    keys = ("kind", "model_path", "instruction", "max_length", "dtype")
    return {"status": "configured", **{k: config.get(k) for k in keys if config.get(k) is not None}}


def describe_rerank(
    reranker: Reranker | Unavailable, reranker_finetuned: Reranker | Unavailable, rerank: RerankParams
) -> dict[str, Any]:
    """The settings the report names: each reranker (or why it is unavailable), the reranked runs, top N.

    Raises:
        ValueError: If ``evaluation.rerank.retrievers`` names a run the pipeline does not offer for reranking.
    """
    unknown = sorted(set(rerank.retrievers) - set(RERANKABLE))
    if unknown:
        raise ValueError(
            f"evaluation.rerank.retrievers names {unknown}, which the rerank stage does not offer; choose "
            f"among {list(RERANKABLE)} (or add it to RERANKABLE in pipelines/evaluation/rerank.py)."
        )
    return {
        "retrievers": list(rerank.retrievers),
        "top_n": rerank.top_n,
        "rerankers": {"rerank": _about(reranker), "rerank_finetuned": _about(reranker_finetuned)},
    }
