"""Search-QA training items and their verl multi-turn rows.

Items come from the distilled training queries: each query was written from one corpus document (its
*source*), so the source's text is the reference answer and finding it is the retrieval goal. No item may
rest on a document that answers an evaluation question (a gold document in the retrieval set's qrels):
training the answer model to find and quote those documents would leak the evaluation.

A verl row (``RLHFDataset`` + the ``tool_agent`` loop of verl 0.9)::

    {"data_source": "finrag_search_qa", "agent_name": "tool_agent",
     "prompt": [{"role": "system", ...}, {"role": "user", "content": <question>}],
     "ability": "finance_search_qa",
     "reward_model": {"style": "rule", "ground_truth": <source document text>},
     "extra_info": {"index", "query_id", "source_doc_id", "question", "split", "question_type", "difficulty",
                    "prompt_hash", "need_tools_kwargs": True,
                    "tools_kwargs": {"search": {"create_kwargs": {"source_doc_id": <id>}}}}}

verl's dataset lifts ``extra_info.tools_kwargs`` into the loop, which calls the ``search`` tool's
``create(create_kwargs=tools_kwargs["search"]["create_kwargs"])`` for every call.

Kedro-free library module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.mcq.split import holdout_slice
from finrag_pipelines.search_qa.reward import DATA_SOURCE
from finrag_pipelines.search_qa.trajectory import SEARCH_TOOL

ABILITY = "finance_search_qa"
AGENT_NAME = "tool_agent"
ITEM_COLUMNS: tuple[str, ...] = (
    "query_id",
    "doc_id",
    "question",
    "reference",
    "question_type",
    "difficulty",
    "split",
    "model",
    "prompt_hash",
)
ROW_COLUMNS: tuple[str, ...] = (
    "data_source",
    "agent_name",
    "prompt",
    "ability",
    "reward_model",
    "extra_info",
)
EXTRA_INFO_KEYS: tuple[str, ...] = (
    "index",
    "query_id",
    "source_doc_id",
    "question",
    "split",
    "question_type",
    "difficulty",
    "prompt_hash",
    "need_tools_kwargs",
    "tools_kwargs",
)
SPLITS: tuple[str, ...] = ("train", "val")


class SearchQARowError(ValueError):
    """A search-QA item or row does not have the expected shape; the message names the row and field."""


def gold_documents(qrels: pd.DataFrame, min_relevance: int) -> set[str]:
    """Documents judged relevant (grade >= ``min_relevance``) to any evaluation question."""
    return set(qrels.loc[qrels["score"] >= min_relevance, "doc_id"].astype(str))


def select_items(
    distilled_queries: pd.DataFrame, corpus: pd.DataFrame, gold: set[str], max_reference_chars: int
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The usable training queries with their source text; every other query counted by reason.

    Reasons, in order: ``excluded_gold_document`` (the source answers an evaluation question),
    ``source_not_in_corpus`` (the corpus changed since distillation), ``empty_source_text``.

    Returns:
        ``(items, counts)``: items hold :data:`ITEM_COLUMNS` but ``split`` (the reference cut to
        ``max_reference_chars``); counts ``{"distilled_queries", <reason>: n, ..., "kept"}``.
    """
    queries = distilled_queries.assign(doc_id=distilled_queries["doc_id"].astype(str))
    text_of = dict(zip(corpus["doc_id"].astype(str), corpus["text"].astype(str)))
    reason = pd.Series("", index=queries.index, dtype=object)
    reason[queries["doc_id"].isin(gold)] = "excluded_gold_document"
    missing = ~queries["doc_id"].isin(set(text_of))
    reason[(reason == "") & missing] = "source_not_in_corpus"
    reference = queries["doc_id"].map(text_of).fillna("").str.strip().str.slice(0, max_reference_chars)
    reason[(reason == "") & (reference == "")] = "empty_source_text"
    kept = queries[reason == ""]
    counts = {"distilled_queries": len(queries)}
    counts.update(
        {
            name: int((reason == name).sum())
            for name in ("excluded_gold_document", "source_not_in_corpus", "empty_source_text")
        }
    )
    counts["kept"] = len(kept)
    items = pd.DataFrame(
        {
            "query_id": kept["query_id"].astype(str),
            "doc_id": kept["doc_id"],
            "question": kept["query"].astype(str),
            "reference": reference[reason == ""],
            "question_type": kept["question_type"].astype(str),
            "difficulty": kept["difficulty"].astype(str),
            "model": kept["model"].astype(str),
            "prompt_hash": kept["prompt_hash"].astype(str),
        }
    )
    return items.reset_index(drop=True), counts


