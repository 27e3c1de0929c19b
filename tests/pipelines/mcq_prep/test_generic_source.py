"""mcq_prep with a generic (FinanceIQ-style) source next to a bundled one, evaluation-only."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from finrag_pipelines.pipelines.mcq_prep import nodes
from finrag_pipelines.pipelines.mcq_prep.params import DedupParams, LoadParams, SplitParams

RAW = Path(__file__).resolve().parents[3] / "data" / "01_raw" / "mcq"
COLUMNS = {
    "files": "*.csv",
    "question": "Question",
    "options": ["A", "B", "C", "D"],
    "answer": "Answer",
    "answer_format": "letters",
    "id": None,
    "explanation": None,
    "subject": None,
}


def test_a_generic_source_loads_from_conf_and_stays_in_eval(tmp_path):
    folder = tmp_path / "financeiq"
    folder.mkdir()
    lines = (
        [",Question,A,B,C,D,Answer"]
        + [
            f"{i},第{i}题：下列关于利率的说法正确的是（）。,甲{i},乙{i},丙{i},丁{i},{'ABCD'[i % 4]}"
            for i in range(40)
        ]
        + ["40,没有答案,甲,乙,丙,丁,"]
    )
    (folder / "经济师.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    load = LoadParams(
        sources=[
            {"name": "cflue", "kind": "cflue", "path": str(RAW / "cflue" / "knowledge.json")},
            {"name": "financeiq", "kind": "generic", "path": str(folder), "columns": COLUMNS},
        ]
    )
    items, rejects = nodes.load_mcq_items(load)
    unique, _ = nodes.deduplicate_mcq_items(items, DedupParams(source_order=["cflue", "financeiq"]))
    splits = nodes.split_mcq_items(
        unique,
        SplitParams(
            seed=1,
            fractions={"sft_train": 0.6, "rl_train": 0.3, "eval": 0.1},
            eval_only_sources=["financeiq"],
        ),
    )
    fiq = splits[splits["source"] == "financeiq"]
    assert len(fiq) == 40 and set(fiq["split"]) == {"eval"} and set(fiq["subject"]) == {"经济师"}
    assert set(splits.loc[splits["source"] == "cflue", "split"]) == {"sft_train", "rl_train", "eval"}
    missing = rejects[rejects["source"] == "financeiq"]
    assert missing[["file", "line", "reason"]].values.tolist() == [["经济师.csv", 42, "missing_answer"]]


def test_columns_go_with_kind_generic_only():
    with pytest.raises(ValidationError, match="a columns mapping goes with kind generic"):
        LoadParams(sources=[{"name": "x", "kind": "generic", "path": "p"}])
    with pytest.raises(ValidationError, match="a columns mapping goes with kind generic"):
        LoadParams(sources=[{"name": "x", "kind": "cflue", "path": "p", "columns": COLUMNS}])
    with pytest.raises(ValidationError, match="answer_format"):
        LoadParams(
            sources=[
                {"name": "x", "kind": "generic", "path": "p", "columns": {**COLUMNS, "answer_format": "abc"}}
            ]
        )
