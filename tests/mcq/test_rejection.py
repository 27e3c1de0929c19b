"""The rejection rule for teacher reasoning, on handwritten samples."""

from __future__ import annotations

import pytest

from finrag_pipelines.mcq.rejection import choose_shortest, judge_sample

OPTIONS = "ABCD"


@pytest.mark.parametrize(
    ("text", "gold", "verdict", "detail"),
    [
        ("利率上升时债券价格下降，所以选B。\n\n答案：\\boxed{B}", "B", "correct", "ok"),
        ("<think>\n债券价格与利率反向变动。\n</think>\n\n答案：\\boxed{B}", "B", "correct", "ok"),
        ("多选题：A和C都对。\n答案：\\boxed{C、A}", "AC", "correct", "ok"),  # separators and order normalised
        ("利率上升时债券价格上升。\n\n答案：\\boxed{A}", "B", "wrong_answer", "ok"),
        ("A和C都对。\n答案：\\boxed{AC}", "ABC", "wrong_answer", "ok"),  # a partial multi answer is wrong
        ("答案：\\boxed{B}", "B", "no_reasoning", "ok"),  # right answer, no reasoning
        ("<think>\n</think>\n\n答案：\\boxed{B}", "B", "no_reasoning", "ok"),
        (
            "价格下降。答案：\\boxed{B}\n再确认一次：答案：\\boxed{B}",
            "B",
            "format_invalid",
            "duplicated_answers",
        ),
        (
            "先选A。答案：\\boxed{A}\n不对，应选B。答案：\\boxed{B}",
            "B",
            "format_invalid",
            "conflicting_answers",
        ),
        ("价格下降，答案是B。", "B", "format_invalid", "no_answer"),  # no stated answer format
        ("<think>\n推理到一半被截断", "B", "format_invalid", "unterminated_think"),
        ("<think>\n答案：\\boxed{B}\n</think>\n价格下降。", "B", "format_invalid", "answer_only_in_think"),
        ("价格下降。答案：\\boxed{E}", "B", "format_invalid", "letters_not_in_options"),
    ],
)
def test_rule_on_handwritten_samples(text, gold, verdict, detail):
    got = judge_sample(text, gold, OPTIONS)
    assert (got.verdict, got.detail) == (verdict, detail)
    assert got.correct == (verdict == "correct")


def test_a_failed_request_is_never_a_sample():
    got = judge_sample(None, "B", OPTIONS, error="HTTP 500 after 3 attempts")
    assert got.verdict == "request_failed" and "HTTP 500" in got.detail and not got.correct


def test_the_kept_reasoning_is_the_text_before_the_answer_line():
    got = judge_sample("第一步：利率上升。\n第二步：价格下降。\n\n答案：\\boxed{B}\n以上。", "B", OPTIONS)
    assert got.reasoning == "第一步：利率上升。\n第二步：价格下降。"


def test_shortest_correct_sample_is_preferred():
    samples = [
        judge_sample("很长的一段推理，反复论证利率与价格的关系。\n答案：\\boxed{B}", "B", OPTIONS),
        judge_sample("短推理但答错。\n答案：\\boxed{A}", "B", OPTIONS),
        judge_sample("利率升，价格降。\n答案：\\boxed{B}", "B", OPTIONS),
        judge_sample("答案：\\boxed{B}", "B", OPTIONS),  # shortest of all, but no reasoning
        judge_sample(
            "利率升，价格跌。\n答案：\\boxed{B}", "B", OPTIONS
        ),  # as short as sample 2: the earlier wins
    ]
    assert choose_shortest(samples) == 2
    assert choose_shortest(samples[1:2] + samples[3:4]) is None
