"""LLM batches on a Ray actor pool, with the same journal, validation, retries and results as the local path.

:func:`run_chat_batch_ray` is :func:`~finrag_pipelines.llm.batch.run_chat_batch` with the network calls
moved to Ray Data: the journal answers what it can (in the driver); the rest goes through
``map_batches`` over a pool of :class:`ChatActor`, each holding one async
:class:`~finrag_pipelines.llm.client.ChatClient` (built once, with the client's own retries and backoff)
and sending its batch concurrently. Actors return raw responses only; the driver journals them as they
stream in (one batch at a time) and then validates them exactly as the local path does, so results,
invalid-output regenerations, quarantine and failure accounting are identical, and a rerun after a
crash asks only for what the journal lacks. Regenerations after invalid outputs go out as a next round.

Kedro-free; Ray is imported only when this runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from finrag_pipelines.execution import ExecutionConfig, ray_session
from finrag_pipelines.llm.batch import (
    ChatRequest,
    ChatResult,
    _BatchRun,
    _identity,
    check_unique_ids,
    run_chat_batch,
)
from finrag_pipelines.llm.client import ChatClient, ChatResponse, LLMRequestError, client_factory
from finrag_pipelines.llm.config import LLMConfig, resolve_api_key
from finrag_pipelines.llm.journal import ResponseJournal

logger = logging.getLogger(__name__)


class ChatActor:
    """A Ray Data ``map_batches`` callable class: one chat client and one event loop per actor.

    Args:
        config: The LLM settings as a mapping (:meth:`LLMConfig.from_mapping`); ``max_concurrency`` is this
            actor's share of the requests in flight.
        api_key: Bearer key for the endpoint.
    """

    def __init__(self, config: Mapping[str, Any], api_key: str) -> None:
        self.config = LLMConfig.from_mapping(config)
        self.api_key = api_key
        self.loop = asyncio.new_event_loop()
        self.client: ChatClient | None = None
        self.semaphore: asyncio.Semaphore | None = None

    async def _complete(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        assert self.client is not None and self.semaphore is not None
        try:
            async with self.semaphore:
                response = await self.client.complete(messages)
        except LLMRequestError as exc:
            return {"error": exc.reason, "attempts": exc.attempts, "status": exc.status}
        return dataclasses.asdict(response)

    async def _run(self, payloads: list[str]) -> list[dict[str, Any]]:
        if self.client is None:  # built inside the loop that uses it, once per actor
            self.client = ChatClient(self.config, self.api_key)
            self.semaphore = asyncio.Semaphore(self.config.max_concurrency)
        return await asyncio.gather(*(self._complete(json.loads(payload)) for payload in payloads))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Send one batch: ``{"slot", "messages"}`` (JSON) in, ``{"slot", "response"}`` (JSON) out."""
        answers = self.loop.run_until_complete(self._run([str(m) for m in batch["messages"]]))
        return {
            "slot": np.asarray(batch["slot"]),
            "response": np.asarray([json.dumps(a, ensure_ascii=False) for a in answers], dtype=object),
        }

    def __del__(self) -> None:
        """Close the connection pool and the loop when Ray retires the actor."""
        loop = getattr(self, "loop", None)
        if loop is None or loop.is_closed():
            return
        try:
            if self.client is not None:
                loop.run_until_complete(self.client.close())
        except RuntimeError:  # interpreter shutdown: the loop cannot run any more
            logger.debug("could not close the chat client of a retiring actor", exc_info=True)
        finally:
            loop.close()


