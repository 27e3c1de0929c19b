"""One async client for an OpenAI-compatible chat-completions endpoint, with our own retries.

The ``openai`` SDK's built-in retries are switched off (``max_retries=0``): we retry on 429, 5xx,
timeouts and connection errors with exponential backoff and full jitter, honour ``Retry-After`` on
429/503, never retry other 4xx, and raise :class:`LLMRequestError` with a short, readable reason when
we give up. One ``AsyncOpenAI`` (and so one HTTP connection pool, sized for ``max_concurrency``) serves
every request of a run.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import openai

from .config import LLMConfig, resolve_api_key

try:  # openai >= 2.x/3.x is built on httpx2; older releases on httpx. Same Limits API.
    import httpx2 as _httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx as _httpx  # type: ignore[no-redef]

logger = logging.getLogger(__name__)

RETRY_AFTER_STATUSES: frozenset[int] = frozenset({429, 503})
"""Statuses whose ``Retry-After`` header is honoured."""


class LLMRequestError(RuntimeError):
    """A chat request failed for good: a non-retryable status, or retries exhausted.

    Args:
        reason: Short human-readable reason, e.g. ``"HTTP 500 after 6 attempts: internal error"``.
        attempts: HTTP attempts made (first try included).
        status: The last HTTP status, or ``None`` for timeouts and connection errors.
    """

    def __init__(self, reason: str, attempts: int, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.attempts, self.status))


@dataclass(frozen=True)
class ChatResponse:
    """One successful chat completion.

    Attributes:
        text: ``message.content`` (``""`` when the server sent none).
        reasoning: ``message.reasoning_content`` when the server splits off thinking (sglang with
            ``--reasoning-parser``), else ``None``.
        finish_reason: ``"stop"``, ``"length"``, ... as sent by the server.
        attempts: HTTP attempts it took (1 = no retry).
        usage: Token usage as a plain dict, when the server reports it.
        tool_calls: ``message.tool_calls`` when the model called tools (OpenAI function calling), each
            normalised to ``{"id", "type": "function", "function": {"name", "arguments"}}`` with
            ``arguments`` a string as sent (it may be invalid JSON: the caller judges it) and ``id`` ``None``
            when the server sent none; ``None`` when the message has no tool call.
    """

    text: str
    reasoning: str | None
    finish_reason: str | None
    attempts: int
    usage: dict[str, Any] | None
    tool_calls: list[dict[str, Any]] | None = None


def parse_retry_after(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds to wait according to ``Retry-After-Ms`` / ``Retry-After`` (seconds or an HTTP date).

    Args:
        headers: A case-insensitive header mapping (``httpx`` headers) or a plain dict.
        now: Current POSIX time for HTTP dates (defaults to ``time.time()``).

    Returns:
        A non-negative delay in seconds, or ``None`` when absent or unparseable.
    """
    if headers is None:
        return None
    lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value)
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = datetime.now(UTC).timestamp() if now is None else now
        return max(0.0, when.timestamp() - current)
    return max(0.0, value) if math.isfinite(value) else None


def _error_detail(exc: openai.APIStatusError) -> str:
    """The server's error message, short: ``body.error.message``, ``body.message``, ``detail``, or text."""
    body = exc.body
    message: Any = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = inner.get("message") or inner.get("detail")
        elif isinstance(inner, str):
            message = inner
        if message is None:
            message = body.get("detail") or body.get("message")
    elif isinstance(body, str):
        message = body
    if not message:
        try:
            message = exc.response.text
        except Exception:  # noqa: BLE001 - the body may be unreadable; the status still says enough
            message = ""
    text = " ".join(str(message).split()) or exc.response.reason_phrase or "no message"
    return text if len(text) <= 200 else text[:197] + "..."


