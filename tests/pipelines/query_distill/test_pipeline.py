"""query_distill end to end over a real local OpenAI-compatible server (scripted), and the keyword backend."""

import json
import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.pandas import ParquetDataset

from finrag_pipelines.embedding.hf_encoder import HFEncoder
from finrag_pipelines.embedding.store import EmbeddingStore
from finrag_pipelines.execution import ExecutionConfig, start_local_ray
from finrag_pipelines.floors import FloorError, FloorParams
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, always, echo, last_user_message
from finrag_pipelines.pipelines.query_distill import create_pipeline
from finrag_pipelines.pipelines.query_distill.params import (
    AnswerParams,
    CleanParams,
    KeywordBackendParams,
    PersonaParams,
    SelectParams,
    SpecParams,
)
from finrag_pipelines.retrieval.bm25.index import BM25Index
from finrag_pipelines.retrieval.bm25.scoring import BM25Config
from finrag_pipelines.retrieval.dense import DenseIndex
from finrag_pipelines.text.corpus import corpus_hash, indexable
from finrag_pipelines.text.tokenize import FinanceTokenizer

ROOT = Path(__file__).resolve().parents[3]
CONF = yaml.safe_load((ROOT / "conf/base/parameters_query_distill.yml").read_text(encoding="utf-8"))[
    "query_distill"
]
N_DOCS = 24
PERSONAS = pd.DataFrame(
    {
        "persona_id": [f"p{i}" for i in range(6)],
        "persona": [
            "a retail investor",
            "a bank analyst",
            "a fund manager",
            "an accountant",
            "a journalist",
            "a student",
        ],
    }
)
PERSONAS["persona_text"] = PERSONAS["persona"]


@pytest.fixture(scope="module")
def world(disc_corpus, tiny_qwen3_dir, tmp_path_factory):
    """A small corpus, its BM25 index and a persona index built with the tiny local Qwen3."""
    corpus = pd.DataFrame(
        {
            "doc_id": [d for d, _ in disc_corpus[:N_DOCS]],
            "title": "",
            "text": [t for _, t in disc_corpus[:N_DOCS]],
        }
    )
    ids, texts, digest = indexable(corpus["doc_id"], corpus["title"], corpus["text"])
    bm25 = BM25Index.build(
        ids, texts, FinanceTokenizer(stopwords="builtin", search_mode=True), BM25Config(), digest
    )
    encoder = HFEncoder(str(tiny_qwen3_dir), query_task="为文档检索提问人", max_length=64, batch_size=8)
    vectors = encoder.encode_documents(list(PERSONAS["persona_text"]))
    persona_index = DenseIndex.build(
        list(PERSONAS["persona_id"]),
        vectors,
        {**encoder.describe(), "fingerprint": encoder.fingerprint},
        corpus_hash(list(PERSONAS["persona_id"]), list(PERSONAS["persona_text"])),
    )
    return corpus, bm25, encoder, persona_index, tmp_path_factory.mktemp("qd")


