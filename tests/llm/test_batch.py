"""run_chat_batch over a real local OpenAI-protocol server: concurrency bound, order, invalid-output
retries and quarantine, failures reported, and resume from the journal with no repeated calls."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finrag_pipelines.llm.batch import (
    ChatRequest,
    ChatResult,
    LLMFailureRateError,
    check_failure_rate,
    run_chat_batch,
)
from finrag_pipelines.llm.client import ChatClient
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.parsing import extract_json_object, one_of, pick
from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, always, echo, last_user_message


def make_config(base_url: str, **overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "backend": "openai",
        "base_url": base_url,
        "model": "stub-model",
        "max_concurrency": 4,
        "timeout_s": 5.0,
        "max_retries": 2,
        "temperature": 0.1,
        "max_tokens": 64,
        "extra_body": {"chat_template_kwargs": {"enable_thinking": False}},
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_failure_rate": 0.05,
        "max_invalid_retries": 2,
    }
    values.update(overrides)
    return LLMConfig(**values)


def make_requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            id=f"doc-{i}",
            messages=[{"role": "system", "content": "只输出 JSON。"}, {"role": "user", "content": f"q{i}"}],
        )
        for i in range(n)
    ]


def run(
    requests: list[ChatRequest], server: ScriptedOpenAIServer, journal: ResponseJournal, **kwargs: Any
) -> list[ChatResult]:
    config = kwargs.pop("config", None) or make_config(server.base_url)
    return run_chat_batch(
        requests, client_factory=lambda: ChatClient(config, "EMPTY"), journal=journal, config=config, **kwargs
    )


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as srv:
        yield srv


@pytest.fixture
def server(_shared_server: ScriptedOpenAIServer) -> ScriptedOpenAIServer:
    """One real server per module; behaviour and counters reset before every test."""
    _shared_server.behaviour = echo(prefix="answer:")
    _shared_server.reset()
    return _shared_server


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[ResponseJournal]:
    with ResponseJournal(tmp_path / "journal.jsonl") as j:
        yield j


def test_bounded_concurrency_and_request_order(
    server: ScriptedOpenAIServer, journal: ResponseJournal
) -> None:
    server.behaviour = echo(prefix="answer:", delay_s=0.05)
    requests = make_requests(40)
    results = run(requests, server, journal, config=make_config(server.base_url, max_concurrency=4))
    assert [r.id for r in results] == [r.id for r in requests]
    assert [r.text for r in results] == [f"answer:q{i}" for i in range(40)]
    assert all(r.ok and r.value == r.text and r.attempts == 1 and not r.cached for r in results)
    assert server.count == 40
    assert 2 <= server.max_in_flight <= 4, f"max in flight {server.max_in_flight} breaks max_concurrency=4"
    assert len(journal) == 40


def test_invalid_outputs_are_retried_then_quarantined(
    server: ScriptedOpenAIServer, journal: ResponseJournal
) -> None:
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def behaviour(body: dict[str, Any], n: int) -> Reply:
        q = last_user_message(body)
        with lock:
            seen[q] += 1
            k = seen[q]
        if q == "q1" and k == 1:  # wrong the first time only
            return Reply(content="Sure! Here is the plan: {character: one}")
        if q == "q2":  # always wrong
            return Reply(content='{"question_type": "opinion"}')
        return Reply(content=f'<think>hmm</think>```json\n{{"Question_Type": "Yes_Or_No", "n": "{q}"}}\n```')

    server.behaviour = behaviour

    def validate(text: str) -> str:
        return one_of(
            pick(extract_json_object(text), ["question_type"], "question_type"),
            ["yes_or_no"],
            "question_type",
        )

    results = run(make_requests(4), server, journal, validate=validate)
    by_id = {r.id: r for r in results}
    assert by_id["doc-0"].value == "yes_or_no" and by_id["doc-0"].attempts == 1
    assert by_id["doc-1"].ok and by_id["doc-1"].attempts == 2
    assert by_id["doc-2"].error == "invalid output: question_type must be one of ['yes_or_no'], got 'opinion'"
    assert by_id["doc-2"].value is None and by_id["doc-2"].text == '{"question_type": "opinion"}'
    assert by_id["doc-2"].attempts == 3  # 1 + max_invalid_retries
    assert server.count == 1 + 2 + 3 + 1
    # Every raw response is journaled, invalid ones included, each under its own attempt.
    attempts = sorted(
        (r["id"], r["attempt"]) for r in map(json.loads, journal.path.read_text("utf-8").splitlines())
    )
    assert attempts == [
        ("doc-0", 0),
        ("doc-1", 0),
        ("doc-1", 1),
        ("doc-2", 0),
        ("doc-2", 1),
        ("doc-2", 2),
        ("doc-3", 0),
    ]

    # A rerun re-validates from the journal: same outcome, zero requests.
    server.reset()
    again = run(make_requests(4), server, journal, validate=validate)
    assert server.count == 0
    assert [(r.id, r.value, r.error) for r in again] == [(r.id, r.value, r.error) for r in results]
    assert all(r.cached and r.attempts == 0 for r in again)


def test_failures_are_reported_not_dropped(server: ScriptedOpenAIServer, journal: ResponseJournal) -> None:
    def behaviour(body: dict[str, Any], n: int) -> Reply:
        q = last_user_message(body)
        if q == "q3":
            return Reply(status=500, error_message="CUDA out of memory")
        if q == "q5":
            return Reply(status=400, error_message="prompt too long")
        return Reply(content=f"ok {q}")

    server.behaviour = behaviour
    results = run(make_requests(8), server, journal)
    assert len(results) == 8
    errors = {r.id: r.error for r in results if r.error}
    assert errors == {
        "doc-3": "HTTP 500 after 3 attempts: CUDA out of memory",
        "doc-5": "HTTP 400 (not retried): prompt too long",
    }
    assert {r.id: r.attempts for r in results if r.error} == {"doc-3": 3, "doc-5": 1}
    assert len(journal) == 6  # failures leave nothing in the journal, so a rerun asks again
    with pytest.raises(
        LLMFailureRateError, match=r"2 of 8 requests .*\(25\.0%\), above llm\.max_failure_rate=5\.0%"
    ):
        check_failure_rate(sum(1 for r in results if r.error), len(results), 0.05, "test stage (see errors)")


def test_second_run_makes_zero_requests_and_never_builds_a_client(
    server: ScriptedOpenAIServer, journal: ResponseJournal
) -> None:
    requests = make_requests(25)
    first = run(requests, server, journal)
    assert server.count == 25
    server.reset()

    def no_client() -> ChatClient:
        raise AssertionError("the client must not be created when the journal answers everything")

    config = make_config(server.base_url)
    reopened = ResponseJournal(journal.path)
    second = run_chat_batch(requests, client_factory=no_client, journal=reopened, config=config)
    assert server.count == 0
    assert [r.text for r in second] == [r.text for r in first]
    assert all(r.cached for r in second)
    assert run_chat_batch(requests, client_factory=None, journal=reopened, config=config)[0].cached
    reopened.close()


def test_a_request_can_carry_its_own_validator(
    server: ScriptedOpenAIServer, journal: ResponseJournal
) -> None:
    server.behaviour = always("B")

    def expect(letter: str) -> Any:
        def validate(text: str) -> str:
            if text != letter:
                raise ValueError(f"expected {letter}, got {text}")
            return text.lower()

        return validate

    base = make_requests(2)
    requests = [
        ChatRequest(base[0].id, base[0].messages, validate=expect("B")),
        ChatRequest(base[1].id, base[1].messages, validate=expect("A")),
    ]
    results = run(requests, server, journal, validate=expect("Z"))  # the batch's validator is the fallback
    assert [r.value for r in results] == ["b", None]
    assert results[1].error == "invalid output: expected A, got B" and server.count == 1 + 3
    server.reset()
    again = run(requests, server, journal)  # journaled answers: re-validated by each request's own validator
    assert server.count == 0 and [r.value for r in again] == ["b", None]


def test_interrupted_run_only_calls_for_the_rest(
    server: ScriptedOpenAIServer, journal: ResponseJournal
) -> None:
    requests = make_requests(30)
    run(requests[:12], server, journal)  # the part done before the "crash"
    server.reset()
    results = run(requests, server, journal)
    assert server.count == 18
    assert sorted(last_user_message(b) for b in server.requests) == sorted(f"q{i}" for i in range(12, 30))
    assert [r.cached for r in results] == [True] * 12 + [False] * 18
    assert [r.text for r in results] == [f"answer:q{i}" for i in range(30)]


def test_sampling_change_misses_the_cache(server: ScriptedOpenAIServer, journal: ResponseJournal) -> None:
    requests = make_requests(3)
    run(requests, server, journal)
    server.reset()
    run(requests, server, journal, config=make_config(server.base_url, temperature=0.7))
    assert server.count == 3


def test_needs_a_client_factory_for_uncached_requests(
    server: ScriptedOpenAIServer, journal: ResponseJournal
) -> None:
    with pytest.raises(
        ValueError, match=r"3 of 3 'llm' requests are not in the journal .* no client_factory"
    ):
        run_chat_batch(
            make_requests(3), client_factory=None, journal=journal, config=make_config(server.base_url)
        )


def test_duplicate_ids_are_rejected(server: ScriptedOpenAIServer, journal: ResponseJournal) -> None:
    requests = make_requests(2) + [make_requests(1)[0]]
    with pytest.raises(ValueError, match="duplicate request id 'doc-0'"):
        run(requests, server, journal)


def test_callable_from_inside_an_event_loop(server: ScriptedOpenAIServer, journal: ResponseJournal) -> None:
    async def inside() -> list[ChatResult]:
        return run(make_requests(2), server, journal)

    assert [r.text for r in asyncio.run(inside())] == ["answer:q0", "answer:q1"]


def test_validator_bugs_are_not_swallowed(server: ScriptedOpenAIServer, journal: ResponseJournal) -> None:
    server.behaviour = always("x")

    def broken(text: str) -> Any:
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        run(make_requests(2), server, journal, validate=broken)
    assert len(journal) >= 1  # the raw response was journaled before validation


def test_check_failure_rate_bounds() -> None:
    check_failure_rate(0, 0, 0.0, "empty stage")
    check_failure_rate(5, 100, 0.05, "at the ceiling")
    with pytest.raises(LLMFailureRateError, match="stage 1"):
        check_failure_rate(6, 100, 0.05, "stage 1")
    with pytest.raises(ValueError, match="inconsistent counts"):
        check_failure_rate(3, 2, 0.05, "bad")
