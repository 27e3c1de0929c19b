"""Property-based tests (hypothesis) of the answer extractor against the project's one answer format."""

from __future__ import annotations

import re
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from finrag_pipelines.mcq.extract import REASONS, extract_answer
from finrag_pipelines.mcq.format import THINK_CLOSE, THINK_OPEN, answer_line, render_target

PROPERTY = settings(max_examples=300, deadline=500, derandomize=True)

LETTERS = st.lists(st.sampled_from(string.ascii_uppercase), min_size=1, max_size=8, unique=True)
# free text that states no answer of its own and opens or closes no think block
PROSE = st.text(max_size=200).filter(
    lambda t: not re.search(r"\\boxed|think>", t, re.IGNORECASE) and "<think" not in t.lower()
)


@st.composite
def options_and_answer(draw: Any) -> tuple[str, str]:
    """An option set (any letters, not only A..D) and a non-empty answer among them."""
    options = draw(LETTERS)
    answer = draw(st.lists(st.sampled_from(options), min_size=1, unique=True))
    return "".join(options), "".join(answer)


@PROPERTY
@given(
    case=options_and_answer(),
    explanation=st.one_of(st.none(), PROSE),
    style=st.sampled_from(["think", "plain"]),
)
def test_a_rendered_answer_is_extracted_exactly(
    case: tuple[str, str], explanation: str | None, style: str
) -> None:
    options, answer = case
    target = render_target(explanation, answer, style)
    for fallback in (False, True):
        got = extract_answer(target, options, allow_fallback=fallback)
        assert got.letters == "".join(sorted(answer))
        assert (got.reason, got.format_ok, got.via, got.n_answer_statements) == ("ok", True, "boxed", 1)


@PROPERTY
@given(case=options_and_answer(), think=PROSE, other=st.sampled_from(string.ascii_uppercase), after=PROSE)
def test_only_text_after_the_think_block_counts(
    case: tuple[str, str], think: str, other: str, after: str
) -> None:
    options, answer = case
    inside = f"{think}\n{answer_line(other)}\n"  # an answer written while thinking never counts
    answered = extract_answer(f"{THINK_OPEN}{inside}{THINK_CLOSE}\n{after}\n{answer_line(answer)}", options)
    assert answered.letters == "".join(sorted(answer))
    assert answered.think == "closed"
    silent = extract_answer(f"{THINK_OPEN}{inside}{THINK_CLOSE}\n{after}", options)
    assert (silent.letters, silent.reason) == (None, "answer_only_in_think")
    cut_off = extract_answer(f"{THINK_OPEN}{inside}{after}", options)  # never closed
    assert (cut_off.letters, cut_off.reason) == (None, "unterminated_think")


@PROPERTY
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.lists(
            st.sampled_from(["<think>", "</think>", "\\boxed{", "}", "{", "答案：", "A", "c、d", "\n", "ｂ"])
        ).map("".join),
    ),
    valid=st.one_of(st.none(), st.text(max_size=6), st.lists(st.text(max_size=2), max_size=5)),
    fallback=st.booleans(),
)
def test_never_raises_and_answers_only_valid_letters(text: str, valid: Any, fallback: bool) -> None:
    got = extract_answer(text, valid, allow_fallback=fallback)
    assert got.reason in REASONS
    assert got.format_ok == (got.reason == "ok" and got.n_answer_statements == 1)
    if got.letters is not None:
        assert got.letters == "".join(sorted(set(got.letters)))
        assert re.fullmatch("[A-Z]+", got.letters)
        if valid is not None:
            assert set(got.letters) <= {str(v).upper() for v in valid}
