"""mcq_evaluation against a real local OpenAI-protocol server: scoring, failures not scored, resume."""

import json
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pickle import PickleDataset

from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer
from finrag_pipelines.pipelines.mcq_evaluation import create_pipeline, nodes
from finrag_pipelines.pipelines.mcq_evaluation.params import AskParams, ScoreParams, SelectParams

ROOT = Path(__file__).resolve().parents[3]


def _items() -> pd.DataFrame:
    rows = []
    for i in range(12):
        kind = "multi" if i % 3 == 0 else "single"
        rows.append(
            {
                "item_id": f"s:{i}",
                "source": "alpha" if i < 8 else "beta",
                "subject": "x",
                "question": f"第{i}题：以下哪项正确？",
                "options": json.dumps({"A": "甲", "B": "乙", "C": "丙", "D": "丁"}),
                "answer": "AC" if kind == "multi" else "B",
                "kind": kind,
                "explanation": None,
                "question_key": str(i),
                "split": "eval" if i < 10 else "sft_train",
            }
        )
    return pd.DataFrame(rows)


def behaviour_for(broken: set[int]):
    """Item i: 0-3 correct and well formatted, 4 wrong, 5 answer with no box, 6 two answers,
    7 think only; broken → 500."""
    lock, seen = threading.Lock(), {}

    def behaviour(body, n):
        text = body["messages"][-1]["content"]
        i = int(text.split("第", 1)[1].split("题", 1)[0])
        with lock:
            seen[i] = seen.get(i, 0) + 1
        if i in broken:
            return Reply(status=500, error_message="internal error")
        gold = "AC" if i % 3 == 0 else "B"
        answers = {
            4: "推理……\n答案：\\boxed{D}",
            5: "推理……\n答案：" + gold,
            6: "推理……\n答案：\\boxed{" + gold + "}\n答案：\\boxed{" + gold + "}",
            7: "<think>答案：\\boxed{" + gold + "}",
        }
        return Reply(content=answers.get(i, "<think>想一想</think>因为……\n答案：\\boxed{" + gold[::-1] + "}"))

    return behaviour


def catalog_for(server, journal: Path) -> DataCatalog:
    base_llm = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())["llm"]
    catalog = DataCatalog(
        {
            "mcq_splits": MemoryDataset(_items()),
            "llm_credentials": MemoryDataset({"api_key": "test-key"}),
            "llm_journal": MemoryDataset(ResponseJournal(journal), copy_mode="assign"),
            # persisted like the catalog does (runners release memory datasets after their last use)
            **{
                name: PickleDataset(filepath=str(journal.parent / f"{name}.pkl"))
                for name in ("mcq_eval_items", "mcq_answers", "mcq_scores", "mcq_metrics", "mcq_report")
            },
        }
    )
    catalog["params:llm"] = LLMConfig.from_mapping(
        {
            **base_llm,
            "backend": "openai",
            "base_url": server.base_url,
            "model": "stub-qwen",
            "max_retries": 1,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.02,
            "timeout_s": 5,
            "max_failure_rate": 0.15,
        }
    )
    conf = yaml.safe_load((ROOT / "conf/base/parameters_mcq_evaluation.yml").read_text())["mcq_evaluation"]
    catalog["params:mcq_evaluation.select"] = SelectParams(**conf["select"])
    catalog["params:mcq_evaluation.ask"] = AskParams(**conf["ask"])
    catalog["params:mcq_evaluation.score"] = ScoreParams(**conf["score"])
    return catalog


def test_scores_by_source_and_kind_and_resumes(tmp_path):
    journal = tmp_path / "journal.jsonl"
    with ScriptedOpenAIServer(behaviour_for(broken={9})) as server:
        catalog = catalog_for(server, journal)
        SequentialRunner().run(create_pipeline(), catalog)
        first = server.count
    scores = catalog.load("mcq_scores").set_index("item_id")
    assert len(scores) == 10  # only the eval split is asked
    assert scores.loc["s:9", "status"] == "failed" and pd.isna(
        scores.loc["s:9", "correct"]
    )  # not scored as wrong
    assert "HTTP 500" in scores.loc["s:9", "reason"]
    assert scores.loc[
        [f"s:{i}" for i in range(4)], "correct"
    ].all()  # multi-select in any order: "CA" == "AC"
    assert scores.loc["s:4", "correct"] == False and scores.loc["s:4", "format_ok"] == True  # noqa: E712
    assert pd.isna(scores.loc["s:5", "predicted"]) and scores.loc["s:5", "format_ok"] == False  # noqa: E712
    assert scores.loc["s:6", "reason"] == "duplicated_answers" and scores.loc["s:6", "format_ok"] == False  # noqa: E712
    assert scores.loc["s:7", "reason"] == "unterminated_think" and scores.loc["s:7", "correct"] == False  # noqa: E712
    metrics = catalog.load("mcq_metrics")
    assert metrics["overall"] == {
        "items": 10,
        "answered": 9,
        "failed": 1,
        "accuracy": pytest.approx(6 / 9, abs=1e-6),
        "format_compliance": pytest.approx(6 / 9, abs=1e-6),
    }
    assert metrics["by_source"]["beta"]["items"] == 2 and metrics["by_kind"]["multi"]["items"] == 4
    assert "| overall | 10 | 9 | 1 | 0.6667 | 0.6667 |" in catalog.load("mcq_report")
    # the endpoint recovers: only the failed item is asked again
    with ScriptedOpenAIServer(behaviour_for(broken=set())) as server:
        catalog = catalog_for(server, journal)
        SequentialRunner().run(create_pipeline(), catalog)
        assert server.count == 1 and first >= 10
    assert catalog.load("mcq_metrics")["overall"]["failed"] == 0


def test_too_many_failures_fail_the_run_after_saving_scores(tmp_path):
    with ScriptedOpenAIServer(behaviour_for(broken={1, 2, 3})) as server:
        catalog = catalog_for(server, tmp_path / "journal.jsonl")
        with pytest.raises(Exception, match="max_failure_rate"):
            SequentialRunner().run(create_pipeline(), catalog)
    assert (catalog.load("mcq_scores")["status"] == "failed").sum() == 3


def test_offline_backend_is_refused_with_a_hint():
    items = _items()
    llm = LLMConfig.from_mapping(
        {**yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())["llm"], "backend": "keyword"}
    )
    with pytest.raises(ValueError, match="llm.backend=openai"):
        nodes.ask_eval_items(items, llm, {}, None, AskParams(llm_overrides={}, system_prompt=None))
