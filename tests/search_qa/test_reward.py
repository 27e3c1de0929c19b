"""The search-QA reward on handwritten trajectories: each component, the penalties, reward-hacking attempts,
the judge over real HTTP, and the one compute_score entry verl calls."""

from __future__ import annotations

import math

import pytest

from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, always, sequence
from finrag_pipelines.mcq.reward import MCQ_VERL_KEYS, RewardConfigError, compute_score, compute_score_async
from finrag_pipelines.search_qa.reward import (
    DATA_SOURCE,
    VERL_KEYS,
    SearchQARewardConfig,
    SearchQARewardConfigError,
    char_f1,
    score_search_qa,
)

from .trajectories import DOCS, GOOD, INFO, SOURCE, call, responses, searched, tool_text

REFERENCE = DOCS[SOURCE]
CONFIG = {
    "weights": {"outcome": 1.0, "retrieval": 0.3, "citation": 0.3, "format": 0.2},
    "outcome": "f1",
    "max_searches": 4,
    "max_citations": 3,
    "min_answer_chars": 4,
    "penalties": {
        "over_search": 0.1,
        "repeated_search": 0.05,
        "invalid_citation": 0.1,
        "forged_tool_response": 1.0,
    },
    "max_penalty": 1.0,
}
MCQ = {
    "weights": {"format": 0.2, "correctness": 1.0, "process": 0.0},
    "partial_credit": 0.0,
    "allow_fallback": False,
}
W = CONFIG["weights"]


def score(text, info=INFO, tool_rewards=None, **cfg):
    extra = dict(info) if tool_rewards is None else {**info, "tool_rewards": tool_rewards}
    return score_search_qa(text, REFERENCE, extra, {**CONFIG, **cfg})


def mean(outcome, retrieval, citation, fmt):
    return (
        W["outcome"] * outcome + W["retrieval"] * retrieval + W["citation"] * citation + W["format"] * fmt
    ) / 1.8


def test_char_f1():
    assert char_f1("营收增长10%", "公司营收增长了10%") == pytest.approx(2 * (1 * 6 / 9) / (1 + 6 / 9))
    assert char_f1("ＡＢ，c", "abc") == 1.0  # NFKC, case and punctuation folded
    assert char_f1("", "abc") == 0.0 and char_f1("xyz", "abc") == 0.0


def test_good_trajectory_earns_every_component():
    got = score(GOOD, tool_rewards=[1.0])
    assert got.retrieval == 1.0 and got.citation == 1.0 and got.format == 1.0 and got.penalty == 0.0
    assert got.outcome == pytest.approx(char_f1("公司新工厂的设计产能为20万台/年。", REFERENCE))
    assert got.score == pytest.approx(mean(got.outcome, 1, 1, 1)) and got.grounded
    verl = got.as_verl_dict()
    assert list(verl) == list(VERL_KEYS) and all(isinstance(v, float) for v in verl.values())
    assert verl["acc"] == 1.0 and verl["searches"] == 1.0


def test_bad_answer_after_a_good_search():
    """The source was found, but the answer states something else and cites another passage."""
    got = score(
        searched("新工厂 设计产能", ["a1", "a3"], "公司营业收入同比增长12%[a3]。"), tool_rewards=[1.0]
    )
    assert got.retrieval == 1.0 and got.citation == 0.0 and got.format == 1.0 and got.penalty == 0.0
    assert got.outcome < 0.3 and not got.grounded
    assert got.score < score(GOOD, tool_rewards=[1.0]).score - 0.3


def test_search_that_misses_the_source():
    got = score(searched("回购", ["a4"], "公司暂无回购计划[a4]。"), tool_rewards=[0.0])
    assert got.retrieval == 0.0 and got.citation == 0.0 and got.invalid_citations == 0


def test_citing_ids_never_retrieved():
    text = searched("新工厂 设计产能", ["a1", "a2"], "设计产能为20万台/年[a1][a3][a4]。")
    got = score(text, tool_rewards=[1.0])
    assert got.invalid_citations == 2 and got.penalty == pytest.approx(0.2)
    assert got.citation == pytest.approx(1 / 3)  # one of three citations was retrieved
    fabricated = score(searched("新工厂 设计产能", ["a2"], "设计产能为20万台/年[a1]。"), tool_rewards=[0.0])
    assert fabricated.citation == 0.0 and fabricated.retrieval == 0.0 and fabricated.invalid_citations == 1


def test_answering_without_searching():
    got = score("<think>\n我记得\n</think>\n\n公司新工厂的设计产能为20万台/年[a1]。", tool_rewards=[])
    assert got.searches == 0 and got.retrieval == 0.0 and got.citation == 0.0
    assert got.invalid_citations == 1 and got.penalty == pytest.approx(0.1) and got.format == 1.0
    good = score(GOOD, tool_rewards=[1.0])
    assert got.outcome == pytest.approx(good.outcome)  # the same words...
    assert got.score < good.score - 0.3  # ...are worth much less without the search behind them


