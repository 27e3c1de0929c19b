"""Parsing what LLMs really write: fences, prose, thinking, Python dicts, key spellings, labels."""

from __future__ import annotations

import pytest

from finrag_pipelines.llm.parsing import (
    clean_text_output,
    extract_json_object,
    normalise_key,
    one_of,
    pick,
    strip_thinking,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        (
            '```json\n{"Characters": 2, "Question_Type": "summary"}\n```',
            {"Characters": 2, "Question_Type": "summary"},
        ),
        ('```\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        (
            '好的，结果如下：{"a": "价格{上涨}", "b": "引号\\"内"} 希望有帮助。',
            {"a": "价格{上涨}", "b": '引号"内'},
        ),
        ('<think>先想想 {"draft": 1}</think>\n{"final": true}', {"final": True}),
        ('模型在想</think>{"a": 1}', {"a": 1}),
        (
            "{'Characters': 1, 'Difficulty': 'phd', 'ok': True}",
            {"Characters": 1, "Difficulty": "phd", "ok": True},
        ),
        ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}),
        ('Format: {character, type}. Answer: {"character": 3}', {"character": 3}),
    ],
)
def test_extract_json_object(text: str, expected: dict) -> None:
    assert extract_json_object(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I cannot answer that.", "no JSON object"),
        ('{"a": 1', "unbalanced braces"),
        ("[1, 2, 3]", "no JSON object"),
        ("<think>still thinking when max_tokens hit", "empty response"),
        ("{not json at all}", "invalid JSON"),
    ],
)
def test_extract_json_object_rejects_garbage(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        extract_json_object(text)


def test_strip_thinking() -> None:
    assert strip_thinking("<think>a</think>answer") == "answer"
    assert strip_thinking("<THINK>a</THINK> x <think>b</think> y") == "x  y"
    assert strip_thinking("reasoning without an opening tag</think>\nanswer") == "answer"
    assert strip_thinking("answer <think>cut off") == "answer"
    assert strip_thinking("plain") == "plain"


def test_normalise_key_pick_and_aliases() -> None:
    assert normalise_key("Question_Type") == normalise_key("question type") == normalise_key("questionType")
    obj = {"Question_Type": "Summary", "Characters": 2}
    assert pick(obj, ["question_type", "type"], "question_type") == "Summary"
    assert pick(obj, ["character", "characters"], "character") == 2
    with pytest.raises(ValueError, match="missing field 'difficulty'"):
        pick(obj, ["difficulty", "level"], "difficulty")
    with pytest.raises(ValueError, match="expected a JSON object"):
        pick([1, 2], ["a"], "a")


@pytest.mark.parametrize("value", ["Yes_Or_No", "yes or no", " YES-OR-NO. ", "yes_or_no"])
def test_one_of_accepts_spellings(value: str) -> None:
    assert one_of(value, ["summary", "yes_or_no"], "question_type") == "yes_or_no"


def test_one_of_lists_the_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"question_type must be one of \['summary', 'yes_or_no'\]"):
        one_of("opinion", ["summary", "yes_or_no"], "question_type")
    with pytest.raises(ValueError, match="difficulty must be one of"):
        one_of(3, ["phd"], "difficulty")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("沪深300指数的编制规则是什么？", "沪深300指数的编制规则是什么？"),
        ('"沪深300指数的编制规则是什么？"', "沪深300指数的编制规则是什么？"),
        ("“LPR 下调对房贷有什么影响？”", "LPR 下调对房贷有什么影响？"),
        ("Generated_Query: 什么是可转债的转股价？", "什么是可转债的转股价？"),
        ("**Generated_Query**：什么是可转债的转股价？", "什么是可转债的转股价？"),
        ("查询：“什么是可转债的转股价？”", "什么是可转债的转股价？"),
        ("<think>想一想</think>\n问题: 基金净值怎么算？", "基金净值怎么算？"),
        ('```json\n{"Generated_Query": "ETF 的申赎机制是什么？"}\n```', "ETF 的申赎机制是什么？"),
        ('{"note": "x", "generated_query": "ETF 的申赎机制是什么？"}', "ETF 的申赎机制是什么？"),
        ("ETF：申赎机制是什么？", "ETF：申赎机制是什么？"),
        ("2023年营收：同比增长多少？", "2023年营收：同比增长多少？"),
        ('"A股"和"港股"有何区别？', '"A股"和"港股"有何区别？'),
    ],
)
def test_clean_text_output(text: str, expected: str) -> None:
    assert clean_text_output(text, keys=["generated_query", "query"]) == expected
