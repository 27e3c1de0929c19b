"""Passage splitting: Chinese sentence ends, line breaks, table rows whole, overlap, ids, document ranking."""

from __future__ import annotations

from itertools import pairwise

import pytest

from finrag_pipelines.text.passages import (
    document_ranking,
    is_table_row,
    sentences,
    split_corpus,
    split_document,
)


def test_sentences_end_at_chinese_and_western_marks_with_closing_quotes() -> None:
    assert sentences("营收增长。利润下降！为什么？“因为成本。”然后") == [
        "营收增长。", "利润下降！", "为什么？", "“因为成本。”", "然后",
    ]  # fmt: skip
    assert sentences("第一；第二; 第三……结束") == ["第一；", "第二;", " 第三……", "结束"]


def test_table_rows_and_short_lines_stay_whole() -> None:
    assert is_table_row("| 年份 | 营收 |") and is_table_row("2023\t12.5")
    assert not is_table_row("公司在2023年实现营收12亿元。")
    fields = "\n".join(f"字段{i}：数值{i}。备注{i}。" for i in range(20))  # structured key：value lines
    parts = split_document(fields, 40, 0)
    assert all(all("：" in line for line in p.split("\n")) for p in parts)  # field lines never cut
    assert "字段3：数值3。备注3。" in split_document(fields, 40, 0)[1].split("\n")


def test_short_documents_are_not_split() -> None:
    assert split_document("一句话。", 50, 10) == ["一句话。"]


def test_passages_respect_max_chars_and_sentence_boundaries_with_overlap() -> None:
    text = "".join(f"第{i}句话讲的是公司的第{i}项业务。" for i in range(30))
    parts = split_document(text, 60, 20)
    assert len(parts) > 5 and all(len(p) <= 60 for p in parts)
    assert all(p.endswith("。") for p in parts)  # never cut inside a sentence
    for prev, nxt in pairwise(parts):
        last = sentences(prev)[-1]
        assert nxt.startswith(last)  # the overlap is the previous passage's last whole sentence
    covered = "".join(sentences(text))
    assert all(s in covered for p in parts for s in sentences(p))
    assert split_document(text, 60, 0)[1].startswith("第")  # no overlap: next sentence
    with pytest.raises(ValueError, match="overlap_chars < max_chars"):
        split_document(text, 60, 60)


def test_table_rows_stay_whole_even_when_longer_than_max_chars() -> None:
    row = "| " + " | ".join(f"项目{i}" for i in range(30)) + " |"
    text = "表格如下。\n" + row + "\n说明文字。" * 5
    parts = split_document(text, 40, 0)
    assert row in parts and all(len(p) <= 40 for p in parts if p != row)
    long_sentence = "甲" * 100
    assert [len(p) for p in split_document(long_sentence, 40, 0)] == [40, 40, 20]  # hard cut, counted


def test_split_corpus_ids_parents_and_counts() -> None:
    long_text = "这是一句用来凑长度的话。" * 20
    rows, stats = split_corpus(["d1", "d2"], ["短文。", long_text], 50, 10)
    assert rows[0] == ("d1", "d1", "短文。", 0)
    passages = [r for r in rows if r[1] == "d2"]
    assert [r[0] for r in passages] == [f"d2#{k}" for k in range(len(passages))] and len(passages) > 1
    assert stats.documents == 2 and stats.documents_split == 1 and stats.passages == len(rows)
    with pytest.raises(ValueError, match="also the id of another document"):
        split_corpus(["d2", "d2#0"], [long_text, "x"], 50, 10)


def test_document_ranking_counts_each_document_at_its_best_passage() -> None:
    parents = {"a#0": "a", "a#1": "a", "b#0": "b", "c": "c"}
    assert document_ranking(["a#1", "c", "a#0", "b#0"], parents) == ["a", "c", "b"]
    assert document_ranking(["x", "c"], parents) == ["x", "c"]  # unknown ids are their own document