def run_chat_batch_ray(
    requests: Sequence[ChatRequest],
    *,
    llm_config: LLMConfig,
    credentials: Mapping[str, Any] | None,
    journal: ResponseJournal,
    execution: ExecutionConfig,
    validate: Callable[[str], Any] | None = None,
    desc: str = "llm",
    actor_cls: type[ChatActor] = ChatActor,
) -> list[ChatResult]:
    """Answer every request, from the journal where possible, else through a Ray actor pool.

    Args:
        requests: The requests; ids must be unique.
        llm_config: Model, sampling, concurrency and retry settings. ``max_concurrency`` stays the total in
            flight: each of the ``execution.num_actors`` actors gets an equal share (rounded up).
        credentials: The ``llm`` credentials (``{"api_key": ...}``) or ``None``; the key is resolved in
            the driver (:func:`resolve_api_key`) and handed to the actors.
        journal: Durable cache of raw responses; only the driver writes to it.
        execution: Ray settings: actors, requests per actor call, cluster address or local cores.
        validate: ``text -> value``; raise ``ValueError`` for an invalid output (run in the driver;
            a request's own :attr:`ChatRequest.validate` wins).
        desc: Label for the log lines.
        actor_cls: The ``map_batches`` class (:class:`ChatActor` or a subclass).

    Returns:
        One :class:`ChatResult` per request, in request order, as :func:`run_chat_batch` returns them.

    Raises:
        ValueError: On duplicate request ids.
    """
    check_unique_ids(requests, desc)
    run = _BatchRun(list(requests), journal, llm_config, validate or _identity, desc)
    pending = [(index, attempt, key, 0) for index, attempt, key in run.prepare()]
    if pending:
        api_key = resolve_api_key(credentials)
        per_actor = max(1, math.ceil(llm_config.max_concurrency / execution.num_actors))
        actor_config = {
            field.name: getattr(llm_config, field.name) for field in dataclasses.fields(llm_config)
        } | {"max_concurrency": per_actor}
        with ray_session(execution) as ray:
            round_no = 0
            while pending:
                round_no += 1
                logger.info(
                    "%s: round %d, %d requests to %d Ray actors",
                    desc,
                    round_no,
                    len(pending),
                    execution.num_actors,
                )
                pending = _run_round(ray, run, pending, actor_cls, actor_config, api_key, execution)
    return run.finish()


def _run_round(
    ray: Any,
    run: _BatchRun,
    pending: list[tuple[int, int, str, int]],
    actor_cls: type[ChatActor],
    actor_config: dict[str, Any],
    api_key: str,
    execution: ExecutionConfig,
) -> list[tuple[int, int, str, int]]:
    """Send one generation of every pending request; settle what comes back; return the regenerations."""
    dataset = execution.dataset(
        ray,
        {
            "slot": list(range(len(pending))),
            "messages": [
                json.dumps(run.requests[index].messages, ensure_ascii=False) for index, *_ in pending
            ],
        },
    ).map_batches(
        actor_cls,
        fn_constructor_kwargs={"config": actor_config, "api_key": api_key},
        batch_format="numpy",
        **execution.actor_options(ray, len(pending)),
    )
    follow_up: list[tuple[int, int, str, int]] = []
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for slot, raw in zip(batch["slot"], batch["response"]):
            index, attempt, key, http_requests = pending[int(slot)]
            answer = json.loads(str(raw))
            if "error" in answer:
                exc = LLMRequestError(answer["error"], int(answer["attempts"]), answer.get("status"))
                run.results[index] = run.record_error(index, exc, http_requests)
                continue
            response = ChatResponse(**answer)
            http_requests += response.attempts
            outcome = run.record_response(index, attempt, key, response, http_requests)
            if isinstance(outcome, ChatResult):
                run.results[index] = outcome
            else:
                follow_up.append((index, *outcome, http_requests))
    return follow_up


def run_chat_requests(
    requests: Sequence[ChatRequest],
    *,
    llm_config: LLMConfig,
    credentials: Mapping[str, Any] | None,
    journal: ResponseJournal,
    validate: Callable[[str], Any] | None,
    desc: str,
    execution: ExecutionConfig | None,
) -> list[ChatResult]:
    """Run a batch in this process (:func:`run_chat_batch`) or on Ray, as ``execution.backend`` says.

    Args:
        requests: The requests; ids must be unique.
        llm_config: The LLM settings.
        credentials: The ``llm`` credentials, or ``None``.
        journal: The response journal.
        validate: ``text -> value``; ``ValueError`` marks an output invalid.
        desc: Label for logs.
        execution: Where to run; ``None`` means ``local``.

    Returns:
        One result per request, in request order (identical for both backends).
    """
    if execution is not None and execution.backend == "ray":
        return run_chat_batch_ray(
            requests,
            llm_config=llm_config,
            credentials=credentials,
            journal=journal,
            execution=execution,
            validate=validate,
            desc=desc,
        )
    return run_chat_batch(
        requests,
        client_factory=client_factory(llm_config, credentials),
        journal=journal,
        config=llm_config,
        validate=validate,
        desc=desc,
    )
