"""The shared answer extractor on many hand-written responses."""

from __future__ import annotations

import pytest

from finrag_pipelines.mcq.extract import extract_answer, normalise_letters
from finrag_pipelines.mcq.format import answer_line, render_target

OPTS = "ABCD"


@pytest.mark.parametrize(
    ("text", "letters", "reason", "format_ok"),
    [
        ("因为利率上升，债券价格下降。\n答案：\\boxed{B}", "B", "ok", True),
        ("分析……\n答案：\\boxed{CA}", "AC", "ok", True),  # multi-select in any order
        ("分析……\n答案：\\boxed{A、C}", "AC", "ok", True),
        ("分析……\n答案：\\boxed{A,C}", "AC", "ok", True),
        ("分析……\n答案：\\boxed{A，C；D}", "ACD", "ok", True),
        ("分析……\n答案：\\boxed{a c}", "AC", "ok", True),  # lower case
        ("分析……\n答案：\\boxed{Ａ}", "A", "ok", True),  # full-width letter
        ("分析……\n答案：\\boxed{ＡＣ}", "AC", "ok", True),
        ("分析……\n答案：\\boxed{A和C}", "AC", "ok", True),
        ("<think>先看选项A……</think>\n答案：\\boxed{D}", "D", "ok", True),
        ("先看选项A……</think>\n\n答案：\\boxed{D}", "D", "ok", True),  # template opened <think>
        ("分析\n答案：\\boxed{B}\n所以答案：\\boxed{B}", "B", "duplicated_answers", False),
        ("分析\n答案：\\boxed{B}\n不对，答案：\\boxed{C}", None, "conflicting_answers", False),
        ("<think>答案：\\boxed{B}</think>\n我不确定。", None, "answer_only_in_think", False),
        ("<think>想一想，答案可能是B", None, "unterminated_think", False),
        ("<think>想</think>答案：\\boxed{B}<think>再想", None, "unterminated_think", False),
        ("分析\n答案：\\boxed{E}", None, "letters_not_in_options", False),
        ("分析\n答案：\\boxed{AF}", None, "letters_not_in_options", False),
        ("分析\n答案：\\boxed{}", None, "empty_answer", False),
        ("分析\n答案：\\boxed{选项二}", None, "unparsable_answer", False),
        ("分析\n答案：\\boxed{42}", None, "unparsable_answer", False),
        ("我认为是B。", None, "no_answer", False),
        ("", None, "no_answer", False),
        ("答案：B", None, "no_answer", False),  # unboxed: read only with allow_fallback
    ],
)
def test_extract(text, letters, reason, format_ok):
    got = extract_answer(text, OPTS)
    assert (got.letters, got.reason, got.format_ok) == (letters, reason, format_ok)


def test_think_block_is_not_searched_but_counts_as_reasoning():
    got = extract_answer("<think>A 和 B 都不对，答案：\\boxed{A}</think>\n答案：\\boxed{C}", OPTS)
    assert got.letters == "C" and got.n_answer_statements == 1 and got.think == "closed"
    assert got.reasoning_ok and "A 和 B 都不对" in got.reasoning


def test_empty_reasoning_is_flagged():
    assert not extract_answer("答案：\\boxed{A}", OPTS).reasoning_ok
    assert not extract_answer("<think>\n\n</think>\n\n答案：\\boxed{A}", OPTS).reasoning_ok
    assert extract_answer("<think>\n\n</think>\n\n答案：\\boxed{A}", OPTS).format_ok  # format itself fine
    assert extract_answer("计算得 1.95 年。\n答案：\\boxed{C}", OPTS).reasoning_ok


def test_fallback_only_when_asked_and_never_format_ok():
    got = extract_answer("推理……\n答案：A、c", OPTS, allow_fallback=True)
    assert got.letters == "AC" and got.via == "fallback" and not got.format_ok
    assert (
        extract_answer("推理……答案：A\n最终答案：B", OPTS, allow_fallback=True).reason
        == "conflicting_answers"
    )
    assert extract_answer("推理……\n答案：E", OPTS, allow_fallback=True).reason == "letters_not_in_options"


def test_without_options_any_letter_is_accepted():
    assert extract_answer("x\n\\boxed{F}", None).letters == "F"


def test_sft_target_round_trips_through_the_extractor():
    for style in ("think", "plain"):
        target = render_target("因为……所以选 A 和 C。", "CA", style)
        got = extract_answer(target, OPTS)
        assert got.letters == "AC" and got.format_ok and got.reasoning_ok
    assert answer_line("CA") == "答案：\\boxed{AC}"


@pytest.mark.parametrize(
    ("raw", "want"), [("a、c", "AC"), ("ＢＤ", "BD"), ("", ""), ("是", None), ("AA", "A")]
)
def test_normalise_letters(raw, want):
    assert normalise_letters(raw) == want
