"""The scripted OpenAI-protocol server itself: protocol shape, loopback only, concurrency, clean exit, CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from finrag_pipelines.llm.stub_server import Reply, ScriptedOpenAIServer, always, echo, sequence

_SRC = Path(__file__).resolve().parents[2] / "src"


def test_protocol_shape_and_records() -> None:
    with ScriptedOpenAIServer(always("你好", reasoning="想了想"), model_name="qwen3") as server:
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
        with httpx.Client(base_url=server.base_url, timeout=5) as http:
            models = http.get("/models").json()
            assert models["data"][0]["id"] == "qwen3"
            body = {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}]}
            reply = http.post("/chat/completions", json=body).json()
            assert reply["object"] == "chat.completion"
            assert reply["choices"][0]["message"] == {
                "role": "assistant",
                "content": "你好",
                "reasoning_content": "想了想",
            }
            assert reply["choices"][0]["finish_reason"] == "stop"
            assert reply["usage"]["total_tokens"] >= 2
            bad = http.post("/chat/completions", json={"model": "qwen3"})
            assert bad.status_code == 400 and "messages" in bad.json()["error"]["message"]
        assert server.count == 1 and server.requests == [body]


def test_error_replies_carry_status_headers_and_message() -> None:
    behaviour = sequence([Reply(status=429, headers={"Retry-After": "3"}, error_message="slow down"), "ok"])
    with ScriptedOpenAIServer(behaviour) as server, httpx.Client(base_url=server.base_url, timeout=5) as http:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        first = http.post("/chat/completions", json=body)
        assert first.status_code == 429 and first.headers["retry-after"] == "3"
        assert first.json()["error"]["message"] == "slow down"
        assert http.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"] == "ok"


def test_delays_do_not_block_other_requests() -> None:
    async def slow_echo(body: dict[str, Any], n: int) -> Reply:
        return await asyncio.sleep(0, result=Reply(content=str(n), delay_s=0.4))

    with ScriptedOpenAIServer(slow_echo) as server:

        async def fire() -> float:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:
                body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
                started = time.monotonic()
                await asyncio.gather(*[http.post("/chat/completions", json=body) for _ in range(8)])
                return time.monotonic() - started

        elapsed = asyncio.run(fire())
        assert elapsed < 1.2, f"8 requests with a 0.4 s delay took {elapsed:.2f}s: delays block each other"
        assert server.max_in_flight == 8


def test_binds_loopback_only_and_stops_cleanly() -> None:
    before = {t.ident for t in threading.enumerate()}
    server = ScriptedOpenAIServer(echo()).start()
    assert server.bind().getsockname()[0] == "127.0.0.1"
    port = server.port
    server.stop()
    server.stop()  # idempotent
    leftover = [t.name for t in threading.enumerate() if t.ident not in before]
    assert not leftover, f"threads left running after stop(): {leftover}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url


def test_command_line_server_prints_its_address_and_exits_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_SRC), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "finrag_pipelines.llm.stub_server", "--port", "0", "--content", "固定回答"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        address = json.loads(proc.stdout.readline())
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(f"{address['base_url']}/chat/completions", json=body, timeout=5).json()
        assert reply["choices"][0]["message"]["content"] == "固定回答"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    stderr = proc.stderr.read() if proc.stderr else ""
    # uvicorn shuts down gracefully, then re-raises the captured SIGTERM (the conventional exit status).
    assert proc.returncode in (0, -signal.SIGTERM), stderr
    assert "Traceback" not in stderr, stderr


def test_function_calling_replies_and_the_tool_message_rules() -> None:
    from finrag_pipelines.llm.stub_server import tool_call, tool_protocol_error

    call = tool_call("search", {"query_list": ["LPR"]}, "call_1")
    server = ScriptedOpenAIServer(lambda body, n: Reply(tool_calls=[call]))
    with server, httpx.Client(base_url=server.base_url, timeout=5) as http:
        reply = http.post("/chat/completions", json={"messages": [{"role": "user", "content": "q"}]}).json()
        choice = reply["choices"][0]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["tool_calls"] == [call]
        assert choice["message"]["content"] is None
        good = [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Doc 1 [a1]\n…"},
        ]
        assert http.post("/chat/completions", json={"messages": good}).status_code == 200
        orphan = good[:1] + good[2:]
        bad = http.post("/chat/completions", json={"messages": orphan})
        assert bad.status_code == 400
        assert "must answer a preceding tool call" in bad.json()["error"]["message"]
    unanswered = good[:2] + [{"role": "user", "content": "再想想"}]
    assert "before the tool calls ['call_1'] were answered" in tool_protocol_error(unanswered)
    wrong_id = good[:2] + [{"role": "tool", "tool_call_id": "call_9", "content": "x"}]
    assert "got 'call_9'" in tool_protocol_error(wrong_id)
    as_object = {**call, "function": {"name": "search", "arguments": {}}}
    object_args = [{"role": "assistant", "tool_calls": [as_object]}]
    assert "arguments: <JSON string>" in tool_protocol_error(object_args)
    assert tool_protocol_error(good) is None
