"""Dedup precedence and the seeded, disjoint, stable split."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from finrag_pipelines.mcq.split import (
    SPLITS,
    assign_split,
    deduplicate,
    holdout_slice,
    item_key,
    normalise_text,
    split_items,
)

FRACTIONS = {"sft_train": 0.6, "rl_train": 0.3, "eval": 0.1}


def item(item_id, source, question, options=("甲", "乙"), answer="A", explanation=None):
    opts = json.dumps(dict(zip("ABCD", options)), ensure_ascii=False)
    return {
        "item_id": item_id,
        "source": source,
        "subject": "",
        "question": question,
        "options": opts,
        "answer": answer,
        "kind": "single",
        "explanation": explanation,
    }


def test_normalisation_ignores_width_space_and_punctuation():
    assert normalise_text("A股， 涨了！") == normalise_text("Ａ股,涨了") == "a股涨了"
    assert item_key("下列说法正确的是____。", '{"A": "甲"}') == item_key(
        "下列说法正确的是（ ）", '{"A": "甲 "}'
    )
    assert item_key("题", '{"A": "甲", "B": "乙"}') != item_key("题", '{"A": "甲", "B": "丙"}')


def test_dedup_precedence_explanation_then_source_order_then_position():
    items = pd.DataFrame(
        [
            item("ant:1", "ant", "题目一"),
            item("cflue:1", "cflue", "题目一。"),
            item("sufe:1", "sufe", "题目 一", explanation="解析"),
            item("ant:2", "ant", "题目二"),
            item("cflue:2", "cflue", "题目二", answer="B"),
            item("ant:3", "ant", "题目二", options=("甲", "丙")),  # other options: not a duplicate
        ]
    )
    kept, dropped = deduplicate(items, ["cflue", "sufe", "ant"])
    assert list(kept["item_id"]) == ["sufe:1", "cflue:2", "ant:3"]  # original order kept
    report = dropped.set_index("item_id")
    assert (
        report.loc["ant:1", "kept_item_id"] == "sufe:1" and report.loc["cflue:1", "kept_item_id"] == "sufe:1"
    )
    assert report.loc["ant:2", "kept_item_id"] == "cflue:2" and not report.loc["ant:2", "same_answer"]
    with pytest.raises(ValueError, match="source_order"):
        deduplicate(items, ["cflue"])


def test_split_is_disjoint_covering_and_stable_under_additions_and_reordering():
    items = pd.DataFrame([item(f"s:{i}", "s", f"第{i}题：利率与债券价格的关系") for i in range(2000)])
    first = split_items(items, FRACTIONS, seed=3)
    assert set(first["split"]) == set(SPLITS)
    shares = first["split"].value_counts(normalize=True)
    assert abs(shares["sft_train"] - 0.6) < 0.05 and abs(shares["eval"] - 0.1) < 0.03
    more = pd.concat([items, pd.DataFrame([item(f"n:{i}", "n", f"新题{i}") for i in range(300)])])
    again = split_items(more.sample(frac=1.0, random_state=1), FRACTIONS, seed=3)
    assert again.set_index("item_id").loc[first["item_id"], "split"].tolist() == first["split"].tolist()
    other_seed = split_items(items, FRACTIONS, seed=4)
    assert (other_seed["split"] != first["split"]).any()


def test_same_question_with_other_options_lands_in_the_same_split():
    q = "下列属于货币政策工具的是"
    assert len({assign_split(q + p, FRACTIONS, 1) for p in ("", "（）", "____。")}) == 1


def test_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        assign_split("x", {"sft_train": 0.6, "rl_train": 0.3, "eval": 0.2}, 1)
    with pytest.raises(ValueError):
        assign_split("x", {"train": 1.0}, 1)


def test_holdout_slice_is_stable():
    keys = [f"k{i}" for i in range(100)]
    chosen = {k for k, h in zip(keys, holdout_slice(keys, 10, 5)) if h}
    assert len(chosen) == 10
    shuffled = keys[::-1]
    assert {k for k, h in zip(shuffled, holdout_slice(shuffled, 10, 5)) if h} == chosen
    assert sum(holdout_slice(keys, 500, 5)) == 100
