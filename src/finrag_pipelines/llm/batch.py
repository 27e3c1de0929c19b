"""Run many chat requests concurrently, resumably, with validation and quarantine.

:func:`run_chat_batch` is what pipeline nodes call. For each request it

1. looks the response up in the :class:`~finrag_pipelines.llm.journal.ResponseJournal` (a cached raw
   response is re-validated and used without any network call);
2. otherwise sends it to the endpoint, at most ``config.max_concurrency`` at a time, and journals the
   raw response the moment it arrives, before validating it;
3. runs ``validate(text)``; a ``ValueError`` means the output is invalid: it asks for a fresh
   generation (a new cache key, ``attempt + 1``) up to ``config.max_invalid_retries`` times, then
   quarantines the request with ``error="invalid output: <reason>"``;
4. reports request failures (after the client's retries) as ``error=<reason>``.

Every request gets exactly one :class:`ChatResult`, in request order; nothing is dropped. Killing a run
loses nothing already journaled: the next run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .client import ChatClient, ChatResponse, LLMRequestError
from .config import LLMConfig
from .journal import ResponseJournal, cache_key, utc_now_iso

logger = logging.getLogger(__name__)

PROGRESS_MIN_REQUESTS = 20
"""Fewer requests than this get no progress bar."""


class LLMFailureRateError(RuntimeError):
    """Too many requests of a stage failed or were quarantined."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat request of a batch.

    Attributes:
        id: Caller's identifier (e.g. a document id); unique within a batch.
        messages: Chat messages to send.
        validate: A validator for this request only (e.g. one that knows this request's candidate options),
            used instead of the batch's ``validate``; ``None`` uses the batch's. Not part of the cache key:
            a journaled answer is re-validated with it on every run.
    """

    id: str
    messages: list[dict[str, Any]]
    validate: Callable[[str], Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ChatResult:
    """The outcome of one :class:`ChatRequest`.

    Attributes:
        id: The request's id.
        text: Raw text of the last response (valid or not), ``None`` if no response came back.
        value: What ``validate`` returned for it (the text itself without a validator); ``None`` on error.
        error: ``None`` on success; ``"invalid output: <reason>"`` when quarantined; the request error
            (e.g. ``"HTTP 500 after 6 attempts: internal error"``) when the endpoint failed.
        attempts: HTTP requests sent for this id during this run, retries included (0 if everything came
            from the journal).
        cached: Whether the final response came from the journal.
    """

    id: str
    text: str | None
    value: Any
    error: str | None
    attempts: int
    cached: bool

    @property
    def ok(self) -> bool:
        """Whether the request produced a valid value."""
        return self.error is None


@dataclass
class _Counts:
    cached: int = 0
    called: int = 0
    http_requests: int = 0
    invalid: int = 0
    quarantined: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def _identity(text: str) -> str:
    return text


def _validate(validate: Callable[[str], Any], text: str) -> tuple[bool, Any]:
    """``(True, value)`` or ``(False, reason)``; only ``ValueError`` marks an output invalid."""
    try:
        return True, validate(text)
    except ValueError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return False, reason if len(reason) <= 300 else reason[:297] + "..."


def run_chat_batch(
    requests: Sequence[ChatRequest],
    *,
    client_factory: Callable[[], ChatClient] | None,
    journal: ResponseJournal,
    config: LLMConfig,
    validate: Callable[[str], Any] | None = None,
    desc: str = "llm",
) -> list[ChatResult]:
    """Answer every request, from the journal where possible, else from the endpoint.

    Args:
        requests: The requests; ids must be unique.
        client_factory: Builds the :class:`ChatClient`; called once (inside the event loop) and only if
            some request is not answered by the journal. ``None`` is allowed when the journal is known
            to hold everything; otherwise that is an error.
        journal: Durable cache of raw responses, written as responses arrive.
        config: Model, sampling, concurrency and retry settings (the cache key uses
            ``config.model`` and ``config.sampling()``).
        validate: ``text -> value``; raise ``ValueError`` for an invalid output. Any other exception
            is a bug and stops the batch (responses already journaled are kept). Default: the raw text.
            A request's own :attr:`ChatRequest.validate` is used instead where it has one.
        desc: Label for the progress bar and the log lines.

    Returns:
        One :class:`ChatResult` per request, in request order.

    Raises:
        ValueError: On duplicate request ids, or when requests need the network and
            ``client_factory`` is ``None``.
    """
    check_unique_ids(requests, desc)
    coroutine = _BatchRun(list(requests), journal, config, validate or _identity, desc).run(client_factory)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Called from inside an event loop (a notebook, an async app): run ours in a worker thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="llm-batch") as pool:
        return pool.submit(asyncio.run, coroutine).result()


def check_unique_ids(requests: Sequence[ChatRequest], desc: str) -> None:
    """Raise ``ValueError`` naming the first request id that occurs twice in a batch."""
    seen: set[str] = set()
    for request in requests:
        if request.id in seen:
            raise ValueError(
                f"duplicate request id {request.id!r} in the {desc!r} batch; ids must be unique."
            )
        seen.add(request.id)


class _BatchRun:
    """State of one batch: the journal walk, the network phase and the counts.

    Shared by :func:`run_chat_batch` and the Ray path
    (:func:`finrag_pipelines.llm.distributed.run_chat_batch_ray`): ``prepare`` walks the journal,
    ``record_response`` / ``record_error`` settle what the endpoint answered, ``finish`` checks and logs.
    """

    def __init__(
        self,
        requests: list[ChatRequest],
        journal: ResponseJournal,
        config: LLMConfig,
        validate: Callable[[str], Any],
        desc: str,
    ) -> None:
        self.requests = requests
        self.journal = journal
        self.config = config
        self.validate = validate
        self.desc = desc
        self.sampling = config.sampling()
        self.counts = _Counts()
        self.results: list[ChatResult | None] = [None] * len(requests)

    def key(self, index: int, attempt: int) -> str:
        return cache_key(self.config.model, self.requests[index].messages, self.sampling, attempt)

    def from_journal(self, index: int, attempt: int, http_requests: int) -> ChatResult | tuple[int, str]:
        """Walk the journaled generations of request ``index`` from ``attempt`` on.

        Returns:
            The final result if the journal settles it (valid, or invalid at the last allowed attempt),
            else ``(attempt, key)`` of the first generation to ask the endpoint for.
        """
        request = self.requests[index]
        while True:
            key = self.key(index, attempt)
            record = self.journal.get(key)
            if record is None:
                return attempt, key
            text = str(record.get("text") or "")
            ok, value = _validate(request.validate or self.validate, text)
            if ok:
                return ChatResult(request.id, text, value, None, http_requests, cached=True)
            self.counts.invalid += 1
            if attempt >= self.config.max_invalid_retries:
                return ChatResult(
                    request.id, text, None, f"invalid output: {value}", http_requests, cached=True
                )
            attempt += 1

    def prepare(self) -> list[tuple[int, int, str]]:
        """Settle what the journal answers; return ``(index, attempt, key)`` of what needs the endpoint."""
        self.started = time.monotonic()
        pending: list[tuple[int, int, str]] = []
        for index in range(len(self.requests)):
            outcome = self.from_journal(index, 0, 0)
            if isinstance(outcome, ChatResult):
                self.results[index] = outcome
                self.counts.cached += 1
            else:
                pending.append((index, *outcome))
        self.counts.called = len(pending)
        return pending

    def finish(self) -> list[ChatResult]:
        """Check that every request has exactly one result, log the counts and return the results."""
        final = [r for r in self.results if r is not None]
        if len(final) != len(self.requests):  # an internal invariant: every request gets exactly one result
            raise RuntimeError(
                f"{self.desc}: {len(self.requests) - len(final)} requests got no result; a bug."
            )
        self._log(final, time.monotonic() - self.started)
        return final

    async def run(self, client_factory: Callable[[], ChatClient] | None) -> list[ChatResult]:
        pending = self.prepare()
        if pending:
            if client_factory is None:
                raise ValueError(
                    f"{len(pending)} of {len(self.requests)} {self.desc!r} requests are not in the journal "
                    f"{self.journal.path} but no client_factory was given; pass one (llm.backend 'openai') "
                    f"to call the endpoint."
                )
            await self._call_endpoint(pending, client_factory)
        return self.finish()

    async def _call_endpoint(
        self, pending: list[tuple[int, int, str]], client_factory: Callable[[], ChatClient]
    ) -> None:
        """Send the pending requests, ``config.max_concurrency`` in flight at most."""
        from tqdm.auto import tqdm

        progress = tqdm(
            total=len(self.requests),
            initial=self.counts.cached,
            desc=self.desc,
            unit="req",
            dynamic_ncols=True,
            disable=True if len(self.requests) < PROGRESS_MIN_REQUESTS else None,  # None: only on a tty
            file=sys.stderr,
        )
        client = client_factory()
        semaphore = asyncio.Semaphore(self.config.max_concurrency)
        # One worker per concurrency slot pulling from a shared iterator: tasks and memory stay
        # O(concurrency) however long the batch; the semaphore bounds in-flight requests on top.
        queue = iter(pending)

        async def worker() -> None:
            for index, attempt, key in queue:
                self.results[index] = await self._settle(client, semaphore, index, attempt, key)
                progress.update(1)

        workers = [
            asyncio.ensure_future(worker()) for _ in range(min(self.config.max_concurrency, len(pending)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            progress.close()
            await client.close()

    async def _settle(
        self, client: ChatClient, semaphore: asyncio.Semaphore, index: int, attempt: int, key: str
    ) -> ChatResult:
        """Ask for generations of request ``index`` until one is valid, quarantined, or failed."""
        request = self.requests[index]
        http_requests = 0
        while True:
            try:
                async with semaphore:
                    response: ChatResponse = await client.complete(request.messages)
            except LLMRequestError as exc:
                return self.record_error(index, exc, http_requests)
            http_requests += response.attempts
            outcome = self.record_response(index, attempt, key, response, http_requests)
            if isinstance(outcome, ChatResult):
                return outcome
            attempt, key = outcome

    def record_error(self, index: int, exc: LLMRequestError, http_requests: int) -> ChatResult:
        """Count a request that failed after the client's retries and return its failed result.

        Args:
            index: The request's position in the batch.
            exc: The client's error.
            http_requests: HTTP requests already sent for this request in this run (before this one).
        """
        http_requests += exc.attempts
        self.counts.http_requests += exc.attempts
        self.counts.errors[exc.reason] = self.counts.errors.get(exc.reason, 0) + 1
        return ChatResult(self.requests[index].id, None, None, str(exc), http_requests, cached=False)

    def record_response(
        self, index: int, attempt: int, key: str, response: ChatResponse, http_requests: int
    ) -> ChatResult | tuple[int, str]:
        """Journal one response, validate it, and say what comes next.

        Args:
            index: The request's position in the batch.
            attempt: The generation this response answers.
            key: Its cache key.
            response: What the endpoint returned.
            http_requests: HTTP requests sent for this request in this run, ``response.attempts`` included.

        Returns:
            The final result (valid, or quarantined at the last allowed attempt), else ``(attempt, key)``
            of the next generation to ask the endpoint for.
        """
        request = self.requests[index]
        self.counts.http_requests += response.attempts
        self.journal.put(
            key,
            {
                "id": request.id,
                "attempt": attempt,
                "model": self.config.model,
                "text": response.text,
                "reasoning": response.reasoning,
                "finish_reason": response.finish_reason,
                "usage": response.usage,
                "created_at": utc_now_iso(),
            },
        )
        ok, value = _validate(request.validate or self.validate, response.text)
        if ok:
            return ChatResult(request.id, response.text, value, None, http_requests, cached=False)
        self.counts.invalid += 1
        if attempt >= self.config.max_invalid_retries:
            return ChatResult(
                request.id, response.text, None, f"invalid output: {value}", http_requests, cached=False
            )
        return self.from_journal(index, attempt + 1, http_requests)

    def _log(self, final: list[ChatResult], elapsed: float) -> None:
        counts = self.counts
        counts.quarantined = sum(
            1 for r in final if r.error is not None and r.error.startswith("invalid output")
        )
        counts.failed = sum(1 for r in final if r.error is not None) - counts.quarantined
        logger.info(
            "%s: %d requests in %.1fs: %d from the journal, %d sent to the endpoint (%d HTTP requests), "
            "%d invalid outputs seen, %d quarantined as invalid, %d failed",
            self.desc,
            len(final),
            elapsed,
            counts.cached,
            counts.called,
            counts.http_requests,
            counts.invalid,
            counts.quarantined,
            counts.failed,
        )
        if counts.errors:
            top = sorted(counts.errors.items(), key=lambda item: -item[1])[:3]
            logger.warning(
                "%s: most common request errors: %s", self.desc, "; ".join(f"{n}x {e}" for e, n in top)
            )


def check_failure_rate(n_failed: int, n_total: int, max_rate: float, what: str) -> None:
    """Fail a stage whose share of failed (or quarantined) requests is above the ceiling.

    Args:
        n_failed: Requests that failed or were quarantined.
        n_total: All requests of the stage.
        max_rate: The ceiling (``llm.max_failure_rate``), a share between 0 and 1.
        what: The stage and where its failed rows are kept, e.g.
            ``"query_distill stage 1 (failed rows: query_distill.stage1_failures)"``.

    Raises:
        ValueError: If the counts are inconsistent.
        LLMFailureRateError: If ``n_failed / n_total > max_rate``; the message gives both rates.
    """
    if n_total < 0 or n_failed < 0 or n_failed > n_total:
        raise ValueError(f"{what}: inconsistent counts, {n_failed} failed out of {n_total}.")
    if n_total == 0 or n_failed == 0:
        return
    rate = n_failed / n_total
    if rate > max_rate:
        raise LLMFailureRateError(
            f"{what}: {n_failed} of {n_total} requests failed or were quarantined ({rate:.1%}), above "
            f"llm.max_failure_rate={max_rate:.1%}. Their error messages say why (endpoint down, timeouts, "
            f"invalid outputs); fix the cause and rerun: journaled responses are reused, only the failed "
            f"requests are sent again. Raise llm.max_failure_rate only if these losses are acceptable."
        )
    logger.warning(
        "%s: %d of %d requests failed or were quarantined (%.1f%%, ceiling %.1f%%)",
        what,
        n_failed,
        n_total,
        100 * rate,
        100 * max_rate,
    )
