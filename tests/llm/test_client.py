"""ChatClient against a real local HTTP server speaking the OpenAI protocol: retries, Retry-After,
timeouts, non-retryable errors, give-up messages."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from finrag_pipelines.llm.client import ChatClient, ChatResponse, LLMRequestError, parse_retry_after
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, always, sequence

MESSAGES = [{"role": "system", "content": "你是金融助手。"}, {"role": "user", "content": "什么是LPR？"}]


def make_config(base_url: str, **overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "backend": "openai",
        "base_url": base_url,
        "model": "stub-model",
        "max_concurrency": 4,
        "timeout_s": 5.0,
        "max_retries": 3,
        "temperature": 0.1,
        "max_tokens": 64,
        "extra_body": {"chat_template_kwargs": {"enable_thinking": False}},
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_failure_rate": 0.05,
        "max_invalid_retries": 1,
    }
    values.update(overrides)
    return LLMConfig(**values)


def complete(config: LLMConfig, messages: list[dict[str, Any]] = MESSAGES, **kwargs: Any) -> ChatResponse:
    async def run() -> ChatResponse:
        async with ChatClient(config, "EMPTY", rng=random.Random(0)) as client:
            return await client.complete(messages, **kwargs)

    return asyncio.run(run())


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as srv:
        yield srv


@pytest.fixture
def server(_shared_server: ScriptedOpenAIServer) -> ScriptedOpenAIServer:
    """One real server per module (starting one costs ~0.3 s); reset before every test."""
    _shared_server.behaviour = always("ok")
    _shared_server.reset()
    return _shared_server


def test_success_sends_model_sampling_and_extra_body(server: ScriptedOpenAIServer) -> None:
    server.behaviour = always("LPR 是贷款市场报价利率。", reasoning="用户问的是定义")
    response = complete(make_config(server.base_url))
    assert response == ChatResponse(
        text="LPR 是贷款市场报价利率。",
        reasoning="用户问的是定义",
        finish_reason="stop",
        attempts=1,
        usage=response.usage,
    )
    assert response.usage is not None and response.usage["total_tokens"] > 0
    (body,) = server.requests
    assert body["model"] == "stub-model"
    assert body["messages"] == MESSAGES
    assert body["temperature"] == 0.1 and body["max_tokens"] == 64
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


def test_extra_sampling_overrides(server: ScriptedOpenAIServer) -> None:
    complete(make_config(server.base_url), extra_sampling={"temperature": 0.7, "max_tokens": 8, "top_p": 0.9})
    (body,) = server.requests
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.7, 8, 0.9)


def test_retries_500_then_succeeds(server: ScriptedOpenAIServer) -> None:
    server.behaviour = sequence([Reply(status=500), Reply(status=502), "ok"])
    response = complete(make_config(server.base_url))
    assert (response.text, response.attempts, server.count) == ("ok", 3, 3)


def test_429_retry_after_is_honoured(server: ScriptedOpenAIServer) -> None:
    server.behaviour = sequence([Reply(status=429, headers={"Retry-After": "1"}), "ok"])
    started = time.monotonic()
    response = complete(make_config(server.base_url, backoff_max_s=5.0))
    elapsed = time.monotonic() - started
    assert response.attempts == 2 and server.count == 2
    assert elapsed >= 1.0, f"Retry-After: 1 was not honoured (retried after {elapsed:.2f}s)"
    assert elapsed < 3.0


def test_retry_after_is_capped_at_backoff_max(server: ScriptedOpenAIServer) -> None:
    server.behaviour = sequence([Reply(status=503, headers={"Retry-After": "120"}), "ok"])
    started = time.monotonic()
    response = complete(make_config(server.base_url, backoff_max_s=0.2))
    assert response.attempts == 2
    assert time.monotonic() - started < 2.0


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    http_date = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after({"Retry-After": http_date}, now=now.timestamp()) == pytest.approx(7.0)
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_timeout_is_retried_then_reported(server: ScriptedOpenAIServer) -> None:
    server.behaviour = always("late", delay_s=1.5)
    config = make_config(server.base_url, timeout_s=0.3, max_retries=1)
    started = time.monotonic()
    with pytest.raises(LLMRequestError) as info:
        complete(config)
    assert str(info.value) == "timeout after 0.3s (2 attempts)"
    assert (info.value.attempts, info.value.status) == (2, None)
    assert server.count == 2
    assert time.monotonic() - started < 1.5


def test_slow_reply_then_fast_reply(server: ScriptedOpenAIServer) -> None:
    server.behaviour = sequence([Reply(content="late", delay_s=1.0), "fast"])
    response = complete(make_config(server.base_url, timeout_s=0.3))
    assert (response.text, response.attempts) == ("fast", 2)


@pytest.mark.parametrize(
    ("status", "message"), [(400, "context length exceeded"), (401, "bad key"), (404, "no model")]
)
def test_client_errors_are_not_retried(server: ScriptedOpenAIServer, status: int, message: str) -> None:
    server.behaviour = sequence([Reply(status=status, error_message=message), "ok"])
    with pytest.raises(LLMRequestError) as info:
        complete(make_config(server.base_url))
    assert str(info.value) == f"HTTP {status} (not retried): {message}"
    assert (info.value.status, info.value.attempts, server.count) == (status, 1, 1)


def test_gives_up_after_max_retries(server: ScriptedOpenAIServer) -> None:
    server.behaviour = sequence([Reply(status=500, error_message="internal error")])
    with pytest.raises(LLMRequestError) as info:
        complete(make_config(server.base_url, max_retries=2))
    assert str(info.value) == "HTTP 500 after 3 attempts: internal error"
    assert (info.value.status, info.value.attempts, server.count) == (500, 3, 3)


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    with pytest.raises(LLMRequestError, match=r"^connection error after 2 attempts to http://127\.0\.0\.1"):
        complete(make_config(f"http://127.0.0.1:{port}/v1", max_retries=1))


def test_malformed_completion_is_an_error(server: ScriptedOpenAIServer) -> None:
    server.behaviour = always("")  # an empty message is still a valid completion
    assert complete(make_config(server.base_url)).text == ""
    server.behaviour = sequence([Reply(body={"object": "chat.completion", "choices": []})])
    with pytest.raises(LLMRequestError, match="invalid response from the server: expected a chat completion"):
        complete(make_config(server.base_url))
    server.behaviour = sequence([Reply(body='{"choices": [{"mess')])
    with pytest.raises(LLMRequestError, match="invalid response from the server: the body is not valid JSON"):
        complete(make_config(server.base_url))
    assert server.count == 3


def test_client_needs_the_openai_backend() -> None:
    with pytest.raises(ValueError, match="backend 'openai'"):
        ChatClient(make_config("http://127.0.0.1:1/v1", backend="keyword"))


def test_backoff_is_seeded_full_jitter(server: ScriptedOpenAIServer) -> None:
    config = make_config(server.base_url, backoff_base_s=1.0, backoff_max_s=4.0)
    delays = []
    for _ in range(2):
        client = ChatClient(config, rng=random.Random(42))
        delays.append([client._backoff(n) for n in range(1, 6)])
        asyncio.run(client.close())
    assert delays[0] == delays[1]
    for n, delay in enumerate(delays[0], start=1):
        assert 0.0 <= delay <= min(4.0, 2 ** (n - 1))


SEARCH_TOOL = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}


def test_tools_are_sent_and_tool_calls_returned(server: ScriptedOpenAIServer) -> None:
    from finrag_pipelines.llm.stub_server import tool_call

    server.behaviour = sequence(
        [
            Reply(tool_calls=[tool_call("search", {"query_list": ["LPR"]}, "call_a")]),
            # a server that sends the arguments as an object and no id: normalised, the id left to the caller
            Reply(
                body={
                    "choices": [
                        {
                            "message": {
                                "role": "assistant",
                                "content": None,
                                "tool_calls": [
                                    {
                                        "type": "function",
                                        "function": {"name": "search", "arguments": {"query": "LPR"}},
                                    }
                                ],
                            }
                        }
                    ]
                }
            ),
        ]
    )
    first = complete(make_config(server.base_url), tools=[SEARCH_TOOL])
    assert first.text == "" and first.finish_reason == "tool_calls"
    assert first.tool_calls == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "search", "arguments": '{"query_list": ["LPR"]}'},
        }
    ]
    assert server.requests[0]["tools"] == [SEARCH_TOOL]
    second = complete(make_config(server.base_url), tools=[SEARCH_TOOL])
    assert second.tool_calls == [
        {"id": None, "type": "function", "function": {"name": "search", "arguments": '{"query": "LPR"}'}}
    ]
    server.behaviour = always("ok")
    assert complete(make_config(server.base_url)).tool_calls is None and "tools" not in server.requests[-1]


def test_malformed_tool_calls_from_the_server_are_an_error(server: ScriptedOpenAIServer) -> None:
    broken = {"choices": [{"message": {"content": "", "tool_calls": [{"x": 1}]}}]}
    server.behaviour = lambda body, n: Reply(body=broken)
    with pytest.raises(LLMRequestError, match=r"tool_calls\[0\] has no function.name"):
        complete(make_config(server.base_url), tools=[SEARCH_TOOL])
