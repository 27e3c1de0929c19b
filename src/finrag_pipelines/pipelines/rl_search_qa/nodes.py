"""rl_search_qa nodes: the search-QA training items and the report of what was left out."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from finrag_pipelines.pipelines.rl_search_qa.params import SelectParams
from finrag_pipelines.search_qa.rows import ITEM_COLUMNS, gold_documents, select_items, split_by_document

logger = logging.getLogger(__name__)


def select_search_qa_items(
    distilled_queries: pd.DataFrame, corpus: pd.DataFrame, eval_qrels: pd.DataFrame, params: SelectParams
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Distilled queries whose source document is no evaluation question's gold document, with the source text
    and a train/val split by document; the report counts every query left out, by reason.

    Raises:
        ValueError: When no item is left (the report names the counts).
    """
    gold = gold_documents(eval_qrels, params.min_relevance)
    items, counts = select_items(distilled_queries, corpus, gold, params.max_reference_chars)
    items = split_by_document(items, params.val_size, params.seed)[list(ITEM_COLUMNS)]
    report = {
        **counts,
        "gold_documents": len(gold),
        "evaluation_questions": int(
            eval_qrels.loc[eval_qrels["score"] >= params.min_relevance, "query_id"].nunique()
        ),
        "min_relevance": params.min_relevance,
        "splits": items["split"].value_counts().sort_index().to_dict(),
        "by_question_type": items["question_type"].value_counts().sort_index().to_dict(),
        "distilled_by": sorted(set(items["model"])),
        "max_reference_chars": params.max_reference_chars,
    }
    logger.info(
        "rl_search_qa: %d of %d distilled queries kept; %d excluded (source is a gold document of an "
        "evaluation question), %d source not in corpus, %d empty source; splits %s",
        counts["kept"],
        counts["distilled_queries"],
        counts["excluded_gold_document"],
        counts["source_not_in_corpus"],
        counts["empty_source_text"],
        report["splits"],
    )
    if items.empty:
        raise ValueError(
            f"rl_search_qa: no search-QA item left ({counts}); check distilled_queries and eval_qrels"
        )
    return items, report
