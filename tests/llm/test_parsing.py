"""Parsing what LLMs really write: fences, prose, thinking, Python dicts, key spellings, labels."""

from __future__ import annotations

import pytest

from finrag_pipelines.llm.parsing import (
    clean_text_output,
    extract_json_object,
    extract_json_object_and_rest,
    json_objects,
    match_choice,
    normalise_key,
    normalise_text,
    one_of,
    pick,
    prompt_echo_finder,
    strip_thinking,
)

PERSONAS = [
    "A budget-conscious traveler who plans trips around exchange rates",
    "一位关注家庭理财的中学老师",
    "a bank analyst",
    "a bank auditor",
    "30岁的基金经理",
]
LEVELS = ["high_school", "university", "phd"]
LEVEL_ALIASES = {
    "high_school": ["高中", "高中水平"],
    "university": ["大学", "大学水平"],
    "phd": ["博士", "博士水平"],
}


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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, 2),
        (2.0, 2),
        ("2", 2),
        ("2.", 2),
        ("#2", 2),
        ("No. 2", 2),
        ("编号2", 2),
        ("编号：2", 2),
        ("候选人 2", 2),
        ("候选提问人2", 2),
        ("第2位", 2),
        ("(2)", 2),
        ("【2】", 2),
        ("２", 2),
        ("2. 一位关注家庭理财的中学老师", 2),
        ("一位关注家庭理财的中学老师（编号2）", 2),
        ("A budget-conscious traveler who plans trips around exchange rates", 1),  # exact text
        ("a budget conscious traveler who plans trips around exchange rates.", 1),  # normalised text
        ("A budget-conscious traveler…", 1),  # an unambiguous prefix
        ("“一位关注家庭理财的中学老师”", 2),
        ("一位关注家庭理财", 2),
        ("30岁的基金经理", 5),
        ("a bank analyst", 3),
    ],
)
def test_match_choice_takes_a_candidate_by_number_text_or_prefix(value: object, expected: int) -> None:
    assert match_choice(value, PERSONAS, "character", numbered=True, min_prefix_chars=3) == expected - 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a bank", r"matches several candidates \(3, 4\)"),
        ("nobody here", "must be a candidate number 1..5 or a candidate's text"),
        (6, "6 is not one of 1..5"),
        ("编号 0", "0 is not one of 1..5"),
        ("3. 一位关注家庭理财的中学老师", "names candidate 3 by number but 2 by text"),
        (True, "must be a candidate number"),
        (None, "must be a candidate number"),
        ("A b", "must be a candidate number"),  # normalised "ab": shorter than min_prefix_chars
    ],
)
def test_match_choice_rejects_what_names_no_candidate_or_several(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        match_choice(value, PERSONAS, "character", numbered=True, min_prefix_chars=3)


def test_match_choice_without_prefixes_or_numbers() -> None:
    assert match_choice("a bank analyst", PERSONAS, "character") == 2
    with pytest.raises(ValueError, match="must be one of"):
        match_choice("A budget-conscious traveler…", PERSONAS, "character")  # no prefixes unless asked
    with pytest.raises(ValueError, match="must be one of"):
        match_choice("2", PERSONAS, "character")  # not numbered
    with pytest.raises(ValueError, match="alias key 'master'"):
        match_choice("x", LEVELS, "difficulty", aliases={"master": ["硕士"]})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("高中", "high_school"),
        ("大学水平", "university"),
        ("博士", "phd"),
        ("PhD", "phd"),
        ("uni", "university"),
        ("high_school（高中水平）", "high_school"),
        ("高中水平 (high school)", "high_school"),
        ("university: 需要基础知识", "university"),
        ("High-School", "high_school"),
    ],
)
def test_one_of_takes_aliases_and_prefixes(value: str, expected: str) -> None:
    assert one_of(value, LEVELS, "difficulty", aliases=LEVEL_ALIASES, min_prefix_chars=3) == expected


def test_one_of_rejects_an_unknown_or_ambiguous_label() -> None:
    with pytest.raises(ValueError, match="difficulty must be one of"):
        one_of("研究生", LEVELS, "difficulty", aliases=LEVEL_ALIASES, min_prefix_chars=3)
    with pytest.raises(ValueError, match=r"matches several of \['acquire', 'acquire_knowledge'\]"):
        one_of("acq", ["acquire", "acquire_knowledge"], "question_type", min_prefix_chars=3)
    with pytest.raises(ValueError, match=r"matches several of \['high_school', 'phd'\]"):
        one_of("high_school（博士）", LEVELS, "difficulty", aliases=LEVEL_ALIASES)  # the parts disagree


def test_normalise_text() -> None:
    assert normalise_text(" Yes_Or-No. ") == normalise_text("YES OR NO") == "yesorno"
    assert normalise_text("“高中（水平）…”") == "高中水平"
    assert normalise_text("２０２３年") == "2023年"


def test_object_and_rest_and_every_object_of_a_text() -> None:
    obj, rest = extract_json_object_and_rest('前言 ```json\n{"a": 1}\n``` 后记')
    assert obj == {"a": 1} and "前言" in rest and "后记" in rest and '"a"' not in rest
    prompt = (
        '格式：{"character": <编号>, "x": "<y>"}\n'
        '示例：{"character": 2, "x": "y"} 又如 {\'k\': [1, {"n": 2}]}'
    )
    assert json_objects(prompt) == [{"character": 2, "x": "y"}, {"k": [1, {"n": 2}]}]


def test_prompt_echo_finder_spots_copied_instructions_not_shared_phrases() -> None:
    instructions = [
        "请为这篇文档设计一个检索问题的出题方案，只输出一个 JSON 对象，不要输出任何解释。",
        "【文档】",
    ]
    find = prompt_echo_finder(instructions, 20)
    assert find("下面是提示：请为这篇文档设计一个检索问题的出题方案，只输出一个  JSON") is not None
    assert find("好的，这是出题方案：") is None and find("【文档】") is None
    with pytest.raises(ValueError, match="at least 8"):
        prompt_echo_finder(instructions, 3)