def _tool_calls(raw: Any, attempts: int) -> list[dict[str, Any]] | None:
    """``message.tool_calls`` normalised (see :attr:`ChatResponse.tool_calls`); ``None`` when there are none.

    Raises:
        LLMRequestError: When ``tool_calls`` is not a list of objects with a ``function.name`` (a malformed
            response, not a model mistake: the server's tool parser produced it).
    """
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise LLMRequestError(
            f"invalid response from the server: message.tool_calls must be a list, got {str(raw)[:120]!r}",
            attempts,
        )
    calls = []
    for i, call in enumerate(raw):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise LLMRequestError(
                f"invalid response from the server: message.tool_calls[{i}] has no function.name: "
                f"{str(call)[:120]!r}",
                attempts,
            )
        arguments = function.get("arguments")
        if not isinstance(arguments, str):  # some servers send the object itself
            arguments = "" if arguments is None else json.dumps(arguments, ensure_ascii=False)
        call_id = call.get("id")
        calls.append(
            {
                "id": call_id if isinstance(call_id, str) and call_id else None,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        )
    return calls


def _attempts_word(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


class ChatClient:
    """Async chat-completions client for one endpoint, with retries and a connection pool.

    Create it inside the event loop that will use it, and ``await close()`` when done (or use
    ``async with``).

    Args:
        config: Endpoint, model, sampling, timeout and retry settings (``backend`` must be ``openai``).
        api_key: Bearer key (see :func:`~finrag_pipelines.llm.config.resolve_api_key`).
        rng: Random source for backoff jitter; pass a seeded one for reproducible tests.

    Raises:
        ValueError: If ``config.backend`` is not ``"openai"``.
    """

    def __init__(
        self, config: LLMConfig, api_key: str = "EMPTY", *, rng: random.Random | None = None
    ) -> None:
        if config.backend != "openai" or not config.base_url:
            raise ValueError(
                f"ChatClient needs llm.backend 'openai' and a base_url, got backend={config.backend!r}, "
                f"base_url={config.base_url!r}."
            )
        self.config = config
        self._rng = rng if rng is not None else random.Random()
        # One keep-alive connection per concurrent request (plus slack), so no request waits for a pooled
        # connection and none is reopened; the SDK's default keeps only 100 alive.
        limits = _httpx.Limits(
            max_connections=config.max_concurrency + 8, max_keepalive_connections=config.max_concurrency + 8
        )
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=api_key or "EMPTY",
            timeout=config.timeout_s,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=config.timeout_s),
        )

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        extra_sampling: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> ChatResponse:
        """Send one chat request, retrying transient failures.

        Args:
            messages: Chat messages (``[{"role": ..., "content": ...}, ...]``), including OpenAI
                function-calling turns (an assistant message with ``tool_calls``, then ``role: tool``
                messages carrying ``tool_call_id``).
            extra_sampling: Per-call overrides: ``temperature`` and ``max_tokens`` replace the config's,
                any other key is merged into the request body over ``config.extra_body``. Callers that
                cache responses must put these into their cache key too.
            tools: OpenAI tool schemas (``[{"type": "function", "function": {...}}]``) sent as ``tools``;
                the model may answer with :attr:`ChatResponse.tool_calls`. Part of what a cache key must hold.

        Returns:
            The completion.

        Raises:
            LLMRequestError: On a non-retryable status (400, 401, 404, ...), a malformed response, or
                when ``config.max_retries`` retries are used up.
        """
        overrides = dict(extra_sampling or {})
        body: dict[str, Any] = {
            **self.config.extra_body,
            "model": self.config.model,
            "messages": messages,
            "temperature": overrides.pop("temperature", self.config.temperature),
        }
        max_tokens = overrides.pop("max_tokens", self.config.max_tokens)
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        body.update(overrides)
        if tools:
            body["tools"] = tools

        attempts = 0
        while True:
            attempts += 1
            try:
                # The SDK's documented raw route (``client.post(..., cast_to=object)``) instead of
                # ``chat.completions.create``: same auth, base URL, timeouts and status errors, without the
                # typed-params transform and pydantic response models. Those cost ~0.9 ms of CPU per
                # request (3.0 vs 2.1 ms) and held benchmarks/distill_throughput.py at 213 instead of
                # ~275 requests/s (concurrency 64, 200 ms replies, 2 cores).
                completion = await self._client.post("/chat/completions", body=body, cast_to=object)
            except openai.APIStatusError as exc:
                status = exc.status_code
                detail = _error_detail(exc)
                if status != 429 and status < 500:
                    raise LLMRequestError(f"HTTP {status} (not retried): {detail}", attempts, status) from exc
                if attempts > self.config.max_retries:
                    raise LLMRequestError(
                        f"HTTP {status} after {_attempts_word(attempts)}: {detail}", attempts, status
                    ) from exc
                delay = self._backoff(attempts)
                if status in RETRY_AFTER_STATUSES:
                    retry_after = parse_retry_after(exc.response.headers)
                    if retry_after is not None:
                        delay = min(retry_after, self.config.backoff_max_s)
                logger.debug("HTTP %d (%s); retry %d in %.2fs", status, detail, attempts, delay)
            except openai.APITimeoutError as exc:  # subclass of APIConnectionError: check first
                if attempts > self.config.max_retries:
                    raise LLMRequestError(
                        f"timeout after {self.config.timeout_s:g}s ({_attempts_word(attempts)})", attempts
                    ) from exc
                delay = self._backoff(attempts)
                logger.debug("timeout after %gs; retry %d in %.2fs", self.config.timeout_s, attempts, delay)
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                detail = f"{type(cause).__name__}: {cause}".strip().rstrip(":")
                if attempts > self.config.max_retries:
                    raise LLMRequestError(
                        f"connection error after {_attempts_word(attempts)} to {self.config.base_url}: "
                        f"{detail}",
                        attempts,
                    ) from exc
                delay = self._backoff(attempts)
                logger.debug("connection error (%s); retry %d in %.2fs", detail, attempts, delay)
            except openai.APIError as exc:  # e.g. a 200 whose body is not a chat completion
                raise LLMRequestError(f"invalid response from the server: {exc}", attempts) from exc
            except ValueError as exc:  # a JSON content type on a body that is not JSON
                raise LLMRequestError(
                    f"invalid response from the server: the body is not valid JSON ({exc})", attempts
                ) from exc
            else:
                return self._to_response(completion, attempts)
            await asyncio.sleep(delay)

    def _backoff(self, attempts: int) -> float:
        """Full-jitter exponential backoff before retry number ``attempts``."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * (2 ** (attempts - 1)))
        return self._rng.uniform(0.0, ceiling)

    @staticmethod
    def _to_response(completion: Any, attempts: int) -> ChatResponse:
        """Read the fields we use from a chat-completion JSON body, checking its shape."""
        choices = completion.get("choices") if isinstance(completion, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise LLMRequestError(
                f"invalid response from the server: expected a chat completion with 'choices', got "
                f"{str(completion)[:120]!r}",
                attempts,
            )
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise LLMRequestError(
                "invalid response from the server: choices[0] has no 'message' object", attempts
            )
        content = message.get("content")
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        finish_reason = choice.get("finish_reason")
        usage = completion.get("usage")
        return ChatResponse(
            text=content if isinstance(content, str) else "",
            reasoning=reasoning if isinstance(reasoning, str) else None,
            finish_reason=finish_reason if isinstance(finish_reason, str) else None,
            attempts=attempts,
            usage=usage if isinstance(usage, dict) else None,
            tool_calls=_tool_calls(message.get("tool_calls"), attempts),
        )

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def client_factory(config: LLMConfig, credentials: Mapping[str, Any] | None) -> Callable[[], ChatClient]:
    """A factory for ``run_chat_batch``:
    the client (and its connection pool) is built only if a call is needed."""
    api_key = resolve_api_key(credentials)

    def make() -> ChatClient:
        return ChatClient(config, api_key)

    return make
