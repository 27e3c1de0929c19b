"""The SFT mix: rendering of sft_distill rows, dedup against rl_train/eval and across sources, caps."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from finrag_pipelines.mcq.extract import extract_answer
from finrag_pipelines.mcq.sft_mix import DISTILL_COLUMNS, distill_chats, mix_chats
from finrag_pipelines.mcq.split import item_key, question_key

OPTS = json.dumps({"A": "上升", "B": "下降", "C": "不变", "D": "不确定"}, ensure_ascii=False)
OTHER = json.dumps({"A": "甲", "B": "乙", "C": "丙", "D": "丁"}, ensure_ascii=False)


def row(
    item_id,
    mix_source,
    question,
    kind="single",
    options=OPTS,
    answer="B",
    explanation="推理过程。",
    context=None,
):
    values = {
        "item_id": item_id,
        "mix_source": mix_source,
        "source": "s",
        "subject": "x",
        "kind": kind,
        "question": question,
        "options": options,
        "answer": answer,
        "explanation": explanation,
        "context": context,
        "model": "m",
        "prompt_hash": "h",
    }
    return [values[c] for c in DISTILL_COLUMNS]


def original(item_id, question, options=OPTS):
    return {
        "item_id": item_id,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "a"}],
        "question_key": question_key(question),
        "repeat_key": item_key(question, options),
        "has_explanation": True,
        "mix_source": "original",
    }


def test_rendering_of_mcq_and_grounded_rows():
    items = pd.DataFrame(
        [
            row("c1", "calc", "利率上升时债券价格如何变化？"),
            row(
                "g1",
                "grounded_qa",
                "公司的产能是多少？",
                kind="qa",
                options=None,
                answer="20万台/年",
                explanation=None,
                context="新工厂的设计产能为20万台/年。",
            ),
        ],
        columns=list(DISTILL_COLUMNS),
    )
    chats = distill_chats(items, "think")
    mcq, qa = chats["messages"].iloc[0], chats["messages"].iloc[1]
    got = extract_answer(mcq[1]["content"], "ABCD")
    assert got.format_ok and got.letters == "B" and got.reasoning == "推理过程。"
    assert "A. 上升" in mcq[0]["content"]
    assert "【资料】\n新工厂的设计产能为20万台/年。" in qa[0]["content"] and qa[0]["content"].endswith(
        "公司的产能是多少？"
    )
    assert qa[1]["content"] == "<think>\n\n</think>\n\n20万台/年"
    assert distill_chats(items, "plain")["messages"].iloc[1][1]["content"] == "20万台/年"


def test_mix_drops_rl_and_eval_questions_and_repeats_and_caps():
    distill = pd.DataFrame(
        [
            row("distill:o1", "distilled_reasoning", "第1题"),  # the same item as original o1: a repeat
            row("distill:o2", "distilled_reasoning", "第2题"),
            row("c1", "calc", "评测集里的题"),  # its question is in eval
            row("c2", "calc", "第1题", options=OTHER),  # same stem, other options: another item
            *[row(f"c{i}", "calc", f"计算题{i}") for i in range(3, 13)],
        ],
        columns=list(DISTILL_COLUMNS),
    )
    chats = pd.concat(
        [pd.DataFrame([original("o1", "第1题")]), distill_chats(distill, "think")], ignore_index=True
    )
    order = [("original", None), ("distilled_reasoning", None), ("calc", 5), ("grounded_qa", None)]
    mixed, counts = mix_chats(
        chats, order, {question_key("评测集里的题。")}, seed=1
    )  # punctuation is normalised away
    assert counts["original"] == {"available": 1, "in_rl_or_eval": 0, "repeated": 0, "capped": 0, "kept": 1}
    assert counts["distilled_reasoning"] == {
        "available": 2,
        "in_rl_or_eval": 0,
        "repeated": 1,
        "capped": 0,
        "kept": 1,
    }
    assert counts["calc"] == {"available": 12, "in_rl_or_eval": 1, "repeated": 0, "capped": 6, "kept": 5}
    assert counts["grounded_qa"]["available"] == 0
    assert "c1" not in set(mixed["item_id"]) and "distill:o1" not in set(mixed["item_id"])
    assert mixed["item_id"].is_unique and len(mixed) == 7
    again, _ = mix_chats(chats, order, {question_key("评测集里的题")}, seed=1)
    pd.testing.assert_frame_equal(mixed, again)  # the cap's sample is seeded


def test_sources_not_listed_are_left_out():
    chats = distill_chats(pd.DataFrame([row("c1", "calc", "计算题")], columns=list(DISTILL_COLUMNS)), "plain")
    mixed, counts = mix_chats(chats, [("original", None)], set(), seed=0)
    assert mixed.empty and counts == {
        "original": {"available": 0, "in_rl_or_eval": 0, "repeated": 0, "capped": 0, "kept": 0}
    }


def test_unknown_render_style_is_refused():
    with pytest.raises(ValueError, match="think' or 'plain"):
        distill_chats(
            pd.DataFrame(
                [row("g", "grounded_qa", "问", kind="qa", options=None, answer="答", context="资料")],
                columns=list(DISTILL_COLUMNS),
            ),
            "fancy",
        )
