"""verl SFT/RL rows: build, validate, parquet round trip as verl reads them, length policy."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from finrag_pipelines.mcq.extract import extract_answer
from finrag_pipelines.mcq.records import (
    RecordSchemaError,
    build_rl_rows,
    build_sft_rows,
    chat_lengths,
    describe_lengths,
    limit_lengths,
    validate_rl_rows,
    validate_sft_rows,
)
from finrag_pipelines.mcq.reward import compute_score

REWARD = {
    "weights": {"format": 0.2, "correctness": 1.0, "process": 0.0},
    "partial_credit": 0.0,
    "allow_fallback": False,
}


@pytest.fixture
def items():
    opts = json.dumps({"A": "货币市场", "B": "债券市场", "C": "商品市场"}, ensure_ascii=False)
    return pd.DataFrame(
        [
            {
                "item_id": "a:1",
                "source": "a",
                "subject": "s",
                "question": "金融市场包括？",
                "options": opts,
                "answer": "AB",
                "kind": "multi",
                "explanation": "商品市场不是金融市场。",
            },
            {
                "item_id": "a:2",
                "source": "a",
                "subject": "s",
                "question": "货币市场期限？",
                "options": opts,
                "answer": "A",
                "kind": "single",
                "explanation": None,
            },
        ]
    )


def test_sft_rows_and_missing_explanation_policy(items):
    rows, excluded = build_sft_rows(items, target_style="think", missing_explanation="exclude")
    assert excluded == 1 and list(rows["item_id"]) == ["a:1"]
    rows, excluded = build_sft_rows(items, target_style="plain", missing_explanation="answer_only")
    assert excluded == 0 and len(rows) == 2
    validate_sft_rows(rows)
    target = rows["messages"][1][1]["content"]
    assert target == "答案：\\boxed{A}"
    assert extract_answer(rows["messages"][0][1]["content"], "ABC").letters == "AB"


def test_parquet_round_trip_as_verl_reads_it(tmp_path, items):
    sft, _ = build_sft_rows(items, target_style="think", missing_explanation="answer_only")
    rl = build_rl_rows(items, "rl_train")
    validate_rl_rows(rl)
    sft.to_parquet(tmp_path / "sft.parquet")
    rl.to_parquet(tmp_path / "rl.parquet")
    schema = pq.read_schema(tmp_path / "rl.parquet")
    assert str(schema.field("prompt").type) == "list<element: struct<role: string, content: string>>"
    assert schema.field("reward_model").type.get_field_index("ground_truth") >= 0

    # MultiTurnSFTDataset: pd.read_parquet(dtype_backend="pyarrow"), then the messages column
    back = pd.read_parquet(tmp_path / "sft.parquet", dtype_backend="pyarrow")
    validate_sft_rows(back)
    assert [m["role"] for m in back["messages"].iloc[0]] == ["user", "assistant"]

    # RLHFDataset: datasets.load_dataset("parquet") rows; prompt is a list of dicts
    ds = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "rl.parquet"), cache_dir=str(tmp_path / "hf")
    )["train"]
    row = ds[0]
    assert isinstance(row["prompt"], list) and row["prompt"][0]["role"] == "user"
    assert row["reward_model"]["ground_truth"] == "AB" and "explanation" not in row["extra_info"]
    validate_rl_rows(pd.read_parquet(tmp_path / "rl.parquet"))
    answer = "<think>商品市场不是金融市场。</think>\n答案：\\boxed{BA}"
    got = compute_score(
        data_source=row["data_source"],
        solution_str=answer,
        ground_truth=row["reward_model"]["ground_truth"],
        extra_info=row["extra_info"],
        config=REWARD,
    )
    assert got["score"] == pytest.approx(1.0)


def test_validation_names_row_and_field(items):
    rl = build_rl_rows(items, "rl_train")
    rl.at[1, "reward_model"] = {"style": "rule", "ground_truth": "D"}
    with pytest.raises(RecordSchemaError, match="RL row 1 reward_model.ground_truth 'D'"):
        validate_rl_rows(rl)
    sft, _ = build_sft_rows(items, target_style="think", missing_explanation="answer_only")
    sft.at[0, "messages"] = [{"role": "user", "content": "x"}]
    with pytest.raises(RecordSchemaError, match="SFT row 0 messages"):
        validate_sft_rows(sft)


def test_length_policy_and_character_fallback(items):
    rows, _ = build_sft_rows(items, target_style="think", missing_explanation="answer_only")
    lengths, unit = chat_lengths(rows["messages"], None, add_generation_prompt=False)
    assert unit == "characters" and (lengths > 50).all()
    cut = int(lengths.min())
    kept, counts = limit_lengths(rows, lengths, cut, "drop")
    assert len(kept) == 1 and counts["n_dropped"] == 1
    kept, counts = limit_lengths(rows, lengths, cut, "right")
    assert len(kept) == 2 and counts["n_truncated_by_trainer"] == 1
    assert describe_lengths(np.array(lengths), unit)["n"] == 2


@pytest.mark.slow
def test_token_lengths_with_a_real_tokenizer(items, tiny_qwen3_dir):
    from finrag_pipelines.mcq.records import load_tokenizer

    rows, _ = build_sft_rows(items, target_style="think", missing_explanation="answer_only")
    tokens, unit = chat_lengths(
        rows["messages"], load_tokenizer(str(tiny_qwen3_dir)), add_generation_prompt=False
    )
    assert unit == "tokens" and (tokens > 10).all()
