"""sft_distill nodes on tiny inline data: grounded QA dedup, output checks, documents, rewrites, ceilings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from finrag_pipelines.llm.batch import LLMFailureRateError
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, last_user_message
from finrag_pipelines.pipelines.sft_distill import nodes, validators
from finrag_pipelines.pipelines.sft_distill.params import CalcParams, GroundedParams, RewriteParams

ROOT = Path(__file__).resolve().parents[3]
CONF = yaml.safe_load((ROOT / "conf/base/parameters_sft_distill.yml").read_text(encoding="utf-8"))[
    "sft_distill"
]
BASE_LLM = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text(encoding="utf-8"))["llm"]
GROUNDED = GroundedParams(**CONF["grounded"])


def judged(rows: list[dict]) -> pd.DataFrame:
    base = {
        "doc_id": "d",
        "task": "fact_lookup",
        "question": None,
        "answer": "答",
        "error": None,
        "model": "m",
        "prompt_hash": "h",
        "passage": "资料",
        "supported": True,
        "judge_reason": "",
        "judge_error": None,
    }
    return pd.DataFrame([{**base, **r} for r in rows])


def test_grounded_pairs_are_deduplicated_against_evaluation_queries():
    eval_queries = pd.DataFrame(
        {"query_id": ["q1"], "text": ["请问公司2021年的营业收入同比增长了多少个百分点？"]}
    )
    table = judged(
        [
            {
                "doc_id": "d1",
                "question": "请问公司2021年的营业收入同比增长了多少个百分点",
            },  # the eval query, punctuation aside
            {
                "doc_id": "d2",
                "question": "请问公司2021年度的营业收入同比增长了多少个百分点？",
            },  # a near duplicate of it
            {"doc_id": "d3", "question": "该基金的管理费率和托管费率分别是多少？"},
            {"doc_id": "d4", "question": "该基金的管理费率和托管费率分别是多少？"},  # a repeat of d3
            {"doc_id": "d5", "question": "公司为何调整了分红方案？", "supported": False},
            {
                "doc_id": "d6",
                "question": None,
                "answer": None,
                "error": "invalid output: empty",
                "supported": None,
            },
            {
                "doc_id": "d7",
                "question": "董事会何时换届？",
                "supported": None,
                "judge_error": "HTTP 500 after 2 attempts",
            },
        ]
    )
    out = nodes.select_grounded_qa(table, eval_queries, {}, GROUNDED)
    assert list(out["status"]) == [
        "eval_duplicate",
        "eval_duplicate",
        "kept",
        "duplicate",
        "unsupported",
        "write_failed",
        "judge_failed",
    ]


def test_grounded_output_checks():
    check = validators.grounded_pair((8, 60), 100)
    assert check('```json\n{"问题": "公司2021年的营业收入是多少？", "答案": "12.3亿元"}\n```') == {
        "question": "公司2021年的营业收入是多少？",
        "answer": "12.3亿元",
    }
    for bad, reason in [
        ('{"question": "短问题", "answer": "x"}', "characters"),
        ('{"question": "What was the revenue in 2021?", "answer": "x"}', "not Chinese"),
        ('{"question": "公司2021年的营业收入是多少？"}', "missing field 'answer'"),
        ('{"question": "公司2021年的营业收入是多少？", "answer": ""}', "answer of 0"),
    ]:
        with pytest.raises(ValueError, match=reason):
            check(bad)
    assert validators.support_verdict('{"supported": "是", "reason": "文中有"}') == {
        "supported": True,
        "reason": "文中有",
    }
    assert validators.support_verdict('{"supported": false}')["supported"] is False
    with pytest.raises(ValueError, match="true or false"):
        validators.support_verdict('{"supported": "maybe"}')
    assert validators.rewritten_stem("**改写后的题干：** 小王借款100元。") == "小王借款100元。"
    with pytest.raises(ValueError, match="empty"):
        validators.non_empty("  \n")


def test_grounded_documents_are_seeded_with_distinct_task_types():
    corpus = pd.DataFrame(
        {
            "doc_id": [f"d{i}" for i in range(30)],
            "title": "",
            "text": ["短"] * 5 + [f"第{i}篇文档，" + "内容" * 60 for i in range(25)],
        }
    )
    params = GroundedParams(
        **{
            **CONF["grounded"],
            "tasks_per_document": 2,
            "documents": {**CONF["grounded"]["documents"], "max_documents": 10},
        }
    )
    docs = nodes.select_grounded_documents(corpus, params)
    assert (
        len(docs) == 20
        and docs["doc_id"].nunique() == 10
        and not docs["doc_id"].isin([f"d{i}" for i in range(5)]).any()
    )
    assert (docs.groupby("doc_id")["task"].nunique() == 2).all() and set(docs["task"]) <= set(
        params.task_types
    )
    assert (docs["passage"].str.len() <= params.documents.passage_max_chars).all()
    pd.testing.assert_frame_equal(docs, nodes.select_grounded_documents(corpus, params))


def test_rewrites_are_kept_only_with_every_number_and_a_sane_length(tmp_path):
    questions = nodes.generate_calc_questions(
        CalcParams(families=["loan_late_penalty"], per_family=6, seed=3)
    )

    def behaviour(body, n):
        scenario = last_user_message(body).split("【原题干】", 1)[1].strip()
        kind = n % 3
        if kind == 0:
            return Reply(content="请计算：" + scenario)
        if kind == 1:
            return Reply(content=scenario + "请写出详细过程。" * 30)  # numbers kept, far too long
        return Reply(content=scenario.replace("月", "个月", 1).replace("1", "2", 1))  # a number changed

    with ScriptedOpenAIServer(behaviour) as server:
        llm = LLMConfig.from_mapping(
            {
                **BASE_LLM,
                "backend": "openai",
                "base_url": server.base_url,
                "model": "stub",
                "max_concurrency": 1,
            }
        )
        params = RewriteParams(**{**CONF["rewrite"], "enabled": True, "fraction": 1.0})
        prompt = yaml.safe_load(
            (ROOT / "conf/base/prompts/sft_distill_rewrite.yml").read_text(encoding="utf-8")
        )
        out = nodes.rewrite_calc_stems(
            questions, llm, {}, ResponseJournal(tmp_path / "j.jsonl"), prompt, params
        )
    assert out["rewrite_status"].value_counts().to_dict() == {
        "kept": 2,
        "length_out_of_bounds": 2,
        "number_changed": 2,
    }
    kept = out[out["rewrite_status"] == "kept"]
    assert (
        kept["question"].str.startswith("请计算：") & kept["question"].str.endswith("保留两位小数）")
    ).all()
    untouched = out[out["rewrite_status"] != "kept"]
    assert (untouched["scenario"] == untouched["original_scenario"]).all()
    assert (out["options"] == questions["options"]).all() and (out["answer"] == questions["answer"]).all()
    assert nodes.check_rewrite_failures(out, llm) == {"requests": 6, "failed": 0}


def test_teacher_failures_above_the_ceiling_stop_the_run():
    llm = LLMConfig.from_mapping({**BASE_LLM, "max_failure_rate": 0.1})
    samples = pd.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "sample": 0,
            "text": ["x", None, None],
            "error": [None, "HTTP 500", "timeout"],
            "model": "m",
            "prompt_hash": "h",
        }
    )
    with pytest.raises(LLMFailureRateError, match="teacher reasoning"):
        nodes.check_reasoning_failures(samples, llm)
    assert nodes.check_reasoning_failures(samples.iloc[:1], llm) == {"requests": 1, "failed": 0}
