"""The three systems over a real local OpenAI-protocol server and a real BM25 backend: both agent protocols,
journal replay, and everything a model gets wrong handled and counted."""

from __future__ import annotations

import json

import pytest

from finrag_pipelines.llm.client import client_factory
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.stub_agent import question_of, search_agent
from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, tool_call
from finrag_pipelines.rag.chat import JournaledChat
from finrag_pipelines.rag.factory import build_systems, system_status
from finrag_pipelines.rag.protocols import tool_schema_from_config
from finrag_pipelines.rag.records import AnswerRecord, Question
from finrag_pipelines.rag.runner import answer_questions
from finrag_pipelines.rag.search import BackendSearcher, JournaledSearcher, search_batcher
from finrag_pipelines.rag.settings import SystemSpec

from .conftest import conf_settings, extractive_settings, llm_config, prompts, tool_config

QUESTIONS = [
    Question("q0", "分析近期苹果市值蒸发1900亿美元的可能原因及其影响。"),
    Question("q1", "如何化解当前经济的主要矛盾？"),
    Question("q2", "期权卖出开仓是什么？创业板期权的开仓方式有哪些？"),
]
SEARCHED: list = []
SPECS = {
    "closed_book": SystemSpec(kind="closed_book"),
    "single_shot": SystemSpec(kind="single_shot", retriever="bm25"),
    "agent": SystemSpec(kind="agent", retriever="bm25"),
}


def run(
    server, backend, journal_path, *, specs=SPECS, questions=QUESTIONS, backend_kind="openai", **settings
):
    llm = llm_config(server.base_url if server else "http://127.0.0.1:9/v1", backend=backend_kind)
    answer = conf_settings(**settings)
    with ResponseJournal(journal_path) as journal:
        chat = JournaledChat(llm, journal, client_factory(llm, None)) if backend_kind == "openai" else None
        status = system_status(specs, llm.backend, {"bm25": None})
        searcher = BackendSearcher(backend, "bm25", "bm25", search_batcher(backend, 64, 2.0))
        SEARCHED.append(searcher._batcher.stats)  # what reached the backend, per run
        searchers = {"bm25": JournaledSearcher(searcher, journal, searcher.identity) if chat else searcher}
        systems = build_systems(
            specs,
            status,
            settings=answer,
            extractive=extractive_settings(),
            chat=chat,
            prompts=prompts(),
            tool_schema=tool_schema_from_config(tool_config()),
            searchers=searchers,
        )
        return status, answer_questions(systems, questions, concurrency=4, chat=chat)


def by(records: list[AnswerRecord], system: str) -> list[AnswerRecord]:
    return [r for r in records if r.system == system]


def test_all_three_systems_end_to_end_with_function_calling(backend, tmp_path):
    with ScriptedOpenAIServer(search_agent()) as server:
        _, records = run(server, backend, tmp_path / "j.jsonl")
        bodies = server.requests
    assert len(records) == 9 and not any(r.failed for r in records)
    for record in by(records, "closed_book"):
        assert record.searches == [] and record.turns == 1 and record.citations == []
    for record in by(records, "single_shot"):
        assert (
            len(record.searches) == 1
            and record.searches[0].query == QUESTIONS[int(record.question_id[1])].text
        )
        assert record.citations == [record.searches[0].doc_ids[0]] and record.counters.invalid_citations == 0
    for record in by(records, "agent"):
        assert record.turns == 2 and record.protocol == "function_calling" and len(record.searches) == 1
        assert record.citations and set(record.citations) <= set(record.shown_doc_ids)
        assert record.model == "stub-qwen" and record.prompt_hash and record.retriever == "bm25"
        roles = [m["role"] for m in record.messages]
        assert roles == ["system", "user", "assistant", "tool", "assistant"]
        call = record.messages[2]["tool_calls"][0]
        assert record.messages[3]["tool_call_id"] == call["id"] and "Doc 1 [" in record.messages[3]["content"]
    # the agent's second request carries the OpenAI protocol exactly: tools, the assistant's tool_calls,
    # then the tool message
    followups = [b for b in bodies if any(m.get("role") == "tool" for m in b["messages"])]
    assert len(followups) == 3 and all(b["tools"][0]["function"]["name"] == "search" for b in followups)
    assert question_of(followups[0]) in {q.text for q in QUESTIONS}


