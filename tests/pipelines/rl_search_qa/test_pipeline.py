"""rl_search_qa: distilled queries + corpus + qrels → search-QA items (gold documents excluded), read by rl
through an optional view; the conf of both pipelines parses into their typed params in base and demo."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset

from finrag_pipelines.datasets.optional import OptionalParquetDataset
from finrag_pipelines.pipelines.rl.params import RewardParams, RlLaunchParams, RlTasksParams
from finrag_pipelines.pipelines.rl_search_qa import create_pipeline
from finrag_pipelines.pipelines.rl_search_qa.params import SelectParams
from finrag_pipelines.retrieval.types import Unavailable

ROOT = Path(__file__).resolve().parents[3]


def inputs(n=30):
    corpus = pd.DataFrame(
        {
            "doc_id": [f"a{i}" for i in range(n)],
            "title": "",
            "text": [f"尊敬的投资者您好，第{i}号工厂的设计产能为{i}万台/年。" for i in range(n)],
        }
    )
    queries = pd.DataFrame(
        {
            "query_id": [f"dq-{i}" for i in range(n)],
            "doc_id": [f"a{i}" for i in range(n)],
            "query": [f"第{i}号工厂产能多少？" for i in range(n)],
            "persona": "p",
            "question_type": "factoid",
            "difficulty": "easy",
            "model": "keyword-baseline",
            "prompt_hash": "h",
        }
    )
    qrels = pd.DataFrame(
        {"query_id": ["q1", "q2", "q2", "q3"], "doc_id": ["a1", "a2", "a3", "a4"], "score": [1, 1, 1, 0]}
    )
    return queries, corpus, qrels


def run(tmp_path, queries, corpus, qrels, **select):
    catalog = DataCatalog(
        {
            "search_qa_items@parquet": ParquetDataset(filepath=str(tmp_path / "items.parquet")),
            "search_qa_report": JSONDataset(filepath=str(tmp_path / "report.json")),
        }
    )
    catalog["distilled_queries"], catalog["corpus"], catalog["eval_qrels"] = queries, corpus, qrels
    catalog["params:rl_search_qa.select"] = SelectParams(
        **{"min_relevance": 1, "max_reference_chars": 500, "val_size": 4, "seed": 7, **select}
    )
    SequentialRunner().run(create_pipeline(), catalog)


def test_items_exclude_gold_documents_and_the_report_counts_them(tmp_path):
    run(tmp_path, *inputs())
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert (
        report["distilled_queries"] == 30 and report["excluded_gold_document"] == 3 and report["kept"] == 27
    )
    assert report["gold_documents"] == 3 and report["evaluation_questions"] == 2  # a4 is graded 0: not gold
    assert report["splits"] == {"train": 23, "val": 4}
    view = OptionalParquetDataset(filepath=str(tmp_path / "items.parquet"), producer="rl_search_qa")
    items = view.load()
    assert not {"a1", "a2", "a3"} & set(items["doc_id"]) and "a4" in set(items["doc_id"])
    assert (
        items.loc[items["doc_id"] == "a7", "reference"].item()
        == "尊敬的投资者您好，第7号工厂的设计产能为7万台/年。"
    )


def test_nothing_left_is_an_error(tmp_path):
    queries, corpus, qrels = inputs(3)
    qrels = pd.DataFrame({"query_id": ["q"] * 3, "doc_id": ["a0", "a1", "a2"], "score": [1, 1, 1]})
    with pytest.raises(Exception, match="no search-QA item left"):
        run(tmp_path, queries, corpus, qrels)


def test_optional_view_stands_in_when_the_file_is_missing(tmp_path):
    view = OptionalParquetDataset(filepath=str(tmp_path / "none.parquet"), producer="rl_search_qa")
    assert view.optional and not view.exists()
    stand_in = view.load()
    assert isinstance(stand_in, Unavailable) and "kedro run --pipelines rl_search_qa" in stand_in.reason
    with pytest.raises(Exception, match="rl_search_qa pipeline writes it"):
        view.save(pd.DataFrame())


@pytest.mark.parametrize("env", ["base", "demo"])
def test_conf_parses_into_the_typed_params(env):
    from finrag_pipelines import settings

    loader = settings.CONFIG_LOADER_CLASS(
        str(ROOT / "conf"), env="local" if env == "base" else env, **settings.CONFIG_LOADER_ARGS
    )
    params = loader["parameters"]
    rl = params["rl"]
    tasks = RlTasksParams(**rl["tasks"])
    RewardParams(**rl["reward"])
    launch = RlLaunchParams(**rl["launch"])
    SelectParams(**params["rl_search_qa"]["select"])
    assert tasks.search_qa is (env == "demo") and tasks.mcq  # off in base (an LLM upstream), on in the demo
    if tasks.search_qa:
        assert (ROOT / launch.verl["tool_config_path"]).is_file()
    catalog = loader["catalog"]
    assert catalog["search_qa_items@optional"]["filepath"] == catalog["search_qa_items@parquet"]["filepath"]
    for name in ("prompt_rl_search_qa", "prompt_search_qa_judge"):
        assert (ROOT / catalog[name]["filepath"]).is_file()
    assert yaml.safe_load((ROOT / "conf/base/verl/search_tool.yaml").read_text("utf-8"))["tools"][0][
        "config"
    ]["topk"]