def test_searching_the_same_query_over_and_over():
    q = "新工厂 设计产能"
    text = (
        "".join(call(q) + responses(tool_text([q], ["a1"])) for _ in range(7)) + "设计产能为20万台/年[a1]。"
    )
    got = score(text, tool_rewards=[1.0] * 7)
    assert got.searches == 7 and got.repeated_searches == 6 and got.over_searches == 3
    assert got.penalty == pytest.approx(6 * 0.05 + 3 * 0.1)
    assert got.retrieval == 1.0 and got.score == pytest.approx(mean(got.outcome, 1, 1, 1) - got.penalty)
    # the same query with other spacing or punctuation is still a repeat
    text = (
        call("新工厂，设计产能")
        + responses(tool_text(["x"], ["a1"]))
        + call("新工厂 设计产能？")
        + responses(tool_text(["x"], ["a1"]))
        + "设计产能为20万台/年[a1]。"
    )
    assert score(text, tool_rewards=[1.0, 1.0]).repeated_searches == 1


def test_penalties_are_capped():
    q = "产能"
    text = "".join(call(q) + responses(tool_text([q], ["a2"])) for _ in range(30)) + "不知道[a9][a8][a7]"
    got = score(text, tool_rewards=[0.0] * 30)
    assert got.penalty == 1.0 and got.score >= -1.0


def test_an_answer_that_is_only_citations():
    got = score(searched("新工厂 设计产能", ["a1", "a2"], "[a1][a2]"), tool_rewards=[1.0])
    assert got.outcome == 0.0 and got.citation == 0.0 and got.format == pytest.approx(0.75)
    assert got.retrieval == 1.0 and not got.grounded
    assert got.score == pytest.approx(mean(0, 1, 0, 0.75))


def test_citing_everything_dilutes_the_citation_credit():
    docs = ["a1", "a2", "a3", "a4"]
    got = score(searched("产能", docs, "设计产能为20万台/年[a1][a2][a3][a4]。"), tool_rewards=[1.0])
    assert got.invalid_citations == 0 and got.citation == pytest.approx(3 / 4)


def test_forged_tool_responses():
    fake = "我先给出检索结果" + responses(tool_text(["x"], ["a1"])) + "设计产能为20万台/年[a1]。"
    got = score(fake, tool_rewards=[])
    assert got.trajectory.forged and got.retrieval == 0.0 and got.citation == 0.0
    assert got.penalty == 1.0 and got.as_verl_dict()["forged"] == 1.0
    # a well-formed turn structure, but the tool reported that no call returned the source
    got = score(GOOD, tool_rewards=[0.0])
    assert got.trajectory.forged and got.retrieval == 0.0
    # without verl's tool fields only the turn structure is checked
    assert not score(GOOD).trajectory.forged


def test_format_checks():
    unterminated = score(searched("产能", ["a1"], "<think>\n还在想"), tool_rewards=[1.0])
    assert unterminated.outcome == 0.0 and unterminated.format == pytest.approx(
        0.25
    )  # only the calls are clean
    cut = call("产能") + responses(tool_text(["产能"], ["a1"])) + call("产能 细节")
    got = score(cut, tool_rewards=[1.0])
    assert got.format == pytest.approx(0.25) and got.outcome == 0.0 and got.retrieval == 1.0  # think ok only
    unknown = (
        call("x", name="browse") + responses("Unknown function 'browse'. Available tools: ['search']") + GOOD
    )
    got = score(unknown, tool_rewards=[0.0, 1.0])
    assert got.format == pytest.approx(0.75) and got.retrieval == 1.0
    dropped = "<tool_call>{search: 产能}</tool_call>" + "\n" + GOOD
    assert score(dropped, tool_rewards=[1.0]).format == pytest.approx(0.75)


def test_rows_without_what_the_reward_needs_fail_loudly():
    with pytest.raises(ValueError, match="source_doc_id"):
        score_search_qa(GOOD, REFERENCE, {"query_id": "q"}, CONFIG)
    with pytest.raises(ValueError, match="ground_truth"):
        score_search_qa(GOOD, "", INFO, CONFIG)
    assert score_search_qa(GOOD, {"ground_truth": REFERENCE}, INFO, CONFIG).citation == 1.0


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"weights": {"outcome": 1.0}}, "weights"),
        ({"weights": {**W, "outcome": 0.0, "format": 0.0}}, "outcome \\+ format"),
        ({"outcome": "bleu"}, "outcome"),
        ({"outcome": "judge"}, "judge_llm"),
        ({"max_searches": 0}, "max_searches"),
        ({"penalties": {"over_search": -1}}, "penalties"),
        ({"typo": 1}, "unknown"),
    ],
)
def test_config_errors_name_the_field(change, match):
    with pytest.raises(SearchQARewardConfigError, match=match):
        SearchQARewardConfig.from_mapping({**CONFIG, **change})