def split_by_document(items: pd.DataFrame, val_size: int, seed: int) -> pd.DataFrame:
    """``items`` with ``split``: the ``val_size`` source documents with the smallest seeded hash are ``val``
    (all their queries), the rest ``train``; stable when rows are added or reordered."""
    docs = sorted(set(items["doc_id"]))
    held = {doc for doc, out in zip(docs, holdout_slice(docs, val_size, seed)) if out}
    return items.assign(split=np.where(items["doc_id"].isin(held), "val", "train"))


def build_rows(
    items: pd.DataFrame, prompt: PromptTemplate, max_searches: int, first_index: int = 0
) -> pd.DataFrame:
    """verl multi-turn rows (:data:`ROW_COLUMNS`) for items (:data:`ITEM_COLUMNS`).

    The prompt's slots are ``question`` and ``max_searches``; ``extra_info.prompt_hash`` stamps the prompt.
    """
    rows = []
    for offset, item in enumerate(items.itertuples(index=False)):
        doc_id = str(item.doc_id)
        rows.append(
            {
                "data_source": DATA_SOURCE,
                "agent_name": AGENT_NAME,
                "prompt": prompt.render(question=item.question, max_searches=max_searches),
                "ability": ABILITY,
                "reward_model": {"style": "rule", "ground_truth": item.reference},
                "extra_info": {
                    "index": first_index + offset,
                    "query_id": item.query_id,
                    "source_doc_id": doc_id,
                    "question": item.question,
                    "split": f"search_qa_{item.split}",
                    "question_type": item.question_type,
                    "difficulty": item.difficulty,
                    "prompt_hash": prompt.sha256[:16],
                    "need_tools_kwargs": True,
                    "tools_kwargs": {SEARCH_TOOL: {"create_kwargs": {"source_doc_id": doc_id}}},
                },
            }
        )
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS))


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def validate_rows(rows: pd.DataFrame) -> None:
    """Check search-QA rows against what verl's dataset, its tool loop and the reward read (also after a
    parquet round trip, where lists come back as arrays and structs gain the other task's keys as ``None``).

    Raises:
        SearchQARowError: Naming the first bad row and field.
    """
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise SearchQARowError(f"search-QA rows lack column(s) {missing}; columns are {list(rows.columns)}")
    for i, row in enumerate(rows.itertuples(index=False)):
        where = f"search-QA row {i}"
        if row.data_source != DATA_SOURCE or row.agent_name != AGENT_NAME:
            raise SearchQARowError(
                f"{where}: expected data_source {DATA_SOURCE!r} and agent_name {AGENT_NAME!r}, "
                f"got {row.data_source!r} / {row.agent_name!r}"
            )
        prompt = _plain(row.prompt)
        if (
            not isinstance(prompt, list)
            or not prompt
            or any(not isinstance(m, Mapping) for m in prompt)
            or prompt[-1].get("role") != "user"
            or not str(prompt[-1].get("content") or "").strip()
        ):
            raise SearchQARowError(
                f"{where} prompt: expected chat messages ending with a non-empty user turn, "
                f"got {prompt!r:.120}"
            )
        rm = row.reward_model
        if (
            not isinstance(rm, Mapping)
            or rm.get("style") != "rule"
            or not str(rm.get("ground_truth") or "").strip()
        ):
            raise SearchQARowError(
                f"{where} reward_model: expected {{'style': 'rule', 'ground_truth': <source text>}}, "
                f"got {rm!r:.120}"
            )
        info = row.extra_info
        if not isinstance(info, Mapping) or any(info.get(k) is None for k in EXTRA_INFO_KEYS):
            raise SearchQARowError(
                f"{where} extra_info: expected keys {list(EXTRA_INFO_KEYS)}, got {info!r:.200}"
            )
        create = (info["tools_kwargs"].get(SEARCH_TOOL) or {}).get("create_kwargs") or {}
        if create.get("source_doc_id") != info["source_doc_id"]:
            raise SearchQARowError(
                f"{where} extra_info.tools_kwargs.{SEARCH_TOOL}.create_kwargs.source_doc_id must equal "
                f"extra_info.source_doc_id ({info['source_doc_id']!r}), got {create!r:.120}"
            )