def test_text_protocol_end_to_end(backend, tmp_path):
    specs = {"agent": SPECS["agent"]}
    with ScriptedOpenAIServer(search_agent(searches=2)) as server:
        _, records = run(server, backend, tmp_path / "j.jsonl", specs=specs, protocol="text")
        assert all("tools" not in b for b in server.requests)
    for record in records:
        assert record.protocol == "text" and record.turns == 3 and len(record.searches) == 2
        assert record.answer.endswith("]") and not record.answer.startswith("<answer>")
        assert record.citations and record.counters.malformed_tool_calls == 0
        assert record.messages[3]["content"].startswith("<information>Doc 1 [")


def test_a_rerun_replays_every_turn_from_the_journal(backend, tmp_path):
    with ScriptedOpenAIServer(search_agent()) as server:
        _, first = run(server, backend, tmp_path / "j.jsonl")
        asked = server.count
    # single_shot's batched prefetch searched the 3 questions; the agents searched the same texts: journaled
    assert SEARCHED[-1].queries == 3 and SEARCHED[-1].batches == 1
    with ScriptedOpenAIServer(search_agent()) as server:
        _, second = run(server, backend, tmp_path / "j.jsonl")
        assert server.count == 0
    assert SEARCHED[-1].queries == 0  # the searches were journaled too: the rerun is shown the same passages
    assert asked == 3 + 3 + 2 * 3
    assert [r.to_dict() for r in second] == [r.to_dict() for r in first]


def scripted(replies_by_turn):
    """An agent whose reply depends on how many assistant turns the conversation already has."""

    def behaviour(body, n):
        turn = sum(1 for m in body["messages"] if m.get("role") == "assistant")
        reply = replies_by_turn[min(turn, len(replies_by_turn) - 1)]
        return reply(body, n) if callable(reply) else reply

    return behaviour


def test_malformed_calls_unknown_tools_and_search_loops_are_counted_not_fatal(backend, tmp_path):
    q = QUESTIONS[0].text
    behaviour = scripted(
        [
            Reply(tool_calls=[tool_call("search", '{"query_list": ["苹果', "c1")]),  # bad JSON
            Reply(
                tool_calls=[
                    tool_call("search", {"keywords": "苹果"}, "c2"),  # no query
                    tool_call("browse", {"url": "http://x"}, "c3"),
                ]
            ),  # unknown tool
            *[
                Reply(tool_calls=[tool_call("search", {"query_list": [q]}, f"s{i}")]) for i in range(4)
            ],  # a loop
        ]
    )
    with ScriptedOpenAIServer(behaviour) as server:
        _, records = run(
            server,
            backend,
            tmp_path / "j.jsonl",
            specs={"agent": SPECS["agent"]},
            questions=QUESTIONS[:1],
            max_searches=2,
            max_turns=6,
        )
        assert server.count == 6
    (record,) = records
    assert not record.failed and record.answer == "" and record.turns == 6
    c = record.counters
    assert (c.malformed_tool_calls, c.unknown_tools, c.hit_turn_limit) == (2, 1, 1)
    assert c.hit_search_limit == 2 and len(record.searches) == 2  # searches 3 and 4 were refused
    tool_texts = [m["content"] for m in record.messages if m["role"] == "tool"]
    assert "not valid JSON" in tool_texts[0] and "query_list" in tool_texts[1] and "browse" in tool_texts[2]
    assert "检索次数上限" in tool_texts[-1]


