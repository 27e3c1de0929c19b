"""A real local HTTP server speaking the OpenAI chat-completions protocol, with scripted replies.

Use it to test the LLM layer over real HTTP (retries, timeouts, concurrency), to benchmark the client,
and to try a pipeline without a GPU::

    from finrag_pipelines.llm.stub_server import ScriptedOpenAIServer, always

    with ScriptedOpenAIServer(always('{"answer": "yes"}')) as server:
        ...  # point llm.base_url at server.base_url

or, as a separate process (prints one JSON line with ``base_url`` and ``port`` once it listens)::

    python -m finrag_pipelines.llm.stub_server --port 0 --delay-ms 200 --content '你好'

The server binds 127.0.0.1 only. It answers ``POST /v1/chat/completions``, ``GET /v1/models`` and
``GET /health``; the reply to each request comes from a ``behaviour(body, n) -> Reply`` callable, where ``n``
counts requests from 0. Delays are ``await asyncio.sleep``, so slow replies do not hold up others.

It speaks OpenAI function calling: a :class:`Reply` with ``tool_calls`` (see :func:`tool_call`) answers
with ``message.tool_calls`` and ``finish_reason: tool_calls``, and every request's messages are checked the
way OpenAI checks them (:func:`tool_protocol_error`): each ``role: tool`` message answers, by
``tool_call_id``, a call of the assistant message just before it, and every call is answered before the
next message; a request breaking that gets a 400. Scripted search agents for both agent protocols
(function calling and Search-R1's ``<search>``/``<answer>`` text) are in :mod:`.stub_agent`.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


@dataclass
class Reply:
    """What the stub answers to one request.

    Attributes:
        content: ``message.content`` of a 200 reply.
        reasoning: ``message.reasoning_content`` (as sglang's reasoning parser sends it), or ``None``.
        status: HTTP status; anything but 200 sends an OpenAI-style error body instead.
        headers: Extra response headers, e.g. ``{"Retry-After": "1"}``.
        delay_s: Seconds to wait (asynchronously) before answering.
        error_message: ``error.message`` of a non-200 reply (a default is derived from the status).
        finish_reason: ``choices[0].finish_reason`` of a 200 reply.
        body: A body sent instead of a completion or error, to test malformed replies: a JSON value,
            or a ``str`` sent verbatim with a JSON content type (e.g. truncated JSON).
        tool_calls: ``message.tool_calls`` of a 200 reply (build them with :func:`tool_call`); the
            ``finish_reason`` then defaults to ``"tool_calls"``.
    """

    content: str = ""
    reasoning: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    error_message: str | None = None
    finish_reason: str = "stop"
    body: Any = None
    tool_calls: list[dict[str, Any]] | None = None


Behaviour = Callable[[dict[str, Any], int], "Reply | Awaitable[Reply]"]
"""``behaviour(body, n)``: the request's JSON body and its 0-based arrival number -> the reply."""


def always(content: str, *, reasoning: str | None = None, delay_s: float = 0.0) -> Behaviour:
    """Answer every request with the same content.

    Args:
        content: ``message.content``.
        reasoning: ``message.reasoning_content``.
        delay_s: Delay before each answer.

    Returns:
        A behaviour.
    """

    def behaviour(body: dict[str, Any], n: int) -> Reply:
        return Reply(content=content, reasoning=reasoning, delay_s=delay_s)

    return behaviour


def sequence(replies: Sequence[Reply | str]) -> Behaviour:
    """Answer request ``n`` with ``replies[n]``; the last reply repeats after that.

    Args:
        replies: Replies (a plain string means a 200 with that content).

    Returns:
        A behaviour.

    Raises:
        ValueError: If ``replies`` is empty.
    """
    if not replies:
        raise ValueError("sequence() needs at least one reply.")
    items = [Reply(content=r) if isinstance(r, str) else r for r in replies]

    def behaviour(body: dict[str, Any], n: int) -> Reply:
        return items[min(n, len(items) - 1)]

    return behaviour


def last_user_message(body: dict[str, Any]) -> str:
    """The content of the last ``user`` message of a request body (``""`` if none)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return ""


def echo(*, prefix: str = "", delay_s: float = 0.0) -> Behaviour:
    """Answer with ``prefix`` + the last user message (handy to check request/response pairing).

    Args:
        prefix: Text put before the echoed message.
        delay_s: Delay before each answer.

    Returns:
        A behaviour.
    """

    def behaviour(body: dict[str, Any], n: int) -> Reply:
        return Reply(content=prefix + last_user_message(body), delay_s=delay_s)

    return behaviour


def tool_call(name: str, arguments: Any, call_id: str) -> dict[str, Any]:
    """One OpenAI tool call for :attr:`Reply.tool_calls`.

    Args:
        name: The function name.
        arguments: A JSON-serialisable value (serialised here), or a ``str`` sent as is (e.g. broken JSON).
        call_id: The call's id, which the client's ``role: tool`` message must quote as ``tool_call_id``.
    """
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def tool_protocol_error(messages: list[Any]) -> str | None:
    """Why ``messages`` break OpenAI's function-calling rules, or ``None`` when they keep them.

    The rules checked: an assistant ``tool_calls`` entry has a string ``id``, ``type: function`` and a
    ``function`` with string ``name`` and ``arguments``; ``role: tool`` messages follow an assistant message
    with ``tool_calls`` (or another tool message), quote one of its call ids in ``tool_call_id`` and carry
    string ``content``; every call is answered once before any other message.
    """
    open_ids: set[str] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] is not an object"
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in open_ids:
                return (
                    f"messages[{i}] with role 'tool' must answer a preceding tool call by tool_call_id; "
                    f"got {call_id!r}, open calls: {sorted(open_ids)}"
                )
            if not isinstance(message.get("content"), str):
                return f"messages[{i}] with role 'tool' needs string content"
            open_ids.discard(call_id)
            continue
        if open_ids:
            return (
                f"messages[{i}] ({role}) comes before the tool calls {sorted(open_ids)} were answered by "
                "'tool' messages"
            )
        for j, call in enumerate(message.get("tool_calls") or [] if role == "assistant" else []):
            function = call.get("function") if isinstance(call, dict) else None
            ok = (
                isinstance(call, dict)
                and isinstance(call.get("id"), str)
                and call.get("type") == "function"
                and isinstance(function, dict)
                and isinstance(function.get("name"), str)
                and isinstance(function.get("arguments"), str)
            )
            if not ok:
                return (
                    f"messages[{i}].tool_calls[{j}] must be {{id, type: function, function: {{name, "
                    f"arguments: <JSON string>}}}}, got {str(call)[:120]}"
                )
            open_ids.add(call["id"])
    return None


def _error_body(reply: Reply) -> dict[str, Any]:
    message = reply.error_message or {
        400: "bad request",
        401: "invalid api key",
        404: "model not found",
        429: "rate limited",
        500: "internal error",
        503: "service unavailable",
    }.get(reply.status, f"error {reply.status}")
    return {"error": {"message": message, "type": "stub_error", "param": None, "code": reply.status}}


def _completion_body(body: dict[str, Any], reply: Reply, n: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning is not None:
        message["reasoning_content"] = reply.reasoning
    finish_reason = reply.finish_reason
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
        message["content"] = reply.content or None  # what OpenAI sends beside tool calls
        finish_reason = "tool_calls" if finish_reason == "stop" else finish_reason
    prompt_chars = sum(
        len(str(m.get("content", ""))) for m in body.get("messages") or [] if isinstance(m, dict)
    )
    completion_tokens = max(1, len(reply.content) // 2)
    prompt_tokens = max(1, prompt_chars // 2)
    return {
        "id": f"chatcmpl-stub-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "stub"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class ScriptedOpenAIServer:
    """An OpenAI-compatible chat server on 127.0.0.1 with a random free port, run by uvicorn.

    Runs in a background thread (``start``/``stop`` or ``with``). For benchmarks run it in another
    process instead (``python -m finrag_pipelines.llm.stub_server``) so it does not share the client's
    CPU time and GIL.

    Args:
        behaviour: ``behaviour(body, n) -> Reply`` (may be ``async``); default ``always("ok")``.
        port: Port to bind; 0 picks a free one.
        model_name: Model id listed by ``GET /v1/models``.
        http: uvicorn HTTP implementation (``"h11"``, ``"httptools"`` or ``"auto"``).
        loop: uvicorn event loop (``"asyncio"``, ``"uvloop"`` or ``"auto"``).
        keep_requests: Keep every request body in :attr:`requests` (turn off for long benchmarks).

    Attributes:
        max_in_flight: Most requests that were being handled at the same time.
    """

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        port: int = 0,
        model_name: str = "stub",
        http: str = "h11",
        loop: str = "asyncio",
        keep_requests: bool = True,
    ) -> None:
        self.behaviour: Behaviour = behaviour if behaviour is not None else always("ok")
        self.model_name = model_name
        self._port = port
        self._http = http
        self._loop = loop
        self._keep_requests = keep_requests
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._count = 0
        self._in_flight = 0
        self.max_in_flight = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.app = self._build_app()

    # ------------------------------------------------------------------ app

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="ScriptedOpenAIServer", docs_url=None, redoc_url=None, openapi_url=None)

        @app.get("/health")
        async def health() -> dict[str, str]:  # sglang's readiness endpoint (llm/managed_server.py waits)
            return {"status": "ok"}

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {
                "object": "list",
                "data": [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "stub"}],
            }

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse(_error_body(Reply(status=400, error_message="body is not JSON")), 400)
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return JSONResponse(
                    _error_body(Reply(status=400, error_message="'messages' must be a list")), 400
                )
            problem = tool_protocol_error(body["messages"])
            if problem is not None:
                return JSONResponse(_error_body(Reply(status=400, error_message=problem)), 400)
            with self._lock:
                n = self._count
                self._count += 1
                if self._keep_requests:
                    self._requests.append(body)
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                reply = self.behaviour(body, n)
                if inspect.isawaitable(reply):
                    reply = await reply
                if reply.delay_s > 0:
                    await asyncio.sleep(reply.delay_s)
                if isinstance(reply.body, str):
                    return Response(
                        reply.body,
                        status_code=reply.status,
                        headers=reply.headers,
                        media_type="application/json",
                    )
                if reply.body is not None:
                    return JSONResponse(reply.body, status_code=reply.status, headers=reply.headers)
                if reply.status != 200:
                    return JSONResponse(_error_body(reply), status_code=reply.status, headers=reply.headers)
                return JSONResponse(_completion_body(body, reply, n), headers=reply.headers)
            finally:
                with self._lock:
                    self._in_flight -= 1

        return app

    # ------------------------------------------------------------- records

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the chat request bodies received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def count(self) -> int:
        """Number of chat requests received so far."""
        with self._lock:
            return self._count

    def reset(self) -> None:
        """Forget the recorded requests, the count and ``max_in_flight``."""
        with self._lock:
            self._requests.clear()
            self._count = 0
            self.max_in_flight = self._in_flight

    # ------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._socket is None:
            raise RuntimeError("the stub server is not started; call start() or use it as a context manager.")
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://{HOST}:{self.port}/v1"

    def bind(self) -> socket.socket:
        """Bind the listening socket on 127.0.0.1 (idempotent); the port is known from here on."""
        if self._socket is None:
            # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
            # TCP, and with proto 0 every reply (headers and body written separately) stalls ~40 ms on
            # Nagle + delayed ACK. uvloop sets it regardless.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self._port))
            sock.listen(2048)
            sock.set_inheritable(True)
            self._socket = sock
        return self._socket

    def _make_server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app,
            loop=self._loop,
            http=self._http,
            lifespan="off",
            access_log=False,
            log_config=None,  # the default dictConfig would rewire the host application's logging
            log_level="warning",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=1,  # then in-flight (slow) replies are cancelled
            backlog=2048,
        )
        return uvicorn.Server(config)

    def start(self, timeout_s: float = 10.0) -> ScriptedOpenAIServer:
        """Serve in a daemon thread; returns once the server accepts connections.

        Args:
            timeout_s: How long to wait for the server to come up.

        Returns:
            ``self``.

        Raises:
            RuntimeError: If it is already running or does not start in time.
        """
        if self._thread is not None:
            raise RuntimeError("the stub server is already running.")
        sock = self.bind()
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="stub-openai-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the stub OpenAI server did not start within {timeout_s}s on {HOST}.")
            time.sleep(0.005)
        logger.debug("stub OpenAI server listening on %s", self.base_url)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the server to exit, wait for its thread, and release the port (idempotent)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.warning("stub OpenAI server thread did not exit within %ss", timeout_s)
            self._thread = None
        self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def serve_forever(self) -> None:
        """Serve in the calling (main) thread until SIGINT/SIGTERM; for the command line."""
        sock = self.bind()
        self._server = self._make_server()
        try:
            self._server.run(sockets=[sock])
        finally:
            self._server = None
            sock.close()
            self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m finrag_pipelines.llm.stub_server",
        description="Serve scripted OpenAI chat completions on 127.0.0.1 (for tests, benchmarks, demos).",
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (0 = any free port)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay before every answer")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--content", default=None, help="answer every request with this text")
    what.add_argument("--echo", action="store_true", help="answer with the last user message (default)")
    what.add_argument(
        "--agent",
        action="store_true",
        help="a scripted search agent (stub_agent.search_agent): one search, then an answer citing a passage",
    )
    parser.add_argument(
        "--model-name", "--served-model-name", default="stub", help="model id listed by /v1/models"
    )
    parser.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"])
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    # `python -m sglang.launch_server`'s flags, so a managed-server launch (llm_server.module) runs the stub
    sglang = parser.add_argument_group("sglang launch_server flags (recorded in the first output line)")
    sglang.add_argument("--model-path", default=None)
    sglang.add_argument("--host", default=HOST, choices=[HOST], help="the stub binds 127.0.0.1 only")
    sglang.add_argument("--tp-size", type=int, default=None)
    sglang.add_argument("--mem-fraction-static", type=float, default=None)
    sglang.add_argument("--reasoning-parser", default=None)
    sglang.add_argument("--tool-call-parser", default=None)
    # for lifecycle tests of a managed server
    parser.add_argument("--startup-delay-s", type=float, default=0.0, help="wait this long before listening")
    parser.add_argument(
        "--spawn-child",
        action="store_true",
        help="start a child process that outlives the stub unless its process group is killed "
        "(as a server's worker processes would)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: serve until interrupted, after printing ``{"base_url", "port"}`` as one JSON line.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = _parse_args(argv)
    delay_s = max(0.0, args.delay_ms / 1000.0)
    if args.spawn_child:
        import subprocess

        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    time.sleep(max(0.0, args.startup_delay_s))
    if args.agent:
        from .stub_agent import search_agent

        behaviour = search_agent(delay_s=delay_s)
    elif args.content is not None:
        behaviour = always(args.content, delay_s=delay_s)
    else:
        behaviour = echo(delay_s=delay_s)
    server = ScriptedOpenAIServer(
        behaviour,
        port=args.port,
        model_name=args.model_name,
        http=args.http,
        loop=args.loop,
        keep_requests=False,
    )
    server.bind()
    flags = ("model_path", "tp_size", "mem_fraction_static", "reasoning_parser", "tool_call_parser")
    launch = {k: getattr(args, k) for k in flags}
    sys.stdout.write(json.dumps({"base_url": server.base_url, "port": server.port, **launch}) + "\n")
    sys.stdout.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
