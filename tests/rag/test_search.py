"""Searches in process and against a running finrag-serve (POST /retrieve) give the agent the same passages;
a server that fails is a failed question, never an empty result."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from finrag_pipelines.llm.client import client_factory
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.stub_agent import search_agent
from finrag_pipelines.llm.stub_server import ScriptedOpenAIServer
from finrag_pipelines.rag.chat import JournaledChat
from finrag_pipelines.rag.factory import build_searchers, build_systems, retriever_reasons
from finrag_pipelines.rag.protocols import tool_schema_from_config
from finrag_pipelines.rag.records import Question
from finrag_pipelines.rag.runner import answer_questions
from finrag_pipelines.rag.search import BackendSearcher, HttpSearcher, SearchError, search_batcher
from finrag_pipelines.rag.settings import SearchSettings, SystemSpec
from finrag_pipelines.serving.app import create_app
from finrag_pipelines.serving.server import ServerThread
from finrag_pipelines.serving.settings import load_settings

from .conftest import CONF, conf_settings, extractive_settings, llm_config, prompts, tool_config

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ["苹果市值蒸发1900亿美元", "创业板期权的开仓方式"]


@pytest.fixture(scope="module")
def served(backend):
    conf = yaml.safe_load((ROOT / "conf/base/parameters_serving.yml").read_text(encoding="utf-8"))["serving"]
    settings = load_settings({**conf, "method": "bm25", "alpha": 0.5})
    with ServerThread(create_app(backend, settings)) as server:
        yield server


async def _both(backend, url):
    local, remote = (
        BackendSearcher(backend, "bm25", "bm25", search_batcher(backend, 8, 1.0)),
        HttpSearcher(url, "bm25", timeout_s=5, max_retries=2),
    )
    try:
        return await local.search(QUERIES, 4), await remote.search(QUERIES, 4)
    finally:
        await remote.aclose()
        await local.aclose()


def test_in_process_and_served_searches_agree(backend, served):
    local, remote = asyncio.run(_both(backend, f"{served.url}/retrieve"))
    assert [[h.doc_id for h in hits] for hits in local] == [[h.doc_id for h in hits] for hits in remote]
    assert local[0][0].text == remote[0][0].text and local[0][0].score == pytest.approx(remote[0][0].score)


def test_an_agent_searches_a_running_finrag_serve_by_url(backend, served, tmp_path):
    search = SearchSettings(**{**CONF["search"], "url": f"{served.url}/retrieve"})
    searchers = build_searchers({"hybrid"}, search, None)
    assert retriever_reasons(None)["hybrid_finetuned"] is None and searchers["hybrid"].name == "url:hybrid"
    searchers = build_searchers({"bm25"}, search, None)
    specs = {"agent": SystemSpec(kind="agent", retriever="bm25")}
    with ScriptedOpenAIServer(search_agent()) as server, ResponseJournal(tmp_path / "j.jsonl") as journal:
        llm = llm_config(server.base_url)
        chat = JournaledChat(llm, journal, client_factory(llm, None))
        systems = build_systems(
            specs,
            {"agent": "evaluated"},
            settings=conf_settings(),
            extractive=extractive_settings(),
            chat=chat,
            prompts=prompts(),
            tool_schema=tool_schema_from_config(tool_config()),
            searchers=searchers,
        )
        (record,) = answer_questions(systems, [Question("q", QUERIES[0])], concurrency=2, chat=chat)
    assert record.retriever == "url:bm25" and record.searches[0].doc_ids and record.citations


def test_a_failing_server_fails_the_search(tmp_path):
    async def go():
        searcher = HttpSearcher(
            "http://127.0.0.1:9/retrieve", "bm25", timeout_s=1, max_retries=2, retry_delay_s=0.01
        )
        try:
            await searcher.search(["x"], 3)
        finally:
            await searcher.aclose()

    with pytest.raises(SearchError, match=r"failed after 2 attempt\(s\): ConnectError"):
        asyncio.run(go())