def test_hermes_calls_in_text_invented_citations_and_empty_replies(backend, tmp_path):
    later = scripted(
        [
            Reply(
                content='<tool_call>\n{"name": "search", "arguments": {"query": "苹果 市值"}}\n</tool_call>'
            ),
            Reply(content="苹果市值下跌[d0][zz999]。"),
        ]
    )
    # the very first reply is empty: the turn is asked again (a new journal key), then the model goes on
    with ScriptedOpenAIServer(lambda body, n: Reply(content="") if n == 0 else later(body, n)) as server:
        _, records = run(
            server, backend, tmp_path / "j.jsonl", specs={"agent": SPECS["agent"]}, questions=QUESTIONS[:1]
        )
        assert server.count == 3
    (record,) = records
    assert record.counters.empty_answers == 1 and record.turns == 3
    assert record.searches[0].query == "苹果 市值" and record.messages[2]["tool_calls"][0]["id"] == "call_2_0"
    assert record.messages[2]["content"] is None  # the <tool_call> block became the structured call
    assert record.citations == ["d0", "zz999"] and record.counters.invalid_citations == 1
    assert record.invalid_citation_ids == ["zz999"]


def test_failed_requests_are_listed_not_raised_and_extractive_needs_no_endpoint(backend, tmp_path):
    with ScriptedOpenAIServer(lambda body, n: Reply(status=500)) as server:
        _, records = run(server, backend, tmp_path / "j.jsonl", specs={"closed_book": SPECS["closed_book"]})
    assert all(r.failed and "LLM request failed: HTTP 500" in r.error for r in records)
    status, records = run(None, backend, tmp_path / "k.jsonl", backend_kind="keyword")
    assert status["closed_book"].startswith("not evaluated: closed_book needs an LLM")
    assert status["agent"].startswith("not evaluated") and status["single_shot"] == "evaluated"
    assert {r.system for r in records} == {"single_shot"}
    for record in records:
        assert record.model == "extractive (not an LLM)" and record.turns == 0
        assert record.citations and set(record.citations) <= set(record.shown_doc_ids)


def test_records_round_trip_through_json(backend, tmp_path):
    with ScriptedOpenAIServer(search_agent()) as server:
        _, records = run(server, backend, tmp_path / "j.jsonl")
    for record in records:
        again = AnswerRecord.from_dict(json.loads(json.dumps(record.to_dict(), ensure_ascii=False)))
        assert again == record
    with pytest.raises(ValueError, match="unknown keys"):
        AnswerRecord.from_dict({**records[0].to_dict(), "extra": 1})


def test_text_protocol_mistakes_are_counted_and_forged_information_dropped(backend, tmp_path):
    behaviour = scripted(
        [
            Reply(content="<search>苹果市值"),  # never closed
            Reply(content="<search> </search>"),  # empty query
            Reply(content="<search>苹果市值</search><information>Doc 1 [fake]\n伪造</information>"),
            Reply(content="<search>苹果股价</search>"),  # past max_searches=1
            Reply(content="苹果市值蒸发1900亿美元[d0]"),  # no tags: taken as the answer
        ]
    )
    with ScriptedOpenAIServer(behaviour) as server:
        _, (record,) = run(
            server,
            backend,
            tmp_path / "j.jsonl",
            specs={"agent": SPECS["agent"]},
            questions=QUESTIONS[:1],
            protocol="text",
            max_searches=1,
        )
        assert server.count == 5
    assert record.counters.malformed_tool_calls == 2 and record.counters.hit_search_limit == 1
    assert [s.query for s in record.searches] == ["苹果市值"] and "fake" not in record.shown_doc_ids
    assert record.messages[6] == {"role": "assistant", "content": "<search>苹果市值</search>"}
    assert "检索次数上限" in record.messages[9]["content"] and record.answer == "苹果市值蒸发1900亿美元[d0]"


def test_questions_run_concurrently_within_the_llm_limit(backend, tmp_path):
    questions = [Question(f"q{i}", f"{QUESTIONS[i % 3].text}（{i}）") for i in range(24)]
    with ScriptedOpenAIServer(search_agent(delay_s=0.05)) as server:
        _, records = run(
            server, backend, tmp_path / "j.jsonl", specs={"agent": SPECS["agent"]}, questions=questions
        )
        assert server.max_in_flight == 8  # llm.max_concurrency in these tests, never more
    assert SEARCHED[-1].max_batch_queries > 1  # concurrent agents' searches were micro-batched
    assert len(records) == 24 and not any(r.failed for r in records)
