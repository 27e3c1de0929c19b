"""Search-QA items (gold documents of evaluation questions excluded) and their verl multi-turn rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.search_qa.rows import (
    SearchQARowError,
    build_rows,
    gold_documents,
    select_items,
    split_by_document,
    validate_rows,
)

ROOT = Path(__file__).resolve().parents[2]
PROMPT = PromptTemplate.from_mapping(
    yaml.safe_load((ROOT / "conf/base/prompts/rl_search_qa.yml").read_text("utf-8"))
)


def distilled(doc_ids):
    return pd.DataFrame(
        {
            "query_id": [f"dq-{i}" for i in range(len(doc_ids))],
            "doc_id": doc_ids,
            "query": [f"问题{i}：公司产能？" for i in range(len(doc_ids))],
            "persona": "p",
            "question_type": "factoid",
            "difficulty": "easy",
            "model": "kw",
            "prompt_hash": "h",
        }
    )


CORPUS = pd.DataFrame(
    {
        "doc_id": ["a1", "a2", "a3", "a4", "a5"],
        "title": "",
        "text": ["文档一" * 5, "文档二", "文档三" * 400, "   ", "文档五"],
    }
)
QRELS = pd.DataFrame({"query_id": ["q1", "q1", "q2"], "doc_id": ["a2", "a5", "a1"], "score": [1, 2, 0]})


def test_gold_documents_of_evaluation_questions_are_excluded_and_counted():
    gold = gold_documents(QRELS, 1)
    assert gold == {"a2", "a5"}  # a grade-0 judgement is not gold
    items, counts = select_items(distilled(["a1", "a2", "a3", "a4", "a5", "a9", "a1"]), CORPUS, gold, 100)
    assert counts == {
        "distilled_queries": 7,
        "excluded_gold_document": 2,
        "source_not_in_corpus": 1,
        "empty_source_text": 1,
        "kept": 3,
    }
    assert list(items["doc_id"]) == ["a1", "a3", "a1"] and not set(items["doc_id"]) & gold
    assert items["reference"].str.len().max() == 100  # cut to max_reference_chars
    assert gold_documents(QRELS, 2) == {"a5"}


def test_split_by_document_is_stable_and_keeps_a_document_in_one_split():
    items, _ = select_items(distilled([f"a{i % 3 + 1}" for i in range(9)]), CORPUS, set(), 100)
    first = split_by_document(items, 1, seed=3)
    assert first.groupby("doc_id")["split"].nunique().max() == 1
    assert (
        set(first["split"]) == {"train", "val"}
        and first.loc[first["split"] == "val", "doc_id"].nunique() == 1
    )
    shuffled = split_by_document(items.iloc[::-1].reset_index(drop=True), 1, seed=3)
    assert dict(zip(first["doc_id"], first["split"])) == dict(zip(shuffled["doc_id"], shuffled["split"]))


def test_rows_carry_what_verl_and_the_reward_read():
    items, _ = select_items(distilled(["a1", "a3"]), CORPUS, set(), 100)
    rows = build_rows(split_by_document(items, 0, 1), PROMPT, max_searches=4, first_index=10)
    validate_rows(rows)
    row = rows.iloc[0]
    assert row["agent_name"] == "tool_agent" and row["data_source"] == "finrag_search_qa"
    assert [m["role"] for m in row["prompt"]] == ["system", "user"] and row["prompt"][1][
        "content"
    ] == "问题0：公司产能？"
    assert "4 次" in row["prompt"][0]["content"] and "[a123]" in row["prompt"][0]["content"]
    assert row["reward_model"]["ground_truth"] == "文档一" * 5
    info = row["extra_info"]
    assert info["index"] == 10 and info["source_doc_id"] == "a1" and info["split"] == "search_qa_train"
    assert info["tools_kwargs"] == {"search": {"create_kwargs": {"source_doc_id": "a1"}}}


def test_validation_names_the_row_and_field():
    items, _ = select_items(distilled(["a1"]), CORPUS, set(), 100)
    rows = build_rows(split_by_document(items, 0, 1), PROMPT, max_searches=4)
    bad = rows.copy()
    bad.at[0, "extra_info"] = {**rows.at[0, "extra_info"], "tools_kwargs": {"search": {"create_kwargs": {}}}}
    with pytest.raises(SearchQARowError, match="row 0 extra_info.tools_kwargs.search.create_kwargs"):
        validate_rows(bad)
    with pytest.raises(SearchQARowError, match="agent_name"):
        validate_rows(rows.assign(agent_name="single_turn_agent"))
    with pytest.raises(SearchQARowError, match="lack column"):
        validate_rows(rows.drop(columns=["agent_name"]))
