"""The GRPO reward: components, partial credit, config sources, and the LLM judge over real HTTP."""

from __future__ import annotations

import json
import math

import pytest

from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, always, sequence
from finrag_pipelines.mcq import reward as rw
from finrag_pipelines.mcq.reward import RewardConfigError, compute_score, score_response

OPTIONS = {"A": "货币市场", "B": "债券市场", "C": "商品市场", "D": "金融衍生品市场"}
INFO = {
    "item_id": "t:1",
    "kind": "multi",
    "options": json.dumps(OPTIONS, ensure_ascii=False),
    "question": "我国金融市场体系包括（）。",
}
SINGLE = {**INFO, "kind": "single"}
BASE = {
    "weights": {"format": 0.2, "correctness": 1.0, "process": 0.0},
    "partial_credit": 0.0,
    "allow_fallback": False,
}
GOOD = "<think>货币市场、债券市场和衍生品市场都属于金融市场，商品市场不是。</think>\n\n答案：\\boxed{ABD}"


def score(text, truth="ABD", info=INFO, **cfg):
    return compute_score(
        data_source="finrag_mcq",
        solution_str=text,
        ground_truth=truth,
        extra_info=info,
        config={**BASE, **cfg},
    )


def test_correct_answer_scores_one():
    got = score(GOOD)
    assert got["score"] == pytest.approx(1.0) and got["acc"] == 1.0 and got["format"] == 1.0
    assert math.isnan(got["process"]) and got["judge_failed"] == 0.0


@pytest.mark.parametrize(
    ("text", "correct", "fmt"),
    [
        ("<think>分析</think>\n答案：\\boxed{DBA}", 1.0, 1.0),  # any order
        ("<think>分析</think>\n答案：\\boxed{ａ、ｂ、ｄ}", 1.0, 1.0),  # full-width, lower case, 、
        ("<think>分析</think>\n答案：\\boxed{AB}", 0.0, 1.0),  # subset: no partial credit by default
        ("<think>分析</think>\n答案：\\boxed{ABCD}", 0.0, 1.0),  # a wrong letter
        ("<think>分析</think>\n答案：ABD", 0.0, 2 / 3),  # missing format (fallback off)
        ("<think>分析</think>\n答案：\\boxed{ABD}\n答案：\\boxed{ABD}", 1.0, 2 / 3),  # duplicated
        ("<think>分析</think>\n答案：\\boxed{ABD}\n答案：\\boxed{AB}", 0.0, 2 / 3),  # conflicting
        ("<think>答案：\\boxed{ABD}</think>\n", 0.0, 2 / 3),  # only inside think
        ("<think>分析，答案是ABD", 0.0, 0.0),  # unterminated think (cut off): no answer, no format credit
        ("<think>分析</think>\n答案：\\boxed{ABF}", 0.0, 2 / 3),  # letter not among options
        ("答案：\\boxed{ABD}", 1.0, 2 / 3),  # empty reasoning
    ],
)
def test_components(text, correct, fmt):
    got = score(text)
    assert got["correctness"] == pytest.approx(correct)
    assert got["format"] == pytest.approx(fmt)
    assert got["score"] == pytest.approx((0.2 * fmt + correct) / 1.2)


def test_partial_credit_only_for_multi_strict_subsets():
    assert score("<think>x</think>答案：\\boxed{AB}", partial_credit=0.5)["correctness"] == 0.5
    assert score("<think>x</think>答案：\\boxed{ABC}", partial_credit=0.5)["correctness"] == 0.0
    assert (
        score("<think>x</think>答案：\\boxed{A}", truth="B", info=SINGLE, partial_credit=0.5)["correctness"]
        == 0.0
    )


def test_fallback_counts_for_correctness_only_when_enabled():
    text = "<think>x</think>\n答案：ABD"
    assert score(text)["correctness"] == 0.0
    got = score(text, allow_fallback=True)
    assert got["correctness"] == 1.0 and got["format"] == pytest.approx(2 / 3)


def test_ground_truth_may_be_the_reward_model_dict_and_bad_truth_raises():
    assert score(GOOD, truth={"style": "rule", "ground_truth": "ABD"})["acc"] == 1.0
    with pytest.raises(ValueError, match="t:1"):
        score(GOOD, truth="是")


def test_config_from_file_env_and_errors(tmp_path, monkeypatch):
    path = tmp_path / "reward.json"
    path.write_text(json.dumps(BASE), encoding="utf-8")
    kwargs = {"data_source": "x", "solution_str": GOOD, "ground_truth": "ABD", "extra_info": INFO}
    assert compute_score(**kwargs, config_path=str(path))["acc"] == 1.0  # verl reward_kwargs
    monkeypatch.setenv(rw.CONFIG_ENV, str(path))
    assert compute_score(**kwargs)["acc"] == 1.0  # verl calls with its four keywords only
    monkeypatch.delenv(rw.CONFIG_ENV)
    with pytest.raises(RewardConfigError, match=rw.CONFIG_ENV):
        compute_score(**kwargs)
    with pytest.raises(RewardConfigError, match="weigths"):
        compute_score(**kwargs, weigths={})
    with pytest.raises(RewardConfigError, match="partial_credit"):
        compute_score(**kwargs, config={**BASE, "partial_credit": 1.5})
    with pytest.raises(RewardConfigError, match="judge"):
        compute_score(**kwargs, config={**BASE, "judge": {"enabled": True}})


