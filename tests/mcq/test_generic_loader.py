"""The generic MCQ loader on FinanceIQ-, C-Eval-style files built here (CSV, JSONL, parquet)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from finrag_pipelines.mcq.generic_loader import read_generic
from finrag_pipelines.mcq.loaders import ITEM_COLUMNS, McqLoadError, SourceSpec, load_source
from finrag_pipelines.mcq.split import split_items

FINANCEIQ_COLUMNS = {
    "files": "*.csv",
    "question": "Question",
    "options": ["A", "B", "C", "D"],
    "answer": "Answer",
    "answer_format": "letters",
    "id": None,
    "explanation": None,
    "subject": None,
}


def write_financeiq(folder):
    """Two exams in FinanceIQ's layout: an unnamed index column, Question, A-D, Answer."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "注册会计师（CPA）.csv").write_text(
        ",Question,A,B,C,D,Answer\n"
        "0,下列各项中，属于企业流动资产的是（）。,固定资产,存货,无形资产,长期股权投资,B\n"
        '1,"关于债券价格，下列说法正确的是（）。\n（多选）",利率上升价格下降,利率上升价格上升,久期越长越敏感,与利率无关,AC\n'
        "2,没有答案的题,甲,乙,丙,丁,\n"
        "3,答案不在选项中的题,甲,乙,丙,丁,E\n",
        encoding="utf-8",
    )
    (folder / "银行从业资格.csv").write_text(
        ",Question,A,B,C,D,Answer\n"
        "0,商业银行的核心资本不包括（）。,实收资本,资本公积,次级债务,未分配利润,C\n"
        "1,只有一个选项的题,唯一选项,,,,A\n",
        encoding="utf-8",
    )


def test_financeiq_layout_loads_with_subject_from_the_file_name(tmp_path):
    write_financeiq(tmp_path / "financeiq")
    result = load_source(SourceSpec("financeiq", "generic", str(tmp_path / "financeiq"), FINANCEIQ_COLUMNS))
    items, rejects = result.items, result.rejects
    assert list(items.columns) == list(ITEM_COLUMNS)
    assert len(items) == 3 and items["item_id"].is_unique
    assert set(items["subject"]) == {"注册会计师（CPA）", "银行从业资格"}
    multi = items[items["answer"] == "AC"].iloc[0]
    assert multi["kind"] == "multi" and "（多选）" in multi["question"]  # a quoted multi-line cell
    assert json.loads(items.iloc[0]["options"]) == {
        "A": "固定资产",
        "B": "存货",
        "C": "无形资产",
        "D": "长期股权投资",
    }
    assert items["item_id"].iloc[0] == "financeiq:注册会计师（CPA）:2"  # no id column: the CSV line
    by_reason = dict(zip(rejects["reason"], zip(rejects["file"], rejects["line"])))
    assert by_reason == {
        "missing_answer": ("注册会计师（CPA）.csv", 5),
        "answer_letter_not_in_options": ("注册会计师（CPA）.csv", 6),
        "too_few_options": ("银行从业资格.csv", 3),
    }


def test_a_column_missing_from_the_file_names_file_line_and_mapping(tmp_path):
    write_financeiq(tmp_path / "fiq")
    columns = {**FINANCEIQ_COLUMNS, "question": "question"}  # FinanceIQ capitalises it
    with pytest.raises(
        McqLoadError, match=r"注册会计师（CPA）\.csv: line 1: missing column\(s\) \['question'\]"
    ):
        read_generic(tmp_path / "fiq", "fiq", columns)
    with pytest.raises(McqLoadError, match="no files match"):
        read_generic(tmp_path / "fiq", "fiq", {**FINANCEIQ_COLUMNS, "files": "*.jsonl"})
    with pytest.raises(McqLoadError, match="kind generic needs a columns mapping"):
        load_source(SourceSpec("fiq", "generic", str(tmp_path / "fiq")))


def test_jsonl_with_a_list_of_options_and_the_answer_as_text(tmp_path):
    path = tmp_path / "ceval_like.jsonl"
    rows = [
        {
            "q": "货币政策的三大工具不包括（）。",
            "choices": ["公开市场业务", "再贴现", "存款准备金率", "财政补贴"],
            "gold": "财政补贴",
            "why": "财政补贴属于财政政策。",
            "topic": "金融学",
        },
        {"q": "答案文本对不上的题", "choices": ["甲", "乙"], "gold": "丙", "why": "", "topic": "金融学"},
        {"q": "缺少选项字段的题", "gold": "甲", "topic": "金融学"},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    columns = {
        "files": "*",
        "question": "q",
        "options": "choices",
        "answer": "gold",
        "answer_format": "text",
        "id": None,
        "explanation": "why",
        "subject": "topic",
    }
    result = read_generic(path, "ceval", columns)
    item = result.items.iloc[0]
    assert (item["answer"], item["subject"], item["explanation"]) == ("D", "金融学", "财政补贴属于财政政策。")
    assert list(result.rejects["reason"]) == ["unreadable_options_or_answer", "missing_field"]
    assert list(result.rejects["line"]) == [2, 3]


def test_parquet_with_index_answers(tmp_path):
    path = tmp_path / "exam.parquet"
    pd.DataFrame(
        {
            "qid": ["x1", "x2"],
            "question": ["以下属于衍生工具的是（）。", "以下属于直接融资的是（）。"],
            "options": [["期货", "股票", "期权"], ["发行股票", "银行贷款"]],
            "label": ["0,2", "9"],
        }
    ).to_parquet(path)
    columns = {
        "files": "*.parquet",
        "question": "question",
        "options": "options",
        "answer": "label",
        "answer_format": "index",
        "id": "qid",
        "explanation": None,
        "subject": None,
    }
    result = read_generic(tmp_path, "exam", columns)
    assert list(result.items["answer"]) == ["AC"] and result.items["item_id"].iloc[0] == "exam:exam:x1"
    assert result.items["subject"].iloc[0] == "exam"
    assert result.rejects.iloc[0][["file", "line", "reason"]].tolist() == [
        "exam.parquet",
        2,
        "unreadable_options_or_answer",
    ]


def test_evaluation_only_sources_and_their_questions_stay_out_of_training():
    rows = [
        {
            "item_id": f"t:{i}",
            "source": "train_set",
            "subject": "s",
            "question": f"训练题{i}",
            "options": "{}",
            "answer": "A",
            "kind": "single",
            "explanation": None,
        }
        for i in range(200)
    ]
    rows += [
        {
            "item_id": f"e:{i}",
            "source": "financeiq",
            "subject": "s",
            "question": f"评测题{i}",
            "options": "{}",
            "answer": "A",
            "kind": "single",
            "explanation": None,
        }
        for i in range(50)
    ]
    rows.append(
        {**rows[0], "item_id": "t:shared", "question": "评测题7"}
    )  # a training-source copy of an eval question
    table = split_items(
        pd.DataFrame(rows), {"sft_train": 0.6, "rl_train": 0.3, "eval": 0.1}, 3, ["financeiq"]
    )
    assert set(table.loc[table["source"] == "financeiq", "split"]) == {"eval"}
    assert table.set_index("item_id").loc["t:shared", "split"] == "eval"
    assert set(table.loc[table["source"] == "train_set", "split"]) == {"sft_train", "rl_train", "eval"}
    with pytest.raises(ValueError, match=r"eval_only_sources \['finance_iq'\] have no items"):
        split_items(pd.DataFrame(rows), {"sft_train": 0.6, "rl_train": 0.3, "eval": 0.1}, 3, ["finance_iq"])
