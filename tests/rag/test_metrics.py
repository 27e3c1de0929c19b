"""Answer metrics: character F1, ROUGE-L (bit-parallel LCS checked against dynamic programming), and what
does not apply is None, never 0."""

from __future__ import annotations

import random

import pytest

from finrag_pipelines.rag.metrics import (
    char_f1,
    lcs_length,
    mean_or_none,
    normalise_chars,
    rouge_l,
    score_record,
)
from finrag_pipelines.rag.records import AnswerRecord, Counters, SearchCall


def _lcs_dp(a: str, b: str) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_lcs_matches_dynamic_programming():
    rng = random.Random(3)
    for _ in range(300):
        a = "".join(rng.choice("金融市场abc") for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice("金融市场abcd") for _ in range(rng.randint(0, 40)))
        assert lcs_length(a, b) == _lcs_dp(a, b)


def test_character_f1_and_rouge_l():
    assert normalise_chars("ＡＢ，c 1。") == "abc1"
    assert char_f1("产能20万台", "新工厂产能为20万台") == pytest.approx(2 * 1.0 * (6 / 10) / (1 + 6 / 10))
    assert rouge_l("产能万台", "产能为20万台") == pytest.approx(2 * 1.0 * (4 / 7) / (1 + 4 / 7))
    assert char_f1("", "x") == rouge_l("x", "") == 0.0
    assert mean_or_none([None, 1.0, 0.0, float("nan")]) == 0.5 and mean_or_none([None]) is None


def record(
    kind: str, answer: str, citations: list[str], shown: list[str], abstained: bool = False
) -> AnswerRecord:
    searches = [SearchCall("q", shown, [1.0] * len(shown))] if shown else []
    return AnswerRecord(
        "q1", kind, kind, answer, citations, abstained, searches, 1, Counters(), None, "m", "h"
    )


def test_scores_say_none_where_a_metric_does_not_apply():
    gold = {"a1": "新工厂的设计产能为20万台/年", "a2": "无关"}
    closed = score_record(record("closed_book", "产能20万台", [], []), ["a1"], gold, None)
    assert (
        closed["search_recall"] is None and closed["citation_recall"] is None and closed["n_searches"] is None
    )
    assert closed["answer_f1"] > 0.5
    grounded = score_record(
        record("agent", "产能20万台[a1][x9]", ["a1", "x9"], ["a3", "a1"]), ["a1", "a2"], gold, 0.5
    )
    assert grounded["search_recall"] == 1.0 and grounded["citation_precision"] == 0.5
    assert grounded["citation_recall"] == 0.5 and grounded["judge_score"] == 0.5
    silent = score_record(record("single_shot", "无法回答", [], ["a3"], abstained=True), ["a1"], gold, None)
    assert silent["citation_precision"] is None and silent["citation_recall"] == 0.0
    assert silent["answer_f1"] == silent["rouge_l"] == 0.0 and silent["search_recall"] == 0.0
    failed = record("agent", "", [], [])
    failed.error = "LLM request failed: HTTP 500"
    with pytest.raises(ValueError, match="failures are not scored"):
        score_record(failed, ["a1"], gold, None)
