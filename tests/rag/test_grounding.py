"""The grounding contract: passages with [id] headers, citations read back, lenient answers, the extractive
reader."""

from __future__ import annotations

import pytest

from finrag_pipelines.rag.extractive import extract_answer, sentences
from finrag_pipelines.rag.grounding import (
    NO_RESULTS,
    Hit,
    answer_body,
    cited_ids,
    format_passages,
    format_results,
    is_abstention,
    strip_citations,
)

from .conftest import extractive_settings

HITS = [
    Hit("a12", "", "公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台/年。感谢关注！", 3.2),
    Hit("d7", "期权 开仓", "卖出开仓是指卖出期权合约。", 1.5),
]


def test_passages_carry_their_ids_in_the_verl_tool_format():
    text = format_passages(HITS, max_chars=10)
    assert text.startswith("Doc 1 [a12]\n公司于2019年底完…")
    assert "\n\nDoc 2 [d7] (Title: 期权 开仓)\n卖出开仓是指卖出期权…" in text
    assert format_passages([], 10) == NO_RESULTS
    several = format_results(["新工厂\n产能", "期权"], [HITS[:1], []], 600)
    assert (
        several.startswith("Results for: 新工厂 产能\nDoc 1 [a12]")
        and "\n---\nResults for: 期权\nNo results" in several
    )


@pytest.mark.parametrize(
    ("answer", "ids"),
    [
        ("产能为20万台/年[a12]。", ["a12"]),
        ("见[a12][d7]，又见 [a12]", ["a12", "d7"]),
        ("见【a12】和［d7］", ["a12", "d7"]),
        ("两篇文档[a12, d7]、[d8；d9]", ["a12", "d7", "d8", "d9"]),
        ("[链接](http://x) 与 [ ]", []),
        ("没有引用", []),
    ],
)
def test_citations_are_read_leniently(answer, ids):
    assert cited_ids(answer) == ids


def test_answers_are_parsed_leniently():
    assert answer_body("<think>先想想[zz]</think>答案：产能20万台[a12]") == "产能20万台[a12]"
    assert answer_body("<search>x</search> ... <answer> 产能20万台[a12] </answer>") == "产能20万台[a12]"
    assert answer_body('```json\n{"answer": "产能20万台[a12]"}\n```') == "产能20万台[a12]"
    assert answer_body("<answer>被截断的回答[a12]") == "被截断的回答[a12]"
    assert answer_body("<think>只想不答") == ""
    assert strip_citations("产能[a12]为20万台【d7】") == "产能为20万台"


def test_abstention_is_matched_without_punctuation_or_spaces():
    phrase = "根据检索到的资料无法回答该问题"
    assert is_abstention("抱歉，根据检索到的资料，无法回答该问题。", phrase)
    assert not is_abstention("根据检索到的资料，产能为20万台[a12]。", phrase)


def test_extractive_reader_picks_the_covering_sentence_and_cites_it():
    settings = extractive_settings()
    assert sentences("第一句。第二句！\n第三句") == ["第一句。", "第二句！", "第三句"]
    answer = extract_answer("新工厂的设计产能是多少？", HITS, settings, "无法回答")
    assert answer.startswith("公司于2019年底完成新工厂搬迁，新工厂的设计产能为20万台/年。[a12]")
    assert cited_ids(answer)[0] == "a12"
    assert extract_answer("宏观经济增长", HITS, settings, "无法回答") == "无法回答"
    assert extract_answer("新工厂", [], settings, "无法回答") == "无法回答"