def catalog_for(world, llm: dict, journal_path, execution: dict | None = None):
    corpus, bm25, encoder, persona_index, tmp = world
    catalog = DataCatalog(
        {
            "corpus": MemoryDataset(corpus),
            "bm25_index": MemoryDataset(bm25, copy_mode="assign"),
            "persona_index": MemoryDataset(persona_index, copy_mode="assign"),
            "persona_encoder": MemoryDataset(encoder, copy_mode="assign"),
            "embedding_store": MemoryDataset(EmbeddingStore(tmp / "store"), copy_mode="assign"),
            "finance_personas": MemoryDataset(PERSONAS),
            "llm_credentials": MemoryDataset({"api_key": "test-key"}),
            "llm_journal": MemoryDataset(ResponseJournal(journal_path), copy_mode="assign"),
            "prompt_query_distill_stage1": MemoryDataset(
                yaml.safe_load((ROOT / "conf/base/prompts/query_distill_stage1.yml").read_text())
            ),
            "prompt_query_distill_stage2": MemoryDataset(
                yaml.safe_load((ROOT / "conf/base/prompts/query_distill_stage2.yml").read_text())
            ),
            # saved like the real catalog does (a MemoryDataset is released once its last reader ran)
            **{
                name: ParquetDataset(filepath=str(journal_path.parent / f"{name}.parquet"))
                for name in ("document_personas", "query_plans", "distill_failures", "distilled_query_audit")
            },
            "distill_report": JSONDataset(filepath=str(journal_path.parent / "distill_report.json")),
        }
    )
    base_llm = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())["llm"]
    catalog["params:llm"] = LLMConfig.from_mapping({**base_llm, **llm})
    catalog["params:query_distill.select"] = SelectParams(**CONF["select"])
    catalog["params:query_distill.personas"] = PersonaParams(top_k=3)
    catalog["params:query_distill.spec"] = SpecParams(**CONF["spec"])
    catalog["params:query_distill.keyword_backend"] = KeywordBackendParams(**CONF["keyword_backend"])
    catalog["params:query_distill.clean"] = CleanParams(
        **{**CONF["clean"], "round_trip": {"enabled": False, "top_k": 10}}
    )
    catalog["params:query_distill.execution"] = ExecutionConfig(**{**CONF["execution"], **(execution or {})})
    catalog["params:query_distill.answers"] = AnswerParams(**CONF["answers"])
    catalog["params:query_distill.floor"] = FloorParams(**CONF["floor"])
    return catalog


def _doc_of(body: dict, corpus: pd.DataFrame) -> str:
    user = body["messages"][-1]["content"]
    return next(d for d, t in zip(corpus["doc_id"], corpus["text"]) if t[:40] in user)


def scripted(corpus, broken: set[str] | None = None):
    """Stage 1 answers fenced JSON (garbage first for some docs), stage 2 a labelled query;
    `broken` docs get 500s."""
    broken = broken or set()
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def behaviour(body, n):
        doc = _doc_of(body, corpus)
        if doc in broken:
            return Reply(status=500, error_message="internal error")
        stage1 = "候选提问人" in body["messages"][-1]["content"]
        with lock:
            seen[doc, stage1] = seen.get((doc, stage1), 0) + 1
            first = seen[doc, stage1] == 1
        if stage1:
            if first and doc.endswith(("1", "5")):
                return Reply(content="I cannot decide.")  # invalid: retried with a new attempt
            return Reply(
                content='```json\n{"character": 2, "question_type": "Summary", '
                '"difficulty": "university"}\n```'
            )
        return Reply(content=f"查询：文档{doc}里提到的主要事项是什么？")

    return behaviour


def fast_llm(server, **extra):
    return {
        "backend": "openai",
        "base_url": server.base_url,
        "model": "stub-qwen",
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_retries": 2,
        "timeout_s": 5,
        "max_concurrency": 8,
        **extra,
    }


def test_openai_backend_end_to_end_with_retries(world, tmp_path):
    corpus = world[0]
    with ScriptedOpenAIServer(scripted(corpus)) as server:
        catalog = catalog_for(world, fast_llm(server), tmp_path / "journal.jsonl")
        SequentialRunner().run(create_pipeline(), catalog)
        requests = server.count
    queries = catalog.load("distilled_queries")
    assert len(queries) == N_DOCS and queries["doc_id"].is_unique
    assert set(queries["model"]) == {"stub-qwen"} and queries["prompt_hash"].nunique() == 1
    assert set(queries["question_type"]) == {"summary"} and set(queries["difficulty"]) == {"university"}
    assert queries["query"].str.startswith("文档").all()  # the "查询：" label was stripped
    assert set(queries["persona"]) <= set(PERSONAS["persona"])
    invalid_first = sum(1 for d in corpus["doc_id"] if d.endswith(("1", "5")))
    assert requests == 2 * N_DOCS + invalid_first
    report = catalog.load("distill_report")
    assert report["backend"] == "openai" and report["kept"] == N_DOCS and report["failed_documents"] == 0