def test_verl_dict_is_numbers_only_with_fixed_keys():
    keys = None
    for text in (GOOD, "", "<think>x"):
        got = score(text)
        assert all(isinstance(v, float) for v in got.values())
        keys = keys or set(got)
        assert set(got) == keys


# ------------------------------------------------------------------ judge over real HTTP


def judge_config(base_url, **llm):
    return {
        **BASE,
        "weights": {"format": 0.2, "correctness": 1.0, "process": 0.8},
        "judge": {
            "enabled": True,
            "max_reasoning_chars": 200,
            "llm": {
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
                **llm,
            },
        },
    }


@pytest.fixture
def server():
    with ScriptedOpenAIServer() as srv:
        yield srv


def test_judge_success_and_what_it_is_shown(server):
    server.behaviour = always("8")
    info = {**INFO, "explanation": "参考解析：商品市场不属于金融市场"}  # must never reach the judge
    got = score_response(GOOD, "ABD", info, judge_config(server.base_url))
    assert got.judge_status == "ok" and got.process == pytest.approx(0.8)
    assert got.score == pytest.approx((0.2 + 1.0 + 0.8 * 0.8) / 2.0)
    (request,) = server.requests
    prompt = request["messages"][-1]["content"]
    assert "我国金融市场体系包括" in prompt and "D. 金融衍生品市场" in prompt and "【正确答案】ABD" in prompt
    assert "商品市场不是" in prompt  # the model's reasoning
    assert "参考解析" not in prompt  # never the reference explanation


def test_judge_reply_with_thinking_and_retry_on_unparsable(server):
    server.behaviour = sequence(["我觉得不错", "<think>嗯</think>7"])
    got = score_response(GOOD, "ABD", INFO, judge_config(server.base_url))
    assert got.judge_status == "ok" and got.process == pytest.approx(0.7) and len(server.requests) == 2


def test_judge_failure_is_marked_not_scored_zero(server):
    server.behaviour = sequence([Reply(status=500), Reply(status=500), Reply(status=500)])
    cfg = judge_config(server.base_url)
    got = score_response(GOOD, "ABD", INFO, cfg)
    assert got.judge_status == "failed" and got.process is None and "500" in got.judge_error
    assert len(server.requests) == 2  # the client's retries (max_retries=1) were used first
    assert got.score == pytest.approx(1.0)  # renormalised over format + correctness, not dragged to 0
    verl = compute_score(data_source="x", solution_str=GOOD, ground_truth="ABD", extra_info=INFO, config=cfg)
    assert verl["judge_failed"] == 1.0 and math.isnan(verl["process"]) and verl["score"] == pytest.approx(1.0)


def test_judge_unparsable_every_time_is_a_failure(server):
    server.behaviour = always("很好")
    got = score_response(GOOD, "ABD", INFO, judge_config(server.base_url))
    assert (
        got.judge_status == "failed" and "unparsable" in got.judge_error and got.score == pytest.approx(1.0)
    )


def test_no_reasoning_is_not_sent_to_the_judge(server):
    got = score_response("答案：\\boxed{ABD}", "ABD", INFO, judge_config(server.base_url))
    assert got.judge_status == "skipped_no_reasoning" and got.process == 0.0 and not server.requests


def test_parse_judge_score():
    assert rw.parse_judge_score("10") == 1.0 and rw.parse_judge_score("分数：6.5") == 0.65
    for bad in ("", "十分", "11"):
        with pytest.raises(ValueError):
            rw.parse_judge_score(bad)


def test_verl_style_file_loading_of_the_entry_point(tmp_path):
    """verl's load_extern_object: spec_from_file_location under a made-up name, then exec_module."""
    import importlib.util
    from pathlib import Path

    from finrag_pipelines.mcq import verl_reward

    path = tmp_path / "reward.json"
    path.write_text(json.dumps(BASE), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("custom_module_123", Path(verl_reward.__file__))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    got = module.compute_score(
        data_source="x", solution_str=GOOD, ground_truth="ABD", extra_info=INFO, config_path=str(path)
    )
    assert got["acc"] == 1.0


def test_verl_reward_manager_keywords_are_accepted_and_typos_refused():
    """verl's reward managers add reward_router_address / reward_model_tokenizer
    when a reward model is served."""
    kwargs = {
        "data_source": "finrag_mcq",
        "solution_str": "因为……\n答案：\\boxed{B}",
        "ground_truth": "B",
        "extra_info": None,
        "config": BASE,
    }
    assert (
        compute_score(**kwargs, reward_router_address="127.0.0.1:1", reward_model_tokenizer=None)["score"]
        == 1.0
    )
    with pytest.raises(RewardConfigError, match="config_pth"):
        compute_score(**kwargs, config_pth="x.json")