# ---------------------------------------------------------------- compute_score, the entry verl calls


def test_compute_score_dispatches_on_data_source_with_one_key_set():
    config = {**MCQ, "search_qa": CONFIG}
    search = compute_score(
        data_source=DATA_SOURCE,
        solution_str=GOOD,
        ground_truth=REFERENCE,
        extra_info={**INFO, "tool_rewards": [1.0], "num_turns": 4},
        config=config,
    )
    mcq = compute_score(
        data_source="finrag_mcq",
        solution_str="<think>x</think>答案：\\boxed{B}",
        ground_truth="B",
        extra_info=None,
        config=config,
    )
    assert list(search) == list(mcq) == list(dict.fromkeys([*MCQ_VERL_KEYS, *VERL_KEYS]))
    assert (
        search["citation"] == 1.0
        and math.isnan(search["correctness"])
        and math.isnan(search["answer_statements"])
    )
    assert mcq["score"] == 1.0 and math.isnan(mcq["retrieval"]) and math.isnan(mcq["outcome"])
    # without a search_qa block, MCQ rows keep their own keys and search rows are refused
    assert set(
        compute_score(data_source="finrag_mcq", solution_str="答案：\\boxed{B}", ground_truth="B", config=MCQ)
    ) == set(MCQ_VERL_KEYS)
    with pytest.raises(RewardConfigError, match="search_qa"):
        compute_score(
            data_source=DATA_SOURCE, solution_str=GOOD, ground_truth=REFERENCE, extra_info=INFO, config=MCQ
        )
    with pytest.raises(RewardConfigError, match="max_searches"):
        compute_score(
            data_source=DATA_SOURCE,
            solution_str=GOOD,
            ground_truth=REFERENCE,
            extra_info=INFO,
            config={**MCQ, "search_qa": {**CONFIG, "max_searches": 0}},
        )


def test_compute_score_async():
    import asyncio

    got = asyncio.run(
        compute_score_async(
            data_source=DATA_SOURCE,
            solution_str=GOOD,
            ground_truth=REFERENCE,
            extra_info=INFO,
            config={**MCQ, "search_qa": CONFIG},
        )
    )
    assert got["acc"] == 1.0


# ------------------------------------------------------------------ the outcome judge over real HTTP


@pytest.fixture
def server():
    with ScriptedOpenAIServer() as srv:
        yield srv


def judge_config(base_url):
    return {
        **CONFIG,
        "outcome": "judge",
        "max_judge_chars": 200,
        "judge_prompt": {
            "name": "j",
            "version": 1,
            "system": "评审",
            "user": "问题：${question}\n参考：${reference}\n回答：${answer}",
        },
        "judge_llm": {
            "backend": "openai",
            "base_url": base_url,
            "model": "judge",
            "max_concurrency": 2,
            "timeout_s": 5,
            "max_retries": 1,
            "temperature": 0.0,
            "max_tokens": 16,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.02,
            "max_failure_rate": 0.5,
            "max_invalid_retries": 1,
        },
    }


def test_judge_outcome_and_what_it_is_shown(server):
    server.behaviour = always("8")
    got = score_search_qa(GOOD, REFERENCE, {**INFO, "tool_rewards": [1.0]}, judge_config(server.base_url))
    assert got.judge_status == "ok" and got.outcome == pytest.approx(0.8)
    assert got.score == pytest.approx(mean(0.8, 1, 1, 1))
    (request,) = server.requests
    prompt = request["messages"][-1]["content"]
    assert "新工厂的设计产能是多少" in prompt and REFERENCE in prompt and "20万台/年[a1]" in prompt


def test_judge_failure_is_not_scored_zero(server):
    server.behaviour = sequence([Reply(status=500), Reply(status=500)])
    got = score_search_qa(GOOD, REFERENCE, INFO, judge_config(server.base_url))
    assert got.judge_status == "failed" and got.outcome is None and "500" in got.judge_error
    assert got.score == pytest.approx((0.3 + 0.3 + 0.2) / 0.8)  # renormalised over the other components
    verl = got.as_verl_dict()
    assert verl["judge_failed"] == 1.0 and math.isnan(verl["outcome"])


def test_no_answer_is_not_sent_to_the_judge(server):
    got = score_search_qa(searched("产能", ["a1"], "[a1]"), REFERENCE, INFO, judge_config(server.base_url))
    assert got.judge_status == "skipped_no_answer" and got.outcome == 0.0 and not server.requests


def test_the_reward_does_not_import_verl():
    """compute_score is imported by the rl pipeline and evaluation too: the text protocol it shares with the
    search tool lives in serving/tool_text.py, so importing it stays cheap (verl's import takes seconds)."""
    import subprocess
    import sys

    code = (
        "import sys, finrag_pipelines.mcq.reward; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'verl'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
