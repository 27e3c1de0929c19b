"""Loaders on the real bundled files and on small malformed fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finrag_pipelines.mcq.format import parse_options
from finrag_pipelines.mcq.loaders import (
    ITEM_COLUMNS,
    McqLoadError,
    SourceSpec,
    load_source,
    read_cflue,
    read_chat_jsonl,
    read_fin_eva_ant,
    read_fin_eva_sufe,
    split_question_options,
)

RAW = Path(__file__).resolve().parents[2] / "data" / "01_raw" / "mcq"
FIXTURES = Path(__file__).parent / "fixtures"


def _check_items(items):
    assert list(items.columns) == list(ITEM_COLUMNS)
    assert items["item_id"].is_unique
    for row in items.itertuples():
        opts = parse_options(row.options)
        assert set(row.answer) <= set(opts) and row.answer == "".join(sorted(set(row.answer)))
        assert row.kind in ("single", "multi", "true_false")


def test_fin_eva_ant_real_files():
    result = read_fin_eva_ant(RAW / "fin_eva" / "Ant")
    assert len(result.items) > 1500
    _check_items(result.items)
    reasons = result.rejects["reason"].value_counts()
    assert reasons["missing_answer"] > 0  # the unlabelled tail of each file
    no_opts = result.rejects[result.rejects["reason"] == "no_options"]
    assert set(no_opts["file"].str.split("/").str[0]) == {"安全合规"}  # yes/no files without options
    assert no_opts["line"].min() >= 2  # line 1 is the header
    context_items = result.items[result.items["subject"] == "金融逻辑/金融事件解读"]
    assert len(context_items) and context_items["question"].str.contains("\n\n").all()  # context prepended


def test_fin_eva_sufe_real_files():
    result = read_fin_eva_sufe(RAW / "fin_eva" / "SUFE")
    assert len(result.items) > 1000
    _check_items(result.items)
    assert result.items["explanation"].notna().sum() >= 100  # dev rows carry worked explanations
    assert set(result.rejects["reason"]) == {"no_answer_column"}
    assert result.rejects["file"].str.startswith("test/").all()
    assert "accounting" in set(result.items["subject"])


def test_cflue_real_file():
    result = read_cflue(RAW / "cflue" / "knowledge.json")
    assert len(result.items) + len(result.rejects) == 3864
    _check_items(result.items)
    kinds = result.items["kind"].value_counts()
    assert kinds["multi"] > 0 and kinds["true_false"] > 0
    assert not result.items["explanation"].isin(["略", "略。"]).any()


def test_every_raw_row_is_accounted_for(tmp_path):
    path = tmp_path / "Ant" / "cat" / "task.csv"
    path.parent.mkdir(parents=True)
    path.write_text(
        "id,question,A,B,C,D,answer\n"
        "0,题一,甲,乙,丙,丁,B\n"
        '1,"题二, 有逗号",甲,乙,丙,丁,\n'
        "2,题三,甲,乙,,,E\n"
        "3,题四,甲,乙,丙,丁,是\n"
        "4,,甲,乙,丙,丁,A\n"
        "5,题六,甲,乙,丙,丁,b\n",
        encoding="utf-8",
    )
    result = read_fin_eva_ant(tmp_path / "Ant")
    assert list(result.items["answer"]) == ["B", "B"]
    got = dict(zip(result.rejects["line"], result.rejects["reason"]))
    assert got == {
        3: "missing_answer",
        4: "answer_letter_not_in_options",
        5: "answer_not_letters",
        6: "empty_question",
    }
    assert (result.rejects["file"] == "cat/task.csv").all()


def test_broken_csv_names_file_and_line(tmp_path):
    path = tmp_path / "Ant" / "cat" / "bad.csv"
    path.parent.mkdir(parents=True)
    path.write_text("id,question,A,B,answer\n0,题,甲,乙,A\n1,题,甲,乙,丙,A\n", encoding="utf-8")
    with pytest.raises(McqLoadError, match=r"bad\.csv: line 3: 6 fields"):
        read_fin_eva_ant(tmp_path / "Ant")


def test_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "Ant" / "cat" / "gbk.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes("id,question,A,B,answer\n0,题目,甲,乙,A\n".encode("gbk"))
    with pytest.raises(McqLoadError, match=r"gbk\.csv: line 2: not UTF-8"):
        read_fin_eva_ant(tmp_path / "Ant")


def test_broken_json_names_file_and_line(tmp_path):
    path = tmp_path / "knowledge.json"
    path.write_text('[\n  {"question": "x",\n  "answer": }\n]', encoding="utf-8")
    with pytest.raises(McqLoadError, match=r"knowledge\.json: line 3"):
        read_cflue(path)


def test_cflue_bad_rows_are_rejected_with_reasons(tmp_path):
    rows = [
        {
            "名称": "x",
            "task": "单项选择题",
            "question": "q1",
            "choices": "{'A': '1', 'B': '2'}",
            "answer": "AB",
            "analysis": None,
        },
        {"名称": "x", "task": "简答题", "question": "q2", "choices": "{}", "answer": "", "analysis": None},
        {
            "名称": "x",
            "task": "多项选择题",
            "question": "q3",
            "choices": "{'A': '1', 'B'",
            "answer": "AB",
            "analysis": None,
        },
        {
            "名称": "x",
            "task": "多项选择题",
            "question": "q4",
            "choices": "{'A': '1', 'B': '2', 'C': '3'}",
            "answer": "CA",
            "analysis": "略",
        },
    ]
    path = tmp_path / "k.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    result = read_cflue(path)
    assert list(result.rejects["reason"]) == ["kind_answer_mismatch", "unknown_task", "unparsable_choices"]
    assert list(result.rejects["line"]) == [1, 2, 3]
    (item,) = result.items.itertuples()
    assert item.answer == "AC" and item.kind == "multi" and item.explanation is None


def test_chat_jsonl_fixture():
    result = read_chat_jsonl(FIXTURES / "agentar_chat.jsonl", "agentar")
    assert list(result.items["answer"]) == ["A", "ABD"]
    first = result.items.iloc[0]
    assert first["question"] == "下列哪项属于货币政策工具？" and first["explanation"].startswith("再贴现")
    assert parse_options(result.items.iloc[1]["options"])["D"] == "互换"
    got = dict(zip(result.rejects["line"], result.rejects["reason"]))
    assert got == {
        3: "no_options",
        4: "no_answer_in_assistant",
        5: "no_answer_in_assistant",
        6: "no_messages",
    }
    assert result.rejects.loc[result.rejects["line"] == 5, "detail"].item() == "letters_not_in_options"


def test_chat_jsonl_broken_line(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text('{"messages": []}\n{"messages": [\n', encoding="utf-8")
    with pytest.raises(McqLoadError, match=r"chat\.jsonl: line 2: invalid JSON"):
        read_chat_jsonl(path, "chat")


def test_split_question_options_formats():
    stem, opts = split_question_options("题干\n第二行\n(A) 甲\nＢ．乙\nC、丙")
    assert stem == "题干\n第二行" and opts == {"A": "甲", "B": "乙", "C": "丙"}


def test_unknown_kind_and_missing_folder(tmp_path):
    with pytest.raises(McqLoadError, match="unknown kind"):
        load_source(SourceSpec("x", "csv", str(tmp_path)))
    with pytest.raises(McqLoadError, match="not a folder"):
        read_fin_eva_ant(tmp_path / "missing")