def test_failure_ceiling_then_resume_without_repeating_calls(world, tmp_path):
    corpus = world[0]
    broken = set(corpus["doc_id"][:6])  # 25% of the documents fail after retries
    journal = tmp_path / "journal.jsonl"
    with ScriptedOpenAIServer(scripted(corpus, broken)) as server:
        catalog = catalog_for(world, fast_llm(server), journal)
        with pytest.raises(Exception, match="failure"):
            SequentialRunner().run(create_pipeline(), catalog)
        failures = catalog.load("distill_failures")
        assert set(failures["doc_id"]) == broken
        assert failures["error"].str.contains("HTTP 500").all()
    # the endpoint recovers: a new run asks only for the documents that have no answer yet
    with ScriptedOpenAIServer(scripted(corpus)) as server:
        catalog = catalog_for(world, fast_llm(server), journal)
        SequentialRunner().run(create_pipeline(), catalog)
        assert server.count == 2 * len(broken) + sum(1 for d in broken if d.endswith(("1", "5")))
    queries = catalog.load("distilled_queries")
    assert len(queries) == N_DOCS and queries["doc_id"].is_unique
    # and a third run makes no request at all
    with ScriptedOpenAIServer(scripted(corpus)) as server:
        catalog = catalog_for(world, fast_llm(server), journal)
        SequentialRunner().run(create_pipeline(), catalog)
        assert server.count == 0
    pd.testing.assert_frame_equal(catalog.load("distilled_queries"), queries)


def test_keyword_backend_needs_no_endpoint(world, tmp_path):
    catalog = catalog_for(
        world, {"backend": "keyword", "base_url": "http://127.0.0.1:9/v1"}, tmp_path / "j.jsonl"
    )
    SequentialRunner().run(create_pipeline(), catalog)
    queries = catalog.load("distilled_queries")
    assert len(queries) > N_DOCS // 2 and set(queries["model"]) == {"keyword-baseline"}
    assert queries["question_type"].nunique() > 1
    report = catalog.load("distill_report")
    assert report["backend"] == "keyword" and "not an LLM" in report["note"]


