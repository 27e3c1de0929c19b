"""rag_answer end to end with a real SequentialRunner and catalog: a scripted OpenAI-protocol server speaking
function calling drives closed_book, single_shot and agent over a real BM25 index; the offline run reads
extractively and reports the LLM systems as not evaluated; the floor and the failure ceiling stop bad runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import ParquetDataset
from kedro_datasets.text import TextDataset

from finrag_pipelines.floors import FloorError, FloorParams
from finrag_pipelines.llm.batch import LLMFailureRateError
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.stub_agent import search_agent
from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer
from finrag_pipelines.pipelines.index_build.nodes import build_bm25_index
from finrag_pipelines.pipelines.index_build.params import BM25Params, LuceneParams
from finrag_pipelines.pipelines.rag_answer import create_pipeline
from finrag_pipelines.pipelines.rag_answer.params import BootstrapParams, QuestionParams
from finrag_pipelines.rag.judge import JudgeSettings
from finrag_pipelines.rag.settings import AnswerSettings, ExtractiveSettings, SearchSettings, SystemsParams
from finrag_pipelines.retrieval.types import Unavailable

ROOT = Path(__file__).resolve().parents[3]
CONF = yaml.safe_load((ROOT / "conf/base/parameters_rag_answer.yml").read_text(encoding="utf-8"))[
    "rag_answer"
]
RAW = ROOT / "data/01_raw/retrieval/disc_finllm"
N_DOCS = 60
SYSTEMS = {
    "closed_book": {"kind": "closed_book"},
    "single_shot": {"kind": "single_shot", "retriever": "bm25"},
    "agent": {"kind": "agent", "retriever": "bm25"},
    "single_shot_finetuned": {"kind": "single_shot", "retriever": "hybrid_finetuned"},
    "agent_finetuned": {"kind": "agent", "retriever": "hybrid_finetuned"},
}
METRIC_KEYS = {
    "n_questions",
    "answered",
    "abstained",
    "failed",
    "search_recall",
    "citation_precision",
    "citation_recall",
    "answer_f1",
    "rouge_l",
    "judge_score",
    "mean_searches",
}


def _rows(name):
    return [
        json.loads(line) for line in (RAW / name).read_text(encoding="utf-8").splitlines() if line.strip()
    ]


@pytest.fixture(scope="module")
def world():
    corpus = pd.DataFrame(
        [
            {"doc_id": r["_id"], "title": r.get("title") or "", "text": r["text"]}
            for r in _rows("corpus.jsonl")[:N_DOCS]
        ]
    )
    qrels = pd.read_csv(RAW / "qrels.tsv", sep="\t").rename(
        columns={"query-id": "query_id", "corpus-id": "doc_id"}
    )
    qrels = qrels[qrels["doc_id"].isin(corpus["doc_id"])].reset_index(drop=True)
    queries = pd.DataFrame([{"query_id": r["_id"], "text": r["text"]} for r in _rows("queries.jsonl")])
    queries = queries[queries["query_id"].isin(qrels["query_id"])].reset_index(drop=True)
    # evaluation's split: a few tune questions that rag_answer must never ask
    splits = pd.DataFrame(
        {
            "query_id": queries["query_id"],
            "split": ["tune" if i % 5 == 0 else "report" for i in range(len(queries))],
        }
    )
    params = yaml.safe_load((ROOT / "conf/base/parameters_index_build.yml").read_text(encoding="utf-8"))
    conf = params["index_build"]
    bm25 = build_bm25_index(corpus, BM25Params(**conf["bm25"]), LuceneParams(**conf["lucene"]))
    return corpus, queries, qrels, splits, bm25


def catalog_for(world, tmp_path, llm: dict, **changes):
    corpus, queries, qrels, splits, bm25 = world
    missing = Unavailable(what="encoder", reason="model folder has no config.json yet")
    prompts = {
        f"prompt_rag_{n}": MemoryDataset(
            yaml.safe_load((ROOT / f"conf/base/prompts/rag_{n}.yml").read_text())
        )
        for n in ("closed_book", "single_shot", "agent", "agent_text", "judge")
    }
    catalog = DataCatalog(
        {
            "corpus": MemoryDataset(corpus),
            "eval_queries": MemoryDataset(queries),
            "eval_qrels": MemoryDataset(qrels),
            "query_splits": MemoryDataset(splits),
            "bm25_index": MemoryDataset(bm25, copy_mode="assign"),
            **{
                name: MemoryDataset(missing, copy_mode="assign")
                for name in (
                    "dense_index",
                    "base_encoder",
                    "dense_finetuned_index",
                    "finetuned_model@encoder",
                )
            },
            "llm_credentials": MemoryDataset({"api_key": "test"}),
            "llm_journal": MemoryDataset(ResponseJournal(tmp_path / "journal.jsonl"), copy_mode="assign"),
            **prompts,
            "rag_search_tool": MemoryDataset(
                yaml.safe_load((ROOT / "conf/base/verl/search_tool.yaml").read_text())
            ),
            **{
                name: JSONDataset(filepath=str(tmp_path / f"{name}.json"))
                for name in (
                    "rag_answers",
                    "rag_judgements",
                    "rag_summary",
                    "answer_metrics",
                    "rag_comparisons",
                )
            },
            "rag_per_question": ParquetDataset(filepath=str(tmp_path / "per_question.parquet")),
            "rag_questions": ParquetDataset(filepath=str(tmp_path / "questions.parquet")),
            "rag_report": TextDataset(filepath=str(tmp_path / "answer_report.md")),
            "rag_metrics_plot": MatplotlibDataset(filepath=str(tmp_path / "answer_metrics.png")),
        }
    )
    base_llm = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())["llm"]
    catalog["params:llm"] = LLMConfig.from_mapping({**base_llm, **llm})
    conf = {**CONF, "systems": SYSTEMS, **changes}
    catalog["params:rag_answer.questions"] = QuestionParams(**conf["questions"])
    catalog["params:rag_answer.systems"] = SystemsParams.model_validate(conf["systems"])
    catalog["params:rag_answer.answer"] = AnswerSettings(**conf["answer"])
    catalog["params:rag_answer.extractive"] = ExtractiveSettings(**conf["extractive"])
    catalog["params:rag_answer.search"] = SearchSettings(**conf["search"])
    catalog["params:rag_answer.judge"] = JudgeSettings(**conf["judge"])
    catalog["params:rag_answer.bootstrap"] = BootstrapParams(**{**conf["bootstrap"], "n_resamples": 200})
    catalog["params:rag_answer.floor"] = FloorParams(**conf["floor"])
    catalog["params:rag_answer.dataset_name"] = "disc_finllm"
    return catalog


def fast_llm(server, **extra):
    return {
        "backend": "openai",
        "base_url": server.base_url,
        "model": "stub-qwen",
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_retries": 1,
        "timeout_s": 5,
        "max_concurrency": 8,
        **extra,
    }


def test_all_systems_against_an_endpoint_write_metrics_report_and_answers(world, tmp_path):
    with ScriptedOpenAIServer(search_agent()) as server:
        catalog = catalog_for(world, tmp_path, fast_llm(server))
        SequentialRunner().run(create_pipeline(), catalog)
        asked = server.count
    questions = catalog.load("rag_questions")
    report_ids = set(world[3].loc[world[3]["split"] == "report", "query_id"])
    assert set(questions["query_id"]) <= report_ids and len(questions) == len(report_ids)
    n = len(questions)
    assert asked == n * (1 + 1 + 2)  # closed_book 1, single_shot 1, agent 2 turns
    metrics = catalog.load("answer_metrics")
    assert set(metrics) == {"closed_book", "single_shot", "agent"}
    for row in metrics.values():
        assert set(row) == METRIC_KEYS and row["n_questions"] == n and row["failed"] == 0
        assert row["judge_score"] is None  # the judge is off
    assert metrics["closed_book"]["search_recall"] is None and metrics["closed_book"]["mean_searches"] is None
    assert metrics["closed_book"]["citation_precision"] is None
    # BM25 finds gold documents on this easy set; the scripted model cites what it read
    assert metrics["single_shot"]["search_recall"] > 0.5 and metrics["agent"]["mean_searches"] == 1.0
    assert metrics["single_shot"]["answer_f1"] > metrics["closed_book"]["answer_f1"]
    summary = catalog.load("rag_summary")
    assert summary["systems"]["agent_finetuned"]["status"].startswith(
        "not evaluated: retriever hybrid_finetuned"
    )
    assert summary["systems"]["agent"]["protocol"] == "function_calling" and summary["floor"]["passed"]
    comparisons = catalog.load("rag_comparisons")
    measured = {(c["a"], c["b"], c["metric"]) for c in comparisons if c["status"] == "evaluated"}
    assert ("single_shot", "closed_book", "answer_f1") in measured and (
        "agent",
        "single_shot",
        "answer_f1",
    ) in measured
    assert any(c["status"] == "skipped" and c["a"] == "single_shot_finetuned" for c in comparisons)
    report = catalog.load("rag_report")
    assert "`single_shot − closed_book`: answer_f1" in report and "`agent − single_shot`" in report
    assert "`single_shot_finetuned − closed_book`: not measured" in report
    answers = catalog.load("rag_answers")["records"]
    agent = next(r for r in answers if r["system"] == "agent")
    assert agent["searches"][0]["doc_ids"] and agent["citations"] and agent["messages"][3]["role"] == "tool"
    assert (tmp_path / "answer_metrics.png").stat().st_size > 1000


def test_offline_run_reads_extractively_and_reports_llm_systems_not_evaluated(world, tmp_path):
    catalog = catalog_for(world, tmp_path, {"backend": "keyword"})
    SequentialRunner().run(create_pipeline(), catalog)
    metrics = catalog.load("answer_metrics")
    assert set(metrics) == {"single_shot"} and metrics["single_shot"]["answer_f1"] > 0.1
    summary = catalog.load("rag_summary")
    assert summary["systems"]["single_shot"]["model"] == "extractive (not an LLM)"
    for name in ("closed_book", "agent"):
        assert "needs an LLM" in summary["systems"][name]["status"]
    report = catalog.load("rag_report")
    assert "extractive (not an LLM)" in report and "`agent − single_shot`: not measured" in report


def test_judge_scores_and_marks_failures_never_zero(world, tmp_path):
    def behaviour(body, n):  # the judge cannot rate answers about options (期权): unreadable, twice
        prompt = body["messages"][-1]["content"]
        if "评分维度" in prompt:
            return Reply(
                content="无法评分" if "期权" in prompt else '{"correct": 2, "faithful": "1", "complete": 2}'
            )
        return search_agent()(body, n)

    judge = {**CONF["judge"], "enabled": True}
    with ScriptedOpenAIServer(behaviour) as server:
        catalog = catalog_for(
            world,
            tmp_path,
            fast_llm(server, max_invalid_retries=1),
            systems={"single_shot": SYSTEMS["single_shot"]},
            judge=judge,
            bootstrap={**CONF["bootstrap"], "comparisons": [["single_shot", "single_shot"]]},
        )
        SequentialRunner().run(create_pipeline(), catalog)
    per_question = catalog.load("rag_per_question")
    failed = per_question["judge_error"].notna()
    assert failed.any() and per_question.loc[failed, "judge_score"].isna().all()
    assert per_question.loc[~failed, "judge_score"].tolist() == pytest.approx([5 / 6] * int((~failed).sum()))
    assert per_question.loc[failed, "judge_error"].str.startswith("invalid output").all()
    assert catalog.load("answer_metrics")["single_shot"]["judge_score"] == pytest.approx(5 / 6)
    assert catalog.load("rag_summary")["systems"]["single_shot"]["judge_failures"] == int(failed.sum())


def test_failure_ceiling_and_floor_stop_the_run_after_saving_the_summary(world, tmp_path):
    with ScriptedOpenAIServer(lambda body, n: Reply(status=500)) as server:
        catalog = catalog_for(
            world, tmp_path, fast_llm(server), systems={"closed_book": SYSTEMS["closed_book"]}
        )
        with pytest.raises(LLMFailureRateError, match="rag_answer"):
            SequentialRunner().run(create_pipeline(), catalog)
    summary = catalog.load("rag_summary")
    assert summary["systems"]["closed_book"]["failed"] == summary["systems"]["closed_book"]["n_questions"]
    assert not catalog.exists("answer_metrics")
    abstain = CONF["answer"]["abstention_phrase"]
    with ScriptedOpenAIServer(lambda body, n: Reply(content=abstain)) as server:
        catalog = catalog_for(
            world, tmp_path / "b", fast_llm(server), systems={"closed_book": SYSTEMS["closed_book"]}
        )
        with pytest.raises(FloorError, match=r"rag_answer kept 0 of \d+ answers.*abstained"):
            SequentialRunner().run(create_pipeline(), catalog)
    assert catalog.load("rag_summary")["systems"]["closed_book"]["abstained"] > 0
