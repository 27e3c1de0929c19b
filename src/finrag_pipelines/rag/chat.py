"""Journaled chat turns for multi-turn answering: every turn is replayed from the journal when it can be.

:class:`JournaledChat` is the answering systems' only way to the LLM. Each turn is keyed by the full message
list sent (with the tool schemas and the sampling settings, :func:`~finrag_pipelines.llm.journal.cache_key`),
looked up in the :class:`~finrag_pipelines.llm.journal.ResponseJournal` first, and otherwise sent through the
project's :class:`~finrag_pipelines.llm.client.ChatClient` (retries, ``Retry-After``, timeouts), at most
``llm.max_concurrency`` at a time, and journaled the moment it arrives (text, tool calls, reasoning).

Because searches are deterministic, an agent that is run again rebuilds exactly the same message lists, so a
run killed with ``kill -9`` resumes without asking any turn it already had an answer to.

Kedro-free library module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from finrag_pipelines.llm.client import ChatClient, ChatResponse
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal, cache_key, utc_now_iso

logger = logging.getLogger(__name__)


@dataclass
class ChatStats:
    """Turns answered from the journal, turns sent, HTTP requests (retries included)."""

    cached: int = 0
    sent: int = 0
    http_requests: int = 0


class JournaledChat:
    """Chat turns through the journal, then the endpoint.

    Args:
        config: The ``llm`` settings (model, sampling, concurrency).
        journal: The durable response cache.
        client_factory: Builds the :class:`ChatClient` the first time a turn is not in the journal (inside
            the running event loop); ``None`` when no endpoint may be called (then a turn missing from the
            journal is an error).
    """

    def __init__(
        self, config: LLMConfig, journal: ResponseJournal, client_factory: Callable[[], ChatClient] | None
    ) -> None:
        self.config = config
        self.journal = journal
        self._factory = client_factory
        self._sampling = config.sampling()
        self._client: ChatClient | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self.stats = ChatStats()

    @property
    def model(self) -> str:
        """The model name stamped on answers."""
        return self.config.model

    def key(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, attempt: int) -> str:
        """The journal key of one turn: model, messages, sampling, tools and the regeneration number."""
        sampling = {**self._sampling, "tools": tools} if tools else self._sampling
        return cache_key(self.config.model, messages, sampling, attempt)

    async def ask(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None,
        record_id: str,
        attempt: int = 0,
    ) -> ChatResponse:
        """One turn: the journaled response to exactly these messages, else a fresh one (journaled).

        Args:
            messages: The conversation so far, exactly as it is sent.
            tools: Tool schemas offered, or ``None``.
            record_id: A readable id stored with the journal record (``<system>:<question>:<turn>``).
            attempt: 0, or ``n`` for the n-th regeneration of a reply that could not be used.

        Raises:
            LLMRequestError: When the request fails for good (after the client's retries).
            ValueError: When the turn is not journaled and no client factory was given.
        """
        key = self.key(messages, tools, attempt)
        record = self.journal.get(key)
        if record is not None:
            self.stats.cached += 1
            return ChatResponse(
                text=str(record.get("text") or ""),
                reasoning=record.get("reasoning"),
                finish_reason=record.get("finish_reason"),
                attempts=0,
                usage=record.get("usage"),
                tool_calls=record.get("tool_calls"),
            )
        client = self._client_now()
        assert self._semaphore is not None
        async with self._semaphore:
            response = await client.complete(messages, tools=tools)
        self.stats.sent += 1
        self.stats.http_requests += response.attempts
        self.journal.put(
            key,
            {
                "id": record_id,
                "attempt": attempt,
                "model": self.config.model,
                "text": response.text,
                "reasoning": response.reasoning,
                "finish_reason": response.finish_reason,
                "tool_calls": response.tool_calls,
                "usage": response.usage,
                "created_at": utc_now_iso(),
            },
        )
        return response

    def _client_now(self) -> ChatClient:
        if self._client is None:
            if self._factory is None:
                raise ValueError(
                    f"a turn is not in the journal {self.journal.path} and no LLM client was given; set "
                    "llm.backend 'openai' and llm.base_url to call the endpoint."
                )
            self._client = self._factory()
            self._semaphore = asyncio.Semaphore(self.config.max_concurrency)
        return self._client

    async def aclose(self) -> None:
        """Close the client's connection pool (a later turn builds a new client)."""
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._semaphore = None