@pytest.fixture
def local_ray():
    """A local 2-CPU Ray for one test; the nodes find it running and leave it running."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    pytest.importorskip("ray.data")
    start_local_ray(ray, num_cpus=2)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_execution_gives_the_same_queries_and_resumes(world, tmp_path, local_ray):
    corpus = world[0]
    with ScriptedOpenAIServer(scripted(corpus)) as server:
        catalog = catalog_for(world, fast_llm(server), tmp_path / "local.jsonl")
        SequentialRunner().run(create_pipeline(), catalog)
        local_requests, local_queries = server.count, catalog.load("distilled_queries")
    ray_execution = {"backend": "ray", "num_cpus": 2, "num_actors": 2, "batch_size": 8, "cpus_per_actor": 0.5}
    with ScriptedOpenAIServer(scripted(corpus)) as server:
        catalog = catalog_for(world, fast_llm(server), tmp_path / "ray.jsonl", ray_execution)
        SequentialRunner().run(create_pipeline(), catalog)
        assert server.count == local_requests
    pd.testing.assert_frame_equal(catalog.load("distilled_queries"), local_queries)
    with ScriptedOpenAIServer(scripted(corpus)) as server:  # a rerun is answered by the journal
        catalog = catalog_for(world, fast_llm(server), tmp_path / "ray.jsonl", ray_execution)
        SequentialRunner().run(create_pipeline(), catalog)
        assert server.count == 0
    pd.testing.assert_frame_equal(catalog.load("distilled_queries"), local_queries)


def test_an_endpoint_answering_everything_alike_fails_on_the_floor_after_saving_the_report(world, tmp_path):
    # valid for both stages (stage 2 takes the JSON's first string), so every document gets the same query
    same = (
        '{"query": "这家公司的主营业务是什么？", "character": 1, '
        '"question_type": "summary", "difficulty": "phd"}'
    )
    with ScriptedOpenAIServer(always(same)) as server:
        catalog = catalog_for(world, fast_llm(server), tmp_path / "journal.jsonl")
        message = r"query_distill kept 1 of 24 documents \(4.2%\).*exact_duplicate 23"
        with pytest.raises(FloorError, match=message):
            SequentialRunner().run(create_pipeline(), catalog)
    report = catalog.load("distill_report")  # the evidence is saved before the run stops
    assert report["kept"] == 1 and report["floor"]["passed"] is False
    statuses = catalog.load("distilled_query_audit")["status"].value_counts().to_dict()
    assert statuses == {"exact_duplicate": 23, "kept": 1}
    assert not catalog.exists("distilled_queries")  # nothing flows downstream


def test_an_endpoint_echoing_the_prompt_is_rejected_not_parsed_as_the_example(world, tmp_path):
    with ScriptedOpenAIServer(echo()) as server:
        catalog = catalog_for(world, fast_llm(server), tmp_path / "journal.jsonl")
        with pytest.raises(Exception, match="failure"):
            SequentialRunner().run(create_pipeline(), catalog)
    failures = catalog.load("distill_failures")
    assert len(failures) == N_DOCS
    assert failures["error"].str.contains("stage 1: invalid output: the answer repeats the prompt").all()
    assert failures["error"].str.contains("prompt's own example").all()
    assert catalog.load("query_plans")["persona_id"].isna().all()


def _candidates(user: str) -> list[str]:
    block = user.split("【候选提问人】", 1)[1].split("【文档】", 1)[0]
    return [line.split(". ", 1)[1] for line in block.strip().splitlines()]


def by_name(corpus):
    """Stage 1 names the second candidate by its text, a shortened text, "2. <text>" or "编号2", and labels
    in Chinese (the seed's own format); stage 2 writes a query unique to the document."""
    forms = [lambda t: t, lambda t: t[:-3] + "…", lambda t: f"2. {t}", lambda t: "编号2"]
    levels = ["高中", "大学", "博士", "high_school（高中水平）"]

    def behaviour(body, n):
        user = last_user_message(body)
        doc = _doc_of(body, corpus)
        k = int("".join(c for c in doc if c.isdigit()) or 0)
        if "候选提问人" in user:
            persona = forms[k % 4](_candidates(user)[1])
            plan = {"Characters": persona, "Question_Type": "总结型", "Difficulty": levels[k % 4]}
            return Reply(content=json.dumps(plan, ensure_ascii=False))
        return Reply(content=f"查询：文档{doc}里提到的主要事项是什么？")

    return behaviour


def test_stage1_answers_naming_the_persona_by_text_are_kept_and_replayed(world, tmp_path):
    corpus = world[0]
    journal = tmp_path / "journal.jsonl"
    with ScriptedOpenAIServer(by_name(corpus)) as server:
        catalog = catalog_for(world, fast_llm(server), journal)
        SequentialRunner().run(create_pipeline(), catalog)
        assert server.count == 2 * N_DOCS  # every first answer was valid
    queries = catalog.load("distilled_queries")
    assert len(queries) == N_DOCS and set(queries["question_type"]) == {"summary"}
    assert set(queries["difficulty"]) == {"high_school", "university", "phd"}
    plans = catalog.load("document_personas").merge(catalog.load("query_plans"), on="doc_id")
    assert (plans["persona_id"] == plans["persona_ids"].map(lambda ids: ids[1])).all()
    with ScriptedOpenAIServer(by_name(corpus)) as server:  # the journal answers a rerun
        catalog = catalog_for(world, fast_llm(server), journal)
        SequentialRunner().run(create_pipeline(), catalog)
        assert server.count == 0
    pd.testing.assert_frame_equal(catalog.load("distilled_queries"), queries)
